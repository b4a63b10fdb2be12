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
//!     metadata     TEXT,              -- JSON evt_core::Metadata, NULL when none
//!     UNIQUE (stream, aggregate_id, version)
//! );
//! CREATE INDEX events_stream_position ON events (stream, position);
//! CREATE TABLE bookmarks (bookmark TEXT PRIMARY KEY, position INTEGER NOT NULL);
//! ```
//!
//! The names are `events` and `bookmarks` unless set with [`SqliteProvider::events_table`] and
//! [`SqliteProvider::bookmarks_table`]; a name must be a plain SQL identifier (checked, then
//! quoted, so that a keyword such as `order` works too). Events are JSON text, the document as
//! the event serializes it (`type` and the camelCase fields), so SQLite's JSON functions query
//! them: `event ->> '$.name'`. Timestamps are integer milliseconds since the epoch, which sort
//! and compare as numbers; `datetime(timestamp / 1000, 'unixepoch')` shows one.
//!
//! # Moving from evtstore
//!
//! evtstore's `knex` provider on SQLite makes the same tables (its `datetime` timestamps are the
//! same milliseconds). Point the provider at its file and tables and run
//! [`SqliteProvider::migrate`]: it adds the `snapshot` and `metadata` columns (evtstore never
//! reads them) and says so; reads select `metadata`, so run it before anything else. Both libraries can then write the same file at once.
//!
//! # Design: correct under concurrent writers, in one process or several
//!
//! [`SqliteProvider::open`] puts the file in WAL mode (readers never block the writer, nor it
//! them; the file stays in WAL mode for every later user, evtstore's knex included) with
//! `synchronous = FULL` (an acknowledged append survives a crash of the program and a power
//! loss) and a busy timeout ([`BUSY_TIMEOUT`]), so that a writer waits for another instead of
//! failing. For faster commits that may lose the last appends on a power loss (never on a crash
//! of the program, never half of one), open a pool of your own with
//! `SqliteProvider::connect_options(path).synchronous(SqliteSynchronous::Normal)` and
//! [`SqliteProvider::new`].
//!
//! An append is one transaction begun with `BEGIN IMMEDIATE`, which takes the file's single write
//! lock at once, waiting for it under the busy timeout. (A deferred `BEGIN` would read first and
//! upgrade to a writer later; when another connection has written in between, that upgrade fails
//! with `SQLITE_BUSY` at once, without waiting.) Under the lock it reads the aggregate's last
//! version, inserts the events with the versions after it, and commits.
//!
//! *Group commit*: appends of one provider (and its clones) that arrive while another holds the
//! lock wait for it and then go together, in one transaction: each append's version is checked
//! in turn under the lock (one that lost its race is reported to its own caller only), and one
//! commit, one `fsync`, serves them all. If the transaction fails after it began, each append is
//! made again alone, so an error reaches only the append it concerns (one that could not begin,
//! the lock not coming within the busy timeout, fails each with that error). A lone append goes
//! at once, alone.
//!
//! *Atomic*: one transaction, so all events or none; an error before the commit rolls it back.
//!
//! *Optimistic concurrency*: a stale expected version fails the version check; should a row get
//! past it anyway, the unique index on `(stream, aggregate_id, version)` rejects it (extended code
//! 2067, never matched by message). Both are [`Error::VersionConflict`].
//!
//! *No skipped events*: a reader that has seen position `p` must never later find a new event
//! below `p`, or a handler, which reads `position > bookmark`, would pass it by for good. Here:
//! 1. SQLite has one writer at a time per file. The write lock lives in the file's shared memory
//!    (`-shm`), so it serialises every connection of every process on the machine.
//! 2. Positions are the rowid of an `AUTOINCREMENT` table: above every rowid the table has ever
//!    held, taken at insert, so under the lock. The next append takes the lock only after the
//!    previous one has committed (or rolled back), so commits happen in position order.
//! 3. A read sees the database as of one commit: its snapshot holds every transaction committed
//!    before it and none after. With (2), the events it sees are exactly those up to some
//!    position, with no hole a later commit could fill.
//!
//! So positions become visible in increasing order, across processes too. A rolled-back append
//! gives its positions back (the `sqlite_sequence` row is rolled back with it), which is harmless:
//! no reader saw them. A committed position is never reused, even when rows are deleted. The
//! price is that appends to one file commit one at a time, which is SQLite's model anyway.
//!
//! Started handlers are woken by each append made through the same provider value (or a clone),
//! and by commits of any other connection or process: a provider with a started handler checks
//! `PRAGMA data_version` on a connection of its own every [`CHANGE_CHECK_INTERVAL`] (a cheap
//! read that changes when another connection commits to the file). Polling stays as the fallback.
//! Measured by `tests/handlers.rs`: a few milliseconds from an append in one process to a
//! started handler in another.
//!
//! Reads across several streams merge each stream's run of the `(stream, position)` index, so a
//! page costs at most `limit` index entries per stream, however rare the streams are in the log.
//! A page comes back from SQLite as one JSON array (`json_group_array`) rather than row by row,
//! which is what makes reads fast through sqlx.
//!
//! # Limits
//!
//! WAL needs shared memory between the processes: the file must be on a local disk (not NFS or
//! SMB), and every process on the same machine. `:memory:` is not a file: each pooled connection
//! would get its own empty database; use a file in a temporary directory instead.
//!
//! A page of events is one SQLite value, so it must stay under SQLite's string limit (1 GB by
//! default): with events of several megabytes, lower [`SqliteProvider::limit`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use evt_core::__private::{Answered, Batcher, util};
use evt_core::chrono::DateTime;
use evt_core::{
    Checkpoint, Error, Lease, Meta, Metadata, NewEvent, Provider, Snapshot, StoredEvent,
    StreamSummary,
};
use serde_json::value::RawValue;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use tokio::sync::watch;

