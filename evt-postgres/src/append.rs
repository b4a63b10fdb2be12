//! Appends: one statement under the events table's lock, and, when the connection fails after
//! the statement was sent, settling whether it was stored.
//!
//! Group commit: appends that arrive while another is on its way to the server wait for it, then
//! go together, in one statement (evt-core's `Batcher`): one round trip, one turn of the table's
//! lock and one commit for all of them. The statement checks each aggregate's version and inserts
//! every append that is still valid; one that lost its race gets no rows, so only its own caller
//! sees a conflict. A lone append goes at once in the one-append statement, as without grouping.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use evt_core::__private::{Answered, Batcher, util};
use evt_core::chrono::{DateTime, Utc};
use evt_core::{Error, Meta, NewEvent, Snapshot, StoredEvent};
use sqlx::Row;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgRow, Postgres};

use crate::{PostgresProvider, Sql, non_negative, to_i64};

/// At most this many appends or batches are on their way at once when commits do not wait for
/// the disk (`synchronous_commit = off`): then a commit is cheap and the server parses, plans and
/// answers statements side by side on its cores while one holds the lock, so appends go on their own
/// (measured: grouping them cost 13 % of W1c here). When commits wait for the disk (the
/// default), one batch at a time, so that the appends that wait meanwhile share the next commit
/// (W1c 1.7× and 2.3× with the cache, here).
const SENDERS_WITHOUT_SYNCHRONOUS_COMMIT: usize = 64;

/// At most this many appends go in one statement; the rest wait for the next.
const MAX_BATCH: usize = 256;

/// At most this many bytes of events go in one statement; a larger append goes alone.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// How long an append whose connection failed keeps trying to find out whether it was stored
/// (the server may be restarting) before it reports [`Error::AppendUnknown`], unless
/// [`PostgresProvider::settle_timeout`] says otherwise.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A driver error as an `evt` error: [`Error::Transient`] when the server could not be reached,
/// was shutting down or was too busy (nothing was done), [`Error::Provider`] otherwise.
pub(crate) fn classify(operation: impl Into<String>, error: sqlx::Error) -> Error {
    if is_transient(&error) {
        Error::transient(operation, error)
    } else {
        Error::provider(operation, error)
    }
}

fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => error.code().is_some_and(|code| {
            // connection exceptions, operator intervention (shutdown), too many connections,
            // serialization failures and deadlocks: a later try may pass.
            code.starts_with("08")
                || code.starts_with("57P")
                || matches!(&*code, "53300" | "40001" | "40P01")
        }),
        _ => false,
    }
}

