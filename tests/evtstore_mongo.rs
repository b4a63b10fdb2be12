//! evt and the real evtstore (12.0.1, its `mongodb` provider) on one MongoDB store: each reads
//! and writes what the other wrote, and both write at once without a handler skipping anything.
//!
//! Needs `EVT_MONGO_URL` (`./scripts/test` starts a server and sets it) and Node 20 with npm:
//! the first test installs `tests/evtstore` into the target directory (`common/evtstore.rs`).

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
use evt_mongo::MongoProvider;
use evt_mongo::mongodb::Database;
use evt_mongo::mongodb::bson::{Document, doc};
use serde_json::Value;

fn url() -> String {
    std::env::var("EVT_MONGO_URL").unwrap_or_else(|_| {
        panic!("EVT_MONGO_URL is not set: run `./scripts/test`, which starts a local MongoDB-compatible server")
    })
}

async fn fresh_database(name: &str) -> Database {
    let client = evt_mongo::mongodb::Client::with_uri_str(url())
        .await
        .unwrap();
    let micros = evt::chrono::Utc::now().timestamp_micros();
    client.database(&format!(
        "evt_evtstore_{name}_{}_{micros}",
        std::process::id()
    ))
}

/// Runs `node mongo.js COMMAND {url, db} ARGS...` and returns its JSON line.
fn evtstore(command: &str, database: &Database, args: &[&str]) -> Value {
    evtstore::run("mongo", command, &target(database), args)
}

fn target(database: &Database) -> Value {
    serde_json::json!({"url": url(), "db": database.name()})
}

async fn evtstore_async(command: &'static str, database: Database, args: Vec<String>) -> Value {
    evtstore::run_async("mongo", command, target(&database), args).await
}

/// Every stored event of the departments stream, as `id/version`.
async fn stored(database: &Database) -> Vec<String> {
    use futures_util::TryStreamExt;
    let events: Vec<Document> = database
        .collection::<Document>("events")
        .find(doc! {"stream": "departments"})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    events
        .iter()
        .map(|e| {
            let version = e.get("version").unwrap();
            format!("{}/{version}", e.get_str("aggregateId").unwrap())
        })
        .collect()
}

/// The conformance suite on stores that evtstore created (its `migrate`) and wrote to (the
/// guide's departments, beside the suite's streams).
mod conformance_on_an_evtstore_store {
    use std::sync::Arc;

    use evt::Provider;
    use evt_mongo::MongoProvider;

    evt_core::provider_tests!(|limit: usize| async move {
        let database = super::fresh_database("conformance").await;
        super::evtstore_async("write", database.clone(), vec!["2".into(), "1".into()]).await;
        let provider = MongoProvider::new(&database).limit(limit);
        let changes = provider.migrate().await.unwrap();
        assert!(
            changes.is_empty(),
            "evtstore's indexes serve evt: {changes:?}"
        );
        Arc::new(provider) as Arc<dyn Provider>
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evt_reads_and_writes_a_store_evtstore_made() {
    let database = fresh_database("made_by_evtstore").await;
    let written = evtstore("write", &database, &["5", "3"]);
    assert_eq!(written["handled"], 20, "{written}");

    let provider = MongoProvider::new(&database);
    assert_eq!(
        provider.migrate().await.unwrap(),
        Vec::<String>::new(),
        "evtstore's indexes are accepted as they are"
    );
    // evtstore's bookmark, at evtstore's position.
    let bookmark = provider
        .checkpoint("evtstore-model")
        .await
        .unwrap()
        .unwrap();
    let position = written["position"]["t"].as_u64().unwrap() << 32
        | written["position"]["i"].as_u64().unwrap();
    assert_eq!(bookmark.position, position);

    let domain = Domain::new(provider);
    evtstore::evt_continues_what_evtstore_wrote(&domain, "mongo", target(&database)).await;
    database.drop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evtstore_reads_and_writes_a_store_evt_made() {
    let database = fresh_database("made_by_evt").await;
    let provider = MongoProvider::new(&database);
    assert_eq!(provider.migrate().await.unwrap().len(), 3);
    let domain = Domain::new(provider);
    evtstore::evtstore_continues_what_evt_wrote(&domain, "mongo", target(&database)).await;
    database.drop().await.unwrap();
}

/// evt's and evtstore's writers on the same departments at once, an evt handler started
/// during the run: no duplicate versions, conflicts on both sides, every event seen once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_libraries_write_at_once_and_the_handler_skips_nothing() {
    let ids = ["dept-a", "dept-b", "dept-c"];
    let database = fresh_database("both").await;
    evtstore::dir();
    let provider = MongoProvider::new(&database);
    provider.migrate().await.unwrap();
    let domain = Domain::new(provider);
    evtstore::Race {
        seconds: 10,
        evt_writers: 16,
        evtstore: vec![("mongo", target(&database)), ("mongo", target(&database))],
        evtstore_writers: 8,
    }
    .run(&domain, ids, || stored(&database))
    .await;
    database.drop().await.unwrap();
}