pub use sqlx;

/// The page size unless [`SqliteProvider::limit`] says otherwise.
pub const DEFAULT_LIMIT: usize = 1000;

/// How long a writer waits for another to finish before giving up with `database is locked`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections [`SqliteProvider::open`] keeps: SQLite has one writer at a time anyway,
/// and in WAL mode the readers beside it need no more.
pub const MAX_CONNECTIONS: u32 = 4;

/// The columns an event is read from.
const COLUMNS: &str = "position, stream, aggregate_id, version, timestamp, event, metadata";

/// A query of event rows, read as one JSON array of `[position, stream, aggregate_id, version,
/// timestamp, event, metadata]` rows: sqlx hands each row from its SQLite thread to the async side
/// separately, which costs more than reading the events (a 10,001-event load took about 80 ms
/// row by row, 30 ms as one value per page). The event text goes in as a JSON string, so a row
/// whose `event` is not JSON still reads (see [`page_event`]).
fn page(select: &str) -> String {
    format!("SELECT json_group_array(json_array({COLUMNS})) FROM ({select})")
}

/// Events, bookmarks and snapshots in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteProvider {
    pool: SqlitePool,
    events: String,
    bookmarks: String,
    limit: usize,
    appended: watch::Sender<u64>,
    /// Whether a task watches for other processes' commits (see `subscribe`).
    watching: Arc<AtomicBool>,
    sql: Arc<Sql>,
    /// Appends waiting to go together (group commit).
    group: Arc<AppendGroup>,
}

/// The statements, made once the table names are known. (Reads of several streams have one
/// placeholder group per stream, so they are made per call.)
#[derive(Debug, Clone)]
struct Sql {
    last_version: String,
    insert: String,
    events_from_one: String,
    aggregate_stream: String,
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
}

impl Sql {
    fn new(events: &str, bookmarks: &str) -> Self {
        let leases = quoted(&leases_table(bookmarks));
        let (events, bookmarks) = (quoted(events), quoted(bookmarks));
        Sql {
            last_version: format!(
                "SELECT coalesce(max(version), 0) FROM {events} WHERE stream = ? AND aggregate_id = ?"
            ),
            insert: format!(
                "INSERT INTO {events} \
                 (stream, aggregate_id, version, timestamp, event, snapshot, metadata) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING position"
            ),
            events_from_one: page(&format!(
                "SELECT {COLUMNS} FROM {events} WHERE stream = ? AND position > ? \
                 ORDER BY position LIMIT ?"
            )),
            aggregate_stream: page(&format!(
                "SELECT {COLUMNS} FROM {events} WHERE stream = ? AND aggregate_id = ? \
                 AND version > ? ORDER BY version LIMIT ?"
            )),
            snapshot: format!(
                "SELECT snapshot FROM {events} WHERE stream = ? AND aggregate_id = ? \
                 AND snapshot IS NOT NULL ORDER BY version DESC LIMIT 1"
            ),
            position: format!("SELECT position FROM {bookmarks} WHERE bookmark = ?"),
            set_position: format!(
                "INSERT INTO {bookmarks} (bookmark, position) VALUES (?, ?) \
                 ON CONFLICT (bookmark) DO UPDATE SET position = excluded.position"
            ),
            lease: format!("SELECT holder, epoch, beat FROM {leases} WHERE bookmark = ?"),
            take_free_lease: format!(
                "INSERT INTO {leases} AS l (bookmark, holder, epoch, beat) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (bookmark) DO UPDATE \
                 SET holder = excluded.holder, epoch = excluded.epoch, beat = excluded.beat \
                 WHERE l.holder IS NULL AND l.epoch = 0 AND l.beat = 0"
            ),
            swap_lease: format!(
                "UPDATE {leases} SET holder = ?2, epoch = ?3, beat = ?4 \
                 WHERE bookmark = ?1 AND holder IS ?5 AND epoch = ?6 AND beat = ?7"
            ),
            // One statement: SQLite runs it under the database's write lock, so the check and
            // the write are one step against every other process.
            set_position_leased: format!(
                "INSERT INTO {bookmarks} (bookmark, position) \
                 SELECT ?1, ?2 FROM {leases} WHERE bookmark = ?1 AND holder = ?3 AND epoch = ?4 \
                 ON CONFLICT (bookmark) DO UPDATE SET position = excluded.position"
            ),
            streams: format!("SELECT DISTINCT stream FROM {events} ORDER BY stream"),
            bookmarks: format!("SELECT bookmark, position FROM {bookmarks} ORDER BY bookmark"),
            summary: format!(
                "SELECT count(DISTINCT aggregate_id), count(*) FROM {events} WHERE stream = ?"
            ),
        }
    }

    /// How many events of `count` streams lie after a position. Binds each stream, then `after`.
    fn count_after(events: &str, count: usize) -> String {
        let streams = vec!["?"; count].join(", ");
        format!(
            "SELECT count(*) FROM {} WHERE stream IN ({streams}) AND position > ?",
            quoted(events)
        )
    }

