//! Requests that arrive together go to the server together, through evt-core's `Batcher` (a
//! request that arrives while a batch of its kind is on its way waits for it and then goes with
//! the others that waited, in one command; a lone request goes at once): one-event appends
//! (group commit) and aggregate loads.
//!
//! - Inserts go as one unordered `insertMany` under the appends' write concern: concurrent
//!   commands share a round trip and the server's journal write. Each document keeps its own
//!   outcome: an unordered `insertMany` inserts every document it can and reports each refused one
//!   by its index (MongoDB's documented behaviour), so a version taken by another writer fails only
//!   the append that wanted it.
//! - Loads from the first event go as one `find` per stream of `aggregateId: {$in: [...]}`
//!   sorted by aggregate and version (the unique index's order); each load gets its own
//!   aggregate's events, streamed to it in chunks as the cursor returns them. (A load after a
//!   version, from a snapshot or a cached aggregate, reads on its own: the SecantusDB server
//!   plans `$in` with a version bound as a scan.)

use std::mem;
use std::sync::{Arc, Mutex, PoisonError};

use evt_core::__private::{Answered, Batcher, Request};
use futures_util::StreamExt;
use mongodb::Collection;
use mongodb::bson::{self, Document, doc};
use mongodb::error::{Error, ErrorKind};
use mongodb::options::WriteConcern;
use tokio::sync::mpsc;

use crate::append;
use crate::documents::integer;

/// At most this many requests go in one batch; the rest wait for the next.
const MAX_BATCH: usize = 1_000;

/// At most this many bytes of documents go in one `insertMany`, so that the driver never splits
/// it into several messages (their limit is 48 MB), which would make a failed batch partly
/// stored; a larger document goes alone.
const MAX_BATCH_BYTES: usize = 8 << 20;

// ---------------------------------------------------------------------------------------------
// Inserts

/// How one document's insert ended, when it did not succeed.
pub(crate) enum Refused {
    /// A unique index refused it (code 11000).
    Duplicate,
    /// The driver's error for the batch or for this document: it may or may not be stored.
    Failed(Error),
    /// The batch was abandoned (its runtime shut down) before it answered: it may or may not
    /// have been sent.
    Abandoned,
}

/// The one-event inserts of one collection, under one write concern.
pub(crate) struct InsertGroup {
    events: Collection<Document>,
    write_concern: WriteConcern,
    batcher: Arc<Batcher<PendingInsert>>,
}

/// A waiting insert and where its outcome goes.
type PendingInsert = Answered<Document, Result<(), Refused>>;

impl std::fmt::Debug for InsertGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsertGroup")
            .field("pending", &self.batcher.pending())
            .finish()
    }
}

impl InsertGroup {
    pub(crate) fn new(events: Collection<Document>, write_concern: WriteConcern) -> Arc<Self> {
        Arc::new(InsertGroup {
            events,
            write_concern,
            batcher: Arc::new(Batcher::new(MAX_BATCH, MAX_BATCH_BYTES)),
        })
    }

    /// Inserts `document`, alone or with the inserts that wait beside it.
    pub(crate) async fn insert(self: &Arc<Self>, document: Document) -> Result<(), Refused> {
        // A document over the batch's limit goes alone, so that one over the server's limit
        // fails only its own append.
        let bytes = bson::to_vec(&document).map_or(usize::MAX, |encoded| encoded.len());
        let group = self.clone();
        let send = move |batch| {
            let group = group.clone();
            async move { group.send(batch).await }
        };
        let alone =
            |document: Document| async move { self.outcomes_of(&[&document]).await.remove(0) };
        self.batcher
            .run(document, bytes, send, alone)
            .await
            .unwrap_or(Err(Refused::Abandoned))
    }

