//! The conformance suite on the in-memory provider.

use std::sync::Arc;

use evt_core::{MemoryProvider, Provider};

evt_core::provider_tests!(|limit: usize| async move {
    Arc::new(MemoryProvider::with_limit(limit)) as Arc<dyn Provider>
});
