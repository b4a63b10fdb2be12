//! The provider conformance suite against a live PostgreSQL.
//!
//! `EVT_POSTGRES_URL` names the server; `./scripts/test` starts the machine's PostgreSQL and sets
//! it. Each test uses fresh tables named `evt_test_*`.

mod common;

use std::sync::Arc;

use evt_core::Provider;

evt_core::provider_tests!(|limit: usize| async move {
    Arc::new(common::fresh(limit).await) as Arc<dyn Provider>
});
