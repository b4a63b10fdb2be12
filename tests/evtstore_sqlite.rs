//! evt and the real evtstore (12.0.1, its `knex` provider on the `sqlite3` driver) on the same
//! SQLite file: each reads and writes what the other wrote, and both write at once without a
//! handler skipping anything.
//!
//! Needs Node 20 with npm: the first test installs `tests/evtstore` into the target directory
//! (`common/evtstore.rs`; `sqlite3` builds its native module there).

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
use evt_sqlite::SqliteProvider;
use serde_json::{Value, json};

/// A fresh SQLite file with mixed-case table names.
struct Tables {
    path: std::path::PathBuf,
    events: String,
    bookmarks: String,
}

impl Tables {
    async fn fresh(name: &str) -> Tables {
        let micros = evt::chrono::Utc::now().timestamp_micros();
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "evt_interop_{name}_{}_{micros}.db",
            std::process::id()
        ));
        Tables {
            path,
            events: "DeptEvents".to_owned(),
            bookmarks: "DeptBookmarks".to_owned(),
        }
    }

    /// What `sqlite.js` opens.
    fn target(&self) -> Value {
        json!({"path": self.path, "events": self.events, "bookmarks": self.bookmarks})
    }

    async fn provider(&self) -> SqliteProvider {
        SqliteProvider::open(&self.path)
            .await
            .unwrap()
            .events_table(&self.events)
            .unwrap()
            .bookmarks_table(&self.bookmarks)
            .unwrap()
    }

    /// Every stored department event, as `id/version`.
    async fn stored(&self, provider: &SqliteProvider) -> Vec<String> {
        let rows: Vec<(String, i64)> = evt_sqlite::sqlx::query_as(&format!(
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

    /// Removes the file (closing `provider`'s connections first).
    async fn drop(&self, provider: SqliteProvider) {
        provider.pool().close().await;
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What `migrate` adds to a file evtstore's `knex` provider made: the snapshot and metadata
/// columns (knex's `(stream, position)` index serves as it is) and the leases table.
fn assert_completes_evtstores_tables(changes: &[String]) {
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert!(changes[0].contains("`snapshot`"), "{changes:?}");
    assert!(changes[1].contains("`metadata`"), "{changes:?}");
    assert!(changes[2].contains("_leases`"), "{changes:?}");
}

/// The conformance suite on a file that evtstore's `knex` provider created (its `migrate`) and
/// wrote to (the guide's departments, beside the suite's streams), completed by evt's `migrate`.
mod conformance_on_an_evtstore_file {
    use std::sync::Arc;

    use evt::Provider;

    evt_core::provider_tests!(|limit: usize| async move {
        let tables = super::Tables::fresh("conformance").await;
        super::evtstore::run_async(
            "sqlite",
            "write",
            tables.target(),
            vec!["2".into(), "1".into()],
        )
        .await;
        let provider = tables.provider().await.limit(limit);
        super::assert_completes_evtstores_tables(&provider.migrate().await.unwrap());
        Arc::new(provider) as Arc<dyn Provider>
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evt_reads_and_writes_a_file_evtstore_made() {
    let tables = Tables::fresh("made_by_knex").await;
    let written = evtstore::run("sqlite", "write", &tables.target(), &["5", "3"]);
    assert_eq!(written["handled"], 20, "{written}");

    let provider = tables.provider().await;
    assert_completes_evtstores_tables(&provider.migrate().await.unwrap());
    assert!(provider.migrate().await.unwrap().is_empty(), "idempotent");
    // evtstore's bookmark, at evtstore's position.
    let bookmark = provider.position("evtstore-model").await.unwrap();
    assert_eq!(bookmark, written["position"].as_u64());

    let domain = Domain::new(provider.clone());
    evtstore::evt_continues_what_evtstore_wrote(&domain, "sqlite", tables.target()).await;
    tables.drop(provider).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evtstore_reads_and_writes_a_file_evt_made() {
    let tables = Tables::fresh("made_by_evt").await;
    let provider = tables.provider().await;
    provider.migrate().await.unwrap();
    let domain = Domain::new(provider.clone());
    evtstore::evtstore_continues_what_evt_wrote(&domain, "sqlite", tables.target()).await;
    tables.drop(provider).await;
}

/// evt's and evtstore's writers on the same departments at once (4 + 4 on 3 departments, 10 s),
/// an evt handler started during the run: no duplicate versions, conflicts on both sides, every
/// event seen once, evtstore's included (SQLite has one writer at a time, so positions commit in
/// order whoever writes).
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
        evtstore: vec![("sqlite", tables.target()), ("sqlite", tables.target())],
        evtstore_writers: 2,
    }
    .run(&domain, ids, || tables.stored(&provider))
    .await;
    tables.drop(provider).await;
}
