//! The SQLite provider of `evt`, on `sqlx`: the embedded default, one durable file, no server.
//!
//! ```no_run
//! # async fn run() -> Result<(), evt_core::Error> {
//! use evt_core::Domain;
//! use evt_sqlite::SqliteProvider;
//!
//! let provider = SqliteProvider::open("app.db").await?; // created if missing
//! provider.migrate().await?; // tables and indexes; idempotent, run it on every start
//! let domain = Domain::new(provider);
//! # Ok(())
//! # }
//! ```
//!
//! # Tables
//!
//! ```sql
//! CREATE TABLE events (
//!     position     INTEGER PRIMARY KEY AUTOINCREMENT,
//!     stream       TEXT    NOT NULL,
//!     aggregate_id TEXT    NOT NULL,
//!     version      INTEGER NOT NULL,
//!     timestamp    INTEGER NOT NULL,  -- milliseconds since 1970-01-01 UTC
//!     event        TEXT    NOT NULL,  -- JSON: {"type": "departmentCreated", ...}
//!     snapshot     TEXT,              -- JSON {"snapshotVersion", "version", "state"}, on the last event of an append
//!     UNIQUE (stream, aggregate_id, version)
//! );
//! CREATE TABLE bookmarks (bookmark TEXT PRIMARY KEY, position INTEGER NOT NULL);
//! ```
//!
//! The names are `events` and `bookmarks` unless set with [`SqliteProvider::events_table`] and
//! [`SqliteProvider::bookmarks_table`]; a name must be a plain SQL identifier (checked). Events
//! are JSON text, so SQLite's JSON functions query them: `event ->> '$.name'`.
//!
//! # Design: correct under concurrent writers, in one process or several
//!
//! The file is in WAL mode (readers never block the writer, nor it them) with `synchronous =
//! NORMAL` and a busy timeout, so a writer waits for another instead of failing.
//!
//! An append is one transaction begun with `BEGIN IMMEDIATE`, which takes the database's single
//! write lock at once (a deferred `BEGIN` that later upgrades can fail with `SQLITE_BUSY` without
//! waiting). Under that lock it checks the aggregate's last version, then inserts the events, and
//! commits.
//!
//! *Atomic*: one transaction, so all events or none.
//!
//! *Optimistic concurrency*: a stale expected version fails the version check, or hits the unique
//! index on `(stream, aggregate_id, version)`; both are [`Error::VersionConflict`].
//!
//! *No skipped events*: SQLite has one writer at a time per file, across processes too, and
//! positions (`AUTOINCREMENT`, never reused) are taken under that lock. The next writer starts only
//! after the previous one has committed, so positions become visible in increasing order, and a
//! handler reading `position > bookmark` never passes an event that commits later.
//!
//! Handlers in the same process are woken by each append; other processes' appends are found by
//! polling.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use evt_core::chrono::{DateTime, Utc};
use evt_core::{Error, Meta, NewEvent, Provider, Snapshot, StoredEvent};
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use tokio::sync::watch;

pub use sqlx;

/// The page size unless [`SqliteProvider::limit`] says otherwise.
pub const DEFAULT_LIMIT: usize = 1000;

/// How long a writer waits for another to finish before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Events, bookmarks and snapshots in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteProvider {
    pool: SqlitePool,
    events: String,
    bookmarks: String,
    limit: usize,
    appended: watch::Sender<u64>,
}

const COLUMNS: &str = "position, stream, aggregate_id, version, timestamp, event";

/// Checks that `name` is a plain SQL identifier, so it can go into a statement as it is.
fn identifier(name: &str) -> Result<&str, Error> {
    let mut chars = name.chars();
    let valid = name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(name)
    } else {
        Err(Error::provider(
            format!("use `{name}` as a table name"),
            "a table name has at most 63 ASCII letters, digits and `_`, and starts with a letter or `_`",
        ))
    }
}

fn failed(operation: impl Into<String>, error: sqlx::Error) -> Error {
    Error::provider(operation, error)
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

fn non_negative(value: i64, what: &str) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("`{what}` is negative: {value}"))
}

fn to_i64(value: u64, what: &str) -> Result<i64, Error> {
    i64::try_from(value)
        .map_err(|_| Error::provider(format!("store {what} {value}"), "larger than an INTEGER"))
}

