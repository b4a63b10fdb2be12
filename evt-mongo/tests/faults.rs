//! MongoDB appends whose connection dies: a lost answer is settled (stored once, or a conflict),
//! never reported as a conflict for an append that was stored.

mod common;

use evt_core::testing::CutProxy;
use evt_core::{NewEvent, Provider};
use evt_mongo::MongoProvider;
use evt_mongo::mongodb::Client;
use evt_mongo::mongodb::options::{ClientOptions, ServerAddress};
use serde_json::json;

fn event(n: u64) -> NewEvent {
    NewEvent::from_value("noted", &json!({"type": "noted", "n": n}))
}

/// Whether a MongoDB server's bytes hold one whole message (its length comes first).
fn whole_message(bytes: &[u8]) -> bool {
    bytes.len() >= 4
        && bytes.len() >= i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize
}

/// A provider on the same database as `direct`, connected (directly, to the first host of
/// `EVT_MONGO_URL`, which must be the primary) through a proxy that can break its connection.
async fn through_proxy(direct: &MongoProvider) -> (MongoProvider, CutProxy) {
    let options = ClientOptions::parse(common::url()).await.unwrap();
    let ServerAddress::Tcp { host, port } = options.hosts[0].clone() else {
        panic!("the tests need a TCP address in EVT_MONGO_URL");
    };
    let upstream = tokio::net::lookup_host((host.as_str(), port.unwrap_or(27017)))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = CutProxy::start(upstream).await.unwrap();
    let client = Client::with_uri_str(format!(
        "mongodb://{}/?directConnection=true",
        proxy.local_addr()
    ))
    .await
    .unwrap();
    let provider = MongoProvider::new(&client.database(direct.database().name()));
    // Warm up, so that the cut hits the append and not the connection's start.
    provider.position("warm-up").await.unwrap();
    (provider, proxy)
}

#[tokio::test]
async fn a_lost_commit_answer_is_reported_as_stored() {
    let direct = common::fresh(100).await;
    let (provider, proxy) = through_proxy(&direct).await;
    proxy.cut_after_answer(b"commitTransaction", whole_message);
    let stored = provider
        .append("s", "lost-commit", 0, &[event(1), event(2)], None)
        .await
        .unwrap_or_else(|e| panic!("a stored append must be reported as stored: {e}"));
    assert_eq!(proxy.cuts(), 1, "the connection was cut");
    let read = direct
        .aggregate_events("s", "lost-commit", 0, 10)
        .await
        .unwrap();
    assert_eq!(read, stored, "stored once, as reported");
}

#[tokio::test]
async fn a_lost_answer_inside_the_transaction_is_tried_again_once() {
    let direct = common::fresh(100).await;
    let (provider, proxy) = through_proxy(&direct).await;
    proxy.cut_after_answer(b"mid-transaction", whole_message);
    let stored = provider
        .append("s", "mid-transaction", 0, &[event(1)], None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(proxy.cuts(), 1);
    let read = direct
        .aggregate_events("s", "mid-transaction", 0, 10)
        .await
        .unwrap();
    assert_eq!(read, stored, "stored once");
}

#[tokio::test]
async fn a_lost_answer_after_another_writer_won_is_a_conflict() {
    let direct = common::fresh(100).await;
    direct
        .append("s", "raced", 0, &[event(1)], None)
        .await
        .unwrap();
    let (provider, proxy) = through_proxy(&direct).await;
    proxy.cut_after_answer(b"raced", whole_message);
    let error = provider
        .append("s", "raced", 0, &[event(2)], None)
        .await
        .unwrap_err();
    assert_eq!(proxy.cuts(), 1);
    assert!(error.is_version_conflict(), "{error}");
    assert_eq!(
        direct
            .aggregate_events("s", "raced", 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}