/// Whether the statement may have committed although this error came back: the connection
/// broke (or the server shut down) before the answer arrived. A database error otherwise means
/// the statement failed, and its transaction with it.
fn outcome_unknown(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => error
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

impl PostgresProvider {
    pub(crate) async fn append_events(
        &self,
        stream: &str,
        aggregate_id: &str,
        expected_version: u64,
        events: &[NewEvent],
        snapshot: Option<&Snapshot>,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let id = util::display_id(aggregate_id);
        let operation = || format!("append to `{stream}/{id}` at version {expected_version}");
        let conflict = || Error::VersionConflict {
            stream: stream.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            expected: expected_version,
        };
        let snapshot = snapshot.map(|snapshot| snapshot.to_json().to_string());
        let append = Arc::new(Append {
            stream: stream.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            expected_version: to_i64(expected_version, "version")?,
            timestamp: util::now(),
            snapshot,
            data: events
                .iter()
                .map(|event| event.data.get().to_owned())
                .collect(),
            metadata: events
                .iter()
                .map(|event| event.metadata.to_stored())
                .collect(),
            id: util::append_id(),
        });
        let ran = match self.group.submit(&append).await {
            Answer::Ran(ran) => ran,
            Answer::RunAlone => self.group.run_append(&append).await,
            Answer::NotSent(why) => return Err(Error::transient(operation(), why)),
            Answer::Unsettled(why) => {
                return self.settle_and_report(&append, events, why).await;
            }
        };
        let rows = match ran {
            Ok(rows) if rows.is_empty() => return Err(conflict()),
            Ok(rows) => rows,
            Err(Failure::NotSent(error)) => return Err(Error::transient(operation(), error)),
            Err(Failure::Sent(error)) if is_unique_violation(&error) => return Err(conflict()),
            Err(Failure::Sent(error)) if outcome_unknown(&error) => {
                return self
                    .settle_and_report(&append, events, error.to_string())
                    .await;
            }
            Err(Failure::Sent(error)) => return Err(classify(operation(), error)),
        };
        self.stored(stream, aggregate_id, events, &rows)
    }

    /// Settles an append whose connection failed after it was sent (`error`) and reports what
    /// it found.
    async fn settle_and_report(
        &self,
        append: &Append,
        events: &[NewEvent],
        error: String,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let (stream, aggregate_id) = (&append.stream, &append.aggregate_id);
        tracing::warn!(
            stream,
            aggregate_id = %util::display_id(aggregate_id),
            expected_version = append.expected_version,
            %error,
            "the connection failed during an append; settling whether it was stored"
        );
        match self.settle(append).await {
            Settled::Stored(rows) => self.stored(stream, aggregate_id, events, &rows),
            Settled::Conflict => Err(Error::VersionConflict {
                stream: stream.clone(),
                aggregate_id: aggregate_id.clone(),
                expected: append.expected_version as u64,
            }),
            Settled::Unknown(why) => Err(Error::AppendUnknown {
                stream: stream.clone(),
                aggregate_id: aggregate_id.clone(),
                expected: append.expected_version as u64,
                source: format!("{error}; {why}").into(),
            }),
        }
    }

    /// The stored events of an append, from its rows of `position, version, timestamp`.
    fn stored(
        &self,
        stream: &str,
        aggregate_id: &str,
        events: &[NewEvent],
        rows: &[PgRow],
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let read = || -> Result<Vec<Arc<StoredEvent>>, String> {
            let mut stored = Vec::with_capacity(events.len());
            for (row, event) in rows.iter().zip(events) {
                let get = |column: &str| row.try_get::<i64, _>(column).map_err(|e| e.to_string());
                let mut meta = Meta::new(
                    stream,
                    aggregate_id,
                    non_negative(get("version")?, "version")?,
                    non_negative(get("position")?, "position")?,
                    row.try_get("timestamp").map_err(|e| e.to_string())?,
                );
                meta.metadata = event.metadata.clone();
                stored.push(Arc::new(StoredEvent::new(
                    meta,
                    event.event_type.to_owned(),
                    event.data.clone(),
                )));
            }
            Ok(stored)
        };
        let stored = read().map_err(|problem| {
            Error::provider(
                format!(
                    "read back the append to `{stream}/{}`",
                    util::display_id(aggregate_id)
                ),
                problem,
            )
        })?;
        if let Some(last) = stored.last() {
            self.appended.send_replace(last.meta.position);
        }
        Ok(stored)
    }

    /// Finds out whether an append whose connection failed was stored, by making it again with
    /// the same append id: the version check and the unique index let at most one of the two
    /// commit (an earlier one still running on the server fails on the version), and the append
    /// id at the first version tells whose events are there. Tries again, with pauses, for up to
    /// the settle timeout while the server cannot be reached.
    async fn settle(&self, append: &Append) -> Settled {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            match self.settle_once(append).await {
                Ok(settled) => return settled,
                Err(error) if started.elapsed() < self.settle_timeout => {
                    tracing::debug!(%error, "settling an append: trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(error) => {
                    return Settled::Unknown(format!(
                        "could not reach the server to find out within {:?}: {error}",
                        self.settle_timeout
                    ));
                }
            }
        }
    }

    async fn settle_once(&self, append: &Append) -> Result<Settled, sqlx::Error> {
        match self.group.run_append(append).await {
            Ok(rows) if !rows.is_empty() => return Ok(Settled::Stored(rows)),
            Ok(_) => {}
            Err(Failure::Sent(error)) if is_unique_violation(&error) => {}
            Err(Failure::NotSent(error)) => return Err(error),
            Err(Failure::Sent(error)) if outcome_unknown(&error) || is_transient(&error) => {
                return Err(error);
            }
            Err(Failure::Sent(error)) => return Ok(Settled::Unknown(error.to_string())),
        }
        let rows = sqlx::query(&self.sql.settle)
            .bind(&append.stream)
            .bind(&append.aggregate_id)
            .bind(append.expected_version)
            .bind(append.data.len() as i64)
            .fetch_all(&self.pool)
            .await?;
        let ours = rows.first().is_some_and(|first| {
            first
                .try_get::<Option<i64>, _>("append_id")
                .is_ok_and(|id| id == Some(append.id))
        });
        Ok(if ours && rows.len() == append.data.len() {
            Settled::Stored(rows)
        } else {
            Settled::Conflict
        })
    }
}

/// One append's statement parameters, kept to make it again when settling.
pub(crate) struct Append {
    stream: String,
    aggregate_id: String,
    expected_version: i64,
    timestamp: DateTime<Utc>,
    snapshot: Option<String>,
    data: Vec<String>,
    /// Each event's metadata as stored (`None`: `NULL`).
    metadata: Vec<Option<String>>,
    id: i64,
}

impl Append {
    fn bytes(&self) -> usize {
        self.data.iter().map(String::len).sum::<usize>()
            + self.snapshot.as_ref().map_or(0, String::len)
    }
}

/// How the append statement failed.
pub(crate) enum Failure {
    /// No connection: nothing was sent.
    NotSent(sqlx::Error),
    /// The statement was sent.
    Sent(sqlx::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotSent(error) | Failure::Sent(error) => error.fmt(f),
        }
    }
}