/// `?, ?, ?` for `count` values.
fn placeholders(count: usize) -> String {
    vec!["?"; count].join(", ")
}

/// A row as a stored event. A row without its place is an error; an `event` that is not JSON is
/// kept as a JSON string, so that typed decoding reports it with its stream, id, version and position.
fn stored_event(row: &SqliteRow) -> Result<StoredEvent, Error> {
    let read = || -> Result<StoredEvent, String> {
        let get_i64 = |column: &str| row.try_get::<i64, _>(column).map_err(|e| e.to_string());
        let millis = get_i64("timestamp")?;
        let text: String = row.try_get("event").map_err(|e| e.to_string())?;
        let data = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(StoredEvent {
            meta: Meta {
                stream: row.try_get("stream").map_err(|e| e.to_string())?,
                aggregate_id: row.try_get("aggregate_id").map_err(|e| e.to_string())?,
                version: non_negative(get_i64("version")?, "version")?,
                position: non_negative(get_i64("position")?, "position")?,
                timestamp: DateTime::from_timestamp_millis(millis)
                    .ok_or_else(|| format!("`timestamp` is out of range: {millis}"))?,
            },
            event_type: data
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            data,
        })
    };
    read().map_err(|problem| {
        Error::provider(
            "read an event row",
            format!("malformed event row: {problem}"),
        )
    })
}

impl SqliteProvider {
    /// A provider over `pool`, with the tables `events` and `bookmarks`. The pool should use WAL
    /// and a busy timeout, as [`SqliteProvider::open`] sets them.
    pub fn new(pool: SqlitePool) -> Self {
        SqliteProvider {
            pool,
            events: "events".to_owned(),
            bookmarks: "bookmarks".to_owned(),
            limit: DEFAULT_LIMIT,
            appended: watch::Sender::new(0),
        }
    }

    /// Opens the file at `path`, creating it if missing, in WAL mode with a busy timeout.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| failed(format!("open the SQLite file `{}`", path.display()), e))?;
        Ok(Self::new(pool))
    }

    /// Stores events in the table `name` (a plain identifier).
    pub fn events_table(mut self, name: &str) -> Result<Self, Error> {
        self.events = identifier(name)?.to_owned();
        Ok(self)
    }

    /// Stores bookmarks in the table `name` (a plain identifier).
    pub fn bookmarks_table(mut self, name: &str) -> Result<Self, Error> {
        self.bookmarks = identifier(name)?.to_owned();
        Ok(self)
    }

    /// Reads pages of at most `limit` events (at least 1).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// The connection pool, e.g. for a read model in the same file.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Creates the tables and indexes. Idempotent: run it on every start.
    pub async fn migrate(&self) -> Result<(), Error> {
        let (events, bookmarks) = (&self.events, &self.bookmarks);
        let statements = [
            format!(
                "CREATE TABLE IF NOT EXISTS {events} ( \
                   position INTEGER PRIMARY KEY AUTOINCREMENT, \
                   stream TEXT NOT NULL, \
                   aggregate_id TEXT NOT NULL, \
                   version INTEGER NOT NULL, \
                   timestamp INTEGER NOT NULL, \
                   event TEXT NOT NULL, \
                   snapshot TEXT, \
                   UNIQUE (stream, aggregate_id, version))"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {events}_stream_position ON {events} (stream, position)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {bookmarks} ( \
                   bookmark TEXT PRIMARY KEY, \
                   position INTEGER NOT NULL)"
            ),
        ];
        let operation = || format!("migrate the tables `{events}` and `{bookmarks}`");
        let mut transaction = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| failed(operation(), e))?;
        for statement in &statements {
            sqlx::query(statement)
                .execute(&mut *transaction)
                .await
                .map_err(|e| failed(operation(), e))?;
        }
        transaction
            .commit()
            .await
            .map_err(|e| failed(operation(), e))
    }

    async fn fetch_events<'q>(
        &self,
        operation: impl Fn() -> String,
        query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<Vec<StoredEvent>, Error> {
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(|e| failed(operation(), e))?;
        rows.iter().map(stored_event).collect()
    }

    /// The append's transaction; `Ok(None)` is a version conflict.
    async fn append_in(
        &self,
        stream: &str,
        aggregate_id: &str,
        expected_version: u64,
        events: &[NewEvent],
        snapshot: Option<&Snapshot>,
        timestamp: DateTime<Utc>,
    ) -> Result<Option<Vec<StoredEvent>>, sqlx::Error> {
        let table = &self.events;
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let current: i64 = sqlx::query_scalar(&format!(
            "SELECT coalesce(max(version), 0) FROM {table} WHERE stream = ? AND aggregate_id = ?"
        ))
        .bind(stream)
        .bind(aggregate_id)
        .fetch_one(&mut *transaction)
        .await?;
        if u64::try_from(current).ok() != Some(expected_version) {
            return Ok(None);
        }
        let insert = format!(
            "INSERT INTO {table} (stream, aggregate_id, version, timestamp, event, snapshot) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING position"
        );
        let snapshot = snapshot.map(|snapshot| {
            serde_json::json!({
                "snapshotVersion": snapshot.snapshot_version,
                "version": snapshot.version,
                "state": snapshot.state,
            })
            .to_string()
        });
        let mut stored = Vec::with_capacity(events.len());
        for (n, event) in (1_u64..).zip(events) {
            let version = expected_version + n;
            let last = n == events.len() as u64;
            let position: i64 = sqlx::query_scalar(&insert)
                .bind(stream)
                .bind(aggregate_id)
                .bind(version as i64)
                .bind(timestamp.timestamp_millis())
                .bind(event.data.to_string())
                .bind(snapshot.as_deref().filter(|_| last))
                .fetch_one(&mut *transaction)
                .await?;
            stored.push(StoredEvent {
                meta: Meta {
                    stream: stream.to_owned(),
                    aggregate_id: aggregate_id.to_owned(),
                    version,
                    position: position as u64,
                    timestamp,
                },
                event_type: event.event_type.to_owned(),
                data: event.data.clone(),
            });
        }
        transaction.commit().await?;
        Ok(Some(stored))
    }
}

