//! Appends: one insert for one event (grouped with concurrent ones), one transaction for
//! several; unknown outcomes settled by the append's id.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use evt_core::{Error, NewEvent, Snapshot, StoredEvent};
use mongodb::bson::{self, Bson, Document, Timestamp, doc};
use mongodb::error::{ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};

use crate::MongoProvider;
use crate::documents::{integer, stored_event};
use crate::group::Refused;

/// How many times an append is tried before its error is returned.
pub const MAX_APPEND_ATTEMPTS: u32 = 20;

/// What one append writes, the same on every try.
#[derive(Clone, Copy)]
pub(crate) struct Append<'a> {
    pub(crate) stream: &'a str,
    pub(crate) aggregate_id: &'a str,
    pub(crate) expected_version: u64,
    pub(crate) events: &'a [NewEvent],
    pub(crate) snapshot: Option<&'a Snapshot>,
    /// Written on its events as `appendId`.
    pub(crate) id: i64,
    /// Whether the caller wants the stored events back (one more read for one event).
    pub(crate) read_back: bool,
}

/// How one try of an append ended, when it did not store the events (as far as it knows).
enum Attempt {
    /// A unique index refused an event: another writer's version, an earlier try of this
    /// append, or (rarely) another event of the stream with the same position.
    Duplicate,
    /// The aggregate has no event at the expected version.
    Gap,
    /// A stored document or an event does not have the expected shape.
    Malformed(String),
    /// The driver's error; retried if labelled transient or a network error.
    Failed(mongodb::error::Error),
    /// The commit of a transaction failed: it may or may not have been applied.
    CommitFailed(mongodb::error::Error),
    /// The batch that carried the insert was abandoned: it may or may not have been sent.
    Abandoned,
}

impl<'a> Append<'a> {
    /// An append with a new random id, reading the stored events back.
    pub(crate) fn new(
        stream: &'a str,
        aggregate_id: &'a str,
        expected_version: u64,
        events: &'a [NewEvent],
        snapshot: Option<&'a Snapshot>,
    ) -> Self {
        Append {
            stream,
            aggregate_id,
            expected_version,
            events,
            snapshot,
            id: evt_core::__private::util::append_id(),
            read_back: true,
        }
    }
}

impl MongoProvider {
    /// Appends, and tells this process's started handlers.
    pub(crate) async fn append_events(
        &self,
        append: &Append<'_>,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let stored = self.append_tries(append).await?;
        self.appended.send_modify(|appends| *appends += 1);
        Ok(stored)
    }

