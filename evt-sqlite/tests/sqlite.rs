//! What is particular to SQLite: WAL, the file, the rows, names and failures.

mod common;

use evt_core::{NewEvent, Provider, Snapshot};
use evt_sqlite::SqliteProvider;
use serde_json::json;
use sqlx::Row;

fn event(data: serde_json::Value) -> NewEvent {
    NewEvent {
        event_type: "noted",
        data,
    }
}

#[tokio::test]
async fn the_file_is_in_wal_mode() {
    let provider = common::fresh(100).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(provider.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(provider.pool())
        .await
        .unwrap();
    assert!(timeout > 0);
}

#[tokio::test]
async fn events_are_json_rows() {
    let provider = common::fresh(100).await;
    let snapshot = Snapshot {
        snapshot_version: "1".into(),
        version: 2,
        state: json!({"notes": 2}),
    };
    let first = event(json!({"type": "noted", "noteText": "x"}));
    let second = event(json!({"type": "noted"}));
    let stored = provider
        .append("examples", "a", 0, &[first, second], Some(&snapshot))
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT version, timestamp, event ->> '$.type' AS type, event ->> '$.noteText' AS note, \
         snapshot FROM events ORDER BY position",
    )
    .fetch_all(provider.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<i64, _>("version"), 1);
    assert_eq!(
        rows[0].get::<i64, _>("timestamp"),
        stored[0].meta.timestamp.timestamp_millis()
    );
    assert_eq!(rows[0].get::<String, _>("type"), "noted");
    assert_eq!(
        rows[0].get::<Option<String>, _>("note").as_deref(),
        Some("x")
    );
    assert_eq!(
        rows[0].get::<Option<String>, _>("snapshot"),
        None,
        "the snapshot is on the last event only"
    );
    let snapshot: String = rows[1].get("snapshot");
    let snapshot: serde_json::Value = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(
        snapshot,
        json!({"snapshotVersion": "1", "version": 2, "state": {"notes": 2}})
    );
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let provider = common::fresh(100).await;
    provider.migrate().await.unwrap();
    provider.migrate().await.unwrap();
}

#[tokio::test]
async fn table_names_are_checked() {
    let provider = common::fresh(100).await;
    let error = provider
        .clone()
        .events_table("events; DROP TABLE bookmarks")
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("use `events; DROP TABLE bookmarks` as a table name failed"),
        "{error}"
    );
    assert!(provider.bookmarks_table("1st").is_err());
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
    provider.migrate().await.unwrap();
    provider
        .append("examples", "a", 0, &[event(json!({"type": "noted"}))], None)
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
}

#[tokio::test]
async fn data_outlives_the_process_that_wrote_it() {
    let path = common::fresh_path();
    {
        let provider = SqliteProvider::open(&path).await.unwrap();
        provider.migrate().await.unwrap();
        provider
            .append("examples", "a", 0, &[event(json!({"type": "noted"}))], None)
            .await
            .unwrap();
        provider.set_position("reader", 1).await.unwrap();
        provider.pool().close().await;
    }
    let reopened = SqliteProvider::open(&path).await.unwrap();
    reopened.migrate().await.unwrap();
    let events = reopened
        .get_events_for("examples", "a", 0, 100)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data, json!({"type": "noted"}));
    assert_eq!(reopened.get_position("reader").await.unwrap(), Some(1));
}

#[tokio::test]
async fn a_row_that_is_not_json_is_named_by_the_handler() {
    use evt_core::testing::Recorder;
    use evt_core::{Domain, Error};

    let provider = common::fresh(100).await;
    provider
        .append(
            "examples",
            "a",
            0,
            &[event(json!({"type": "created", "name": "a"}))],
            None,
        )
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO events (stream, aggregate_id, version, timestamp, event) \
         VALUES ('examples', 'a', 2, 0, 'not json')",
    )
    .execute(provider.pool())
    .await
    .unwrap();
    let domain = Domain::new(provider.clone());
    let error = domain
        .load::<evt_core::testing::Example>("a")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Decode { version: 2, .. }), "{error}");
    let handler = domain.handler(Recorder::default());
    assert!(handler.run_once().await.is_err());
    assert_eq!(handler.projection().seen().len(), 1, "stops before the row");
}