/// Now, to the millisecond (what every provider stores).
fn now_millis() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

#[async_trait]
impl Provider for SqliteProvider {
    fn limit(&self) -> usize {
        self.limit
    }

    async fn get_position(&self, bookmark: &str) -> Result<Option<u64>, Error> {
        let operation = || format!("read bookmark `{bookmark}`");
        let position: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT position FROM {} WHERE bookmark = ?",
            self.bookmarks
        ))
        .bind(bookmark)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| failed(operation(), e))?;
        position
            .map(|p| non_negative(p, "position"))
            .transpose()
            .map_err(|problem| Error::provider(operation(), problem))
    }

    async fn set_position(&self, bookmark: &str, position: u64) -> Result<(), Error> {
        sqlx::query(&format!(
            "INSERT INTO {} (bookmark, position) VALUES (?, ?) \
             ON CONFLICT (bookmark) DO UPDATE SET position = excluded.position",
            self.bookmarks
        ))
        .bind(bookmark)
        .bind(to_i64(position, "position")?)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            failed(
                format!("store bookmark `{bookmark}` at position {position}"),
                e,
            )
        })?;
        Ok(())
    }

    async fn get_events_from(
        &self,
        streams: &[&str],
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE stream IN ({}) AND position > ? \
             ORDER BY position LIMIT ?",
            self.events,
            placeholders(streams.len())
        );
        let mut query = sqlx::query(&sql);
        for stream in streams {
            query = query.bind(*stream);
        }
        let query = query
            .bind(to_i64(after, "position")?)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        self.fetch_events(
            || format!("read events of {streams:?} after position {after}"),
            query,
        )
        .await
    }

    async fn get_events_for(
        &self,
        stream: &str,
        aggregate_id: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE stream = ? AND aggregate_id = ? AND version > ? \
             ORDER BY version LIMIT ?",
            self.events
        );
        let query = sqlx::query(&sql)
            .bind(stream)
            .bind(aggregate_id)
            .bind(to_i64(after_version, "version")?)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        self.fetch_events(
            || format!("read events of `{stream}/{aggregate_id}` after version {after_version}"),
            query,
        )
        .await
    }

    async fn get_last_event_for(
        &self,
        stream: &str,
        aggregate_id: &str,
    ) -> Result<Option<StoredEvent>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE stream = ? AND aggregate_id = ? \
             ORDER BY version DESC LIMIT 1",
            self.events
        );
        let query = sqlx::query(&sql).bind(stream).bind(aggregate_id);
        let mut events = self
            .fetch_events(
                || format!("read the last event of `{stream}/{aggregate_id}`"),
                query,
            )
            .await?;
        Ok(events.pop())
    }

    async fn get_last_position(&self, streams: &[&str]) -> Result<u64, Error> {
        let operation = || format!("read the last position of {streams:?}");
        let sql = format!(
            "SELECT coalesce(max(position), 0) FROM {} WHERE stream IN ({})",
            self.events,
            placeholders(streams.len())
        );
        let mut query = sqlx::query_scalar(&sql);
        for stream in streams {
            query = query.bind(*stream);
        }
        let position: i64 = query
            .fetch_one(&self.pool)
            .await
            .map_err(|e| failed(operation(), e))?;
        non_negative(position, "position").map_err(|problem| Error::provider(operation(), problem))
    }

    async fn append(
        &self,
        stream: &str,
        aggregate_id: &str,
        expected_version: u64,
        events: &[NewEvent],
        snapshot: Option<&Snapshot>,
    ) -> Result<Vec<StoredEvent>, Error> {
        let operation =
            || format!("append to `{stream}/{aggregate_id}` at version {expected_version}");
        let conflict = || Error::VersionConflict {
            stream: stream.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            expected: expected_version,
        };
        if events.is_empty() {
            let last = self.get_last_event_for(stream, aggregate_id).await?;
            return match last.map_or(0, |event| event.meta.version) {
                version if version == expected_version => Ok(Vec::new()),
                _ => Err(conflict()),
            };
        }
        to_i64(expected_version + events.len() as u64, "version")?;
        let appended = self
            .append_in(
                stream,
                aggregate_id,
                expected_version,
                events,
                snapshot,
                now_millis(),
            )
            .await;
        match appended {
            Ok(Some(stored)) => {
                if let Some(last) = stored.last() {
                    self.appended.send_replace(last.meta.position);
                }
                Ok(stored)
            }
            Ok(None) => Err(conflict()),
            Err(error) if is_unique_violation(&error) => Err(conflict()),
            Err(error) => Err(failed(operation(), error)),
        }
    }

    async fn get_snapshot(
        &self,
        stream: &str,
        aggregate_id: &str,
    ) -> Result<Option<Snapshot>, Error> {
        let operation = || format!("read the snapshot of `{stream}/{aggregate_id}`");
        let found: Option<String> = sqlx::query_scalar(&format!(
            "SELECT snapshot FROM {} WHERE stream = ? AND aggregate_id = ? \
             AND snapshot IS NOT NULL ORDER BY version DESC LIMIT 1",
            self.events
        ))
        .bind(stream)
        .bind(aggregate_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| failed(operation(), e))?;
        let Some(text) = found else {
            return Ok(None);
        };
        let malformed = |problem: String| {
            Error::provider(operation(), format!("malformed snapshot: {problem}"))
        };
        let mut snapshot: Value =
            serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
        let snapshot_version = snapshot.get("snapshotVersion").and_then(Value::as_str);
        let version = snapshot.get("version").and_then(Value::as_u64);
        match (snapshot_version, version) {
            (Some(snapshot_version), Some(version)) => Ok(Some(Snapshot {
                snapshot_version: snapshot_version.to_owned(),
                version,
                state: snapshot
                    .get_mut("state")
                    .map(Value::take)
                    .unwrap_or_default(),
            })),
            _ => Err(malformed("needs `snapshotVersion` and `version`".into())),
        }
    }

    fn subscribe(&self) -> Option<watch::Receiver<u64>> {
        Some(self.appended.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        for good in ["events", "_events", "Evt_2"] {
            assert!(identifier(good).is_ok(), "{good}");
        }
        for bad in ["", "2events", "events;drop table x", "a.b", "e-v", "é"] {
            assert!(identifier(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn placeholders_match_the_count() {
        assert_eq!(placeholders(1), "?");
        assert_eq!(placeholders(3), "?, ?, ?");
    }
}
