//! The provider conformance suite on SQLite files.

mod common;

use std::sync::Arc;

use evt_core::Provider;

evt_core::provider_tests!(|limit: usize| async move {
    Arc::new(common::fresh(limit).await) as Arc<dyn Provider>
});