    async fn append_tries(&self, append: &Append<'_>) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let Append {
            stream,
            aggregate_id,
            expected_version,
            ..
        } = *append;
        let operation =
            || format!("append to `{stream}/{aggregate_id}` at version {expected_version}");
        let conflict = || Error::VersionConflict {
            stream: stream.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            expected: expected_version,
        };
        let documents =
            documents(append).map_err(|problem| Error::provider(operation(), problem))?;
        // Whether a try failed after it was sent, so that it may have been stored.
        let mut unsure = false;
        let mut attempt = 1;
        loop {
            let tried = if let [document] = documents.as_slice() {
                self.insert_one(document).await.map(|()| None)
            } else {
                self.insert_in_transaction(append, &documents)
                    .await
                    .map(Some)
            };
            let error = match tried {
                Ok(Some(stored)) => return Ok(stored),
                Ok(None) if !append.read_back => return Ok(Vec::new()),
                // Stored; the position the server filled in is read back.
                Ok(None) => match self.settle(append).await {
                    Ok(Settled::Stored(stored)) => return Ok(stored),
                    Ok(Settled::Gap) => {
                        self.remove(append).await?;
                        return Err(conflict());
                    }
                    Ok(_) => {
                        return Err(Error::provider(
                            operation(),
                            "the stored event is not there when read back",
                        ));
                    }
                    Err(error) => {
                        unsure = true;
                        format!("reading back the stored event: {error}")
                    }
                },
                Err(Attempt::Duplicate) => match self.settle(append).await {
                    Ok(Settled::Stored(stored)) => return Ok(stored),
                    Ok(Settled::Other | Settled::Gap) => return Err(conflict()),
                    // A position shared with another event of the stream: try again.
                    Ok(Settled::Absent) => format!("duplicate position in `{stream}`"),
                    // An earlier try may be the event that refused this one: unknown, never
                    // "nothing stored" (a command would decide again and append twice).
                    Err(error) if unsure => {
                        return Err(Error::AppendUnknown {
                            stream: stream.to_owned(),
                            aggregate_id: aggregate_id.to_owned(),
                            expected: expected_version,
                            source: format!(
                                "refused as a duplicate after a try whose outcome is unknown, \
                                 and the check failed: {error}"
                            )
                            .into(),
                        });
                    }
                    Err(error) => return Err(error),
                },
                Err(Attempt::Gap) => return Err(conflict()),
                Err(Attempt::Malformed(problem)) => {
                    return Err(Error::provider(operation(), problem));
                }
                Err(Attempt::Failed(error)) if is_retryable(&error) => {
                    unsure |= !matches!(error.kind.as_ref(), ErrorKind::ServerSelection { .. });
                    error.to_string()
                }
                Err(Attempt::Failed(error)) => return Err(Error::provider(operation(), error)),
                Err(Attempt::CommitFailed(error)) => {
                    unsure = true;
                    error.to_string()
                }
                Err(Attempt::Abandoned) => {
                    unsure = true;
                    "the insert's batch was abandoned (its runtime shut down)".to_owned()
                }
            };
            if attempt >= MAX_APPEND_ATTEMPTS {
                let reason = format!("still failing after {attempt} attempts: {error}");
                if !unsure {
                    return Err(Error::transient(operation(), reason));
                }
                return match self.settle(append).await {
                    Ok(Settled::Stored(stored)) => Ok(stored),
                    Ok(Settled::Other) => Err(conflict()),
                    Ok(Settled::Gap) => {
                        self.remove(append).await?;
                        Err(conflict())
                    }
                    Ok(Settled::Absent) | Err(_) => Err(Error::AppendUnknown {
                        stream: stream.to_owned(),
                        aggregate_id: aggregate_id.to_owned(),
                        expected: expected_version,
                        source: reason.into(),
                    }),
                };
            }
            tracing::trace!(
                stream,
                aggregate_id,
                attempt,
                error,
                "transient failure of an append; retrying"
            );
            backoff(attempt).await;
            attempt += 1;
        }
    }

    /// One event: a single insert, as evtstore's, under the unique index on
    /// `{stream, aggregateId, version}`, sent with the other one-event appends waiting beside it
    /// (group commit, see `group.rs`).
    async fn insert_one(&self, document: &Document) -> Result<(), Attempt> {
        match self.inserts.insert(document.clone()).await {
            Ok(()) => Ok(()),
            Err(Refused::Duplicate) => Err(Attempt::Duplicate),
            Err(Refused::Failed(error)) => Err(Attempt::Failed(error)),
            Err(Refused::Abandoned) => Err(Attempt::Abandoned),
        }
    }

    /// Several events: inserted in one transaction, all or none, then read back (in the same
    /// transaction) for the positions the server gave them.
    async fn insert_in_transaction(
        &self,
        append: &Append<'_>,
        documents: &[Document],
    ) -> Result<Vec<Arc<StoredEvent>>, Attempt> {
        let mut session = self
            .database
            .client()
            .start_session()
            .await
            .map_err(Attempt::Failed)?;
        session
            .start_transaction()
            .write_concern(self.write_concern.clone())
            .await
            .map_err(Attempt::Failed)?;
        let written = async {
            if append.expected_version > 0 {
                let previous = self
                    .events
                    .find_one(doc! {
                        "stream": append.stream,
                        "aggregateId": append.aggregate_id,
                        "version": append.expected_version as i64,
                    })
                    .projection(doc! {"_id": 1})
                    .session(&mut session)
                    .await
                    .map_err(Attempt::Failed)?;
                if previous.is_none() {
                    return Err(Attempt::Gap);
                }
            }
            self.events
                .insert_many(documents)
                .session(&mut session)
                .await
                .map_err(attempt_error)?;
            if !append.read_back {
                return Ok(Vec::new());
            }
            let mut cursor = self
                .events
                .find(doc! {
                    "stream": append.stream,
                    "aggregateId": append.aggregate_id,
                    "appendId": append.id,
                })
                .sort(doc! {"version": 1})
                .projection(doc! {"snapshot": 0})
                .session(&mut session)
                .await
                .map_err(Attempt::Failed)?;
            let mut stored = Vec::with_capacity(documents.len());
            while let Some(document) = cursor.next(&mut session).await {
                let document = document.map_err(Attempt::Failed)?;
                let event =
                    stored_event(&document).map_err(|e| Attempt::Malformed(e.to_string()))?;
                stored.push(event);
            }
            Ok(stored)
        }
        .await;
        let stored = match written {
            Ok(stored) => stored,
            Err(error) => {
                // Best effort: the server aborts an abandoned transaction by itself too.
                let _ = session.abort_transaction().await;
                return Err(error);
            }
        };
        commit(&mut session).await?;
        Ok(stored
            .into_iter()
            .zip(append.events)
            .map(|(event, new)| Arc::new(with_data(event, new)))
            .collect())
    }

    /// After a refused or unknown try: the event at the next version tells whether this
    /// append was stored (its `appendId`), another writer's was, or none is there.
    async fn settle(&self, append: &Append<'_>) -> Result<Settled, Error> {
        let Append {
            stream,
            aggregate_id,
            expected_version,
            events,
            id,
            ..
        } = *append;
        let operation = || {
            format!(
                "check whether the append to `{stream}/{aggregate_id}` at version {expected_version} was stored"
            )
        };
        let mut cursor = self
            .events
            .find(doc! {
                "stream": stream,
                "aggregateId": aggregate_id,
                "version": {"$gte": expected_version as i64, "$lte": (expected_version + events.len() as u64) as i64},
            })
            .sort(doc! {"version": 1})
            .projection(doc! {"snapshot": 0})
            .await
            .map_err(|e| Error::transient(operation(), e))?;
        let mut documents = Vec::new();
        while cursor
            .advance()
            .await
            .map_err(|e| Error::transient(operation(), e))?
        {
            let document: Document = cursor
                .deserialize_current()
                .map_err(|e| Error::provider(operation(), e))?;
            documents.push(document);
        }
        // The event at the expected version, which must be there (unless it is 0).
        if expected_version > 0 {
            let at_expected = documents
                .first()
                .is_some_and(|document| integer(document, "version") == Ok(expected_version));
            if !at_expected {
                let ours = documents.iter().any(|d| d.get_i64("appendId") == Ok(id));
                return Ok(if ours { Settled::Gap } else { Settled::Other });
            }
            documents.remove(0);
        }
        let Some(first) = documents.first() else {
            return Ok(Settled::Absent);
        };
        if first.get_i64("appendId") != Ok(id) {
            return Ok(Settled::Other);
        }
        let stored = documents
            .iter()
            .zip(events)
            .map(|(document, new)| {
                stored_event(document).map(|event| Arc::new(with_data(event, new)))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Settled::Stored(stored))
    }
}