    /// One batch: `insertOne` for one document, an unordered `insertMany` for several.
    async fn send(&self, batch: Vec<PendingInsert>) {
        tracing::trace!(
            documents = batch.len(),
            "sending one-event appends together"
        );
        let documents: Vec<&Document> = batch.iter().map(|pending| &pending.request).collect();
        let outcomes = self.outcomes_of(&documents).await;
        for (pending, outcome) in batch.into_iter().zip(outcomes) {
            pending.answer(outcome);
        }
    }

    /// The outcome of each document of a batch, in order.
    async fn outcomes_of(&self, batch: &[&Document]) -> Vec<Result<(), Refused>> {
        if let [one] = batch {
            let inserted = self
                .events
                .insert_one(*one)
                .write_concern(self.write_concern.clone())
                .await;
            return vec![inserted.map(drop).map_err(refused)];
        }
        let inserted = self
            .events
            .insert_many(batch.iter().copied())
            .ordered(false)
            .write_concern(self.write_concern.clone())
            .await;
        let error = match inserted {
            Ok(_) => return batch.iter().map(|_| Ok(())).collect(),
            Err(error) => error,
        };
        let ErrorKind::InsertMany(failure) = error.kind.as_ref() else {
            // The whole batch failed, as one message (see `MAX_BATCH_BYTES`): nothing was sent
            // (no server) or the answer was lost; each append retries or settles on its own.
            return batch
                .iter()
                .map(|_| Err(Refused::Failed(error.clone())))
                .collect();
        };
        (0..batch.len())
            .map(|index| {
                let written = failure
                    .write_errors
                    .iter()
                    .flatten()
                    .find(|write| write.index == index);
                match written {
                    Some(write) if write.code == append::DUPLICATE_KEY => Err(Refused::Duplicate),
                    Some(_) => Err(Refused::Failed(error.clone())),
                    // Written, but the write concern was not met: as `insertOne` reports it.
                    None if failure.write_concern_error.is_some() => {
                        Err(Refused::Failed(error.clone()))
                    }
                    None => Ok(()),
                }
            })
            .collect()
    }
}

/// A failed `insertOne` as the group reports it.
fn refused(error: Error) -> Refused {
    if append::is_duplicate_key(&error) {
        Refused::Duplicate
    } else {
        Refused::Failed(error)
    }
}

// ---------------------------------------------------------------------------------------------
// Loads

/// What a load receives: its event documents in chunks, then `End` (a channel that closes
/// before `End` was abandoned with its batch).
pub(crate) enum Loaded {
    Events(Vec<Document>),
    End,
    Failed(Error),
}

/// Documents go to a load in chunks of this many, so that the load's task is woken once a chunk
/// rather than once a document.
const CHUNK: usize = 128;

/// The aggregate loads of one events collection.
pub(crate) struct LoadGroup {
    events: Collection<Document>,
    batcher: Arc<Batcher<PendingLoad>>,
}

struct PendingLoad {
    stream: String,
    aggregate_id: String,
    /// The aggregate's event documents, by version, then `End`.
    events: mpsc::UnboundedSender<Loaded>,
    /// Documents not sent yet.
    chunk: Mutex<Vec<Document>>,
}

impl Request for PendingLoad {
    fn abandoned(&self) -> bool {
        self.events.is_closed()
    }
}

impl PendingLoad {
    /// Adds `document` to the chunk; sends the chunk when full.
    fn push(&self, document: Document) {
        let mut chunk = self.chunk.lock().unwrap_or_else(PoisonError::into_inner);
        chunk.push(document);
        if chunk.len() >= CHUNK {
            let _ = self.events.send(Loaded::Events(mem::take(&mut *chunk)));
        }
    }

    /// Sends what is left, then `outcome`.
    fn finish(&self, outcome: Loaded) {
        let chunk = mem::take(&mut *self.chunk.lock().unwrap_or_else(PoisonError::into_inner));
        if !chunk.is_empty() {
            let _ = self.events.send(Loaded::Events(chunk));
        }
        let _ = self.events.send(outcome);
    }
}

