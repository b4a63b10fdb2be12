//! What the PostgreSQL tests share: the server's URL and fresh tables per test.

use std::sync::atomic::{AtomicU32, Ordering};

use evt_postgres::PostgresProvider;

/// The server's URL, or a failure that says how to get one.
pub fn url() -> String {
    std::env::var("EVT_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "EVT_POSTGRES_URL is not set. Run `./scripts/test`, which starts PostgreSQL and sets it, \
             or point it at a server: EVT_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
             cargo test -p evt-postgres"
        )
    })
}

/// A migrated provider over fresh tables `evt_test_*_events` and `evt_test_*_bookmarks`, whose
/// sessions run with the server's `synchronous_commit` (the test database's setting).
#[allow(dead_code)]
pub async fn fresh(limit: usize) -> PostgresProvider {
    fresh_at(&url(), limit).await
}

/// [`fresh`], with `synchronous_commit` set for the provider's sessions: `on` (commits wait for
/// the disk; appends that arrive together go in one statement) or `off` (each on its own).
#[allow(dead_code)]
pub async fn fresh_with(limit: usize, synchronous_commit: &str) -> PostgresProvider {
    let url = url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}options=-c%20synchronous_commit%3D{synchronous_commit}");
    fresh_at(&url, limit).await
}

async fn fresh_at(url: &str, limit: usize) -> PostgresProvider {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let prefix = format!(
        "evt_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros()
            % 1_000_000_000
    );
    let provider = PostgresProvider::connect(url)
        .await
        .unwrap_or_else(|e| panic!("{e}; is PostgreSQL running? `./scripts/test` starts it"))
        .events_table(&format!("{prefix}_events"))
        .unwrap()
        .bookmarks_table(&format!("{prefix}_bookmarks"))
        .unwrap()
        .limit(limit);
    provider
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    provider
}
