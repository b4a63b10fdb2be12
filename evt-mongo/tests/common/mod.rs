//! What the MongoDB tests share: the server's URL and a fresh database per test.

use std::sync::atomic::{AtomicU32, Ordering};

use evt_mongo::MongoProvider;
use evt_mongo::mongodb::Client;

/// The server's URL, or a failure that says how to get one.
pub fn url() -> String {
    std::env::var("EVT_MONGO_URL").unwrap_or_else(|_| {
        panic!(
            "EVT_MONGO_URL is not set. Run `./scripts/test`, which starts a local MongoDB-compatible \
             server and sets it, or point it at a MongoDB replica set: \
             EVT_MONGO_URL=mongodb://127.0.0.1:27017/?replicaSet=rs0 cargo test -p evt-mongo"
        )
    })
}

/// A migrated provider over a fresh database named `evt_test_*`.
pub async fn fresh(limit: usize) -> MongoProvider {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let client = Client::with_uri_str(url())
        .await
        .expect("a valid EVT_MONGO_URL");
    let name = format!(
        "evt_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros()
    );
    let provider = MongoProvider::new(&client.database(&name)).limit(limit);
    provider
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate on {}: {e}", url()));
    provider
}
