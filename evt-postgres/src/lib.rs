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
//!     version      integer     NOT NULL,
//!     timestamp    timestamptz NOT NULL,
//!     event        text        NOT NULL,   -- {"type": "departmentCreated", ...}
//!     snapshot     json,                   -- {"snapshotVersion", "version", "state"}, on the last event of an append
//!     append_id    bigint,                 -- one random id per append (see "Unknown outcomes")
//!     metadata     text,                   -- evt_core::Metadata as JSON, NULL when none
//!     UNIQUE (stream, aggregate_id, version)
//! );
//! CREATE INDEX events_stream_position ON events (stream, position);
//! -- every insert, whoever makes it, takes the table's append lock (see the design below)
//! CREATE FUNCTION evt_lock_events() RETURNS trigger ...;
//! CREATE TRIGGER evt_lock BEFORE INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION evt_lock_events();
//! CREATE TABLE bookmarks (bookmark text PRIMARY KEY, position bigint NOT NULL);
//! ```
//!
//! The names are `events` and `bookmarks` unless set with [`PostgresProvider::events_table`] and
//! [`PostgresProvider::bookmarks_table`]: `table` or `schema.table`, used exactly as written
//! (quoted, as evtstore quotes them: `DeptEvents` is not `deptevents`, and `order` works),
//! checked (no `"`, no control characters, at most 63 bytes a part) and refused where they would
//! reach PostgreSQL's own catalogs (`pg_*`, `information_schema`).
//!
//! These are evtstore's tables (its `postgres` and `pg` providers), with three more columns that
//! evtstore ignores and the lock trigger. Events are `text`, as evtstore stores them: the JSON as
//! the event was encoded, stored and sent back without conversion (`jsonb` would be parsed on
//! every append and printed on every read, a quarter of the server's time on a read of 1,000
//! events); query them with `event::json->>'name'`. `version` is an `integer`, as evtstore's:
//! its drivers return a `bigint` as a string. Tables made by earlier versions of evt (`bigint`,
//! `json` or `jsonb`) are read and written as they are, once [`PostgresProvider::migrate`] has
//! added the `metadata` column, which reads select.
//!
//! # TLS
//!
//! With the default feature `tls-rustls` (sqlx's, through rustls), a server that requires TLS,
//! as most hosted ones do, is reached with `sslmode` in the URL:
//!
//! - `postgres://user:password@host/db?sslmode=require`: encrypted, the certificate not checked;
//! - `?sslmode=verify-full`: the certificate checked against the Mozilla roots and the host name;
//! - `?sslmode=verify-full&sslrootcert=/path/ca.pem`: against a private authority (a cloud
//!   provider's CA bundle, say);
//! - `&sslcert=/path/client.pem&sslkey=/path/client.key`: with a client certificate.
//!
//! `sslmode=prefer` (sqlx's default) uses TLS where the server offers it. To use the system's
//! OpenSSL instead, depend on `evt-postgres` with `default-features = false` (the `evt`
//! facade's `postgres` feature keeps the default) and enable sqlx's `tls-native-tls` in your own
//! `Cargo.toml` (`sqlx = { version = "0.8", features = ["tls-native-tls"] }`).
//!
//! # Moving from evtstore
//!
//! Point the provider at evtstore's tables ([`PostgresProvider::events_table`],
//! [`PostgresProvider::bookmarks_table`], named as in evtstore's options) and run
//! [`PostgresProvider::migrate`]: it adds the `snapshot`, `append_id` and `metadata` columns
//! (nullable; evtstore never reads them) and the lock trigger, and says so; nothing that evtstore reads
//! changes. Events, aggregates and bookmarks carry over, and evtstore and `evt` can write the
//! same aggregates at once: versions stay unique, each sees the other's lost races as conflicts,
//! and, with the trigger, neither library's handlers skip the other's events (nor their own:
//! the trigger also closes the window where evtstore's handlers skip a late commit).
//!
//! # Design: correct under concurrent writers
//!
//! An append is one statement, so one implicit transaction and one round trip. It takes a
//! transaction-scoped advisory lock (one per events table, keyed by the table's OID, so that every
//! spelling of one table takes the same lock), checks the aggregate's last version,
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
//! *Group commit*: so, when commits wait for the disk (`synchronous_commit`, on by default), appends
//! of one provider (and its clones) that arrive while another is on its way to the server wait
//! for it and then go together, as one statement: it checks each aggregate's version and inserts
//! every append that is still valid, in one turn of the lock and one commit (and one wait for
//! the disk). With `synchronous_commit = off` (read when [`PostgresProvider::connect`] opens its
//! first connection), commits are cheap and appends go side by side, each on its own. An append that lost its race gets no rows and only its caller sees
//! [`Error::VersionConflict`]; two appends to one aggregate never share a statement; if the
//! statement fails on the server, each append is made again alone, so that an error reaches only
//! the append it concerns (a statement that could not be sent fails each with
//! [`Error::Transient`]; one whose answer was lost is settled append by append). A lone append
//! goes at once, alone.
//!
//! Other writers (evtstore, a hand-written `INSERT`) take the same lock through the trigger
//! `evt_lock`, a statement-level `BEFORE INSERT` trigger: it fires before the statement computes
//! its rows, so before it takes positions from the sequence. `migrate` creates it.
//!
//! Started handlers are woken by each append, from any process: the `evt_lock` trigger also
//! sends a notification (`pg_notify('evt_appended', <table OID>)`), which PostgreSQL delivers to
//! every listening session when the insert commits; a provider with a started handler keeps one
//! more connection, outside its pool, listening (count it against `max_connections`). Polling stays as the fallback (a notification lost with a connection
//! only delays a handler). Measured by `tests/handlers.rs`: a few milliseconds from an append in
//! one process to a started handler in another.
//!
//! # Unknown outcomes
//!
//! When the connection breaks after an append was sent (a server restart, a killed backend, a
//! network failure), the statement may or may not have committed. The append then makes the
//! same append again, with the same random `append_id`, on a new connection (for up to
//! [`SETTLE_TIMEOUT`] while the server comes back). The version check and the unique index let
//! at most one of the two commit, and the `append_id` at the first version says whose events
//! are there: its own, and the append succeeds (stored once); another writer's, and it lost the
//! race ([`Error::VersionConflict`]). Only a server out of reach for the whole timeout gives
//! [`Error::AppendUnknown`], which commands never retry. A failure before the statement was sent
//! (no connection) is [`Error::Transient`]: nothing was stored.
//!
//! # Connections and durability
//!
//! [`PostgresProvider::connect`] keeps a pool of up to [`DEFAULT_MAX_CONNECTIONS`] connections
//! per provider, closes connections idle for [`DEFAULT_IDLE_TIMEOUT`], and waits up to
//! [`DEFAULT_ACQUIRE_TIMEOUT`] for a free one; [`PostgresProvider::connect_with`] takes sqlx's
//! pool options for other sizes. Count `instances × max_connections` against the server's
//! `max_connections` (100 by default).
//!
//! An acknowledged append survives a crash of the server as long as `synchronous_commit` is `on`
//! (PostgreSQL's default, which evt never changes); with `off`, the last appends before a crash
//! may be lost (never half of one).
//!
//! # Performance
//!
//! A command costs two round trips: one read of the aggregate's events, one append (the pool does
//! not ping a connection before each use). Reads of one aggregate select only what the caller does
//! not know. Handlers read pages by position through the `(stream, position)` index; after a bulk
//! import into a new table, run `ANALYZE` (autovacuum does it within a minute), or PostgreSQL may
//! plan the first reads as a sort of every later event.

