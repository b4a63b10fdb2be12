//! Handlers on SQLite across processes: an append in one process wakes a started handler in
//! another through its check of `PRAGMA data_version`.

mod common;

use std::sync::Arc;

use evt_core::testing::{wake_child, wake_child_store, wake_parent};
use evt_sqlite::SqliteProvider;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_in_one_process_wakes_a_handler_in_another() {
    if let Some(path) = wake_child_store() {
        let provider = SqliteProvider::open(&path).await.unwrap();
        return wake_child(Arc::new(provider)).await;
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
