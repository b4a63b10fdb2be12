//! Handlers on MongoDB: late commits are not skipped, a restart resumes from the change
//! stream's token, a refused token falls back to the position minus the commit margin, and an
//! append in one process wakes a handler in another.

mod common;

use std::sync::Arc;
use std::time::Duration;

use evt_core::testing::{Recorder, child, child_store, failover_parent, wake_parent};
use evt_core::{Checkpoint, Domain, NewEvent, Provider};
use evt_mongo::MongoProvider;
use evt_mongo::mongodb::Client;
use evt_mongo::mongodb::bson::{Document, Timestamp, doc};
use serde_json::json;

fn noted(text: &str) -> NewEvent {
    NewEvent::from_value("noted", &json!({"type": "noted", "noteText": text}))
}

async fn append(provider: &MongoProvider, id: &str, version: u64, text: &str) -> u64 {
    let stored = provider
        .append("examples", id, version, &[noted(text)], None)
        .await
        .unwrap();
    stored[0].meta.position
}

/// An insert that takes its position, then commits after a later event was read: evtstore's
/// handlers (and `events_from`) skip it; `evt`'s do not.
#[tokio::test]
async fn an_event_that_commits_after_a_later_one_is_not_skipped() {
    let provider = common::fresh(100).await;
    let domain = Domain::new(provider.clone());
    let handler = domain.handler(Recorder::default());
    append(&provider, "before", 0, "before").await;
    assert_eq!(handler.run_once().await.unwrap(), 1);

    // The late one: inserted (position taken) in a transaction that stays open.
    let client = provider.database().client().clone();
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    let events = provider.database().collection::<Document>("events");
    events
        .insert_one(doc! {
            "stream": "examples", "aggregateId": "late", "version": 1_i64,
            "position": Timestamp { time: 0, increment: 0 },
            "timestamp": evt_mongo::mongodb::bson::DateTime::now(),
            "event": {"type": "noted", "noteText": "late"},
        })
        .session(&mut session)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let early = append(&provider, "early", 0, "early").await;
    // Seen now or after the commit: a server may hold a change stream back behind an open
    // transaction (secantusd-rs does); MongoDB delivers it at once.
    let before_commit = handler.run_once().await.unwrap();
    session.commit_transaction().await.unwrap();

    let late = provider
        .aggregate_events("examples", "late", 0, 10)
        .await
        .unwrap();
    assert!(
        late[0].meta.position < early,
        "the late event's position is below one already handled"
    );
    assert!(
        provider
            .events_from(&["examples"], early, 100)
            .await
            .unwrap()
            .is_empty(),
        "by position (as evtstore reads), it is skipped"
    );
    let after_commit = handler.run_once().await.unwrap();
    assert_eq!(
        before_commit + after_commit,
        2,
        "the late one is not skipped"
    );
    let mut seen: Vec<String> = handler
        .projection()
        .seen()
        .iter()
        .map(|meta| meta.aggregate_id.clone())
        .collect();
    if before_commit == 1 {
        assert_eq!(seen, ["before", "early", "late"], "in commit order");
    }
    seen.sort();
    assert_eq!(seen, ["before", "early", "late"], "each once");
}

#[tokio::test]
async fn a_restarted_handler_resumes_from_its_token() {
    let provider = common::fresh(100).await;
    for n in 0..3 {
        append(&provider, &format!("a{n}"), 0, "first").await;
    }
    let first = Domain::new(provider.clone()).handler(Recorder::default());
    assert_eq!(first.run_once().await.unwrap(), 3);
    let stored = provider.checkpoint("recorder").await.unwrap().unwrap();
    assert!(stored.resume.is_some(), "the change stream's token is kept");

    for n in 0..2 {
        append(&provider, &format!("b{n}"), 0, "second").await;
    }
    // Another process: a new client, nothing shared.
    let client = Client::with_uri_str(common::url()).await.unwrap();
    let again = MongoProvider::new(&client.database(provider.database().name()));
    let second = Domain::new(again).handler(Recorder::default());
    assert_eq!(second.run_once().await.unwrap(), 2, "each event once");
    assert_eq!(second.run_once().await.unwrap(), 0);
}

#[tokio::test]
async fn a_refused_token_reads_again_from_the_margin_before_its_position() {
    let provider = common::fresh(100).await;
    let mut positions = Vec::new();
    for n in 0..5 {
        positions.push(append(&provider, &format!("a{n}"), 0, "x").await);
    }
    // A token the server does not know (a restored backup, a history long gone).
    provider
        .set_checkpoint(
            "recorder",
            &Checkpoint::resuming(
                positions[2],
                r#"{"_data":"8200000001000000012B0229296E04"}"#,
            ),
        )
        .await
        .unwrap();
    let handler = Domain::new(provider.clone()).handler(Recorder::default());
    let handled = handler.run_once().await.unwrap();
    let seen: Vec<u64> = handler
        .projection()
        .seen()
        .iter()
        .map(|m| m.position)
        .collect();
    for position in &positions[3..] {
        assert!(
            seen.contains(position),
            "nothing after the checkpoint is skipped"
        );
    }
    assert_eq!(handled, 5, "the margin's events are handled again");
}

/// The parent's database, in a child, reading pages of 10 events.
async fn open(database: &str) -> Arc<MongoProvider> {
    let client = Client::with_uri_str(common::url()).await.unwrap();
    Arc::new(MongoProvider::new(&client.database(database)).limit(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_in_one_process_wakes_a_handler_in_another() {
    if let Some(database) = child_store() {
        return child(open(&database).await).await;
    }
    let provider = common::fresh(100).await;
    let database = provider.database().name().to_owned();
    wake_parent(
        "an_append_in_one_process_wakes_a_handler_in_another",
        Arc::new(provider),
        &database,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lease_holder_is_replaced_and_nothing_is_skipped() {
    if let Some(database) = child_store() {
        return child(open(&database).await).await;
    }
    let provider = common::fresh(10).await;
    let database = provider.database().name().to_owned();
    failover_parent(
        "a_killed_lease_holder_is_replaced_and_nothing_is_skipped",
        Arc::new(provider),
        &database,
    )
    .await;
}
