//! The PostgreSQL provider of `evt`, on `sqlx`.
//!
//! ```no_run
//! # async fn run() -> Result<(), evt_core::Error> {
//! use evt_core::Domain;
//! use evt_postgres::PostgresProvider;
//!
//! let provider = PostgresProvider::connect("postgres://postgres@127.0.0.1:5432/app").await?;
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
//!     position     bigserial PRIMARY KEY,
//!     stream       text        NOT NULL,
//!     aggregate_id text        NOT NULL,
//!     version      bigint      NOT NULL,
//!     timestamp    timestamptz NOT NULL,
//!     event        json        NOT NULL,   -- {"type": "departmentCreated", ...}
//!     snapshot     json,                   -- {"snapshotVersion", "version", "state"}, on the last event of an append
//!     UNIQUE (stream, aggregate_id, version)
//! );
//! CREATE TABLE bookmarks (bookmark text PRIMARY KEY, position bigint NOT NULL);
//! ```
//!
//! The names are `events` and `bookmarks` unless set with [`PostgresProvider::events_table`] and
//! [`PostgresProvider::bookmarks_table`]; a name must be a plain SQL identifier (checked, never
//! quoted blindly). Events are `json`: the text as the event was encoded, stored and sent back
//! without conversion (`jsonb` would be parsed on every append and printed on every read, a
//! quarter of the server's time on a read of 1,000 events); they can still be queried
//! (`event->>'name'`). Tables made with `jsonb` columns work as they are.
//!
//! # Design: correct under concurrent writers
//!
//! An append is one statement, so one implicit transaction and one round trip. It takes a
//! transaction-scoped advisory lock (one per events table), checks the aggregate's last version,
//! and inserts the events; the lock is released when the transaction commits.
//!
//! *Atomic*: one statement, so all events or none.
//!
//! *Optimistic concurrency*: a stale expected version either fails the version check or hits the
//! unique index on `(stream, aggregate_id, version)` (SQLSTATE 23505); both are
//! [`Error::VersionConflict`].
//!
//! *No skipped events*: a `bigserial` alone is not enough, since position 10 may commit after 11
//! and a reader that has bookmarked 11 never sees 10. Reading only rows whose recorded
//! `pg_current_xact_id()` is below `pg_snapshot_xmin(pg_current_snapshot())` narrows the window
//! but does not close it: transaction ids and sequence values are taken in separate steps, so the
//! transaction with the *lower* id can take the *higher* position, commit first, and pass the
//! filter while the other, holding the lower position, is still running. Here positions are taken
//! under the lock, and PostgreSQL makes a commit visible before it releases the transaction's
//! locks, so an append's positions become visible only after every lower position has (or has
//! been rolled back, leaving a gap). A handler reading `position > bookmark` therefore never
//! passes an event that commits later. The price is that appends to one events table commit one
//! at a time; the lock is held for one statement and its commit.
//!
//! Handlers in the same process are woken by each append; other processes' appends are found by
//! polling.
//!
//! # Performance
//!
//! A command costs two round trips: one read of the aggregate's events, one append (the pool does
//! not ping a connection before each use). Reads of one aggregate select only what the caller does
//! not know. Handlers read pages by position through the `(stream, position)` index; after a bulk
//! import into a new table, run `ANALYZE` (autovacuum does it within a minute), or PostgreSQL may
//! plan the first reads as a sort of every later event.

use async_trait::async_trait;
use evt_core::util::{self, check_identifier, redact_url};
use evt_core::{Error, Meta, NewEvent, Provider, Snapshot, StoredEvent};
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::Connection;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use std::sync::Arc;
use tokio::sync::watch;

pub use sqlx;

/// The page size unless [`PostgresProvider::limit`] says otherwise.
pub const DEFAULT_LIMIT: usize = 1000;

/// Events, bookmarks and snapshots in PostgreSQL tables.
#[derive(Debug, Clone)]
pub struct PostgresProvider {
    pool: PgPool,
    events: String,
    bookmarks: String,
    limit: usize,
    appended: watch::Sender<u64>,
    sql: Sql,
}

