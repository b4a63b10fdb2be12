//! evt and the real evtstore (12.0.1, its `pg` and `postgres` providers) on the same PostgreSQL
//! tables: each reads and writes what the other wrote, and both write at once without a handler
//! skipping anything. Table names are mixed case, so both must quote them as written; each test
//! has a database of its own (evtstore's `migrate` makes one events table per schema).
//!
//! Needs `EVT_POSTGRES_URL` (`./scripts/test` sets it) and Node 20 with npm: the first test
//! installs `tests/evtstore` into the target directory (`common/evtstore.rs`).

#[path = "../examples/departments/department.rs"]
#[allow(dead_code)]
mod department;
#[path = "../examples/departments/projection.rs"]
#[allow(dead_code)]
mod projection;
#[path = "../examples/departments/read_model.rs"]
#[allow(dead_code)]
mod read_model;

mod common;
#[path = "common/evtstore.rs"]
mod evtstore;

use evt::{Domain, Provider};
use evt_postgres::PostgresProvider;
use evt_postgres::sqlx::postgres::PgPoolOptions;
use serde_json::{Value, json};

/// evtstore's two PostgreSQL providers.
const DRIVERS: [&str; 2] = ["pg", "postgres"];

fn url() -> String {
    std::env::var("EVT_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "EVT_POSTGRES_URL is not set: run `./scripts/test`, which starts PostgreSQL and sets it \
             (or `scripts/postgres-server start` and EVT_POSTGRES_URL=$(scripts/postgres-server url))"
        )
    })
}

/// Events and bookmarks tables with mixed-case names, in a fresh database: evtstore's `migrate`
/// names its indexes without the table's name, so it makes one events table per schema.
struct Tables {
    url: String,
    events: String,
    bookmarks: String,
}

impl Tables {
    async fn fresh(name: &str) -> Tables {
        let micros = evt::chrono::Utc::now().timestamp_micros();
        let database = format!("evt_interop_{name}_{}_{micros}", std::process::id());
        let server = PostgresProvider::connect(&url()).await.unwrap();
        evt_postgres::sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(server.pool())
            .await
            .unwrap();
        let (base, query) = match url().split_once('?') {
            Some((base, query)) => (base.to_owned(), format!("?{query}")),
            None => (url(), String::new()),
        };
        let (server_url, _) = base.rsplit_once('/').expect("a URL with a database");
        Tables {
            url: format!("{server_url}/{database}{query}"),
            events: "DeptEvents".to_owned(),
            bookmarks: "DeptBookmarks".to_owned(),
        }
    }

    /// What `postgres.js` opens.
    fn target(&self, driver: &str) -> Value {
        json!({"driver": driver, "url": self.url, "events": self.events, "bookmarks": self.bookmarks})
    }

    async fn provider(&self) -> PostgresProvider {
        let pool = PgPoolOptions::new().max_connections(10);
        PostgresProvider::connect_with(&self.url, pool)
            .await
            .unwrap()
            .events_table(&self.events)
            .unwrap()
            .bookmarks_table(&self.bookmarks)
            .unwrap()
    }

    /// Every stored department event, as `id/version`.
    async fn stored(&self, provider: &PostgresProvider) -> Vec<String> {
        let rows: Vec<(String, i32)> = evt_postgres::sqlx::query_as(&format!(
            "SELECT aggregate_id, version FROM \"{}\" WHERE stream = 'departments'",
            self.events
        ))
        .fetch_all(provider.pool())
        .await
        .unwrap();
        rows.into_iter()
            .map(|(id, version)| format!("{id}/{version}"))
            .collect()
    }

    /// Drops the database (closing `provider`'s connections first).
    async fn drop(&self, provider: PostgresProvider) {
        provider.pool().close().await;
        let database = self.url.rsplit_once('/').unwrap().1;
        let database = database.split('?').next().unwrap();
        let server = PostgresProvider::connect(&url()).await.unwrap();
        evt_postgres::sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .execute(server.pool())
            .await
            .unwrap();
    }
}

/// What `migrate` adds to evtstore's tables.
fn assert_completes_evtstores_tables(changes: &[String]) {
    assert_eq!(changes.len(), 6, "{changes:?}");
    for wanted in [
        "`snapshot`",
        "`append_id`",
        "`metadata`",
        "function",
        "trigger",
        "`DeptBookmarks_leases`",
    ] {
        assert!(
            changes.iter().any(|change| change.contains(wanted)),
            "{wanted} in {changes:?}"
        );
    }
}

/// The conformance suite on tables that evtstore created (its `migrate`, `pg` provider) and
/// wrote to (the guide's departments, beside the suite's streams), completed by evt's `migrate`.
mod conformance_on_evtstores_tables {
    use std::sync::Arc;

    use evt::Provider;

    evt_core::provider_tests!(|limit: usize| async move {
        let tables = super::Tables::fresh("conformance").await;
        super::evtstore::run_async(
            "postgres",
            "write",
            tables.target("pg"),
            vec!["2".into(), "1".into()],
        )
        .await;
        let provider = tables.provider().await.limit(limit);
        super::assert_completes_evtstores_tables(&provider.migrate().await.unwrap());
        Arc::new(provider) as Arc<dyn Provider>
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evt_reads_and_writes_tables_evtstore_made() {
    for driver in DRIVERS {
        let tables = Tables::fresh(&format!("made_by_{driver}")).await;
        let written = evtstore::run("postgres", "write", &tables.target(driver), &["5", "3"]);
        assert_eq!(written["handled"], 20, "{driver}: {written}");

        let provider = tables.provider().await;
        assert_completes_evtstores_tables(&provider.migrate().await.unwrap());
        assert!(provider.migrate().await.unwrap().is_empty(), "idempotent");
        // evtstore's bookmark, at evtstore's position.
        let bookmark = provider.position("evtstore-model").await.unwrap();
        assert_eq!(bookmark, written["position"].as_u64(), "{driver}");

        let domain = Domain::new(provider.clone());
        evtstore::evt_continues_what_evtstore_wrote(&domain, "postgres", tables.target(driver))
            .await;
        tables.drop(provider).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evtstore_reads_and_writes_tables_evt_made() {
    for driver in DRIVERS {
        let tables = Tables::fresh(&format!("made_by_evt_{driver}")).await;
        let provider = tables.provider().await;
        provider.migrate().await.unwrap();
        let domain = Domain::new(provider.clone());
        evtstore::evtstore_continues_what_evt_wrote(&domain, "postgres", tables.target(driver))
            .await;
        tables.drop(provider).await;
    }
}

/// evt's and evtstore's writers on the same departments at once (4 + 4 on 3 departments, 10 s),
/// an evt handler started during the run: no duplicate versions, conflicts on both sides, every
/// event seen once, evtstore's included (its inserts take evt's lock through the trigger).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_libraries_write_at_once_and_the_handler_skips_nothing() {
    let ids = ["dept-a", "dept-b", "dept-c"];
    let tables = Tables::fresh("both").await;
    evtstore::dir();
    let provider = tables.provider().await;
    provider.migrate().await.unwrap();
    let domain = Domain::new(provider.clone());
    evtstore::Race {
        seconds: 10,
        evt_writers: 4,
        evtstore: DRIVERS
            .iter()
            .map(|driver| ("postgres", tables.target(driver)))
            .collect(),
        evtstore_writers: 2,
    }
    .run(&domain, ids, || tables.stored(&provider))
    .await;
    tables.drop(provider).await;
}