mod append;
mod migrate;
mod names;
mod rows;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use evt_core::__private::util::{self, redact_url};
use evt_core::{
    Checkpoint, Error, Lease, NewEvent, Provider, Snapshot, StoredEvent, StreamSummary,
};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::Value;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::types::Json;
use tokio::sync::watch;

pub use append::SETTLE_TIMEOUT;
use append::{AppendGroup, classify};
use names::{TableName, lock_sql};
use rows::{AGGREGATE_COLUMNS, COLUMNS, EventRows, non_negative};
pub use sqlx;

/// The page size unless [`PostgresProvider::limit`] says otherwise.
pub const DEFAULT_LIMIT: usize = 1000;

/// The most connections [`PostgresProvider::connect`] opens. A command uses one at a time, but
/// sqlx checks a connection (one round trip) before it can be used again, so a sequential user
/// needs two; 45 instances fit in PostgreSQL's default `max_connections` of 100. Appends keep
/// the connection they used for the next append instead (one of the pool's, open while the
/// provider lives), so a writer pays one round trip per append. Appends to one
/// table commit one at a time anyway; give more to many concurrent readers with
/// [`PostgresProvider::connect_with`].
pub const DEFAULT_MAX_CONNECTIONS: u32 = 2;

/// How long [`PostgresProvider::connect`]'s pool keeps an unused connection open.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long an operation of [`PostgresProvider::connect`]'s pool waits for a free connection
/// before failing with [`Error::Transient`].
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Events, bookmarks and snapshots in PostgreSQL tables.
#[derive(Debug, Clone)]
pub struct PostgresProvider {
    pool: PgPool,
    events: TableName,
    bookmarks: TableName,
    limit: usize,
    settle_timeout: Duration,
    appended: watch::Sender<u64>,
    /// Whether a task listens for other processes' appends (see `subscribe`).
    listening: Arc<AtomicBool>,
    sql: Arc<Sql>,
    /// Appends waiting to go together (group commit).
    group: Arc<AppendGroup>,
    /// Whether the server's commits do not wait for the disk (`synchronous_commit = off`, read
    /// by [`PostgresProvider::connect_with`]): then several batches of appends may be on their
    /// way at once.
    synchronous_commit_off: bool,
}

