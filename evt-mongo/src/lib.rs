//! The MongoDB provider of `evt`, on the official `mongodb` driver.
//!
//! ```no_run
//! # async fn run() -> Result<(), evt_core::Error> {
//! use evt_core::Domain;
//! use evt_mongo::MongoProvider;
//!
//! let provider = MongoProvider::connect("mongodb://127.0.0.1:27017/app").await?;
//! provider.migrate().await?; // indexes; idempotent, run it on every start
//! let domain = Domain::new(provider);
//! # Ok(())
//! # }
//! ```
//!
//! # Documents
//!
//! As evtstore stores them, so that a MongoDB user can query them in the shell:
//! - events: `{stream, aggregateId, version, position, timestamp: Date, event: {type, ...}}`, and on
//!   the last event of an append of an aggregate with snapshots, `snapshot: {snapshotVersion, version, state}`;
//! - bookmarks: `{bookmark, position}`;
//! - one counter document `{_id: "events", position}` in the `counters` collection.
//!
//! Positions and versions are 64-bit integers. (evtstore's own MongoDB provider uses `Timestamp`
//! positions; its bookmarks do not carry over.)
//!
//! # Design: correct under concurrent writers
//!
//! An append is one multi-document transaction that
//! 1. reads the aggregate's last version and fails with [`Error::VersionConflict`] unless it is the
//!    expected one;
//! 2. takes its positions from the counter document (`$inc` by the number of events);
//! 3. inserts the events, under a unique index on `{stream, aggregateId, version}`: a racing
//!    writer's duplicate (error code 11000) is also a version conflict;
//! 4. commits.
//!
//! *Atomic*: the events become visible together at commit, or not at all (an error or a dropped
//! connection before commit aborts the transaction).
//!
//! *No skipped events*: two appends both write the counter document, so the second cannot take
//! its positions until the first has committed (MongoDB aborts it with a write conflict, and it is
//! retried). Positions therefore become visible in increasing order, and a handler that has read
//! position `p` never later finds a new event below `p`. Evtstore's server-filled `Timestamp` is
//! assigned at insert, before commit, so an event can commit after a higher position was read.
//! The price is that appends are serialised on the counter document, one transaction at a time.
//!
//! Transient transaction errors (label `TransientTransactionError`) and network errors are
//! retried, and a commit with an unknown result is committed again, a bounded number of times,
//! with a short random backoff. Retries that still fail end in [`Error::Transient`].
//!
//! # Unknown outcomes
//!
//! Each append writes a random `appendId` on its events (a field evtstore ignores), the same on
//! every try. When a try failed after something was sent (a lost connection, a commit whose
//! result is unknown), a later try that finds the aggregate past the expected version looks at
//! the event at the next version: its own `appendId` means an earlier try was stored, and the
//! append succeeds, stored once; another writer's is a [`Error::VersionConflict`]. When no try
//! gets through and a commit may have been applied, it is [`Error::AppendUnknown`], which
//! commands never retry.
//!
//! # Durability
//!
//! Appends commit with the write concern `{w: "majority", j: true}` (see
//! [`MongoProvider::write_concern`]): an acknowledged append is in the journal of a majority of
//! the replica set and survives a crash of the server.
//!
//! Handlers in the same process are woken by each append; other processes' appends are found by
//! polling.
//!
//! # Requirements
//!
//! Transactions need a replica set (a single-node one is enough) or a sharded cluster.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use evt_core::chrono::{DateTime, Utc};
use evt_core::util::redact_url;
use evt_core::{Error, Meta, NewEvent, Provider, Snapshot, StoredEvent};
use futures_util::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::error::{ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};
use mongodb::options::{Acknowledgment, IndexOptions, ReturnDocument, WriteConcern};
use mongodb::{Client, ClientSession, Collection, Database, IndexModel};
use tokio::sync::watch;

pub use mongodb;

/// The page size unless [`MongoProvider::limit`] says otherwise.
pub const DEFAULT_LIMIT: usize = 1000;

/// How many times an append's transaction is tried before its error is returned.
pub const MAX_TRANSACTION_ATTEMPTS: u32 = 100;

/// The id of the position counter document.
const COUNTER_ID: &str = "events";