/// The statements, made once the table names are known.
#[derive(Debug, Clone, Default)]
struct Sql {
    append: String,
    events_from: String,
    events_for: String,
    last_event_for: String,
    last_position: String,
    snapshot: String,
    get_position: String,
    set_position: String,
    lock_key: i64,
}

const COLUMNS: &str = "position, stream, aggregate_id, version, timestamp, event";
/// The columns of one aggregate's events: its stream and id are the query's.
const AGGREGATE_COLUMNS: &str = "position, version, timestamp, event";

impl Sql {
    fn new(events: &str, bookmarks: &str) -> Self {
        Sql {
            append: format!(
                "WITH locked AS (SELECT pg_advisory_xact_lock($1)), \
                 current AS (SELECT coalesce(max(version), 0) AS version FROM {events} \
                             WHERE stream = $2 AND aggregate_id = $3), \
                 inserted AS ( \
                   INSERT INTO {events} (stream, aggregate_id, version, timestamp, event, snapshot) \
                   SELECT $2, $3, $4 + e.ord, $5, e.event::json, CASE WHEN e.ord = $7 THEN $6::json END \
                   FROM locked, current, unnest($8::text[]) WITH ORDINALITY AS e(event, ord) \
                   WHERE current.version = $4 \
                   RETURNING position, version) \
                 SELECT position, version FROM inserted ORDER BY version"
            ),
            events_from: format!(
                "SELECT {COLUMNS} FROM {events} WHERE stream = ANY($1) AND position > $2 \
                 ORDER BY position LIMIT $3"
            ),
            events_for: format!(
                "SELECT {AGGREGATE_COLUMNS} FROM {events} WHERE stream = $1 AND aggregate_id = $2 \
                 AND version > $3 ORDER BY version LIMIT $4"
            ),
            last_event_for: format!(
                "SELECT {AGGREGATE_COLUMNS} FROM {events} WHERE stream = $1 AND aggregate_id = $2 \
                 ORDER BY version DESC LIMIT 1"
            ),
            last_position: format!(
                "SELECT coalesce(max(position), 0) FROM {events} WHERE stream = ANY($1)"
            ),
            snapshot: format!(
                "SELECT snapshot FROM {events} WHERE stream = $1 AND aggregate_id = $2 \
                 AND snapshot IS NOT NULL ORDER BY version DESC LIMIT 1"
            ),
            get_position: format!("SELECT position FROM {bookmarks} WHERE bookmark = $1"),
            set_position: format!(
                "INSERT INTO {bookmarks} (bookmark, position) VALUES ($1, $2) \
                 ON CONFLICT (bookmark) DO UPDATE SET position = excluded.position"
            ),
            lock_key: lock_key(events),
        }
    }
}

/// The advisory lock of one events table: FNV-1a of its name, with a fixed prefix.
fn lock_key(table: &str) -> i64 {
    let hash = format!("evt:{table}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

fn failed(operation: impl Into<String>, error: sqlx::Error) -> Error {
    Error::provider(operation, error)
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "23505")
}

fn non_negative(value: i64, what: &str) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("`{what}` is negative: {value}"))
}