    /// Events of `count` streams after a position, by position: each stream's index run, cut to
    /// the page, then merged. Binds `stream, after, limit` per stream, then `limit`.
    fn events_from_many(events: &str, count: usize) -> String {
        let one = format!(
            "SELECT * FROM (SELECT {COLUMNS} FROM {} WHERE stream = ? AND position > ? \
             ORDER BY position LIMIT ?)",
            quoted(events)
        );
        page(&format!(
            "{} ORDER BY position LIMIT ?",
            vec![one; count].join(" UNION ALL ")
        ))
    }

    /// The last position of `count` streams. Binds each stream.
    fn last_position(events: &str, count: usize) -> String {
        format!(
            "SELECT coalesce(max(position), 0) FROM {} WHERE stream IN ({})",
            quoted(events),
            vec!["?"; count].join(", ")
        )
    }
}

/// The table that keeps the leases of started handlers of a bookmarks table: `<bookmarks>_leases`.
fn leases_table(bookmarks: &str) -> String {
    format!("{bookmarks}_leases")
}

/// A checked identifier, quoted (a checked name has no `"` to escape).
fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

/// Checks that `name` is a plain SQL identifier, so that it can go into a statement.
fn identifier(name: &str) -> Result<&str, Error> {
    let problem = match name.chars().next() {
        None => Some("it is empty".to_owned()),
        Some(first) if !(first.is_ascii_alphabetic() || first == '_') => {
            Some(format!("it starts with {first:?}"))
        }
        _ => match name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
        {
            Some(other) => Some(format!("it contains {other:?}")),
            None if name.len() > 63 => Some(format!("it has {} characters", name.len())),
            None if name
                .get(..7)
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case("sqlite_")) =>
            {
                Some("SQLite reserves names that start with `sqlite_`".to_owned())
            }
            None => None,
        },
    };
    match problem {
        None => Ok(name),
        Some(problem) => Err(Error::provider(
            format!("use `{name}` as a table name"),
            format!(
                "{problem}; a table name has at most 63 ASCII letters, digits and `_`, \
                 and starts with a letter or `_`"
            ),
        )),
    }
}

fn failed(operation: impl Into<String>, error: sqlx::Error) -> Error {
    Error::provider(operation, error)
}

/// Whether a write failed on a unique index (extended code 2067, `SQLITE_CONSTRAINT_UNIQUE`).
fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

fn non_negative(value: i64, what: &str) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("`{what}` is negative: {value}"))
}

/// A bound for a read: nothing is stored beyond `i64::MAX`, so larger values mean "all".
fn bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The streams, each once, in their order.
fn distinct<'a>(streams: &[&'a str]) -> Vec<&'a str> {
    let mut distinct: Vec<&str> = Vec::with_capacity(streams.len());
    for stream in streams {
        if !distinct.contains(stream) {
            distinct.push(stream);
        }
    }
    distinct
}

/// The events of a page read by a [`page`] query.
fn page_events(text: &str) -> Result<Vec<Arc<StoredEvent>>, Error> {
    let rows: Vec<&RawValue> = serde_json::from_str(text)
        .map_err(|e| Error::provider("read a page of events", e.to_string()))?;
    rows.into_iter()
        .map(|row| page_event(row).map(Arc::new))
        .collect()
}

/// A row as a stored event.
///
/// A row whose place (stream, id, version, timestamp) does not read is an error naming its
/// position. An `event` that is not JSON is kept as a JSON string: the event then has no type,
/// and loading or handling it fails with an error naming its stream, id, version and position,
/// instead of the row being skipped.
fn page_event(row: &RawValue) -> Result<StoredEvent, Error> {
    type Row = (i64, String, String, i64, i64, String, Option<String>);
    let read = || -> Result<StoredEvent, String> {
        let (position, stream, aggregate_id, version, millis, text, metadata): Row =
            serde_json::from_str(row.get()).map_err(|_| malformed(row))?;
        let mut meta = Meta::new(
            stream,
            aggregate_id,
            non_negative(version, "version")?,
            non_negative(position, "position")?,
            DateTime::from_timestamp_millis(millis)
                .ok_or_else(|| format!("`timestamp` is out of range: {millis}"))?,
        );
        meta.metadata = Metadata::from_stored(metadata.as_deref())?;
        let data = match RawValue::from_string(text) {
            Ok(data) => data,
            Err(error) => {
                tracing::warn!(
                    position = meta.position,
                    %error,
                    "the `event` of a stored row is not JSON; kept as a string"
                );
                let (.., text, _): Row =
                    serde_json::from_str(row.get()).map_err(|e| e.to_string())?;
                serde_json::value::to_raw_value(&text).map_err(|e| e.to_string())?
            }
        };
        Ok(StoredEvent::new(meta, util::event_type(&data), data))
    };
    read().map_err(|problem| {
        let position = serde_json::from_str::<Vec<serde_json::Value>>(row.get())
            .ok()
            .and_then(|values| values.first().and_then(serde_json::Value::as_i64));
        let operation = match position {
            Some(position) => format!("read the event row at position {position}"),
            None => "read an event row".to_owned(),
        };
        Error::provider(operation, format!("malformed event row: {problem}"))
    })
}

