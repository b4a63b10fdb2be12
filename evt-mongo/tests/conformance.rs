//! The provider conformance suite against a live MongoDB (a replica set: transactions).
//!
//! `EVT_MONGO_URL` names the server; `./scripts/test` starts a local one and sets it. Each test
//! runs in a fresh database named `evt_test_*` (on your own server, drop them afterwards).

mod common;

use std::sync::Arc;

use evt_core::Provider;

evt_core::provider_tests!(|limit: usize| async move {
    Arc::new(common::fresh(limit).await) as Arc<dyn Provider>
});