/// What an append whose connection failed found out.
enum Settled {
    /// Its events are there: rows of `position, version, timestamp`.
    Stored(Vec<PgRow>),
    /// Another writer's events hold the version: this append was not stored.
    Conflict,
    /// Could not be told: the server stayed out of reach.
    Unknown(String),
}

/// What an append's batch gave it.
pub(crate) enum Answer {
    /// It went alone: the statement's own result.
    Ran(Result<Vec<PgRow>, Failure>),
    /// Its batch failed and stored nothing: it must be made again, alone (an error that
    /// concerns it will then be its own).
    RunAlone,
    /// Its batch could not get a connection: nothing was sent.
    NotSent(String),
    /// The connection of its batch failed after the statement was sent: it may be stored.
    Unsettled(String),
}

/// A waiting append and where its answer goes.
type Pending = Answered<Arc<Append>, Answer>;

/// The appends of one provider (and its clones) to one events table: the statements, the pool
/// and the queue of appends waiting for a batch.
pub(crate) struct AppendGroup {
    pool: PgPool,
    sql: Arc<Sql>,
    /// The events table as the lock function reads it.
    table: String,
    batcher: Arc<Batcher<Pending>>,
    /// The connection the last append used, kept for the next (see `keep`).
    kept: Mutex<Option<PoolConnection<Postgres>>>,
}

impl std::fmt::Debug for AppendGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendGroup")
            .field("table", &self.table)
            .field("pending", &self.batcher.pending())
            .finish()
    }
}

impl AppendGroup {
    /// The appends to `table`; `synchronous_commit_off` when the server's commits do not wait
    /// for the disk (see [`SENDERS_WITHOUT_SYNCHRONOUS_COMMIT`]).
    pub(crate) fn new(
        pool: PgPool,
        sql: Arc<Sql>,
        table: String,
        synchronous_commit_off: bool,
    ) -> Arc<Self> {
        let batcher = Batcher::new(MAX_BATCH, MAX_BATCH_BYTES).led_by_callers();
        if synchronous_commit_off {
            batcher.set_senders(SENDERS_WITHOUT_SYNCHRONOUS_COMMIT);
        }
        Arc::new(AppendGroup {
            pool,
            sql,
            table,
            batcher: Arc::new(batcher),
            kept: Mutex::new(None),
        })
    }

    /// Makes `append`, alone or in one statement with the appends that wait beside it.
    async fn submit(self: &Arc<Self>, append: &Arc<Append>) -> Answer {
        let group = self.clone();
        let send = move |batch| {
            let group = group.clone();
            async move { group.send(batch).await }
        };
        let alone =
            |append: Arc<Append>| async move { Answer::Ran(self.run_append(&append).await) };
        self.batcher
            .run(append.clone(), append.bytes(), send, alone)
            .await
            .unwrap_or_else(|| {
                Answer::Unsettled("its batch was abandoned (the runtime shut down)".to_owned())
            })
    }

    /// One batch, in rounds of different aggregates: two appends to one aggregate never share a
    /// statement (the second's expected version could only be checked after the first's insert).
    async fn send(&self, batch: Vec<Pending>) {
        let mut rest = batch;
        while !rest.is_empty() {
            // An append joins this round unless one before it is to the same aggregate (or is
            // the same append).
            let joins: Vec<bool> = {
                let mut aggregates = HashSet::new();
                let mut ids = HashSet::new();
                rest.iter()
                    .map(|pending| {
                        let append = &*pending.request;
                        aggregates.insert((append.stream.as_str(), append.aggregate_id.as_str()))
                            & ids.insert(append.id)
                    })
                    .collect()
            };
            let (round, later): (Vec<_>, Vec<_>) =
                rest.into_iter().zip(joins).partition(|(_, joins)| *joins);
            self.send_round(round.into_iter().map(|(pending, _)| pending).collect())
                .await;
            rest = later.into_iter().map(|(pending, _)| pending).collect();
        }
    }

