//! The provider conformance suite against a live PostgreSQL.
//!
//! `EVT_POSTGRES_URL` names the server; `./scripts/test` starts the machine's PostgreSQL and sets
//! it. Each test uses fresh tables named `evt_test_*`. The suite runs with `synchronous_commit =
//! on` (PostgreSQL's default: appends that arrive together go in one statement, group commit);
//! the concurrent scenarios run again with it `off` (each append on its own).

mod common;

use std::sync::Arc;

use evt_core::Provider;

evt_core::provider_tests!(|limit: usize| async move {
    Arc::new(common::fresh_with(limit, "on").await) as Arc<dyn Provider>
});

/// The concurrent scenarios with commits that do not wait for the disk.
mod without_synchronous_commit {
    use super::*;

    fn factory() -> impl evt_core::testing::Factory {
        |limit: usize| async move {
            Arc::new(common::fresh_with(limit, "off").await) as Arc<dyn Provider>
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_arriving_together() {
        evt_core::testing::appends_arriving_together(&factory()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_one_aggregate() {
        evt_core::testing::concurrent_writers_one_aggregate(&factory()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_with_handler() {
        evt_core::testing::concurrent_writers_with_handler(&factory()).await;
    }
}
