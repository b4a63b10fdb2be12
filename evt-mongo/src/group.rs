//! Group commit of one-event appends: inserts that arrive while another is on its way to the
//! server wait for it and then go together, as one unordered `insertMany` under the appends'
//! write concern. Concurrent commands share a round trip and the server's journal write; a lone
//! writer sends each insert at once, alone.
//!
//! Each document keeps its own outcome: an unordered `insertMany` inserts every document it can
//! and reports each refused one by its index (MongoDB's documented behaviour), so a version
//! taken by another writer fails only the append that wanted it.

use std::mem;
use std::sync::{Arc, Mutex, PoisonError};

use mongodb::Collection;
use mongodb::bson::Document;
use mongodb::error::{Error, ErrorKind};
use mongodb::options::WriteConcern;
use tokio::sync::oneshot;

use crate::append;

/// At most this many documents go in one `insertMany`; the rest wait for the next.
const MAX_BATCH: usize = 1_000;

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

/// The inserts of one collection, under one write concern.
pub(crate) struct InsertGroup {
    events: Collection<Document>,
    write_concern: WriteConcern,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    /// Whether a task is sending batches (and will take what is pending).
    sending: bool,
}

struct Pending {
    document: Document,
    answer: oneshot::Sender<Result<(), Refused>>,
}

impl std::fmt::Debug for InsertGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("InsertGroup")
            .field("pending", &queue.pending.len())
            .field("sending", &queue.sending)
            .finish()
    }
}

impl InsertGroup {
    pub(crate) fn new(events: Collection<Document>, write_concern: WriteConcern) -> Arc<Self> {
        Arc::new(InsertGroup {
            events,
            write_concern,
            queue: Mutex::default(),
        })
    }

    /// Inserts `document`, alone or with the inserts that wait beside it.
    pub(crate) async fn insert(self: &Arc<Self>, document: Document) -> Result<(), Refused> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.pending.push(Pending { document, answer });
            !mem::replace(&mut queue.sending, true)
        };
        if start {
            // A task of its own, so that a caller that stops waiting never strands the others.
            tokio::spawn(self.clone().send_batches());
        }
        answered.await.unwrap_or(Err(Refused::Abandoned))
    }

    /// Sends what is pending, batch after batch, until nothing is.
    async fn send_batches(self: Arc<Self>) {
        let sending = Sending { group: &self };
        loop {
            let batch = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                if queue.pending.is_empty() {
                    queue.sending = false;
                    mem::forget(sending);
                    return;
                }
                let at = queue.pending.len().min(MAX_BATCH);
                let rest = queue.pending.split_off(at);
                mem::replace(&mut queue.pending, rest)
            };
            tracing::trace!(
                documents = batch.len(),
                "sending one-event appends together"
            );
            let outcomes = self.send(&batch).await;
            for (pending, outcome) in batch.into_iter().zip(outcomes) {
                // A caller that stopped waiting does not need its answer.
                let _ = pending.answer.send(outcome);
            }
        }
    }

    /// One batch: `insertOne` for one document, an unordered `insertMany` for several; the
    /// outcome of each document, in order.
    async fn send(&self, batch: &[Pending]) -> Vec<Result<(), Refused>> {
        if let [one] = batch {
            let inserted = self
                .events
                .insert_one(&one.document)
                .write_concern(self.write_concern.clone())
                .await;
            return vec![inserted.map(drop).map_err(refused)];
        }
        let inserted = self
            .events
            .insert_many(batch.iter().map(|pending| &pending.document))
            .ordered(false)
            .write_concern(self.write_concern.clone())
            .await;
        let error = match inserted {
            Ok(_) => return batch.iter().map(|_| Ok(())).collect(),
            Err(error) => error,
        };
        let ErrorKind::InsertMany(failure) = error.kind.as_ref() else {
            // The whole batch failed (no connection, a lost answer): each document settles.
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

/// Dropped only when the task sending batches is dropped mid-batch (its runtime shut down):
/// the waiting inserts are answered `Abandoned` and the next insert starts a new task.
struct Sending<'a> {
    group: &'a InsertGroup,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        let mut queue = self
            .group
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        queue.pending.clear();
        queue.sending = false;
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