/// Which column of a row does not read.
fn malformed(row: &RawValue) -> String {
    let values: Vec<serde_json::Value> = serde_json::from_str(row.get()).unwrap_or_default();
    let columns = [
        "position",
        "stream",
        "aggregate_id",
        "version",
        "timestamp",
        "event",
    ];
    for (i, column) in columns.into_iter().enumerate() {
        let value = values.get(i).unwrap_or(&serde_json::Value::Null);
        let text = matches!(column, "stream" | "aggregate_id" | "event");
        if text && !value.is_string() {
            return format!("`{column}` is not text: {value}");
        }
        if !text && !value.is_i64() {
            return format!("`{column}` is not an integer: {value}");
        }
    }
    format!("unreadable row {}", row.get())
}

impl SqliteProvider {
    /// A provider over `pool`, with the tables `events` and `bookmarks`.
    ///
    /// Give the pool's connections a busy timeout, as [`SqliteProvider::connect_options`] does:
    /// without one, an append that finds another writer fails with `database is locked` at once
    /// instead of waiting its turn.
    pub fn new(pool: SqlitePool) -> Self {
        let (events, bookmarks) = ("events".to_owned(), "bookmarks".to_owned());
        let sql = Arc::new(Sql::new(&events, &bookmarks));
        SqliteProvider {
            group: AppendGroup::new(pool.clone(), sql.clone()),
            sql,
            pool,
            events,
            bookmarks,
            limit: DEFAULT_LIMIT,
            appended: watch::Sender::new(0),
            watching: Arc::default(),
        }
    }

    /// The connection settings of [`SqliteProvider::open`], for a pool of your own: the file at
    /// `path`, created if missing, in WAL mode with `synchronous = FULL` and [`BUSY_TIMEOUT`].
    pub fn connect_options(path: impl AsRef<Path>) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
    }

    /// Opens the file at `path` with [`SqliteProvider::connect_options`], creating it if missing,
    /// in a pool of up to [`MAX_CONNECTIONS`] connections.
    ///
    /// Opens one connection at once, so that a path that cannot be opened (a missing directory,
    /// no permission, not a database) is reported here.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let operation = || format!("open the SQLite file `{}`", path.display());
        // Two processes creating the same file at once may both try to switch it to WAL; SQLite
        // then fails one at once with `database is locked` (waiting could deadlock), so retry.
        let mut attempt = 0;
        let pool = loop {
            let pool = SqlitePoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                // sqlx pings a connection when it goes back to the pool; no second ping before use.
                .test_before_acquire(false)
                .connect_with(Self::connect_options(path))
                .await;
            match pool {
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some("5") && attempt < 20 =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(5 * attempt)).await;
                }
                pool => break pool.map_err(|e| failed(operation(), e))?,
            }
        };
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .map_err(|e| failed(operation(), e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Still correct (appends are serialised either way), but readers and the writer
            // block each other.
            tracing::warn!(path = %path.display(), mode, "the SQLite file is not in WAL mode");
        }
        Ok(Self::new(pool))
    }

    /// Stores events in the table `name` (a plain identifier, checked).
    pub fn events_table(mut self, name: &str) -> Result<Self, Error> {
        self.events = identifier(name)?.to_owned();
        Ok(self.with_statements())
    }

    /// Stores bookmarks in the table `name` (a plain identifier, checked).
    pub fn bookmarks_table(mut self, name: &str) -> Result<Self, Error> {
        self.bookmarks = identifier(name)?.to_owned();
        Ok(self.with_statements())
    }

    /// The statements (and the append group) for the tables as named now.
    fn with_statements(mut self) -> Self {
        self.sql = Arc::new(Sql::new(&self.events, &self.bookmarks));
        self.group = AppendGroup::new(self.pool.clone(), self.sql.clone());
        self
    }

    /// Reads pages of at most `limit` events (at least 1).
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// The connection pool, e.g. for a read model in the same file.
    pub fn pool(&self) -> &SqlitePool {
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

    /// Creates the tables, columns and indexes the provider needs, where missing, and returns
    /// what it changed (empty when the file was up to date). Idempotent: run it on every start.
    /// Concurrent calls, from any process, are serialised by the write lock.
    ///
    /// On a file that evtstore's `knex` provider made, it adds the `snapshot` and `metadata`
    /// columns (which evtstore never reads) and uses knex's `(stream, position)` index as it is.
    pub async fn migrate(&self) -> Result<Vec<String>, Error> {
        let operation = || {
            format!(
                "migrate the tables `{}` and `{}`",
                self.events, self.bookmarks
            )
        };
        let mut transaction = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| failed(operation(), e))?;
        let changes = self
            .plan(&mut transaction)
            .await
            .map_err(|e| failed(operation(), e))?;
        for (_, statement) in &changes {
            sqlx::query(statement)
                .execute(&mut *transaction)
                .await
                .map_err(|e| failed(format!("{}: `{statement}`", operation()), e))?;
        }
        transaction
            .commit()
            .await
            .map_err(|e| failed(operation(), e))?;
        let changes: Vec<String> = changes.into_iter().map(|(change, _)| change).collect();
        for change in &changes {
            tracing::info!(change, "migrate");
        }
        Ok(changes)
    }

    /// What is missing, as (description, statement) pairs.
    async fn plan(
        &self,
        connection: &mut sqlx::SqliteConnection,
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        let (events, bookmarks) = (quoted(&self.events), quoted(&self.bookmarks));
        let mut changes = Vec::new();
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(&self.events)
            .fetch_all(&mut *connection)
            .await?;
        if columns.is_empty() {
            changes.push((
                format!("created the table `{}`", self.events),
                format!(
                    "CREATE TABLE {events} ( \
                       position INTEGER PRIMARY KEY AUTOINCREMENT, \
                       stream TEXT NOT NULL, \
                       aggregate_id TEXT NOT NULL, \
                       version INTEGER NOT NULL, \
                       timestamp INTEGER NOT NULL, \
                       event TEXT NOT NULL, \
                       snapshot TEXT, \
                       metadata TEXT, \
                       UNIQUE (stream, aggregate_id, version))"
                ),
            ));
        } else {
            for column in ["snapshot", "metadata"] {
                if !columns.iter().any(|c| c == column) {
                    changes.push((
                        format!("added the column `{column}` to `{}`", self.events),
                        format!("ALTER TABLE {events} ADD COLUMN {column} TEXT"),
                    ));
                }
            }
        }
        // Any index whose columns are `(stream, position)`, e.g. knex's unique one.
        let indexed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pragma_index_list(?1) AS list \
             WHERE (SELECT group_concat(name, ',') FROM \
                      (SELECT name FROM pragma_index_info(list.name) ORDER BY seqno)) \
                   = 'stream,position')",
        )
        .bind(&self.events)
        .fetch_one(&mut *connection)
        .await?;
        if !indexed {
            let index = quoted(&format!("{}_stream_position", self.events));
            changes.push((
                format!("created the index on `{}` (stream, position)", self.events),
                format!("CREATE INDEX {index} ON {events} (stream, position)"),
            ));
        }
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?)",
        )
        .bind(&self.bookmarks)
        .fetch_one(&mut *connection)
        .await?;
        if !exists {
            changes.push((
                format!("created the table `{}`", self.bookmarks),
                format!(
                    "CREATE TABLE {bookmarks} (bookmark TEXT PRIMARY KEY, position INTEGER NOT NULL)"
                ),
            ));
        }
        let leases = leases_table(&self.bookmarks);
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?)",
        )
        .bind(&leases)
        .fetch_one(&mut *connection)
        .await?;
        if !exists {
            changes.push((
                format!("created the table `{leases}` (the leases of started handlers)"),
                format!(
                    "CREATE TABLE {} (bookmark TEXT PRIMARY KEY, holder TEXT, \
                     epoch INTEGER NOT NULL, beat INTEGER NOT NULL)",
                    quoted(&leases)
                ),
            ));
        }
        Ok(changes)
    }

    async fn fetch_events<'q>(
        &self,
        operation: impl Fn() -> String,
        query: sqlx::query::Query<'q, sqlx::Sqlite, SqliteArguments<'q>>,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let page: String = query
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| failed(operation(), e))?;
        let mut events = page_events(&page)?;
        // The query orders the rows it aggregates; SQLite does not promise to keep that order
        // in the array, so check it (linear when it is kept). Position order is also version
        // order within one aggregate.
        events.sort_by_key(|event| event.meta.position);
        Ok(events)
    }
}

