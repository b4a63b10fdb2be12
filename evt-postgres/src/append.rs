//! Appends: one statement under the events table's lock, and, when the connection fails after
//! the statement was sent, settling whether it was stored.

use std::sync::Arc;
use std::time::Duration;

use evt_core::__private::util;
use evt_core::{Error, Meta, NewEvent, Snapshot, StoredEvent};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::{PostgresProvider, non_negative, to_i64};

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
        let append = Append {
            stream,
            aggregate_id,
            expected_version: to_i64(expected_version, "version")?,
            timestamp: util::now(),
            snapshot: snapshot.as_deref(),
            data: events.iter().map(|event| event.data.get()).collect(),
            metadata: events
                .iter()
                .map(|event| event.metadata.to_stored())
                .collect(),
            id: util::append_id(),
        };
        let rows = match self.run_append(&append).await {
            Ok(rows) if rows.is_empty() => return Err(conflict()),
            Ok(rows) => rows,
            Err(Failure::NotSent(error)) => return Err(Error::transient(operation(), error)),
            Err(Failure::Sent(error)) if is_unique_violation(&error) => return Err(conflict()),
            Err(Failure::Sent(error)) if outcome_unknown(&error) => {
                tracing::warn!(
                    stream,
                    aggregate_id = %id,
                    expected_version,
                    %error,
                    "the connection failed during an append; settling whether it was stored"
                );
                return match self.settle(&append).await {
                    Settled::Stored(rows) => self.stored(stream, aggregate_id, events, &rows),
                    Settled::Conflict => Err(conflict()),
                    Settled::Unknown(why) => Err(Error::AppendUnknown {
                        stream: stream.to_owned(),
                        aggregate_id: aggregate_id.to_owned(),
                        expected: expected_version,
                        source: format!("{error}; {why}").into(),
                    }),
                };
            }
            Err(Failure::Sent(error)) => return Err(classify(operation(), error)),
        };
        self.stored(stream, aggregate_id, events, &rows)
    }

    /// Runs the append statement on a connection of its own.
    async fn run_append(&self, append: &Append<'_>) -> Result<Vec<PgRow>, Failure> {
        // Acquired first: a failure here sent nothing, so nothing was stored.
        let mut connection = self.pool.acquire().await.map_err(Failure::NotSent)?;
        sqlx::query(&self.sql.append)
            .bind(&self.events.quoted)
            .bind(append.stream)
            .bind(append.aggregate_id)
            .bind(append.expected_version)
            .bind(append.timestamp)
            .bind(append.snapshot)
            .bind(append.data.len() as i64)
            .bind(&append.data)
            .bind(append.id)
            .bind(&append.metadata)
            .fetch_all(&mut *connection)
            .await
            .map_err(Failure::Sent)
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
    async fn settle(&self, append: &Append<'_>) -> Settled {
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

    async fn settle_once(&self, append: &Append<'_>) -> Result<Settled, sqlx::Error> {
        match self.run_append(append).await {
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
            .bind(append.stream)
            .bind(append.aggregate_id)
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
struct Append<'a> {
    stream: &'a str,
    aggregate_id: &'a str,
    expected_version: i64,
    timestamp: evt_core::chrono::DateTime<evt_core::chrono::Utc>,
    snapshot: Option<&'a str>,
    data: Vec<&'a str>,
    /// Each event's metadata as stored (`None`: `NULL`).
    metadata: Vec<Option<String>>,
    id: i64,
}

/// How the append statement failed.
enum Failure {
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
