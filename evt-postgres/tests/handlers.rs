//! Handlers on PostgreSQL across processes: an append in one process wakes a started handler in
//! another through the notification the `evt_lock` trigger sends at commit.

mod common;

use std::sync::Arc;

use evt_core::testing::{wake_child, wake_child_store, wake_parent};
use evt_postgres::PostgresProvider;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_in_one_process_wakes_a_handler_in_another() {
    if let Some(tables) = wake_child_store() {
        let (events, bookmarks) = tables.split_once(',').unwrap();
        let provider = PostgresProvider::connect(&common::url())
            .await
            .unwrap()
            .events_table(events)
            .unwrap()
            .bookmarks_table(bookmarks)
            .unwrap();
        return wake_child(Arc::new(provider)).await;
    }
    let provider = common::fresh(100).await;
    let tables = format!(
        "{},{}",
        provider.events_table_name(),
        provider.bookmarks_table_name()
    );
    wake_parent(
        "an_append_in_one_process_wakes_a_handler_in_another",
        Arc::new(provider),
        &tables,
    )
    .await;
}