/// At most this many appends share one transaction; the rest wait for the next.
const MAX_BATCH: usize = 256;

/// At most this many bytes of events share one transaction; a larger append goes alone.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// One append, owned, so that it can wait in a batch.
struct Append {
    stream: String,
    aggregate_id: String,
    expected_version: u64,
    events: Vec<NewEvent>,
    snapshot: Option<String>,
}

/// What an append's transaction gave it: its stored events, `None` for a version conflict, or
/// the driver's error.
type Outcome = Result<Option<Vec<Arc<StoredEvent>>>, Arc<sqlx::Error>>;

/// How a transaction of appends failed.
enum Failed {
    /// It did not begin: nothing was tried.
    Begin(sqlx::Error),
    /// It failed after it began, and was rolled back.
    During(sqlx::Error),
}

/// A waiting append and where its answer goes.
type Pending = Answered<Append, Outcome>;

/// Group commit: appends that arrive while another holds the file's write lock wait for it,
/// then go together, in one transaction (evt-core's `Batcher`): one turn of the lock and one
/// commit (one `fsync` with `synchronous = FULL`) for all of them. Each append's version is
/// checked in turn, under the lock, so one that lost its race is reported to its own caller
/// only. A lone append goes at once, as without grouping.
struct AppendGroup {
    pool: SqlitePool,
    sql: Arc<Sql>,
    batcher: Arc<Batcher<Pending>>,
}

impl std::fmt::Debug for AppendGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendGroup")
            .field("pending", &self.batcher.pending())
            .finish()
    }
}

impl AppendGroup {
    fn new(pool: SqlitePool, sql: Arc<Sql>) -> Arc<Self> {
        Arc::new(AppendGroup {
            pool,
            sql,
            batcher: Arc::new(Batcher::new(MAX_BATCH, MAX_BATCH_BYTES).led_by_callers()),
        })
    }

    /// Makes `append`, alone or in one transaction with the appends that wait beside it;
    /// `None` when its batch was abandoned before it answered (its runtime shut down).
    async fn submit(self: &Arc<Self>, append: Append) -> Option<Outcome> {
        let bytes = append
            .events
            .iter()
            .map(|e| e.data.get().len())
            .sum::<usize>()
            + append.snapshot.as_ref().map_or(0, String::len);
        let group = self.clone();
        let send = move |batch| {
            let group = group.clone();
            async move { group.send(batch).await }
        };
        let alone = |append: Append| async move { self.run_alone(&append).await };
        self.batcher.run(append, bytes, send, alone).await
    }