impl MongoProvider {
    /// Takes back an append made at a version above the aggregate's last (which `evt`'s
    /// commands never make: they append at the version they read).
    async fn remove(&self, append: &Append<'_>) -> Result<(), Error> {
        self.events
            .delete_many(doc! {
                "stream": append.stream,
                "aggregateId": append.aggregate_id,
                "appendId": append.id,
            })
            .write_concern(self.write_concern.clone())
            .await
            .map_err(|e| {
                Error::provider(
                    format!(
                        "remove the append to `{}/{}` above its last version {}",
                        append.stream, append.aggregate_id, append.expected_version
                    ),
                    e,
                )
            })?;
        Ok(())
    }
}

enum Settled {
    /// This append's events, as stored.
    Stored(Vec<Arc<StoredEvent>>),
    /// Another writer's event at the next version.
    Other,
    /// Nothing at the next version.
    Absent,
    /// This append's events are there, but the aggregate had no event at the expected version.
    Gap,
}

/// The documents of an append, as evtstore writes them, with `position: Timestamp(0, 0)` for the
/// server to fill, the append's id, the snapshot on the last, and each event's metadata (when it
/// has any).
fn documents(append: &Append<'_>) -> Result<Vec<Document>, String> {
    let now = bson::DateTime::now();
    let mut documents = Vec::with_capacity(append.events.len());
    for (n, event) in (0_u64..).zip(append.events) {
        // Through a `Value`, so that numbers become the BSON types they always were.
        let value: serde_json::Value =
            serde_json::from_str(event.data.get()).map_err(|e| e.to_string())?;
        let data = match bson::to_bson(&value) {
            Ok(Bson::Document(data)) => data,
            Ok(_) => return Err("an event must be a document".into()),
            Err(e) => return Err(e.to_string()),
        };
        let mut document = doc! {
            "stream": append.stream,
            "aggregateId": append.aggregate_id,
            "version": (append.expected_version + 1 + n) as i64,
            "position": Timestamp { time: 0, increment: 0 },
            "timestamp": now,
            "event": data,
            "appendId": append.id,
        };
        if let Some(snapshot) = append
            .snapshot
            .filter(|_| n + 1 == append.events.len() as u64)
        {
            let snapshot = bson::to_bson(&snapshot.to_json()).map_err(|e| e.to_string())?;
            document.insert("snapshot", snapshot);
        }
        if !event.metadata.is_empty() {
            let metadata = bson::to_bson(&*event.metadata).map_err(|e| e.to_string())?;
            document.insert("metadata", metadata);
        }
        documents.push(document);
    }
    Ok(documents)
}