/// An event of a row; `aggregate` gives its stream and aggregate id when the query knew them and
/// did not select them.
fn stored_event(row: &PgRow, aggregate: Option<(&str, &str)>) -> Result<StoredEvent, Error> {
    let read = || -> Result<StoredEvent, String> {
        let (stream, aggregate_id) = match aggregate {
            Some((stream, aggregate_id)) => (stream.to_owned(), aggregate_id.to_owned()),
            None => (
                row.try_get("stream").map_err(|e| e.to_string())?,
                row.try_get("aggregate_id").map_err(|e| e.to_string())?,
            ),
        };
        let get_i64 = |column: &str| row.try_get::<i64, _>(column).map_err(|e| e.to_string());
        let position = non_negative(get_i64("position")?, "position")?;
        let Json(data): Json<Box<RawValue>> = row.try_get("event").map_err(|e| e.to_string())?;
        Ok(StoredEvent {
            meta: Meta {
                stream,
                aggregate_id,
                version: non_negative(get_i64("version")?, "version")?,
                position,
                timestamp: row.try_get("timestamp").map_err(|e| e.to_string())?,
            },
            event_type: util::event_type(&data),
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

impl PostgresProvider {
    /// A provider over `pool`, with the tables `events` and `bookmarks`.
    pub fn new(pool: PgPool) -> Self {
        let (events, bookmarks) = ("events".to_owned(), "bookmarks".to_owned());
        PostgresProvider {
            sql: Sql::new(&events, &bookmarks),
            pool,
            events,
            bookmarks,
            limit: DEFAULT_LIMIT,
            appended: watch::Sender::new(0),
        }
    }

    /// Connects to `url` (`postgres://user:password@host:port/database`).
    ///
    /// Opens one connection first, so that a refused connection or wrong credentials are reported
    /// at once, with the driver's reason, instead of after the pool's acquire timeout.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let operation = || format!("connect to PostgreSQL at `{}`", redact_url(url));
        let options: PgConnectOptions = url.parse().map_err(|e| failed(operation(), e))?;
        let connection = PgConnection::connect_with(&options)
            .await
            .map_err(|e| failed(operation(), e))?;
        connection
            .close()
            .await
            .map_err(|e| failed(operation(), e))?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            // sqlx pings a connection when it goes back to the pool; a second ping before each
            // use would double every round trip. A connection that broke while idle fails one
            // operation (which is reported; nothing is stored) and leaves the pool.
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Ok(Self::new(pool))
    }

    /// Stores events in the table `name` (a plain identifier).
    pub fn events_table(mut self, name: &str) -> Result<Self, Error> {
        self.events = check_identifier(name)?.to_owned();
        self.sql = Sql::new(&self.events, &self.bookmarks);
        Ok(self)
    }

    /// Stores bookmarks in the table `name` (a plain identifier).
    pub fn bookmarks_table(mut self, name: &str) -> Result<Self, Error> {
        self.bookmarks = check_identifier(name)?.to_owned();
        self.sql = Sql::new(&self.events, &self.bookmarks);
        Ok(self)
    }

    /// Reads pages of at most `limit` events (at least 1).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The name of the events table.
    pub fn events_table_name(&self) -> &str {
        &self.events
    }

    /// The name of the bookmarks table.
    pub fn bookmarks_table_name(&self) -> &str {
        &self.bookmarks
    }

    /// Creates the tables and indexes. Idempotent: run it on every start. Concurrent calls
    /// (several instances starting at once) are serialised by the events table's advisory lock.
    pub async fn migrate(&self) -> Result<(), Error> {
        let (events, bookmarks) = (&self.events, &self.bookmarks);
        let statements = [
            format!(
                "CREATE TABLE IF NOT EXISTS {events} ( \
                   position bigserial PRIMARY KEY, \
                   stream text NOT NULL, \
                   aggregate_id text NOT NULL, \
                   version bigint NOT NULL, \
                   timestamp timestamptz NOT NULL, \
                   event json NOT NULL, \
                   snapshot json, \
                   UNIQUE (stream, aggregate_id, version))"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {events}_stream_position ON {events} (stream, position)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {bookmarks} ( \
                   bookmark text PRIMARY KEY, \
                   position bigint NOT NULL)"
            ),
        ];
        let operation = || format!("migrate the tables `{events}` and `{bookmarks}`");
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(|e| failed(operation(), e))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(self.sql.lock_key)
            .execute(&mut *transaction)
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

    async fn fetch_events(
        &self,
        operation: impl Fn() -> String,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
        aggregate: Option<(&str, &str)>,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(|e| failed(operation(), e))?;
        rows.iter()
            .map(|row| stored_event(row, aggregate).map(Arc::new))
            .collect()
    }
}

fn to_i64(value: u64, what: &str) -> Result<i64, Error> {
    i64::try_from(value)
        .map_err(|_| Error::provider(format!("store {what} {value}"), "larger than a bigint"))
}

#[async_trait]
impl Provider for PostgresProvider {
    fn limit(&self) -> usize {
        self.limit
    }

    async fn get_position(&self, bookmark: &str) -> Result<Option<u64>, Error> {
        let operation = || format!("read bookmark `{bookmark}`");
        let position: Option<i64> = sqlx::query_scalar(&self.sql.get_position)
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
        sqlx::query(&self.sql.set_position)
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
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let query = sqlx::query(&self.sql.events_from)
            .bind(streams)
            .bind(to_i64(after, "position")?)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        self.fetch_events(
            || format!("read events of {streams:?} after position {after}"),
            query,
            None,
        )
        .await
    }

    async fn get_events_for(
        &self,
        stream: &str,
        aggregate_id: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let query = sqlx::query(&self.sql.events_for)
            .bind(stream)
            .bind(aggregate_id)
            .bind(to_i64(after_version, "version")?)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        self.fetch_events(
            || format!("read events of `{stream}/{aggregate_id}` after version {after_version}"),
            query,
            Some((stream, aggregate_id)),
        )
        .await
    }

    async fn get_last_event_for(
        &self,
        stream: &str,
        aggregate_id: &str,
    ) -> Result<Option<Arc<StoredEvent>>, Error> {
        let query = sqlx::query(&self.sql.last_event_for)
            .bind(stream)
            .bind(aggregate_id);
        let mut events = self
            .fetch_events(
                || format!("read the last event of `{stream}/{aggregate_id}`"),
                query,
                Some((stream, aggregate_id)),
            )
            .await?;
        Ok(events.pop())
    }

    async fn get_last_position(&self, streams: &[&str]) -> Result<u64, Error> {
        let operation = || format!("read the last position of {streams:?}");
        let position: i64 = sqlx::query_scalar(&self.sql.last_position)
            .bind(streams)
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
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let operation =
            || format!("append to `{stream}/{aggregate_id}` at version {expected_version}");
        let conflict = || Error::VersionConflict {
            stream: stream.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            expected: expected_version,
        };
        let timestamp = util::now();
        let snapshot = snapshot.map(|snapshot| snapshot.to_json().to_string());
        let data: Vec<&str> = events.iter().map(|event| event.data.get()).collect();
        let rows = sqlx::query(&self.sql.append)
            .bind(self.sql.lock_key)
            .bind(stream)
            .bind(aggregate_id)
            .bind(to_i64(expected_version, "version")?)
            .bind(timestamp)
            .bind(snapshot)
            .bind(events.len() as i64)
            .bind(data)
            .fetch_all(&self.pool)
            .await;
        let rows = match rows {
            Ok(rows) if rows.is_empty() => return Err(conflict()),
            Ok(rows) => rows,
            Err(error) if is_unique_violation(&error) => return Err(conflict()),
            Err(error) => return Err(failed(operation(), error)),
        };
        let mut stored = Vec::with_capacity(events.len());
        for (row, event) in rows.iter().zip(events) {
            let position: i64 = row
                .try_get("position")
                .map_err(|e| failed(operation(), e))?;
            let version: i64 = row.try_get("version").map_err(|e| failed(operation(), e))?;
            stored.push(Arc::new(StoredEvent {
                meta: Meta {
                    stream: stream.to_owned(),
                    aggregate_id: aggregate_id.to_owned(),
                    version: non_negative(version, "version")
                        .map_err(|p| Error::provider(operation(), p))?,
                    position: non_negative(position, "position")
                        .map_err(|p| Error::provider(operation(), p))?,
                    timestamp,
                },
                event_type: event.event_type.to_owned(),
                data: event.data.clone(),
            }));
        }
        if let Some(last) = stored.last() {
            self.appended.send_replace(last.meta.position);
        }
        Ok(stored)
    }

    async fn get_snapshot(
        &self,
        stream: &str,
        aggregate_id: &str,
    ) -> Result<Option<Snapshot>, Error> {
        let operation = || format!("read the snapshot of `{stream}/{aggregate_id}`");
        let found: Option<Json<Value>> = sqlx::query_scalar(&self.sql.snapshot)
            .bind(stream)
            .bind(aggregate_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| failed(operation(), e))?;
        found
            .map(|Json(snapshot)| Snapshot::from_json(snapshot))
            .transpose()
            .map_err(|problem| Error::provider(operation(), problem))
    }

    fn subscribe(&self) -> Option<watch::Receiver<u64>> {
        Some(self.appended.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_per_table() {
        assert_ne!(lock_key("events"), lock_key("other_events"));
        assert_eq!(lock_key("events"), lock_key("events"));
    }
}