    /// One batch: one transaction. If it could not begin (the file's write lock did not come
    /// within the busy timeout), each append gets that error; if it failed after (and so stored
    /// nothing), each append is made again alone, so that an error reaches the append it
    /// concerns.
    async fn send(&self, batch: Vec<Pending>) {
        if batch.len() == 1 {
            let pending = batch.into_iter().next().expect("one append");
            let outcome = self.run_alone(&pending.request).await;
            pending.answer(outcome);
            return;
        }
        let appends: Vec<&Append> = batch.iter().map(|pending| &pending.request).collect();
        match self.run(&appends).await {
            Ok(outcomes) => {
                for (pending, outcome) in batch.into_iter().zip(outcomes) {
                    pending.answer(Ok(outcome));
                }
            }
            Err(Failed::Begin(error)) => {
                let error = Arc::new(error);
                for pending in batch {
                    pending.answer(Err(error.clone()));
                }
            }
            Err(Failed::During(error)) => {
                tracing::debug!(%error, appends = batch.len(), "appending together failed; appending one by one");
                for pending in batch {
                    let outcome = self.run_alone(&pending.request).await;
                    pending.answer(outcome);
                }
            }
        }
    }

    async fn run_alone(&self, append: &Append) -> Outcome {
        match self.run(&[append]).await {
            Ok(mut outcomes) => Ok(outcomes.remove(0)),
            Err(Failed::Begin(error) | Failed::During(error)) => Err(Arc::new(error)),
        }
    }

    /// The appends' transaction: each one's stored events, or `None` for a version conflict
    /// found by its version check.
    async fn run(&self, appends: &[&Append]) -> Result<Vec<Option<Vec<Arc<StoredEvent>>>>, Failed> {
        // Takes the write lock now (waiting under the busy timeout), not at the first insert.
        let mut transaction = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Failed::Begin)?;
        // Under the lock, so timestamps do not decrease with positions (unless the clock does).
        let timestamp = evt_core::__private::util::now();
        let mut outcomes = Vec::with_capacity(appends.len());
        for append in appends {
            let outcome = self.append_in(&mut transaction, append, timestamp).await;
            outcomes.push(outcome.map_err(Failed::During)?);
        }
        transaction.commit().await.map_err(Failed::During)?;
        Ok(outcomes)
    }

    /// One append in the transaction; `Ok(None)` is a version conflict found by the version
    /// check (nothing inserted).
    async fn append_in(
        &self,
        transaction: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        append: &Append,
        timestamp: evt_core::chrono::DateTime<evt_core::chrono::Utc>,
    ) -> Result<Option<Vec<Arc<StoredEvent>>>, sqlx::Error> {
        let Append {
            stream,
            aggregate_id,
            expected_version,
            events,
            snapshot,
        } = append;
        let current: i64 = sqlx::query_scalar(&self.sql.last_version)
            .bind(stream)
            .bind(aggregate_id)
            .fetch_one(&mut **transaction)
            .await?;
        if u64::try_from(current).ok() != Some(*expected_version) {
            return Ok(None);
        }
        let mut stored = Vec::with_capacity(events.len());
        for (n, event) in (1_u64..).zip(events) {
            let version = expected_version + n;
            let last = n == events.len() as u64;
            let position: i64 = sqlx::query_scalar(&self.sql.insert)
                .bind(stream)
                .bind(aggregate_id)
                .bind(bound(version))
                .bind(timestamp.timestamp_millis())
                .bind(event.data.get())
                .bind(snapshot.as_deref().filter(|_| last))
                .bind(event.metadata.to_stored())
                .fetch_one(&mut **transaction)
                .await?;
            // A rowid is positive.
            let mut meta = Meta::new(
                stream,
                aggregate_id,
                version,
                position.unsigned_abs(),
                timestamp,
            );
            meta.metadata = event.metadata.clone();
            stored.push(Arc::new(StoredEvent::new(
                meta,
                event.event_type.to_owned(),
                event.data.clone(),
            )));
        }
        Ok(Some(stored))
    }
}

#[async_trait]
impl Provider for SqliteProvider {
    fn page_size(&self) -> usize {
        self.limit
    }

    async fn position(&self, bookmark: &str) -> Result<Option<u64>, Error> {
        let operation = || format!("read bookmark `{bookmark}`");
        let position: Option<i64> = sqlx::query_scalar(&self.sql.position)
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
        let operation = || format!("store bookmark `{bookmark}` at position {position}");
        let stored = i64::try_from(position)
            .map_err(|_| Error::provider(operation(), "larger than an SQLite INTEGER"))?;
        sqlx::query(&self.sql.set_position)
            .bind(bookmark)
            .bind(stored)
            .execute(&self.pool)
            .await
            .map_err(|e| failed(operation(), e))?;
        Ok(())
    }