/// The stored event with the appended event's own JSON text (what was read back is the same
/// document, through BSON).
fn with_data(mut event: StoredEvent, new: &NewEvent) -> StoredEvent {
    event.event_type = new.event_type.to_owned();
    event.data = new.data.clone();
    event.meta.metadata = new.metadata.clone();
    event
}

fn attempt_error(error: mongodb::error::Error) -> Attempt {
    if is_duplicate_key(&error) {
        Attempt::Duplicate
    } else {
        Attempt::Failed(error)
    }
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
async fn commit(session: &mut mongodb::ClientSession) -> Result<(), Attempt> {
    let mut tries = 0;
    loop {
        match session.commit_transaction().await {
            Ok(()) => return Ok(()),
            Err(error)
                if error.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                    && tries < MAX_APPEND_ATTEMPTS =>
            {
                tries += 1;
                backoff(tries).await;
            }
            Err(error) if is_duplicate_key(&error) => return Err(Attempt::Duplicate),
            Err(error) if error.contains_label(TRANSIENT_TRANSACTION_ERROR) => {
                return Err(Attempt::Failed(error));
            }
            Err(error) => return Err(Attempt::CommitFailed(error)),
        }
    }
}

/// A random pause of up to `attempt` × 5 milliseconds (at most 100), so racing writers spread out.
async fn backoff(attempt: u32) {
    let random = RandomState::new().hash_one(attempt);
    let ceiling = u64::from(attempt.min(20)) * 5000;
    tokio::time::sleep(Duration::from_micros(random % ceiling.max(1))).await;
}

/// MongoDB's duplicate key error code.
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// Whether a write failed on a unique index (code 11000, never matched by message).
pub(crate) fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
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