/// The statements, made once the table names are known.
#[derive(Debug, Clone, Default)]
struct Sql {
    append: String,
    append_one: String,
    append_many: String,
    settle: String,
    events_from: String,
    aggregate_stream: String,
    last_position: String,
    snapshot: String,
    position: String,
    set_position: String,
    lease: String,
    take_free_lease: String,
    swap_lease: String,
    set_position_leased: String,
    streams: String,
    bookmarks: String,
    summary: String,
    count_after: String,
}

impl Sql {
    fn new(events: &TableName, bookmarks: &TableName) -> Self {
        let leases = &bookmarks.leases().quoted;
        let (events, bookmarks) = (&events.quoted, &bookmarks.quoted);
        let lock = lock_sql("$1");
        Sql {
            append: format!(
                "WITH locked AS (SELECT {lock}), \
                 current AS (SELECT coalesce(max(version), 0) AS version FROM {events} \
                             WHERE stream = $2 AND aggregate_id = $3), \
                 inserted AS ( \
                   INSERT INTO {events} \
                     (stream, aggregate_id, version, timestamp, event, snapshot, append_id, \
                      metadata) \
                   SELECT $2, $3, $4 + e.ord, $5, e.event::json, \
                     CASE WHEN e.ord = $7 THEN $6::json END, $9, e.metadata \
                   FROM locked, current, \
                     unnest($8::text[], $10::text[]) WITH ORDINALITY AS e(event, metadata, ord) \
                   WHERE current.version = $4 \
                   RETURNING position, version::bigint AS version, timestamp) \
                 SELECT position, version, timestamp FROM inserted ORDER BY version"
            ),
            // The same for an append of one event, without the `unnest` and the `WITH`s: the
            // server runs it in 0.85-0.9 of the time (pgbench, one client).
            append_one: format!(
                "INSERT INTO {events} \
                   (stream, aggregate_id, version, timestamp, event, snapshot, append_id, metadata) \
                 SELECT $2, $3, $4 + 1, $5, $7::json, $6::json, $8, $9 \
                 FROM (SELECT {lock}) AS locked \
                 WHERE (SELECT coalesce(max(version), 0) FROM {events} \
                        WHERE stream = $2 AND aggregate_id = $3) = $4 \
                 RETURNING position, version::bigint AS version, timestamp"
            ),
            // Several appends to different aggregates: each one's version checked, every valid
            // one inserted, its events' positions in its order (the `ORDER BY` of the `SELECT`
            // that feeds the insert).
            append_many: format!(
                "WITH locked AS (SELECT {lock}), \
                 appends AS ( \
                   SELECT * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], \
                     $6::text[], $7::bigint[], $8::timestamptz[]) \
                   AS a(stream, aggregate_id, expected, append_id, snapshot, n, ts)), \
                 valid AS ( \
                   SELECT a.* FROM locked, appends a \
                   WHERE a.expected = (SELECT coalesce(max(version), 0) FROM {events} e \
                                       WHERE e.stream = a.stream AND e.aggregate_id = a.aggregate_id)), \
                 inserted AS ( \
                   INSERT INTO {events} \
                     (stream, aggregate_id, version, timestamp, event, snapshot, append_id, \
                      metadata) \
                   SELECT v.stream, v.aggregate_id, v.expected + e.ord, v.ts, e.event::json, \
                     CASE WHEN e.ord = v.n THEN v.snapshot::json END, v.append_id, e.metadata \
                   FROM valid v \
                   JOIN unnest($9::bigint[], $10::bigint[], $11::text[], $12::text[]) \
                     WITH ORDINALITY AS e(append_id, ord, event, metadata, seq) \
                     ON e.append_id = v.append_id \
                   ORDER BY e.seq \
                   RETURNING append_id, position, version::bigint AS version, timestamp) \
                 SELECT append_id, position, version, timestamp FROM inserted \
                 ORDER BY append_id, version"
            ),
            settle: format!(
                "SELECT position, version::bigint AS version, timestamp, append_id FROM {events} e \
                 WHERE stream = $1 AND aggregate_id = $2 AND version > $3 AND version <= $3 + $4 \
                 ORDER BY e.version"
            ),
            events_from: format!(
                "SELECT {COLUMNS} FROM {events} WHERE stream = ANY($1) AND position > $2 \
                 ORDER BY position LIMIT $3"
            ),
            // `ORDER BY e.version`, the column: a bare `version` would name the output column
            // `version::bigint`, which the index does not order, so each page would sort every
            // later event of the aggregate (a test reads the plan).
            aggregate_stream: format!(
                "SELECT {AGGREGATE_COLUMNS} FROM {events} e WHERE stream = $1 AND aggregate_id = $2 \
                 AND version > $3 ORDER BY e.version LIMIT $4"
            ),
            last_position: format!(
                "SELECT coalesce(max(position), 0) FROM {events} WHERE stream = ANY($1)"
            ),
            snapshot: format!(
                "SELECT snapshot FROM {events} WHERE stream = $1 AND aggregate_id = $2 \
                 AND snapshot IS NOT NULL ORDER BY version DESC LIMIT 1"
            ),
            position: format!("SELECT position FROM {bookmarks} WHERE bookmark = $1"),
            set_position: format!(
                "INSERT INTO {bookmarks} (bookmark, position) VALUES ($1, $2) \
                 ON CONFLICT (bookmark) DO UPDATE SET position = excluded.position"
            ),
            lease: format!("SELECT holder, epoch, beat FROM {leases} WHERE bookmark = $1"),
            take_free_lease: format!(
                "INSERT INTO {leases} AS l (bookmark, holder, epoch, beat) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (bookmark) DO UPDATE \
                 SET holder = excluded.holder, epoch = excluded.epoch, beat = excluded.beat \
                 WHERE l.holder IS NULL AND l.epoch = 0 AND l.beat = 0"
            ),
            swap_lease: format!(
                "UPDATE {leases} SET holder = $2, epoch = $3, beat = $4 \
                 WHERE bookmark = $1 AND holder IS NOT DISTINCT FROM $5 AND epoch = $6 AND beat = $7"
            ),
            // `FOR SHARE` waits for a takeover in flight and sees its result: a write under an
            // epoch that lost the lease stores nothing, and a takeover waits for a write begun
            // before it.
            set_position_leased: format!(
                "WITH held AS (SELECT 1 FROM {leases} \
                   WHERE bookmark = $1 AND holder = $3 AND epoch = $4 FOR SHARE) \
                 INSERT INTO {bookmarks} (bookmark, position) SELECT $1, $2 FROM held \
                 ON CONFLICT (bookmark) DO UPDATE SET position = excluded.position"
            ),
            streams: format!("SELECT DISTINCT stream FROM {events} ORDER BY stream"),
            bookmarks: format!(
                "SELECT bookmark, position::bigint FROM {bookmarks} ORDER BY bookmark"
            ),
            summary: format!(
                "SELECT count(DISTINCT aggregate_id), count(*) FROM {events} WHERE stream = $1"
            ),
            count_after: format!(
                "SELECT count(*) FROM {events} WHERE stream = ANY($1) AND position > $2"
            ),
        }
    }
}

