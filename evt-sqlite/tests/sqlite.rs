//! What is particular to SQLite: WAL, the file, the rows, names, locks and failures.

mod common;

use std::time::Duration;

use evt_core::testing::{Example, Recorder};
use evt_core::{Domain, Error, NewEvent, Provider, Snapshot};
use evt_sqlite::SqliteProvider;
use serde_json::json;
use sqlx::Row;
use sqlx::sqlite::SqlitePool;

fn event(data: serde_json::Value) -> NewEvent {
    NewEvent::from_value("noted", &data)
}

fn noted() -> NewEvent {
    event(json!({"type": "noted"}))
}

async fn count_events(provider: &SqliteProvider) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(provider.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_file_is_in_wal_mode_with_a_busy_timeout() {
    let provider = common::fresh(100).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(provider.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(provider.pool())
        .await
        .unwrap();
    assert_eq!(
        synchronous, 2,
        "FULL: an acknowledged append survives a power loss"
    );
    let timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(provider.pool())
        .await
        .unwrap();
    assert_eq!(timeout, evt_sqlite::BUSY_TIMEOUT.as_millis() as i64);
}

#[tokio::test]
async fn events_are_json_rows() {
    let provider = common::fresh(100).await;
    let snapshot = Snapshot::new("1", 2, json!({"notes": 2}));
    let first = event(json!({"type": "noted", "noteText": "x"}));
    let second = event(json!({"type": "noted", "n": 1.5}));
    let stored = provider
        .append("examples", "a", 0, &[first, second], Some(&snapshot))
        .await
        .unwrap();
    provider.set_position("reader", 7).await.unwrap();
    provider.set_position("reader", 8).await.unwrap();

    let rows = sqlx::query(
        "SELECT position, stream, aggregate_id, version, timestamp, typeof(timestamp) AS kind, \
         json_valid(event) AS valid, event ->> '$.type' AS type, event ->> '$.noteText' AS note, \
         event, snapshot FROM events ORDER BY position",
    )
    .fetch_all(provider.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    let first = &rows[0];
    assert_eq!(
        first.get::<i64, _>("position"),
        stored[0].meta.position as i64
    );
    assert_eq!(first.get::<String, _>("stream"), "examples");
    assert_eq!(first.get::<String, _>("aggregate_id"), "a");
    assert_eq!(first.get::<i64, _>("version"), 1);
    assert_eq!(first.get::<String, _>("kind"), "integer");
    assert_eq!(
        first.get::<i64, _>("timestamp"),
        stored[0].meta.timestamp.timestamp_millis(),
        "milliseconds since the epoch"
    );
    assert_eq!(first.get::<i64, _>("valid"), 1, "the event is JSON");
    assert_eq!(first.get::<String, _>("type"), "noted");
    assert_eq!(
        first.get::<Option<String>, _>("note").as_deref(),
        Some("x"),
        "camelCase fields as the event has them"
    );
    let document: serde_json::Value =
        serde_json::from_str(&first.get::<String, _>("event")).unwrap();
    assert_eq!(document, json!({"type": "noted", "noteText": "x"}));
    assert_eq!(
        first.get::<Option<String>, _>("snapshot"),
        None,
        "the snapshot is on the last event only"
    );
    assert_eq!(rows[1].get::<i64, _>("version"), 2);
    let snapshot: String = rows[1].get("snapshot");
    let snapshot: serde_json::Value = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(
        snapshot,
        json!({"snapshotVersion": "1", "version": 2, "state": {"notes": 2}})
    );

    let bookmarks: Vec<(String, i64)> = sqlx::query_as("SELECT bookmark, position FROM bookmarks")
        .fetch_all(provider.pool())
        .await
        .unwrap();
    assert_eq!(bookmarks, [("reader".to_owned(), 8)], "upserted");
}

#[tokio::test]
async fn migrate_is_idempotent_even_when_racing() {
    let path = common::fresh_path();
    let (one, two) = tokio::join!(SqliteProvider::open(&path), SqliteProvider::open(&path));
    let (one, two) = (one.unwrap(), two.unwrap());
    let (a, b, c) = tokio::join!(one.migrate(), two.migrate(), one.migrate());
    a.unwrap();
    b.unwrap();
    c.unwrap();
    one.append("examples", "a", 0, &[noted()], None)
        .await
        .unwrap();
    two.migrate().await.unwrap();
    assert_eq!(count_events(&two).await, 1, "migrate keeps the events");
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name")
            .fetch_all(one.pool())
            .await
            .unwrap();
    assert!(
        names.iter().any(|n| n == "events_stream_position"),
        "{names:?}"
    );
}

#[tokio::test]
async fn table_names_are_checked() {
    let provider = common::fresh(100).await;
    let error = provider
        .clone()
        .events_table("events; DROP TABLE bookmarks")
        .unwrap_err();
    assert!(matches!(error, Error::Provider { .. }), "{error}");
    assert!(
        error.to_string().starts_with(
            "use `events; DROP TABLE bookmarks` as a table name failed: it contains ';'"
        ),
        "{error}"
    );
    let error = provider.clone().bookmarks_table("1st").unwrap_err();
    assert!(error.to_string().contains("it starts with '1'"), "{error}");
    assert!(provider.clone().events_table("").is_err());
    assert!(provider.clone().events_table("sqlite_events").is_err());
    assert!(provider.clone().events_table(&"e".repeat(64)).is_err());
    // Names are quoted, so keywords work.
    let keywords = provider
        .events_table("order")
        .unwrap()
        .bookmarks_table("group")
        .unwrap();
    keywords.migrate().await.unwrap();
    keywords
        .append("examples", "a", 0, &[noted()], None)
        .await
        .unwrap();
    keywords.set_position("reader", 1).await.unwrap();
    assert_eq!(
        keywords
            .events_from(&["examples", "others"], 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(keywords.position("reader").await.unwrap(), Some(1));
}

#[tokio::test]
async fn custom_tables_are_used() {
    let path = common::fresh_path();
    let provider = SqliteProvider::open(&path)
        .await
        .unwrap()
        .events_table("my_events")
        .unwrap()
        .bookmarks_table("my_bookmarks")
        .unwrap();
    assert_eq!(
        (
            provider.events_table_name(),
            provider.bookmarks_table_name()
        ),
        ("my_events", "my_bookmarks")
    );
    provider.migrate().await.unwrap();
    provider
        .append("examples", "a", 0, &[noted()], None)
        .await
        .unwrap();
    provider.set_position("reader", 1).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM my_events")
        .fetch_one(provider.pool())
        .await
        .unwrap();
    assert_eq!(count, 1);
    let position: i64 = sqlx::query_scalar("SELECT position FROM my_bookmarks")
        .fetch_one(provider.pool())
        .await
        .unwrap();
    assert_eq!(position, 1);
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE name IN ('events', 'bookmarks')")
            .fetch_all(provider.pool())
            .await
            .unwrap();
    assert!(tables.is_empty(), "{tables:?}");
}

#[tokio::test]
async fn a_failing_append_leaves_nothing_half_written() {
    let provider = common::fresh(100).await;
    // Refuses the second event of the append, after the first is inserted.
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON events \
         WHEN NEW.event ->> '$.noteText' = 'refused' \
         BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END",
    )
    .execute(provider.pool())
    .await
    .unwrap();
    let error = provider
        .append(
            "examples",
            "a",
            0,
            &[
                noted(),
                event(json!({"type": "noted", "noteText": "refused"})),
            ],
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Provider { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.starts_with("append to `examples/a` at version 0 failed"),
        "{message}"
    );
    assert!(message.contains("refused by a trigger"), "{message}");
    assert_eq!(count_events(&provider).await, 0, "the first event is gone");
    let stored = provider
        .append("examples", "a", 0, &[noted()], None)
        .await
        .unwrap();
    assert_eq!(stored[0].meta.version, 1);
}

#[tokio::test]
async fn a_unique_violation_is_a_version_conflict() {
    let provider = common::fresh(100).await;
    // Stands in for a duplicate version that got past the version check: any unique violation
    // inside the append (extended code 2067) is reported as a version conflict.
    sqlx::query("CREATE TABLE taken (version INTEGER UNIQUE)")
        .execute(provider.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO taken VALUES (2)")
        .execute(provider.pool())
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER take BEFORE INSERT ON events \
         BEGIN INSERT INTO taken VALUES (NEW.version); END",
    )
    .execute(provider.pool())
    .await
    .unwrap();
    let error = provider
        .append("examples", "a", 0, &[noted(), noted()], None)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::VersionConflict { stream, aggregate_id, expected: 0 }
            if stream == "examples" && aggregate_id == "a"),
        "{error}"
    );
    assert_eq!(count_events(&provider).await, 0);
}

#[tokio::test]
async fn a_writer_waits_for_the_lock_instead_of_failing() {
    let provider = common::fresh(100).await;
    let path: String =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(provider.pool())
            .await
            .unwrap();
    // Another program holds the write lock.
    let other = SqlitePool::connect_with(SqliteProvider::connect_options(&path))
        .await
        .unwrap();
    let mut locked = other.begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query(
        "INSERT INTO events (stream, aggregate_id, version, timestamp, event) \
         VALUES ('examples', 'b', 1, 0, '{\"type\":\"noted\"}')",
    )
    .execute(&mut *locked)
    .await
    .unwrap();
    let append = tokio::spawn({
        let provider = provider.clone();
        async move { provider.append("examples", "a", 0, &[noted()], None).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !append.is_finished(),
        "the append cannot have finished while another holds the lock"
    );
    locked.commit().await.unwrap();
    let stored = append.await.unwrap().expect("the append waited its turn");
    let other_position: i64 =
        sqlx::query_scalar("SELECT position FROM events WHERE aggregate_id = 'b'")
            .fetch_one(&other)
            .await
            .unwrap();
    assert!(
        stored[0].meta.position > other_position as u64,
        "positions follow the commit order"
    );
}

#[tokio::test]
async fn data_persists_across_reopening() {
    let path = common::fresh_path();
    let snapshot = Snapshot::new("1", 1, json!({"notes": 1}));
    let first = {
        let provider = SqliteProvider::open(&path).await.unwrap();
        provider.migrate().await.unwrap();
        let stored = provider
            .append("examples", "a", 0, &[noted()], Some(&snapshot))
            .await
            .unwrap();
        provider.set_position("reader", 1).await.unwrap();
        provider.pool().close().await;
        stored
    };
    let reopened = SqliteProvider::open(&path).await.unwrap();
    reopened.migrate().await.unwrap();
    let events = reopened
        .aggregate_events("examples", "a", 0, 100)
        .await
        .unwrap();
    assert_eq!(events, first);
    assert_eq!(reopened.position("reader").await.unwrap(), Some(1));
    assert_eq!(
        reopened.snapshot("examples", "a").await.unwrap(),
        Some(snapshot)
    );
    let next = reopened
        .append("examples", "a", 1, &[noted()], None)
        .await
        .unwrap();
    assert_eq!(next[0].meta.version, 2);
    assert!(next[0].meta.position > first[0].meta.position);
}

#[tokio::test]
async fn several_streams_are_merged_by_position_each_once() {
    let provider = common::fresh(100).await;
    let mut positions = Vec::new();
    for n in 0..6_u64 {
        let stream = ["examples", "others", "counters"][n as usize % 3];
        let stored = provider
            .append(stream, "a", n / 3, &[noted()], None)
            .await
            .unwrap();
        positions.push((stream, stored[0].meta.position));
    }
    let read = |streams: &'static [&'static str], after: u64, limit: usize| {
        let provider = provider.clone();
        async move {
            provider
                .events_from(streams, after, limit)
                .await
                .unwrap()
                .iter()
                .map(|e| e.meta.position)
                .collect::<Vec<_>>()
        }
    };
    let expected = |streams: &[&str], after: u64, limit: usize| {
        positions
            .iter()
            .filter(|(stream, position)| streams.contains(stream) && *position > after)
            .map(|(_, position)| *position)
            .take(limit)
            .collect::<Vec<_>>()
    };
    for streams in [
        &["examples", "counters"][..],
        &["counters", "examples", "counters"],
        &["others", "examples", "counters"],
        &["examples"],
        &["nothing", "others"],
        &[],
    ] {
        for (after, limit) in [(0, 100), (0, 1), (0, 3), (positions[1].1, 2)] {
            assert_eq!(
                read(streams, after, limit).await,
                expected(streams, after, limit),
                "{streams:?} after {after}, limit {limit}"
            );
        }
        assert_eq!(
            provider.last_position(streams).await.unwrap(),
            expected(streams, 0, 100).last().copied().unwrap_or(0),
            "last position of {streams:?}"
        );
    }
}

#[tokio::test]
async fn a_row_that_is_not_json_is_named_when_loaded_and_handled() {
    let provider = common::fresh(100).await;
    let good = provider
        .append(
            "examples",
            "a",
            0,
            &[event(json!({"type": "created", "name": "a"}))],
            None,
        )
        .await
        .unwrap();
    // Written by another program.
    sqlx::query(
        "INSERT INTO events (stream, aggregate_id, version, timestamp, event) \
         VALUES ('examples', 'a', 2, 0, 'not json')",
    )
    .execute(provider.pool())
    .await
    .unwrap();
    let stored = provider
        .aggregate_events("examples", "a", 1, 100)
        .await
        .unwrap();
    assert_eq!(stored[0].value(), json!("not json"), "kept as a string");
    let position = stored[0].meta.position;

    let domain = Domain::new(provider.clone());
    let error = domain.load::<Example>("a").await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, Error::Decode { version: 2, .. }),
        "{message}"
    );
    for part in ["examples/a", &format!("position {position}")] {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }

    let handler = domain.handler(Recorder::default());
    let error = handler.run_once().await.unwrap_err();
    assert!(
        matches!(&error, Error::Handler { version: 2, position: p, .. } if *p == position),
        "{error}"
    );
    assert_eq!(handler.projection().seen().len(), 1, "stops before the row");
    assert_eq!(
        provider.position("recorder").await.unwrap(),
        Some(good[0].meta.position),
        "the bookmark stays before it"
    );
}

#[tokio::test]
async fn a_row_without_its_place_is_named() {
    let provider = common::fresh(100).await;
    provider
        .append("examples", "a", 0, &[noted()], None)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO events (stream, aggregate_id, version, timestamp, event) \
         VALUES ('examples', 'b', 'two', 0, '{\"type\":\"noted\"}')",
    )
    .execute(provider.pool())
    .await
    .unwrap();
    let position: i64 = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(provider.pool())
        .await
        .unwrap();
    let error = provider
        .events_from(&["examples"], 0, 100)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::Provider { .. }), "{message}");
    assert!(
        message.starts_with(&format!(
            "read the event row at position {position} failed: malformed event row"
        )),
        "{message}"
    );
    assert!(message.contains("version"), "{message}");
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_error() {
    let path = common::fresh_path().join("missing").join("app.db");
    let error = SqliteProvider::open(&path).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("open the SQLite file `{}` failed", path.display())),
        "{message}"
    );
}