/// Events, bookmarks and snapshots in a MongoDB database.
#[derive(Debug, Clone)]
pub struct MongoProvider {
    database: Database,
    events: Collection<Document>,
    bookmarks: Collection<Document>,
    counters: Collection<Document>,
    limit: usize,
    write_concern: WriteConcern,
    appended: watch::Sender<u64>,
}

/// The write concern of appends unless [`MongoProvider::write_concern`] says otherwise: a majority
/// of the replica set, journaled.
pub fn durable_write_concern() -> WriteConcern {
    WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .build()
}

/// A driver error as an `evt` error, saying what was being done.
fn failed(operation: impl Into<String>, error: mongodb::error::Error) -> Error {
    Error::provider(operation, error)
}

impl MongoProvider {
    /// A provider over `database`, with the collections `events`, `bookmarks` and `counters`.
    pub fn new(database: &Database) -> Self {
        MongoProvider {
            database: database.clone(),
            events: database.collection("events"),
            bookmarks: database.collection("bookmarks"),
            counters: database.collection("counters"),
            limit: DEFAULT_LIMIT,
            write_concern: durable_write_concern(),
            appended: watch::Sender::new(0),
        }
    }

    /// Connects to `url`; the database is the one the URL names, or `evt`.
    ///
    /// Fails at once on a malformed URL; an unreachable server is reported by the first operation,
    /// after the driver's server selection timeout (`serverSelectionTimeoutMS` in the URL).
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let client = Client::with_uri_str(url)
            .await
            .map_err(|e| failed(format!("connect to MongoDB at `{}`", redact_url(url)), e))?;
        let database = client
            .default_database()
            .unwrap_or_else(|| client.database("evt"));
        Ok(Self::new(&database))
    }

    /// Stores events in the collection `name`.
    pub fn events_collection(mut self, name: &str) -> Self {
        self.events = self.database.collection(name);
        self
    }

    /// Stores bookmarks in the collection `name`.
    pub fn bookmarks_collection(mut self, name: &str) -> Self {
        self.bookmarks = self.database.collection(name);
        self
    }

    /// Keeps the position counter in the collection `name`.
    pub fn counters_collection(mut self, name: &str) -> Self {
        self.counters = self.database.collection(name);
        self
    }

    /// Reads pages of at most `limit` events (at least 1).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// Commits appends with `write_concern` instead of [`durable_write_concern`]. A weaker one
    /// (e.g. `w: 1` without `j`) is faster, but an acknowledged append may be lost in a crash.
    pub fn write_concern(mut self, write_concern: WriteConcern) -> Self {
        self.write_concern = write_concern;
        self
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Creates the indexes and the counter document the provider relies on. Idempotent: run it
    /// on every start.
    pub async fn migrate(&self) -> Result<(), Error> {
        let unique = || IndexOptions::builder().unique(true).build();
        let indexes = [
            (
                &self.events,
                doc! {"stream": 1, "aggregateId": 1, "version": 1},
                true,
            ),
            (&self.events, doc! {"position": 1}, true),
            (&self.events, doc! {"stream": 1, "position": 1}, false),
            (&self.bookmarks, doc! {"bookmark": 1}, true),
        ];
        for (collection, keys, is_unique) in indexes {
            let model = IndexModel::builder()
                .keys(keys.clone())
                .options(is_unique.then(unique))
                .build();
            collection.create_index(model).await.map_err(|e| {
                failed(format!("create index {keys} on `{}`", collection.name()), e)
            })?;
        }
        // Created here, before appends race on it.
        self.counters
            .update_one(
                doc! {"_id": COUNTER_ID},
                doc! {"$setOnInsert": {"position": 0_i64}},
            )
            .upsert(true)
            .await
            .map_err(|e| {
                failed(
                    format!("create the counter in `{}`", self.counters.name()),
                    e,
                )
            })?;
        Ok(())
    }

    async fn find_events(
        &self,
        operation: impl Fn() -> String,
        filter: Document,
        sort: Document,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let cursor = self
            .events
            .find(filter)
            .sort(sort)
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(|e| failed(operation(), e))?;
        let documents: Vec<Document> = cursor
            .try_collect()
            .await
            .map_err(|e| failed(operation(), e))?;
        documents
            .iter()
            .map(|row| stored_event(row).map(Arc::new))
            .collect()
    }

    async fn find_event(
        &self,
        operation: impl Fn() -> String,
        filter: Document,
        sort: Document,
    ) -> Result<Option<Document>, Error> {
        self.events
            .find_one(filter)
            .sort(sort)
            .await
            .map_err(|e| failed(operation(), e))
    }

    /// One try of an append's transaction.
    async fn try_append(
        &self,
        session: &mut ClientSession,
        append: &Append<'_>,
    ) -> Result<Vec<Arc<StoredEvent>>, Attempt> {
        session
            .start_transaction()
            .write_concern(self.write_concern.clone())
            .await
            .map_err(Attempt::Failed)?;
        let result = self.append_in(session, append).await;
        match result {
            Ok(stored) => {
                commit(session).await?;
                Ok(stored)
            }
            Err(error) => {
                // Best effort: the server aborts an abandoned transaction by itself too.
                let _ = session.abort_transaction().await;
                Err(error)
            }
        }
    }

    async fn append_in(
        &self,
        session: &mut ClientSession,
        append: &Append<'_>,
    ) -> Result<Vec<Arc<StoredEvent>>, Attempt> {
        let Append {
            stream,
            aggregate_id,
            expected_version,
            events,
            snapshot,
            id: append_id,
        } = *append;
        let last = self
            .events
            .find_one(doc! {"stream": stream, "aggregateId": aggregate_id})
            .sort(doc! {"version": -1})
            .projection(doc! {"version": 1})
            .session(&mut *session)
            .await
            .map_err(Attempt::Failed)?;
        let current = match last {
            Some(last) => integer(&last, "version").map_err(Attempt::Malformed)?,
            None => 0,
        };
        if current != expected_version {
            return Err(Attempt::Conflict);
        }
        let count = events.len() as i64;
        let counter = self
            .counters
            .find_one_and_update(doc! {"_id": COUNTER_ID}, doc! {"$inc": {"position": count}})
            .upsert(true)
            .return_document(ReturnDocument::After)
            .session(&mut *session)
            .await
            .map_err(Attempt::Failed)?
            .ok_or(Attempt::Retry)?;
        let last_position = integer(&counter, "position").map_err(Attempt::Malformed)?;
        let first_position = last_position + 1 - events.len() as u64;
        let now = bson::DateTime::now();
        let timestamp = chrono_millis(now.timestamp_millis());
        let mut documents = Vec::with_capacity(events.len());
        let mut stored = Vec::with_capacity(events.len());
        for (n, event) in (0_u64..).zip(events) {
            let version = expected_version + 1 + n;
            let position = first_position + n;
            // Through a `Value`, so that numbers become the BSON types they always were.
            let value: serde_json::Value = serde_json::from_str(event.data.get())
                .map_err(|e| Attempt::Malformed(e.to_string()))?;
            let data = match bson::to_bson(&value) {
                Ok(Bson::Document(data)) => data,
                Ok(_) => return Err(Attempt::Malformed("an event must be a document".into())),
                Err(e) => return Err(Attempt::Malformed(e.to_string())),
            };
            let mut document = doc! {
                "stream": stream,
                "aggregateId": aggregate_id,
                "version": version as i64,
                "position": position as i64,
                "timestamp": now,
                "event": data,
                "appendId": append_id,
            };
            if let Some(snapshot) = snapshot.filter(|_| n + 1 == events.len() as u64) {
                let snapshot = bson::to_bson(&snapshot.to_json())
                    .map_err(|e| Attempt::Malformed(e.to_string()))?;
                document.insert("snapshot", snapshot);
            }
            documents.push(document);
            stored.push(Arc::new(StoredEvent {
                meta: Meta {
                    stream: stream.to_owned(),
                    aggregate_id: aggregate_id.to_owned(),
                    version,
                    position,
                    timestamp,
                },
                event_type: event.event_type.to_owned(),
                data: event.data.clone(),
            }));
        }
        self.events
            .insert_many(documents)
            .session(&mut *session)
            .await
            .map_err(|e| {
                if is_duplicate_key(&e) {
                    Attempt::Conflict
                } else {
                    Attempt::Failed(e)
                }
            })?;
        Ok(stored)
    }
}