impl PostgresProvider {
    /// A provider over `pool`, with the tables `events` and `bookmarks`.
    ///
    /// Its appends that arrive together go in one statement, as when the server's commits wait
    /// for the disk (group commit; see the crate docs). [`PostgresProvider::connect`] reads the
    /// server's `synchronous_commit` instead and, when it is `off`, sends appends side by side.
    pub fn new(pool: PgPool) -> Self {
        let events = TableName::parse("events").expect("a valid name");
        let bookmarks = TableName::parse("bookmarks").expect("a valid name");
        let sql = Arc::new(Sql::new(&events, &bookmarks));
        PostgresProvider {
            group: AppendGroup::new(pool.clone(), sql.clone(), events.quoted.clone(), false),
            synchronous_commit_off: false,
            sql,
            pool,
            events,
            bookmarks,
            limit: DEFAULT_LIMIT,
            settle_timeout: SETTLE_TIMEOUT,
            appended: watch::Sender::new(0),
            listening: Arc::default(),
        }
    }

    /// Connects to `url` (`postgres://user:password@host:port/database`, any form sqlx reads),
    /// with a pool of up to [`DEFAULT_MAX_CONNECTIONS`] connections.
    ///
    /// Opens one connection first, so that a refused connection or wrong credentials are reported
    /// at once, with the driver's reason, instead of after the pool's acquire timeout.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let pool = PgPoolOptions::new()
            .max_connections(DEFAULT_MAX_CONNECTIONS)
            .idle_timeout(DEFAULT_IDLE_TIMEOUT)
            .acquire_timeout(DEFAULT_ACQUIRE_TIMEOUT);
        Self::connect_with(url, pool).await
    }

    /// Connects to `url` with a pool made from `pool`: sqlx's options for its size and timeouts.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), evt_core::Error> {
    /// use std::time::Duration;
    /// use evt_postgres::{PostgresProvider, sqlx::postgres::PgPoolOptions};
    ///
    /// let pool = PgPoolOptions::new()
    ///     .max_connections(8)
    ///     .acquire_timeout(Duration::from_secs(5));
    /// let provider = PostgresProvider::connect_with("postgres://127.0.0.1/app", pool).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// The pool never pings a connection before using it (sqlx pings it when it goes back to the
    /// pool; a second ping would double every round trip); a connection that broke while idle
    /// fails one operation with [`Error::Transient`] and leaves the pool.
    pub async fn connect_with(url: &str, pool: PgPoolOptions) -> Result<Self, Error> {
        let operation = || format!("connect to PostgreSQL at `{}`", redact_url(url));
        let failed = |e| Error::provider(operation(), e);
        let options: PgConnectOptions = url.parse().map_err(failed)?;
        let mut connection = PgConnection::connect_with(&options).await.map_err(failed)?;
        // Whether commits wait for the disk, as this database's sessions start: it decides how
        // appends are grouped (see `append.rs`).
        let synchronous_commit: String =
            sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
                .fetch_one(&mut connection)
                .await
                .map_err(failed)?;
        connection.close().await.map_err(failed)?;
        let pool = pool.test_before_acquire(false).connect_lazy_with(options);
        let mut provider = Self::new(pool);
        provider.synchronous_commit_off = synchronous_commit == "off";
        Ok(provider.with_statements())
    }

    /// Stores events in the table `name`: `table` or `schema.table`, used as written (case
    /// included) and checked; see the crate docs.
    pub fn events_table(mut self, name: &str) -> Result<Self, Error> {
        self.events = TableName::parse(name)?;
        Ok(self.with_statements())
    }

    /// Stores bookmarks in the table `name`: `table` or `schema.table`, used as written and
    /// checked.
    pub fn bookmarks_table(mut self, name: &str) -> Result<Self, Error> {
        self.bookmarks = TableName::parse(name)?;
        Ok(self.with_statements())
    }

    /// The statements (and the append group) for the tables as named now.
    fn with_statements(mut self) -> Self {
        self.sql = Arc::new(Sql::new(&self.events, &self.bookmarks));
        self.group = AppendGroup::new(
            self.pool.clone(),
            self.sql.clone(),
            self.events.quoted.clone(),
            self.synchronous_commit_off,
        );
        self
    }

    /// Reads pages of at most `limit` events (at least 1): what handlers read at a time. An
    /// aggregate load reads its history in one query, row by row, whatever the limit.
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// How long an append whose connection failed keeps trying to reach the server to find out
    /// whether it was stored, before it reports [`Error::AppendUnknown`] ([`SETTLE_TIMEOUT`]
    /// unless set).
    #[must_use]
    pub fn settle_timeout(mut self, timeout: Duration) -> Self {
        self.settle_timeout = timeout;
        self
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The name of the events table, as given.
    pub fn events_table_name(&self) -> &str {
        &self.events.given
    }

    /// The name of the bookmarks table, as given.
    pub fn bookmarks_table_name(&self) -> &str {
        &self.bookmarks.given
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
            .map_err(|e| classify(operation(), e))?;
        let mut events = EventRows::new(aggregate);
        rows.iter()
            .map(|row| events.read(row).map(Arc::new))
            .collect()
    }
}

