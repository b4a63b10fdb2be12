//! What is particular to PostgreSQL: the tables (evtstore's, and earlier evt versions'), names,
//! and failures.

mod common;

use evt_core::{Error, NewEvent, Provider, Snapshot};
use evt_postgres::PostgresProvider;
use serde_json::json;
use sqlx::Row;

fn event(data: serde_json::Value) -> NewEvent {
    NewEvent::from_value("noted", &data)
}

#[tokio::test]
async fn events_are_evtstores_rows() {
    let provider = common::fresh(100).await;
    let snapshot = Snapshot::new("1", 2, json!({"notes": 2}));
    let first = event(json!({"type": "noted", "noteText": "x"}));
    let second = event(json!({"type": "noted", "n": 1.5}));
    provider
        .append("examples", "a", 0, &[first, second], Some(&snapshot))
        .await
        .unwrap();

    let events = provider.events_table_name();
    let rows = sqlx::query(&format!(
        "SELECT version, event::json->>'type' AS type, event::json->>'noteText' AS note, snapshot \
         FROM {events} ORDER BY position"
    ))
    .fetch_all(provider.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].get::<i32, _>("version"),
        1,
        "an integer, as evtstore's"
    );
    assert_eq!(rows[0].get::<String, _>("type"), "noted");
    assert_eq!(
        rows[0].get::<Option<String>, _>("note").as_deref(),
        Some("x")
    );
    let no_snapshot: Option<sqlx::types::Json<serde_json::Value>> = rows[0].get("snapshot");
    assert!(
        no_snapshot.is_none(),
        "the snapshot is on the last event only"
    );
    let sqlx::types::Json(snapshot): sqlx::types::Json<serde_json::Value> = rows[1].get("snapshot");
    assert_eq!(
        snapshot,
        json!({"snapshotVersion": "1", "version": 2, "state": {"notes": 2}})
    );
}