    async fn lease(&self, bookmark: &str) -> Result<Lease, Error> {
        let operation = || format!("read the lease of bookmark `{bookmark}`");
        let row: Option<(Option<String>, i64, i64)> = sqlx::query_as(&self.sql.lease)
            .bind(bookmark)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| failed(operation(), e))?;
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
            .bind(bound(new.epoch))
            .bind(bound(new.beat));
        if !free {
            query = query
                .bind(expected.holder.as_deref())
                .bind(bound(expected.epoch))
                .bind(bound(expected.beat));
        }
        let done = query
            .execute(&self.pool)
            .await
            .map_err(|e| failed(operation(), e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_checkpoint_leased(
        &self,
        bookmark: &str,
        checkpoint: &Checkpoint,
        lease: &Lease,
    ) -> Result<bool, Error> {
        let position = checkpoint.position;
        let operation =
            || format!("store bookmark `{bookmark}` at position {position} under its lease");
        let stored = i64::try_from(position)
            .map_err(|_| Error::provider(operation(), "larger than an SQLite INTEGER"))?;
        let done = sqlx::query(&self.sql.set_position_leased)
            .bind(bookmark)
            .bind(stored)
            .bind(lease.holder.as_deref())
            .bind(bound(lease.epoch))
            .execute(&self.pool)
            .await
            .map_err(|e| failed(operation(), e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn streams(&self) -> Result<Vec<String>, Error> {
        sqlx::query_scalar(&self.sql.streams)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| failed(format!("list the streams of `{}`", self.events), e))
    }

    async fn bookmarks(&self) -> Result<Vec<(String, u64)>, Error> {
        let operation = || format!("list the bookmarks of `{}`", self.bookmarks);
        let rows: Vec<(String, i64)> = sqlx::query_as(&self.sql.bookmarks)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| failed(operation(), e))?;
        rows.into_iter()
            .map(|(name, position)| Ok((name, non_negative(position, "position")?)))
            .collect::<Result<_, String>>()
            .map_err(|problem| Error::provider(operation(), problem))
    }

    async fn stream_summary(&self, stream: &str) -> Result<StreamSummary, Error> {
        let operation = || format!("count the aggregates and events of stream `{stream}`");
        let (aggregates, events): (i64, i64) = sqlx::query_as(&self.sql.summary)
            .bind(stream)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| failed(operation(), e))?;
        Ok(StreamSummary::new(
            aggregates.unsigned_abs(),
            events.unsigned_abs(),
        ))
    }

    async fn count_after(&self, streams: &[&str], after: u64) -> Result<u64, Error> {
        let streams = distinct(streams);
        if streams.is_empty() {
            return Ok(0);
        }
        let sql = Sql::count_after(&self.events, streams.len());
        let mut query = sqlx::query_scalar(&sql);
        for stream in &streams {
            query = query.bind(*stream);
        }
        let count: i64 = query
            .bind(bound(after))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| {
                failed(
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
        let operation = || format!("read events of {streams:?} after position {after}");
        let (after, page) = (bound(after), i64::try_from(limit).unwrap_or(i64::MAX));
        match distinct(streams).as_slice() {
            [] => Ok(Vec::new()),
            [stream] => {
                let query = sqlx::query(&self.sql.events_from_one)
                    .bind(*stream)
                    .bind(after)
                    .bind(page);
                self.fetch_events(operation, query).await
            }
            streams => {
                let sql = Sql::events_from_many(&self.events, streams.len());
                let mut query = sqlx::query(&sql);
                for stream in streams {
                    query = query.bind(*stream).bind(after).bind(page);
                }
                self.fetch_events(operation, query.bind(page)).await
            }
        }
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
            .bind(bound(after_version))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        self.fetch_events(
            || format!("read events of `{stream}/{aggregate_id}` after version {after_version}"),
            query,
        )
        .await
    }

    async fn last_position(&self, streams: &[&str]) -> Result<u64, Error> {
        let operation = || format!("read the last position of {streams:?}");
        let streams = distinct(streams);
        if streams.is_empty() {
            return Ok(0);
        }
        // SQLite answers `max` from the index, one probe per stream.
        let sql = Sql::last_position(&self.events, streams.len());
        let mut query = sqlx::query_scalar(&sql);
        for stream in &streams {
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
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let operation =
            || format!("append to `{stream}/{aggregate_id}` at version {expected_version}");
        let conflict = || {
            tracing::trace!(stream, aggregate_id, expected_version, "version conflict");
            Error::VersionConflict {
                stream: stream.to_owned(),
                aggregate_id: aggregate_id.to_owned(),
                expected: expected_version,
            }
        };
        let last_version = expected_version.saturating_add(events.len() as u64);
        if i64::try_from(last_version).is_err() {
            return Err(Error::provider(
                operation(),
                format!("version {last_version} is larger than an SQLite INTEGER"),
            ));
        }
        let append = Append {
            stream: stream.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            expected_version,
            events: events.to_vec(),
            snapshot: snapshot.map(|snapshot| snapshot.to_json().to_string()),
        };
        let Some(appended) = self.group.submit(append).await else {
            return Err(Error::AppendUnknown {
                stream: stream.to_owned(),
                aggregate_id: aggregate_id.to_owned(),
                expected: expected_version,
                source: "its batch was abandoned before it answered (the runtime shut down)".into(),
            });
        };
        match appended {
            Ok(Some(stored)) => {
                if let Some(last) = stored.last() {
                    self.appended.send_replace(last.meta.position);
                }
                Ok(stored)
            }
            Ok(None) => Err(conflict()),
            Err(error) if is_unique_violation(&error) => Err(conflict()),
            Err(error) => Err(Error::provider(operation(), error)),
        }
    }

    async fn snapshot(&self, stream: &str, aggregate_id: &str) -> Result<Option<Snapshot>, Error> {
        let operation = || format!("read the snapshot of `{stream}/{aggregate_id}`");
        let found: Option<String> = sqlx::query_scalar(&self.sql.snapshot)
            .bind(stream)
            .bind(aggregate_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| failed(operation(), e))?;
        let Some(text) = found else {
            return Ok(None);
        };
        let snapshot = serde_json::from_str(&text).map_err(|e| format!("malformed snapshot: {e}"));
        snapshot
            .and_then(Snapshot::from_json)
            .map(Some)
            .map_err(|problem| Error::provider(operation(), problem))
    }

    fn subscribe(&self) -> Option<watch::Receiver<u64>> {
        let receiver = self.appended.subscribe();
        self.watch_commits();
        Some(receiver)
    }
}

/// How often a provider with a started handler checks whether another process committed to the
/// file (`PRAGMA data_version` on a connection of its own: a read of a page already in memory).
pub const CHANGE_CHECK_INTERVAL: Duration = Duration::from_millis(5);

impl SqliteProvider {
    /// Starts, unless one runs, a task that checks `PRAGMA data_version` every
    /// [`CHANGE_CHECK_INTERVAL`] on a connection of its own, which changes when any other
    /// connection, in any process, commits to the file, and changes the signal of
    /// [`Provider::subscribe`]. It ends when no handler listens any more.
    fn watch_commits(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pool, appended, watching) = (
            self.pool.clone(),
            self.appended.clone(),
            self.watching.clone(),
        );
        runtime.spawn(async move {
            let _watching = Watching(watching);
            let mut last = None;
            loop {
                // A connection of its own for as long as it works (the version is per connection).
                let mut connection = match pool.acquire().await {
                    Ok(connection) => connection.detach(),
                    Err(error) => {
                        tracing::warn!(%error, "cannot check for other processes' commits; again in 1 s (handlers poll meanwhile)");
                        tokio::select! {
                            () = appended.closed() => return,
                            () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        }
                    }
                };
                loop {
                    let version: Result<i64, _> = sqlx::query_scalar("PRAGMA data_version")
                        .fetch_one(&mut connection)
                        .await;
                    match version {
                        Ok(version) => {
                            if last.is_some_and(|last| last != version) {
                                appended.send_modify(|_| {});
                            }
                            last = Some(version);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "checking for other processes' commits failed; reconnecting");
                            last = None;
                            break;
                        }
                    }
                    tokio::select! {
                        () = appended.closed() => return,
                        () = tokio::time::sleep(CHANGE_CHECK_INTERVAL) => {}
                    }
                }
            }
        });
    }
}

/// Marks the watching task as ended, however it ends.
struct Watching(Arc<AtomicBool>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        for good in ["events", "_events", "Evt_2", "order", &"e".repeat(63)] {
            assert!(identifier(good).is_ok(), "{good}");
        }
        let long = "e".repeat(64);
        for (bad, why) in [
            ("", "it is empty"),
            ("2events", "it starts with '2'"),
            ("events;drop table x", "it contains ';'"),
            ("a.b", "it contains '.'"),
            ("e-v", "it contains '-'"),
            ("é", "it starts with 'é'"),
            ("ev\"ents", "it contains '\"'"),
            (long.as_str(), "it has 64 characters"),
            ("SQLite_events", "SQLite reserves"),
        ] {
            let message = identifier(bad).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("use `{bad}` as a table name failed: {why}")),
                "{message}"
            );
        }
    }