impl MongoProvider {
    /// The events an earlier try of this append stored, if the event at the next version carries
    /// its `append_id`.
    async fn earlier_try(
        &self,
        stream: &str,
        aggregate_id: &str,
        expected_version: u64,
        events: &[NewEvent],
        append_id: i64,
    ) -> Result<Option<Vec<Arc<StoredEvent>>>, Error> {
        let operation = || {
            format!(
                "look for an earlier try of the append to `{stream}/{}` at version {expected_version}",
                evt_core::util::display_id(aggregate_id)
            )
        };
        let last = expected_version + events.len() as u64;
        let cursor = self
            .events
            .find(doc! {
                "stream": stream,
                "aggregateId": aggregate_id,
                "version": {"$gt": expected_version as i64, "$lte": last as i64},
            })
            .sort(doc! {"version": 1})
            .await
            .map_err(|e| Error::transient(operation(), e))?;
        let documents: Vec<Document> = cursor
            .try_collect()
            .await
            .map_err(|e| Error::transient(operation(), e))?;
        let ours = documents.len() == events.len()
            && documents
                .iter()
                .all(|document| document.get_i64("appendId") == Ok(append_id));
        if !ours {
            return Ok(None);
        }
        let stored = documents
            .iter()
            .map(|document| stored_event(document).map(Arc::new))
            .collect::<Result<Vec<_>, Error>>()?;
        if let Some(last) = stored.last() {
            self.appended.send_replace(last.meta.position);
        }
        Ok(Some(stored))
    }
}