/// Tables of earlier versions of evt (`version bigint`, `event json`) keep working: appends,
/// loads and reads by position.
#[tokio::test]
async fn tables_of_earlier_versions_keep_working() {
    let provider = common::fresh(100).await;
    sqlx::query(&format!(
        "ALTER TABLE {0} ALTER COLUMN event TYPE json USING event::json, \
         ALTER COLUMN version TYPE bigint",
        provider.events_table_name()
    ))
    .execute(provider.pool())
    .await
    .unwrap();
    let stored = provider
        .append(
            "examples",
            "a",
            0,
            &[
                event(json!({"type": "noted", "n": 1})),
                event(json!({"type": "noted"})),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(stored[1].meta.version, 2);
    let conflict = provider
        .append("examples", "a", 1, &[event(json!({"type": "noted"}))], None)
        .await
        .unwrap_err();
    assert!(conflict.is_version_conflict(), "{conflict}");
    let read = provider
        .aggregate_events("examples", "a", 0, 10)
        .await
        .unwrap();
    assert_eq!(read, stored);
    let page = provider.events_from(&["examples"], 0, 10).await.unwrap();
    assert_eq!(page, stored);
}

#[tokio::test]
async fn migrate_is_idempotent_even_when_racing() {
    let provider = common::fresh(100).await;
    let (a, b) = tokio::join!(provider.migrate(), provider.migrate());
    a.unwrap();
    b.unwrap();
    provider.migrate().await.unwrap();
}

#[tokio::test]
async fn table_names_are_checked() {
    let pool = common::fresh(100).await.pool().clone();
    let error = PostgresProvider::new(pool.clone())
        .events_table("events\"; DROP TABLE bookmarks; --")
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("use `events\\\"; DROP TABLE bookmarks; --` as a table name failed"),
        "{message}"
    );
    assert!(
        PostgresProvider::new(pool)
            .bookmarks_table("pg_class")
            .is_err()
    );
}

#[tokio::test]
async fn a_failing_append_leaves_nothing_half_written() {
    let provider = common::fresh(100).await;
    // A table made with `jsonb` columns (as older versions did) keeps working; and `jsonb` cannot
    // hold a NUL character, so the second event fails inside the statement.
    sqlx::query(&format!(
        "ALTER TABLE {0} ALTER COLUMN event TYPE jsonb USING event::jsonb, \
         ALTER COLUMN snapshot TYPE jsonb USING snapshot::jsonb",
        provider.events_table_name()
    ))
    .execute(provider.pool())
    .await
    .unwrap();
    let error = provider
        .append(
            "examples",
            "a",
            0,
            &[
                event(json!({"type": "noted"})),
                event(json!({"type": "noted", "noteText": "\u{0}"})),
            ],
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Provider { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("append to `examples/a` at version 0"),
        "{error}"
    );
    assert!(
        provider
            .events_from(&["examples"], 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let stored = provider
        .append("examples", "a", 0, &[event(json!({"type": "noted"}))], None)
        .await
        .unwrap();
    assert_eq!(stored[0].meta.version, 1);
    let read = provider
        .aggregate_events("examples", "a", 0, 10)
        .await
        .unwrap();
    assert_eq!(read, stored, "read back from `jsonb`");
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    // Nothing listens on port 1.
    let error = PostgresProvider::connect("postgres://postgres:secret@127.0.0.1:1/postgres")
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with(
            "connect to PostgreSQL at `postgres://postgres:***@127.0.0.1:1/postgres` failed"
        ),
        "{message}"
    );
    assert!(!message.contains("secret"), "{message}");
}

#[tokio::test]
async fn wrong_credentials_are_a_clear_error() {
    let url = common::url();
    let Some(rest) = url.strip_prefix("postgres://") else {
        return;
    };
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    let error = PostgresProvider::connect(&format!("postgres://no_such_user:x@{host}"))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("no_such_user"), "{message}");
}

/// Timestamps read back exactly as sqlx's own decoding reads them, before 2000 (PostgreSQL's
/// epoch) and after, to the microsecond, on every read path.
#[tokio::test]
async fn timestamps_read_back_to_the_microsecond() {
    use futures_util::TryStreamExt;

    let provider = common::fresh(2).await;
    let stamps = [
        "0001-01-01 00:00:00+00",
        "1969-12-31 23:59:59.999999+00",
        "1999-12-31 23:59:59.999999+00",
        "2000-01-01 00:00:00+00",
        "2026-11-28 22:06:26.123456+00",
        "9999-12-31 23:59:59.999999+00",
    ];
    let events: Vec<NewEvent> = stamps
        .iter()
        .map(|_| event(json!({"type": "noted"})))
        .collect();
    provider
        .append("examples", "a", 0, &events, None)
        .await
        .unwrap();
    let table = provider.events_table_name();
    for (version, stamp) in (1..).zip(stamps) {
        sqlx::query(&format!(
            "UPDATE {table} SET timestamp = $1::timestamptz WHERE version = $2"
        ))
        .bind(stamp)
        .bind(version)
        .execute(provider.pool())
        .await
        .unwrap();
    }
    let expected: Vec<evt_core::chrono::DateTime<evt_core::chrono::Utc>> =
        sqlx::query_scalar(&format!("SELECT timestamp FROM {table} ORDER BY version"))
            .fetch_all(provider.pool())
            .await
            .unwrap();
    assert_eq!(expected.len(), stamps.len());
    assert_eq!(expected[4].to_rfc3339(), "2026-11-28T22:06:26.123456+00:00");

    let streamed: Vec<_> = provider
        .aggregate_stream("examples", "a", 0)
        .try_collect()
        .await
        .unwrap();
    let paged = provider
        .aggregate_events("examples", "a", 0, 2)
        .await
        .unwrap();
    let by_position = provider.events_from(&["examples"], 0, 100).await.unwrap();
    let times = |events: &[std::sync::Arc<evt_core::StoredEvent>]| {
        events.iter().map(|e| e.meta.timestamp).collect::<Vec<_>>()
    };
    assert_eq!(times(&streamed), expected);
    assert_eq!(times(&paged), expected[..2]);
    assert_eq!(times(&by_position), expected);

    // `infinity` does not fit a chrono timestamp: an error naming it, not a panic.
    sqlx::query(&format!(
        "UPDATE {table} SET timestamp = 'infinity' WHERE version = 6"
    ))
    .execute(provider.pool())
    .await
    .unwrap();
    let error = provider
        .aggregate_events("examples", "a", 5, 2)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("the timestamp infinity is out of range"),
        "{error}"
    );
}

/// A column of another type than evt's (here a `timestamp` without time zone, where evt writes
/// `timestamptz`) is an error naming the column, not a misread value.
#[tokio::test]
async fn a_column_of_another_type_is_an_error_naming_it() {
    let provider = common::fresh(100).await;
    provider
        .append("examples", "a", 0, &[event(json!({"type": "noted"}))], None)
        .await
        .unwrap();
    let table = provider.events_table_name();
    sqlx::query(&format!(
        "ALTER TABLE {table} ALTER COLUMN timestamp TYPE timestamp"
    ))
    .execute(provider.pool())
    .await
    .unwrap();
    let error = provider
        .aggregate_events("examples", "a", 0, 100)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("column `timestamp` is `TIMESTAMP`, expected `TIMESTAMPTZ`"),
        "{error}"
    );
}
