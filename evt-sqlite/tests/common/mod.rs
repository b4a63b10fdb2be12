//! What the SQLite tests share: a fresh database file per test.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use evt_sqlite::SqliteProvider;

/// A new file name in the temporary directory.
pub fn fresh_path() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "evt-test-{}-{}-{}.db",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros()
    ))
}

/// A migrated provider over a fresh file.
#[allow(dead_code)] // not every test file uses it
pub async fn fresh(limit: usize) -> SqliteProvider {
    let provider = SqliteProvider::open(fresh_path())
        .await
        .unwrap()
        .limit(limit);
    provider.migrate().await.unwrap();
    provider
}
