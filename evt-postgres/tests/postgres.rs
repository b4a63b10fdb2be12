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
