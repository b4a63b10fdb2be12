//! Handlers on SQLite across processes: an append in one process wakes a started handler in
//! another through its check of `PRAGMA data_version`; three processes share one projection
//! under a lease, and a killed holder is replaced.

mod common;

use std::sync::Arc;

use evt_core::testing::{child, child_store, failover_parent, wake_parent};
use evt_sqlite::SqliteProvider;

/// The parent's file, in a child, reading pages of 10 events.
async fn open(path: &str) -> Arc<SqliteProvider> {
    Arc::new(SqliteProvider::open(path).await.unwrap().limit(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_in_one_process_wakes_a_handler_in_another() {
    if let Some(path) = child_store() {
        return child(open(&path).await).await;
    }
    let path = common::fresh_path();
    let provider = SqliteProvider::open(&path).await.unwrap();
    provider.migrate().await.unwrap();
    wake_parent(
        "an_append_in_one_process_wakes_a_handler_in_another",
        Arc::new(provider),
        &path.to_string_lossy(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lease_holder_is_replaced_and_nothing_is_skipped() {
    if let Some(path) = child_store() {
        return child(open(&path).await).await;
    }
    let path = common::fresh_path();
    let provider = SqliteProvider::open(&path).await.unwrap().limit(10);
    provider.migrate().await.unwrap();
    failover_parent(
        "a_killed_lease_holder_is_replaced_and_nothing_is_skipped",
        Arc::new(provider),
        &path.to_string_lossy(),
    )
    .await;
}
