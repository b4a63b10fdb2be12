//! What is particular to MongoDB: the documents, indexes, and failures.

mod common;

use evt_core::{Error, NewEvent, Provider, Snapshot};
use evt_mongo::MongoProvider;
use evt_mongo::mongodb::bson::{Bson, Document, Timestamp, doc};
use futures_util::TryStreamExt;
use serde_json::json;

fn event(data: serde_json::Value) -> NewEvent {
    NewEvent::from_value("noted", &data)
}

async fn raw_events(provider: &MongoProvider) -> Vec<Document> {
    let events = provider.database().collection::<Document>("events");
    events
        .find(doc! {})
        .sort(doc! {"position": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn documents_are_bson_as_evtstore_stores_them() {
    let provider = common::fresh(100).await;
    let snapshot = Snapshot::new("1", 2, json!({"notes": 2}));
    provider
        .append(
            "examples",
            "a",
            0,
            &[
                event(json!({"type": "noted", "noteText": "x"})),
                event(json!({"type": "noted", "n": 1.5})),
            ],
            Some(&snapshot),
        )
        .await
        .unwrap();
    provider.set_position("reader", 7).await.unwrap();

    let events = raw_events(&provider).await;
    assert_eq!(events.len(), 2);
    let first = &events[0];
    assert_eq!(first.get_str("stream"), Ok("examples"));
    assert_eq!(first.get_str("aggregateId"), Ok("a"));
    assert_eq!(first.get("version"), Some(&Bson::Int64(1)));
    assert!(
        matches!(first.get("position"), Some(Bson::Timestamp(t)) if t.time > 0),
        "the server's Timestamp, as evtstore's"
    );
    assert!(matches!(first.get("timestamp"), Some(Bson::DateTime(_))));
    assert_eq!(
        first.get_document("event").unwrap(),
        &doc! {"type": "noted", "noteText": "x"}
    );
    assert!(
        first.get("snapshot").is_none(),
        "the snapshot is on the last event only"
    );
    let snapshot = events[1].get_document("snapshot").unwrap();
    assert_eq!(snapshot.get_str("snapshotVersion"), Ok("1"));
    assert_eq!(
        snapshot.get_document("state").unwrap(),
        &doc! {"notes": 2_i64}
    );

    let bookmarks = provider.database().collection::<Document>("bookmarks");
    let bookmark = bookmarks
        .find_one(doc! {"bookmark": "reader"})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        bookmark.get("position"),
        Some(&Bson::Timestamp(Timestamp {
            time: 0,
            increment: 7
        }))
    );
}

#[tokio::test]
async fn migrate_is_idempotent_and_creates_evtstores_indexes() {
    let provider = common::fresh(100).await;
    assert_eq!(provider.migrate().await.unwrap(), Vec::<String>::new());
    let names = provider
        .database()
        .collection::<Document>("events")
        .list_index_names()
        .await
        .unwrap();
    for name in ["stream-id-version-index", "stream-position-index"] {
        assert!(names.iter().any(|n| n == name), "{names:?}");
    }
    // The unique index stops a second event at the same version even outside `append`.
    provider
        .append("examples", "a", 0, &[event(json!({"type": "noted"}))], None)
        .await
        .unwrap();
    let events = provider.database().collection::<Document>("events");
    let duplicate =
        doc! {"stream": "examples", "aggregateId": "a", "version": 1_i64, "position": 99_i64};
    assert!(events.insert_one(duplicate).await.is_err());
}

#[tokio::test]
async fn a_failing_append_leaves_nothing_half_written() {
    let provider = common::fresh(100).await;
    // 17 MB: more than a BSON document may hold, so the second insert fails inside the transaction.
    let huge = "x".repeat(17 * 1024 * 1024);
    let error = provider
        .append(
            "examples",
            "a",
            0,
            &[
                event(json!({"type": "noted"})),
                event(json!({"type": "noted", "noteText": huge})),
            ],
            None,
        )
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("append to `examples/a` at version 0"),
        "{error}"
    );
    assert!(
        raw_events(&provider).await.is_empty(),
        "no event of the failed append is visible"
    );
    let stored = provider
        .append("examples", "a", 0, &[event(json!({"type": "noted"}))], None)
        .await
        .unwrap();
    assert_eq!(stored[0].meta.version, 1);
}

#[tokio::test]
async fn a_document_without_its_place_is_named() {
    let provider = common::fresh(100).await;
    provider
        .append("examples", "a", 0, &[event(json!({"type": "noted"}))], None)
        .await
        .unwrap();
    let events = provider.database().collection::<Document>("events");
    events
        .insert_one(doc! {"stream": "examples", "aggregateId": "a", "version": 2_i64, "timestamp": Bson::DateTime(evt_mongo::mongodb::bson::DateTime::now()), "event": {"type": "noted"}})
        .await
        .unwrap();
    let error = provider
        .aggregate_events("examples", "a", 0, 100)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::Provider { .. }), "{message}");
    assert!(message.contains("`position` is missing"), "{message}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    // Nothing listens on port 1.
    let provider = MongoProvider::connect("mongodb://127.0.0.1:1/evt?serverSelectionTimeoutMS=300")
        .await
        .unwrap();
    let error = provider.position("reader").await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("read bookmark `reader` failed"),
        "{message}"
    );
    assert!(
        message.to_lowercase().contains("server selection"),
        "{message}"
    );
}

#[tokio::test]
async fn a_malformed_url_is_a_clear_error() {
    let error = MongoProvider::connect("mongo://nowhere").await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("connect to MongoDB at `mongo://nowhere` failed"),
        "{error}"
    );
}

