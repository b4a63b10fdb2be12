//! Handlers on PostgreSQL across processes: an append in one process wakes a started handler in
//! another through the notification the `evt_lock` trigger sends at commit; three processes
//! share one projection under a lease, and a killed holder is replaced.

mod common;

use std::sync::Arc;

use evt_core::testing::{child, child_store, failover_parent, wake_parent};
use evt_postgres::PostgresProvider;

/// What a child process needs to open the parent's tables.
fn describe(provider: &PostgresProvider) -> String {
    format!(
        "{},{}",
        provider.events_table_name(),
        provider.bookmarks_table_name()
    )
}

/// The parent's tables, in a child, reading pages of 10 events.
async fn open(tables: &str) -> Arc<PostgresProvider> {
    let (events, bookmarks) = tables.split_once(',').unwrap();
    let provider = PostgresProvider::connect(&common::url())
        .await
        .unwrap()
        .events_table(events)
        .unwrap()
        .bookmarks_table(bookmarks)
        .unwrap()
        .limit(10);
    Arc::new(provider)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_in_one_process_wakes_a_handler_in_another() {
    if let Some(tables) = child_store() {
        return child(open(&tables).await).await;
    }
    let provider = common::fresh(100).await;
    let tables = describe(&provider);
    wake_parent(
        "an_append_in_one_process_wakes_a_handler_in_another",
        Arc::new(provider),
        &tables,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lease_holder_is_replaced_and_nothing_is_skipped() {
    if let Some(tables) = child_store() {
        return child(open(&tables).await).await;
    }
    let provider = common::fresh(10).await;
    let tables = describe(&provider);
    failover_parent(
        "a_killed_lease_holder_is_replaced_and_nothing_is_skipped",
        Arc::new(provider),
        &tables,
    )
    .await;
}