/// What one append writes, the same on every try.
#[derive(Clone, Copy)]
struct Append<'a> {
    stream: &'a str,
    aggregate_id: &'a str,
    expected_version: u64,
    events: &'a [NewEvent],
    snapshot: Option<&'a Snapshot>,
    /// Written on its events as `appendId`.
    id: i64,
}

/// How one try of an append ended, when it did not commit (as far as it knows).
enum Attempt {
    /// The aggregate is not at the expected version.
    Conflict,
    /// Worth another try (the counter document was not there yet).
    Retry,
    /// A stored document or an event does not have the expected shape.
    Malformed(String),
    /// The driver's error before the commit; retried if labelled transient or a network error.
    Failed(mongodb::error::Error),
    /// The commit failed: it may or may not have been applied.
    CommitFailed(mongodb::error::Error),
}

/// Whether another try may pass: a transient transaction error, a commit whose result is
/// unknown, or a lost connection.
fn is_retryable(error: &mongodb::error::Error) -> bool {
    error.contains_label(TRANSIENT_TRANSACTION_ERROR)
        || error.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
        || matches!(
            error.kind.as_ref(),
            ErrorKind::Io(_)
                | ErrorKind::ConnectionPoolCleared { .. }
                | ErrorKind::ServerSelection { .. }
        )
}

/// Commits, committing again while the result is unknown (bounded).
async fn commit(session: &mut ClientSession) -> Result<(), Attempt> {
    let mut tries = 0;
    loop {
        match session.commit_transaction().await {
            Ok(()) => return Ok(()),
            Err(error)
                if error.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                    && tries < MAX_TRANSACTION_ATTEMPTS =>
            {
                tries += 1;
                backoff(tries).await;
            }
            Err(error) => return Err(Attempt::CommitFailed(error)),
        }
    }
}

/// A random pause of up to `attempt` milliseconds (at most 20), so racing writers spread out.
async fn backoff(attempt: u32) {
    let random = RandomState::new().hash_one(attempt);
    let ceiling = u64::from(attempt.min(20)) * 1000;
    tokio::time::sleep(Duration::from_micros(random % ceiling.max(1))).await;
}

/// Whether a write failed on a unique index (code 11000, never matched by message).
fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    const DUPLICATE_KEY: i32 = 11000;
    match error.kind.as_ref() {
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(write)) => {
            write.code == DUPLICATE_KEY
        }
        ErrorKind::InsertMany(insert) => insert
            .write_errors
            .iter()
            .flatten()
            .any(|write| write.code == DUPLICATE_KEY),
        ErrorKind::Command(command) => command.code == DUPLICATE_KEY,
        _ => false,
    }
}