    async fn send_round(&self, mut round: Vec<Pending>) {
        if round.len() == 1 {
            let pending = round.pop().expect("one append");
            let ran = self.run_append(&pending.request).await;
            pending.answer(Answer::Ran(ran));
            return;
        }
        tracing::trace!(appends = round.len(), "appending together");
        match self.run_appends(&round).await {
            Ok(rows) => {
                let index_of: HashMap<i64, usize> = round
                    .iter()
                    .enumerate()
                    .map(|(index, pending)| (pending.request.id, index))
                    .collect();
                let mut rows_of: Vec<Vec<PgRow>> = round.iter().map(|_| Vec::new()).collect();
                for row in rows {
                    let id: Option<i64> = row.try_get("append_id").ok();
                    if let Some(&index) = id.and_then(|id| index_of.get(&id)) {
                        rows_of[index].push(row);
                    }
                }
                for (pending, rows) in round.into_iter().zip(rows_of) {
                    pending.answer(Answer::Ran(Ok(rows)));
                }
            }
            Err(failure) => {
                let answer = |failure: &Failure| match failure {
                    Failure::NotSent(error) => Answer::NotSent(error.to_string()),
                    Failure::Sent(error) if outcome_unknown(error) => {
                        Answer::Unsettled(error.to_string())
                    }
                    // The statement failed, and its transaction with it: nothing was stored.
                    Failure::Sent(error) => {
                        tracing::debug!(%error, "appending together failed; appending one by one");
                        Answer::RunAlone
                    }
                };
                for pending in round {
                    pending.answer(answer(&failure));
                }
            }
        }
    }

    /// Runs the one-append statement on a connection of its own.
    pub(crate) async fn run_append(&self, append: &Append) -> Result<Vec<PgRow>, Failure> {
        // Acquired first: a failure here sent nothing, so nothing was stored.
        let mut connection = self.connection().await.map_err(Failure::NotSent)?;
        // The parameters both statements share come first.
        let shared = |sql| {
            sqlx::query(sql)
                .bind(&self.table)
                .bind(&append.stream)
                .bind(&append.aggregate_id)
                .bind(append.expected_version)
                .bind(append.timestamp)
                .bind(&append.snapshot)
        };
        let query = match (&append.data[..], &append.metadata[..]) {
            ([data], [metadata]) => shared(&self.sql.append_one)
                .bind(data)
                .bind(append.id)
                .bind(metadata),
            _ => shared(&self.sql.append)
                .bind(append.data.len() as i64)
                .bind(&append.data)
                .bind(append.id)
                .bind(&append.metadata),
        };
        let ran = query.fetch_all(&mut *connection).await;
        self.keep(connection, &ran);
        ran.map_err(Failure::Sent)
    }

    /// A connection for an append: the one the last append kept, or one from the pool.
    async fn connection(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match kept {
            Some(connection) => Ok(connection),
            None => self.pool.acquire().await,
        }
    }

    /// Keeps the connection of an append that ran to its end (it answered, even with a database
    /// error), for the next append: sqlx checks every connection that goes back to the pool with
    /// a round trip of its own, which would double the round trips of a writer. A connection
    /// whose statement was cut off (a broken connection; or the append's caller stopped waiting,
    /// which drops the connection with the future) goes back to the pool, which checks it; so
    /// does every connection of a pool of one.
    fn keep(&self, connection: PoolConnection<Postgres>, ran: &Result<Vec<PgRow>, sqlx::Error>) {
        let answered = match ran {
            Ok(_) => true,
            Err(error @ sqlx::Error::Database(_)) => !outcome_unknown(error),
            Err(_) => false,
        };
        // With a pool of one connection, keeping it would leave every read waiting for it.
        if answered && self.pool.options().get_max_connections() > 1 {
            let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
            if kept.is_none() {
                *kept = Some(connection);
            }
        }
    }

    /// Runs the statement of several appends (to different aggregates) on a connection of its
    /// own: rows of `append_id, position, version, timestamp`.
    async fn run_appends(&self, round: &[Pending]) -> Result<Vec<PgRow>, Failure> {
        let appends = || round.iter().map(|pending| &*pending.request);
        let events = || appends().flat_map(|a| a.data.iter().zip(&a.metadata).map(move |e| (a, e)));
        let mut ords = Vec::new();
        for append in appends() {
            ords.extend(1..=append.data.len() as i64);
        }
        let mut connection = self.connection().await.map_err(Failure::NotSent)?;
        let ran = sqlx::query(&self.sql.append_many)
            .bind(&self.table)
            .bind(appends().map(|a| a.stream.as_str()).collect::<Vec<_>>())
            .bind(
                appends()
                    .map(|a| a.aggregate_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(appends().map(|a| a.expected_version).collect::<Vec<_>>())
            .bind(appends().map(|a| a.id).collect::<Vec<_>>())
            .bind(appends().map(|a| a.snapshot.as_deref()).collect::<Vec<_>>())
            .bind(appends().map(|a| a.data.len() as i64).collect::<Vec<_>>())
            .bind(appends().map(|a| a.timestamp).collect::<Vec<_>>())
            .bind(events().map(|(a, _)| a.id).collect::<Vec<_>>())
            .bind(ords)
            .bind(
                events()
                    .map(|(_, (data, _))| data.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                events()
                    .map(|(_, (_, metadata))| metadata.as_deref())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *connection)
            .await;
        self.keep(connection, &ran);
        ran.map_err(Failure::Sent)
    }
}