impl PostgresProvider {
    /// Starts, unless one runs, a task that listens for the notification every insert into the
    /// events table sends at commit (the `evt_lock` trigger; see `migrate`), from any process,
    /// and changes the signal of [`Provider::subscribe`]. It ends when no handler listens any
    /// more; on a lost connection it listens again after a second (handlers poll meanwhile).
    fn listen_for_appends(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pool, appended) = (self.pool.clone(), self.appended.clone());
        let (table, listening) = (self.events.quoted.clone(), self.listening.clone());
        runtime.spawn(async move {
            let _listening = Listening(listening);
            loop {
                let listened = async {
                    let oid: String = sqlx::query_scalar("SELECT $1::text::regclass::oid::text")
                        .bind(&table)
                        .fetch_one(&pool)
                        .await?;
                    // A pool of its own: a listener holds its connection for good, which would
                    // take one of the provider's few.
                    let own = PgPoolOptions::new()
                        .max_connections(1)
                        .connect_lazy_with(pool.connect_options().as_ref().clone());
                    let mut listener = PgListener::connect_with(&own).await?;
                    listener.listen(migrate::APPENDED_CHANNEL).await?;
                    loop {
                        tokio::select! {
                            () = appended.closed() => return Ok::<_, sqlx::Error>(()),
                            notification = listener.recv() => {
                                if notification?.payload() == oid {
                                    appended.send_modify(|_| {});
                                }
                            }
                        }
                    }
                }
                .await;
                let Err(error) = listened else {
                    return;
                };
                tracing::warn!(%error, "not listening for appends of other processes; again in 1 s (handlers poll meanwhile)");
                tokio::select! {
                    () = appended.closed() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }
}

/// Marks the listening task as ended, however it ends.
struct Listening(Arc<AtomicBool>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn to_i64(value: u64, what: &str) -> Result<i64, Error> {
    i64::try_from(value)
        .map_err(|_| Error::provider(format!("store {what} {value}"), "larger than a bigint"))
}

#[async_trait]
impl Provider for PostgresProvider {
    fn page_size(&self) -> usize {
        self.limit
    }

    async fn position(&self, bookmark: &str) -> Result<Option<u64>, Error> {
        let operation = || format!("read bookmark `{bookmark}`");
        let position: Option<i64> = sqlx::query_scalar(&self.sql.position)
            .bind(bookmark)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| classify(operation(), e))?;
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
                classify(
                    format!("store bookmark `{bookmark}` at position {position}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn lease(&self, bookmark: &str) -> Result<Lease, Error> {
        let operation = || format!("read the lease of bookmark `{bookmark}`");
        let row: Option<(Option<String>, i64, i64)> = sqlx::query_as(&self.sql.lease)
            .bind(bookmark)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| classify(operation(), e))?;
        let Some((holder, epoch, beat)) = row else {
            return Ok(Lease::default());
        };
        util::lease_row(holder, epoch, beat)
            .map_err(|problem| Error::provider(operation(), problem))
    }

    async fn swap_lease(
        &self,
        bookmark: &str,
        expected: &Lease,
        new: &Lease,
    ) -> Result<bool, Error> {
        let operation = || format!("swap the lease of bookmark `{bookmark}`");
        let free = *expected == Lease::default();
        let statement = if free {
            &self.sql.take_free_lease
        } else {
            &self.sql.swap_lease
        };
        let mut query = sqlx::query(statement)
            .bind(bookmark)
            .bind(new.holder.as_deref())
            .bind(to_i64(new.epoch, "epoch")?)
            .bind(to_i64(new.beat, "beat")?);
        if !free {
            query = query
                .bind(expected.holder.as_deref())
                .bind(to_i64(expected.epoch, "epoch")?)
                .bind(to_i64(expected.beat, "beat")?);
        }
        let done = query
            .execute(&self.pool)
            .await
            .map_err(|e| classify(operation(), e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_checkpoint_leased(
        &self,
        bookmark: &str,
        checkpoint: &Checkpoint,
        lease: &Lease,
    ) -> Result<bool, Error> {
        let position = checkpoint.position;
        let done = sqlx::query(&self.sql.set_position_leased)
            .bind(bookmark)
            .bind(to_i64(position, "position")?)
            .bind(lease.holder.as_deref())
            .bind(to_i64(lease.epoch, "epoch")?)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                classify(
                    format!("store bookmark `{bookmark}` at position {position} under its lease"),
                    e,
                )
            })?;
        Ok(done.rows_affected() == 1)
    }

    async fn streams(&self) -> Result<Vec<String>, Error> {
        sqlx::query_scalar(&self.sql.streams)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(format!("list the streams of `{}`", self.events.given), e))
    }

    async fn bookmarks(&self) -> Result<Vec<(String, u64)>, Error> {
        let operation = || format!("list the bookmarks of `{}`", self.bookmarks.given);
        let rows: Vec<(String, i64)> = sqlx::query_as(&self.sql.bookmarks)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(operation(), e))?;
        rows.into_iter()
            .map(|(name, position)| Ok((name, non_negative(position, "position")?)))
            .collect::<Result<_, String>>()
            .map_err(|problem| Error::provider(operation(), problem))
    }

    async fn stream_summary(&self, stream: &str) -> Result<StreamSummary, Error> {
        let (aggregates, events): (i64, i64) = sqlx::query_as(&self.sql.summary)
            .bind(stream)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| {
                classify(
                    format!("count the aggregates and events of stream `{stream}`"),
                    e,
                )
            })?;
        Ok(StreamSummary::new(
            aggregates.unsigned_abs(),
            events.unsigned_abs(),
        ))
    }

    async fn count_after(&self, streams: &[&str], after: u64) -> Result<u64, Error> {
        let count: i64 = sqlx::query_scalar(&self.sql.count_after)
            .bind(streams)
            .bind(to_i64(after, "position")?)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| {
                classify(
                    format!("count events of {streams:?} after position {after}"),
                    e,
                )
            })?;
        Ok(count.unsigned_abs())
    }

    async fn events_from(
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

    async fn aggregate_events(
        &self,
        stream: &str,
        aggregate_id: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let query = sqlx::query(&self.sql.aggregate_stream)
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

    /// One query for the whole history, its rows folded as they arrive (sqlx streams them; the
    /// client holds one row at a time): one round trip where pages of [`Provider::page_size`]
    /// would take one each, and the server walks the index once.
    fn aggregate_stream<'a>(
        &'a self,
        stream: &'a str,
        aggregate_id: &'a str,
        after_version: u64,
    ) -> BoxStream<'a, Result<Arc<StoredEvent>, Error>> {
        let after = match to_i64(after_version, "version") {
            Ok(after) => after,
            Err(error) => return futures_util::stream::once(async { Err(error) }).boxed(),
        };
        let operation = move || {
            format!("read events of `{stream}/{aggregate_id}` after version {after_version}")
        };
        let mut events = EventRows::new(Some((stream, aggregate_id)));
        sqlx::query(&self.sql.aggregate_stream)
            .bind(stream)
            .bind(aggregate_id)
            .bind(after)
            .bind(i64::MAX)
            .fetch(&self.pool)
            .map(move |row| match row {
                Ok(row) => events.read(&row).map(Arc::new),
                Err(error) => Err(classify(operation(), error)),
            })
            .boxed()
    }

    async fn last_position(&self, streams: &[&str]) -> Result<u64, Error> {
        let operation = || format!("read the last position of {streams:?}");
        let position: i64 = sqlx::query_scalar(&self.sql.last_position)
            .bind(streams)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| classify(operation(), e))?;
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
        self.append_events(stream, aggregate_id, expected_version, events, snapshot)
            .await
    }