fn chrono_millis(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

/// A non-negative integer field, stored as a 32- or 64-bit integer or an integral double
/// (as a JavaScript client writes numbers).
fn integer(document: &Document, key: &str) -> Result<u64, String> {
    let value = match document.get(key) {
        Some(Bson::Int64(n)) => u64::try_from(*n).ok(),
        Some(Bson::Int32(n)) => u64::try_from(*n).ok(),
        Some(Bson::Double(n)) if n.fract() == 0.0 && *n >= 0.0 => Some(*n as u64),
        _ => None,
    };
    value.ok_or_else(|| format!("`{key}` is missing or not a non-negative integer"))
}

/// An event document as a stored event. A document without its place (stream, id, version,
/// position) is an error; an `event` that does not fit is left for the typed decoding to report.
fn stored_event(document: &Document) -> Result<StoredEvent, Error> {
    let place = (|| -> Result<Meta, String> {
        let text = |key: &str| {
            document
                .get_str(key)
                .map(str::to_owned)
                .map_err(|_| format!("`{key}` is missing or not a string"))
        };
        let timestamp = match document.get("timestamp") {
            Some(Bson::DateTime(date)) => chrono_millis(date.timestamp_millis()),
            _ => return Err("`timestamp` is missing or not a date".into()),
        };
        Ok(Meta {
            stream: text("stream")?,
            aggregate_id: text("aggregateId")?,
            version: integer(document, "version")?,
            position: integer(document, "position")?,
            timestamp,
        })
    })();
    let meta = place.map_err(|problem| {
        Error::provider(
            format!(
                "read event document {}",
                document
                    .get("_id")
                    .map_or_else(|| "?".to_owned(), ToString::to_string)
            ),
            format!("malformed event document: {problem}"),
        )
    })?;
    let data = document
        .get("event")
        .cloned()
        .unwrap_or(Bson::Null)
        .into_relaxed_extjson();
    let event_type = data
        .get("type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let data = serde_json::value::to_raw_value(&data).map_err(|e| {
        Error::provider(
            format!("read the event at position {}", meta.position),
            e.to_string(),
        )
    })?;
    Ok(StoredEvent {
        meta,
        event_type,
        data,
    })
}

#[async_trait]
impl Provider for MongoProvider {
    fn limit(&self) -> usize {
        self.limit
    }

    async fn get_position(&self, bookmark: &str) -> Result<Option<u64>, Error> {
        let operation = || format!("read bookmark `{bookmark}`");
        let found = self
            .bookmarks
            .find_one(doc! {"bookmark": bookmark})
            .await
            .map_err(|e| failed(operation(), e))?;
        found
            .map(|document| integer(&document, "position"))
            .transpose()
            .map_err(|problem| Error::provider(operation(), problem))
    }