impl std::fmt::Debug for LoadGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadGroup")
            .field("pending", &self.batcher.pending())
            .finish()
    }
}

impl LoadGroup {
    pub(crate) fn new(events: Collection<Document>) -> Arc<Self> {
        Arc::new(LoadGroup {
            events,
            batcher: Arc::new(Batcher::new(MAX_BATCH, MAX_BATCH_BYTES)),
        })
    }

    /// The event documents of one aggregate, by version, then `End`, read alone or with the
    /// loads that wait beside it.
    pub(crate) fn load(
        self: &Arc<Self>,
        stream: &str,
        aggregate_id: &str,
    ) -> mpsc::UnboundedReceiver<Loaded> {
        let (events, received) = mpsc::unbounded_channel();
        let request = PendingLoad {
            stream: stream.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            events,
            chunk: Mutex::default(),
        };
        let group = self.clone();
        self.batcher.submit(request, 0, move |batch| {
            let group = group.clone();
            async move { group.send(batch).await }
        });
        received
    }

    /// One batch: the query of one load alone, or one query per stream for several, each
    /// document routed to the loads it belongs to.
    async fn send(&self, batch: Vec<PendingLoad>) {
        tracing::trace!(loads = batch.len(), "loading aggregates together");
        let mut streams: Vec<&str> = batch.iter().map(|load| load.stream.as_str()).collect();
        streams.sort_unstable();
        streams.dedup();
        for stream in streams {
            let loads: Vec<&PendingLoad> =
                batch.iter().filter(|load| load.stream == stream).collect();
            self.send_stream(stream, &loads).await;
        }
    }

    /// Loads of one stream: an equality on the stream and, for several, `$in` on the aggregate,
    /// sorted as the `{stream, aggregateId, version}` index is (the
    /// queries the SecantusDB server plans on that index; `$or`, `$in` on the stream and `$in`
    /// with a version bound it plans as scans, 50 to 80 times slower).
    async fn send_stream(&self, stream: &str, batch: &[&PendingLoad]) {
        let (filter, sort) = match batch {
            [one] => (
                doc! {
                    "stream": stream,
                    "aggregateId": &one.aggregate_id,
                    "version": {"$gt": 0},
                },
                doc! {"version": 1},
            ),
            _ => {
                let mut ids: Vec<&str> = batch.iter().map(|l| l.aggregate_id.as_str()).collect();
                ids.sort_unstable();
                ids.dedup();
                (
                    doc! {"stream": stream, "aggregateId": {"$in": ids}},
                    doc! {"aggregateId": 1, "version": 1},
                )
            }
        };
        let cursor = self
            .events
            .find(filter)
            .sort(sort)
            // No projection: events after the version loaded rarely carry a snapshot, and
            // leaving fields out costs the SecantusDB server more than sending them.
            .batch_size(MAX_BATCH as u32)
            .await;
        let mut cursor = match cursor {
            Ok(cursor) => cursor,
            Err(error) => {
                for load in batch {
                    load.finish(Loaded::Failed(error.clone()));
                }
                return;
            }
        };
        while let Some(document) = cursor.next().await {
            let document = match document {
                Ok(document) => document,
                Err(error) => {
                    for load in batch {
                        load.finish(Loaded::Failed(error.clone()));
                    }
                    return;
                }
            };
            let Ok(id) = document.get_str("aggregateId") else {
                continue;
            };
            // As the query of one load would: versions from 1.
            if !integer(&document, "version").is_ok_and(|version| version > 0) {
                continue;
            }
            let mut wanted = batch.iter().filter(|load| load.aggregate_id == id);
            // Usually one load; the same aggregate loaded twice gets a copy each.
            if let Some(first) = wanted.next() {
                for load in wanted {
                    load.push(document.clone());
                }
                first.push(document);
            }
        }
        for load in batch {
            load.finish(Loaded::End);
        }
    }
}