    #[test]
    fn streams_are_read_once_each() {
        assert_eq!(distinct(&["a", "b", "a", "c", "b"]), ["a", "b", "c"]);
        assert!(distinct(&[]).is_empty());
    }

    /// Every read and the version check use an index: none scans the table.
    #[tokio::test]
    async fn reads_use_the_indexes() {
        let path = std::env::temp_dir().join(format!(
            "evt-sqlite-plan-{}-{}.db",
            std::process::id(),
            evt_core::chrono::Utc::now().timestamp_micros()
        ));
        let provider = SqliteProvider::open(&path)
            .await
            .unwrap()
            .events_table("order")
            .unwrap();
        provider.migrate().await.unwrap();
        let sql = &provider.sql;
        let statements = [
            (sql.last_version.clone(), 2),
            (sql.events_from_one.clone(), 3),
            (Sql::events_from_many("order", 3), 10),
            (sql.aggregate_stream.clone(), 4),
            (sql.snapshot.clone(), 2),
            (Sql::last_position("order", 2), 2),
            (sql.position.clone(), 1),
        ];
        for (statement, parameters) in statements {
            let explain = format!("EXPLAIN QUERY PLAN {statement}");
            let mut query = sqlx::query(&explain);
            for _ in 0..parameters {
                query = query.bind(1_i64);
            }
            let plan: Vec<String> = query
                .fetch_all(provider.pool())
                .await
                .unwrap()
                .iter()
                .map(|row| row.get("detail"))
                .collect();
            assert!(
                !plan.iter().any(
                    |step| step.starts_with("SCAN \"order\"") || step.starts_with("SCAN order")
                ),
                "{statement}: {plan:?}"
            );
        }
        provider.pool().close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