    async fn snapshot(&self, stream: &str, aggregate_id: &str) -> Result<Option<Snapshot>, Error> {
        let operation = || format!("read the snapshot of `{stream}/{aggregate_id}`");
        let found: Option<Json<Value>> = sqlx::query_scalar(&self.sql.snapshot)
            .bind(stream)
            .bind(aggregate_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| classify(operation(), e))?;
        found
            .map(|Json(snapshot)| Snapshot::from_json(snapshot))
            .transpose()
            .map_err(|problem| Error::provider(operation(), problem))
    }

    fn subscribe(&self) -> Option<watch::Receiver<u64>> {
        let receiver = self.appended.subscribe();
        self.listen_for_appends();
        Some(receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads of one aggregate walk the `(stream, aggregate_id, version)` index in its order:
    /// no sort, which would read every later event of the aggregate for each page.
    #[tokio::test]
    async fn aggregate_reads_follow_the_index_without_sorting() {
        let url = std::env::var("EVT_POSTGRES_URL")
            .expect("EVT_POSTGRES_URL is not set: run `./scripts/test`, which starts PostgreSQL");
        let table = format!("evt_plan_{}", std::process::id());
        let provider = PostgresProvider::connect(&url)
            .await
            .unwrap()
            .events_table(&table)
            .unwrap();
        provider.migrate().await.unwrap();
        let events: Vec<NewEvent> = (0..3000)
            .map(|n| NewEvent::from_value("noted", &serde_json::json!({"type": "noted", "n": n})))
            .collect();
        provider
            .append("plans", "a", 0, &events, None)
            .await
            .unwrap();
        sqlx::query(&format!("ANALYZE {table}"))
            .execute(provider.pool())
            .await
            .unwrap();
        let plan = |statement: String| {
            let provider = provider.clone();
            async move {
                let explain = format!("EXPLAIN {statement}");
                let rows: Vec<String> = sqlx::query_scalar(&explain)
                    .bind("plans")
                    .bind("a")
                    .bind(1500_i64)
                    .bind(1000_i64)
                    .fetch_all(provider.pool())
                    .await
                    .unwrap();
                rows.join("\n")
            }
        };
        for statement in [
            provider.sql.aggregate_stream.clone(),
            provider.sql.settle.clone(),
        ] {
            let plan = plan(statement.clone()).await;
            assert!(!plan.contains("Sort"), "{statement}:\n{plan}");
        }
        sqlx::query(&format!("DROP TABLE {table}"))
            .execute(provider.pool())
            .await
            .unwrap();
    }
}