    async fn set_position(&self, bookmark: &str, position: u64) -> Result<(), Error> {
        self.bookmarks
            .update_one(
                doc! {"bookmark": bookmark},
                doc! {"$set": {"position": position as i64}},
            )
            .upsert(true)
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
        self.find_events(
            || format!("read events of {streams:?} after position {after}"),
            doc! {"stream": {"$in": streams}, "position": {"$gt": after as i64}},
            doc! {"position": 1},
            limit,
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
        self.find_events(
            || format!("read events of `{stream}/{aggregate_id}` after version {after_version}"),
            doc! {
                "stream": stream,
                "aggregateId": aggregate_id,
                "version": {"$gt": after_version as i64},
            },
            doc! {"version": 1},
            limit,
        )
        .await
    }

    async fn get_last_event_for(
        &self,
        stream: &str,
        aggregate_id: &str,
    ) -> Result<Option<Arc<StoredEvent>>, Error> {
        self.find_event(
            || format!("read the last event of `{stream}/{aggregate_id}`"),
            doc! {"stream": stream, "aggregateId": aggregate_id},
            doc! {"version": -1},
        )
        .await?
        .as_ref()
        .map(|document| stored_event(document).map(Arc::new))
        .transpose()
    }

    async fn get_last_position(&self, streams: &[&str]) -> Result<u64, Error> {
        let operation = || format!("read the last position of {streams:?}");
        let last = self
            .find_event(
                operation,
                doc! {"stream": {"$in": streams}},
                doc! {"position": -1},
            )
            .await?;
        match last {
            Some(document) => integer(&document, "position")
                .map_err(|problem| Error::provider(operation(), problem)),
            None => Ok(0),
        }
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
        let append_id = evt_core::util::append_id();
        let append = Append {
            stream,
            aggregate_id,
            expected_version,
            events,
            snapshot,
            id: append_id,
        };
        // Whether an earlier try may have stored the events (something failed after it was
        // sent), and whether a commit of one may have been applied.
        let (mut unsure, mut commit_unknown) = (false, false);
        let mut session = self
            .database
            .client()
            .start_session()
            .await
            .map_err(|e| Error::transient(operation(), e))?;
        let mut attempt = 1;
        loop {
            let tried = self.try_append(&mut session, &append).await;
            let error = match tried {
                Ok(stored) => {
                    if let Some(last) = stored.last() {
                        self.appended.send_replace(last.meta.position);
                    }
                    return Ok(stored);
                }
                Err(Attempt::Conflict) if unsure => {
                    return match self
                        .earlier_try(stream, aggregate_id, expected_version, events, append_id)
                        .await?
                    {
                        Some(stored) => {
                            tracing::debug!(stream, attempt, "an earlier try was stored");
                            Ok(stored)
                        }
                        None => Err(conflict()),
                    };
                }
                Err(Attempt::Conflict) => return Err(conflict()),
                Err(Attempt::Malformed(problem)) => {
                    return Err(Error::provider(operation(), problem));
                }
                Err(Attempt::Retry) => None,
                Err(Attempt::Failed(error)) if is_retryable(&error) => {
                    unsure = true;
                    Some(error)
                }
                Err(Attempt::Failed(error)) => return Err(failed(operation(), error)),
                // Applied or not, a commit is tried again: a later try settles which.
                Err(Attempt::CommitFailed(error)) => {
                    (unsure, commit_unknown) = (true, true);
                    Some(error)
                }
            };
            if attempt >= MAX_TRANSACTION_ATTEMPTS {
                let reason = match &error {
                    Some(error) => format!("still failing after {attempt} attempts: {error}"),
                    None => format!("the counter document was missing after {attempt} attempts"),
                };
                if unsure
                    && let Ok(Some(stored)) = self
                        .earlier_try(stream, aggregate_id, expected_version, events, append_id)
                        .await
                {
                    return Ok(stored);
                }
                return Err(if commit_unknown {
                    Error::AppendUnknown {
                        stream: stream.to_owned(),
                        aggregate_id: aggregate_id.to_owned(),
                        expected: expected_version,
                        source: reason.into(),
                    }
                } else {
                    Error::transient(operation(), reason)
                });
            }
            tracing::trace!(
                stream,
                aggregate_id,
                attempt,
                error = error.as_ref().map(tracing::field::display),
                "transient failure of an append; retrying"
            );
            backoff(attempt).await;
            attempt += 1;
        }
    }

    async fn get_snapshot(
        &self,
        stream: &str,
        aggregate_id: &str,
    ) -> Result<Option<Snapshot>, Error> {
        let operation = || format!("read the snapshot of `{stream}/{aggregate_id}`");
        let found = self
            .events
            .find_one(doc! {
                "stream": stream,
                "aggregateId": aggregate_id,
                "snapshot": {"$exists": true},
            })
            .sort(doc! {"version": -1})
            .projection(doc! {"snapshot": 1})
            .await
            .map_err(|e| failed(operation(), e))?;
        let Some(snapshot) = found.and_then(|mut document| document.remove("snapshot")) else {
            return Ok(None);
        };
        Snapshot::from_json(snapshot.into_relaxed_extjson())
            .map(Some)
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
    fn reads_numbers_as_javascript_writes_them() {
        let document = doc! {"a": 3_i32, "b": 4_i64, "c": 5.0, "d": 5.5, "e": -1_i32};
        assert_eq!(integer(&document, "a"), Ok(3));
        assert_eq!(integer(&document, "b"), Ok(4));
        assert_eq!(integer(&document, "c"), Ok(5));
        assert!(integer(&document, "d").is_err());
        assert!(integer(&document, "e").is_err());
        assert!(integer(&document, "f").is_err());
    }
}