#[tokio::test]
async fn wrong_credentials_are_a_clear_error() {
    use evt_mongo::mongodb::options::{ClientOptions, Credential};

    let mut options = ClientOptions::parse(common::url()).await.unwrap();
    options.credential = Some(
        Credential::builder()
            .username("nobody".to_owned())
            .password("wrong".to_owned())
            .build(),
    );
    options.server_selection_timeout = Some(std::time::Duration::from_secs(2));
    let client = evt_mongo::mongodb::Client::with_options(options).unwrap();
    let provider = MongoProvider::new(&client.database("evt"));
    let error = provider.position("reader").await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("read bookmark `reader` failed"),
        "{message}"
    );
    assert!(message.contains("Authentication failed"), "{message}");
}

#[tokio::test]
async fn an_event_that_does_not_decode_stops_the_handler_before_it() {
    use evt_core::Domain;
    use evt_core::testing::Recorder;

    let provider = common::fresh(100).await;
    let created = event(json!({"type": "created", "name": "a"}));
    let good = provider
        .append("examples", "a", 0, &[created], None)
        .await
        .unwrap();
    // Written by another program: `by` should be a number.
    let wrong = NewEvent::from_value("incremented", &json!({"type": "incremented", "by": "x"}));
    let bad = provider
        .append("examples", "a", 1, &[wrong], None)
        .await
        .unwrap();
    let domain = Domain::new(provider.clone());
    let handler = domain.handler(Recorder::default());
    let error = handler.run_once().await.unwrap_err();
    let message = error.to_string();
    let position = format!("position {}", bad[0].meta.position);
    for part in ["examples/a", "version 2", position.as_str()] {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
    let bookmark = provider.position("recorder").await.unwrap();
    assert_eq!(
        bookmark,
        Some(good[0].meta.position),
        "the bookmark stays before it"
    );
    assert_eq!(handler.projection().seen().len(), 1);
}

/// One-event appends that arrive together go to the server as one unordered `insertMany`; each
/// keeps its own answer: the writers racing for one version get one success and conflicts, the
/// writers of other aggregates in the same batches all succeed, and each position is unique.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_sent_together_keep_their_own_answers() {
    let provider = common::fresh(100).await;
    for round in 0..5_u64 {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(24));
        let tasks: Vec<_> = (0..24_u64)
            .map(|task| {
                let (provider, barrier) = (provider.clone(), barrier.clone());
                tokio::spawn(async move {
                    // Tasks 0..8 race for the same version of `shared`; the others write alone.
                    let (id, version) = if task < 8 {
                        ("shared".to_owned(), round)
                    } else {
                        (format!("alone-{task}"), round)
                    };
                    barrier.wait().await;
                    provider
                        .append_only("s", &id, version, &[event(json!({"task": task}))], None)
                        .await
                })
            })
            .collect();
        let mut conflicts = 0;
        for (task, handle) in tasks.into_iter().enumerate() {
            match handle.await.unwrap() {
                Ok(()) => {}
                Err(Error::VersionConflict { aggregate_id, .. }) if task < 8 => {
                    assert_eq!(aggregate_id, "shared");
                    conflicts += 1;
                }
                Err(error) => panic!("task {task}, round {round}: {error}"),
            }
        }
        assert_eq!(conflicts, 7, "round {round}: one of 8 racing writers wins");
    }
    let stored = raw_events(&provider).await;
    assert_eq!(stored.len(), 5 * 17);
    let positions: std::collections::BTreeSet<_> = stored
        .iter()
        .map(|document| document.get_timestamp("position").unwrap())
        .collect();
    assert_eq!(positions.len(), stored.len(), "every position is unique");
    assert!(
        positions.iter().all(|p| p.time > 0),
        "every position was filled in"
    );
    let shared = provider
        .aggregate_events("s", "shared", 0, 100)
        .await
        .unwrap();
    let versions: Vec<u64> = shared.iter().map(|e| e.meta.version).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
}

/// Loads that arrive together are read together (one query per stream for loads from the first
/// event); each gets exactly its own aggregate's events after its own version, by version: the
/// same aggregate twice, one after a version, another stream, one without events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loads_read_together_get_their_own_events() {
    let provider = common::fresh(100).await;
    for (stream, id, count) in [("s", "a", 5_u64), ("s", "b", 3), ("t", "a", 4)] {
        let events: Vec<NewEvent> = (0..count)
            .map(|n| event(json!({"type": "noted", "n": n})))
            .collect();
        provider
            .append_only(stream, id, 0, &events, None)
            .await
            .unwrap();
    }
    let loads = [
        ("s", "a", 0_u64),
        ("s", "a", 0),
        ("s", "b", 0),
        ("s", "a", 3),
        ("t", "a", 0),
        ("s", "none", 0),
    ];
    for round in 0..10 {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(loads.len()));
        let tasks: Vec<_> = loads
            .iter()
            .map(|&(stream, id, after)| {
                let (provider, barrier) = (provider.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let events: Vec<_> = provider
                        .aggregate_stream(stream, id, after)
                        .try_collect()
                        .await
                        .unwrap();
                    events
                        .iter()
                        .map(|e| {
                            (
                                e.meta.stream.clone(),
                                e.meta.aggregate_id.clone(),
                                e.meta.version,
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for (task, &(stream, id, after)) in tasks.into_iter().zip(&loads) {
            let got = task.await.unwrap();
            let count = match (stream, id) {
                ("s", "a") => 5,
                ("s", "b") => 3,
                ("t", "a") => 4,
                _ => 0,
            };
            let expected: Vec<_> = (after + 1..=count)
                .map(|version| (stream.to_owned(), id.to_owned(), version))
                .collect();
            assert_eq!(got, expected, "round {round}: {stream}/{id} after {after}");
        }
    }
}
