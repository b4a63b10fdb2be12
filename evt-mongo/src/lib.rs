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
//! # Documents: evtstore's, in place
//!
//! The provider reads and writes evtstore's MongoDB store as it is, beside a running evtstore:
//! - events: `{stream, aggregateId, version, position: Timestamp, timestamp: Date, event: {type, ...}}`,
//!   plus two fields evtstore ignores: `appendId` (see *Unknown outcomes*) and, on the last event
//!   of an append of an aggregate with snapshots, `snapshot: {snapshotVersion, version, state}`;
//! - bookmarks: `{bookmark, position: Timestamp}`, plus `resumeToken` (see *Handlers*);
//! - the indexes of evtstore's `migrate`, under its names: `stream-id-version-index` (unique
//!   `{stream, aggregateId, version}`), `stream-position-index` (unique `{stream, position}`),
//!   `bookmark-index` (unique `{bookmark}`). [`MongoProvider::migrate`] creates those missing and
//!   accepts an index with the same keys under another name.
//!
//! A position is the server's `Timestamp` of the insert (evtstore writes `Timestamp(0, 0)`, which
//! the server fills); [`evt_core::Meta::position`] is its `t << 32 | i`.
//!
//! # Moving from evtstore
//!
//! Point the provider at evtstore's database and collections ([`MongoProvider::events_collection`],
//! [`MongoProvider::bookmarks_collection`]; evtstore's guide names them `events` and `bookmarks`,
//! the defaults here) and run [`MongoProvider::migrate`] (it finds evtstore's indexes and changes
//! nothing). Events, aggregates and bookmarks carry over; evtstore and `evt` can run side by side
//! on the same store, each reading the other's events. An evtstore bookmark is picked up at its
//! position (see *Handlers* for what a handler does from there).
//!
//! # Appends
//!
//! One event: a single insert, as evtstore's, under the unique index on
//! `{stream, aggregateId, version}` (a lost race is [`Error::VersionConflict`]): no transaction,
//! no document that every append writes. Commands append through [`Provider::append_only`], one
//! round trip; [`Provider::append`] reads the event back for the position the server gave it.
//! One-event appends that arrive while another is on its way to the server (concurrent commands
//! of one provider and its clones) wait for it and then go together as one unordered
//! `insertMany`: one round trip and one journal write for all of them. An unordered insert
//! inserts every document it can and names each refused one, so each append keeps its own
//! answer; a lone writer sends each insert at once, alone. (As with any request, an append whose
//! future is dropped may still be stored: once queued, it goes with its batch.)
//! Several events: one transaction, all or none, which also checks the aggregate's version.
//! Transient errors and network errors are retried with the same `appendId`. An aggregate loads
//! in one query ([`Provider::aggregate_stream`]), its results streamed by the driver's cursor; loads
//! from the first event that arrive while another load is on its way go together, as one query
//! of `aggregateId: {$in: [...]}` per stream, each load getting its own events.
//!
//! # Handlers: change streams, nothing skipped
//!
//! Positions are filled at insert, not at commit, so an event can become visible after a later
//! position was read (that is how evtstore's handlers lose events when writers race). Handlers
//! here read through [`Provider::read_after`], which
//! 1. reads history by position, but only below a *cut* [`MongoProvider::commit_margin`] in the
//!    past (default [`DEFAULT_COMMIT_MARGIN`]): every event below it has committed, since an
//!    insert commits within that time of taking its position (a transaction that takes longer is
//!    aborted by the server's `transactionLifetimeLimitSeconds`, 60 s by default). A checkpoint
//!    there is a position alone;
//! 2. then opens a change stream of the events collection *now*: whatever commits from then on
//!    comes through it, in commit order. What committed before it opened is read by position
//!    above the cut (these reads come after the stream opened, so they see all of it); an event
//!    both read and streamed is handled once. These reads stop at the stream's opening (plus a
//!    second): anything with a later position committed after it and comes, in commit order,
//!    through the stream. The checkpoint keeps the stream's first token
//!    (`{token, since, recent: true, before}`), so that a restart in this phase reads by
//!    position again and resumes the stream where it opened;
//! 3. from then on follows the change stream, keeping the resume token of each event in its
//!    checkpoint, stored in the bookmark document as `resumeToken` beside `position`, and resumes
//!    from it after a restart.
//!
//! A change stream is never started in the past (`startAtOperationTime`): that would need the
//! oplog to reach back the margin, and the SecantusDB test server scans its whole oplog to do it.
//!
//! *At least once*: a handler stores its bookmark after each page, so after a crash the events of
//! the page it was handling are handled again; a restart during step 2 may also handle again
//! events that both the reads and the stream gave. Apart from that, each event is handled once.
//!
//! *History gone*: when a change stream cannot resume (its token has left the oplog, or the
//! server does not know it), the handler logs a warning and reads again from the highest
//! position the stream gave (`since` in the checkpoint, at most the token's time) minus the commit
//! margin; the events of that window are handled a second time, none is skipped.
//!
//! The bookmark's `position` is the highest position handled, so that evtstore reads it as it
//! expects; evtstore's handlers, reading by position, still skip late commits that `evt`'s do not.
//!
//! # Wake-ups across processes
//!
//! A started handler subscribes to a change stream of inserts (one per provider and its clones),
//! so an append in any process wakes it within milliseconds; polling remains as the fallback.
//!
//! # Unknown outcomes
//!
//! Each append writes a random `appendId` on its events, the same on every try. When a try
//! failed after something was sent (a lost connection, a commit whose result is unknown), or a
//! unique index refused it, the event at the next version says what happened: its own
//! `appendId` means a try was stored (the append succeeds, stored once); another writer's is a
//! [`Error::VersionConflict`]. When no try gets through and one may have been applied, it is
//! [`Error::AppendUnknown`], which commands never retry.
//!
//! # Durability
//!
//! Appends use the write concern `{w: "majority", j: true}` (see
//! [`MongoProvider::write_concern`]): an acknowledged append is in the journal of a majority of
//! the replica set and survives a crash of the server.
//!
//! # TLS
//!
//! The official driver's default feature `rustls-tls` is on, so a deployment that requires TLS
//! (MongoDB Atlas, any `mongodb+srv://` URL) is reached as its URL says: `tls=true`, with
//! `tlsCAFile=/path/ca.pem` for a private authority and `tlsCertificateKeyFile=/path/client.pem`
//! for a client certificate. For OpenSSL instead, depend on `mongodb` with its `openssl-tls`
//! feature in your own `Cargo.toml`.
//!
//! # Requirements
//!
//! A replica set (a single-node one is enough) or a sharded cluster: change streams and
//! transactions need one.

mod append;
mod documents;
mod feed;
mod group;
mod migrate;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_trait::async_trait;
use evt_core::__private::util::redact_url;
use evt_core::{
    Checkpoint, Error, Lease, NewEvent, Provider, Snapshot, StoredEvent, StreamSummary,
};
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::{Acknowledgment, ReadConcern, WriteConcern};
use mongodb::{Client, Collection, Database};
use tokio::sync::watch;

pub use append::MAX_APPEND_ATTEMPTS;
pub use mongodb;

use crate::append::Append;
use crate::documents::{integer, read_position, stored_event, timestamp};
use crate::feed::{Tails, token_bson, token_text};
use crate::group::{InsertGroup, LoadGroup, Loaded};

/// The page size unless [`MongoProvider::limit`] says otherwise.
pub const DEFAULT_LIMIT: usize = 1000;

/// How long after taking its position an insert is sure to have committed, unless
/// [`MongoProvider::commit_margin`] says otherwise: twice MongoDB's default
/// `transactionLifetimeLimitSeconds` (60 s).
pub const DEFAULT_COMMIT_MARGIN: Duration = Duration::from_secs(120);

/// Events, bookmarks and snapshots in a MongoDB database.
#[derive(Debug, Clone)]
pub struct MongoProvider {
    database: Database,
    events: Collection<Document>,
    bookmarks: Collection<Document>,
    limit: usize,
    write_concern: WriteConcern,
    commit_margin: Duration,
    appended: watch::Sender<u64>,
    watching: Arc<AtomicBool>,
    tails: Tails,
    /// One-event appends, sent together when they arrive together.
    inserts: Arc<InsertGroup>,
    /// Aggregate loads, read together when they arrive together.
    loads: Arc<LoadGroup>,
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
    /// A provider over `database`, with the collections `events` and `bookmarks` (evtstore's
    /// guide's names).
    pub fn new(database: &Database) -> Self {
        MongoProvider {
            database: database.clone(),
            events: database.collection("events"),
            bookmarks: database.collection("bookmarks"),
            limit: DEFAULT_LIMIT,
            write_concern: durable_write_concern(),
            commit_margin: DEFAULT_COMMIT_MARGIN,
            appended: watch::Sender::new(0),
            watching: Arc::default(),
            tails: Tails::default(),
            inserts: InsertGroup::new(database.collection("events"), durable_write_concern()),
            loads: LoadGroup::new(database.collection("events")),
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
    #[must_use]
    pub fn events_collection(mut self, name: &str) -> Self {
        self.events = self.database.collection(name);
        self.inserts = InsertGroup::new(self.events.clone(), self.write_concern.clone());
        self.loads = LoadGroup::new(self.events.clone());
        self
    }

    /// Stores bookmarks in the collection `name`.
    #[must_use]
    pub fn bookmarks_collection(mut self, name: &str) -> Self {
        self.bookmarks = self.database.collection(name);
        self
    }

    /// Reads pages of at most `limit` events (at least 1).
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// Commits appends with `write_concern` instead of [`durable_write_concern`]. A weaker one
    /// (e.g. `w: 1` without `j`) is faster, but an acknowledged append may be lost in a crash.
    #[must_use]
    pub fn write_concern(mut self, write_concern: WriteConcern) -> Self {
        self.inserts = InsertGroup::new(self.events.clone(), write_concern.clone());
        self.write_concern = write_concern;
        self
    }

    /// How long after taking its position an insert is sure to have committed (at least 1 s;
    /// default [`DEFAULT_COMMIT_MARGIN`]). Handlers read history by position only below "now
    /// minus this margin", and the rest through a change stream (see the crate's docs); raise it
    /// if the server's `transactionLifetimeLimitSeconds` is raised.
    #[must_use]
    pub fn commit_margin(mut self, margin: Duration) -> Self {
        self.commit_margin = margin.max(Duration::from_secs(1));
        self
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Creates the indexes the provider relies on, by evtstore's names, where no index with the
    /// same keys exists; says what it created. Idempotent: run it on every start.
    ///
    /// ```no_run
    /// # async fn run(provider: evt_mongo::MongoProvider) -> Result<(), evt_core::Error> {
    /// for change in provider.migrate().await? {
    ///     println!("{change}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn migrate(&self) -> Result<Vec<String>, Error> {
        migrate::migrate(&self.events, &self.bookmarks).await
    }

    async fn find_events(
        &self,
        operation: impl Fn() -> String,
        filter: Document,
        sort: Document,
        limit: usize,
        read_concern: Option<ReadConcern>,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let mut find = self
            .events
            .find(filter)
            .sort(sort)
            .projection(doc! {"snapshot": 0, "appendId": 0})
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .batch_size(u32::try_from(limit).unwrap_or(u32::MAX));
        if let Some(read_concern) = read_concern {
            find = find.read_concern(read_concern);
        }
        let cursor = find.await.map_err(|e| failed(operation(), e))?;
        let documents: Vec<Document> = cursor
            .try_collect()
            .await
            .map_err(|e| failed(operation(), e))?;
        documents
            .iter()
            .map(|row| stored_event(row).map(Arc::new))
            .collect()
    }
}

/// The update that stores `checkpoint` in a bookmark document.
fn checkpoint_update(checkpoint: &Checkpoint) -> Result<Document, String> {
    let position = timestamp(checkpoint.position);
    Ok(match &checkpoint.resume {
        Some(text) => doc! {"$set": {"position": position, "resumeToken": token_bson(text)?}},
        None => doc! {"$set": {"position": position}, "$unset": {"resumeToken": ""}},
    })
}

/// A lease's epoch or beat as stored (an `i64`; they never get near its end).
fn lease_number(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[async_trait]
impl Provider for MongoProvider {
    fn page_size(&self) -> usize {
        self.limit
    }

    async fn position(&self, bookmark: &str) -> Result<Option<u64>, Error> {
        Ok(self
            .checkpoint(bookmark)
            .await?
            .map(|checkpoint| checkpoint.position))
    }

    async fn set_position(&self, bookmark: &str, position: u64) -> Result<(), Error> {
        self.set_checkpoint(bookmark, &Checkpoint::at(position))
            .await
    }

    async fn checkpoint(&self, bookmark: &str) -> Result<Option<Checkpoint>, Error> {
        let operation = || format!("read bookmark `{bookmark}`");
        let found = self
            .bookmarks
            .find_one(doc! {"bookmark": bookmark})
            .await
            .map_err(|e| failed(operation(), e))?;
        // A document with a lease but no position yet is a bookmark never stored.
        let Some(document) = found.filter(|document| document.contains_key("position")) else {
            return Ok(None);
        };
        let position = read_position(&document, "position")
            .map_err(|problem| Error::provider(operation(), problem))?;
        let resume = match document.get("resumeToken") {
            None | Some(Bson::Null) => None,
            Some(token) => Some(token_text(token)),
        };
        let mut checkpoint = Checkpoint::at(position);
        checkpoint.resume = resume;
        Ok(Some(checkpoint))
    }

    async fn set_checkpoint(&self, bookmark: &str, checkpoint: &Checkpoint) -> Result<(), Error> {
        let operation = || {
            format!(
                "store bookmark `{bookmark}` at position {}",
                checkpoint.position
            )
        };
        let update = checkpoint_update(checkpoint)
            .map_err(|problem| Error::provider(operation(), problem))?;
        self.bookmarks
            .update_one(doc! {"bookmark": bookmark}, update)
            .upsert(true)
            .await
            .map_err(|e| failed(operation(), e))?;
        Ok(())
    }

    async fn lease(&self, bookmark: &str) -> Result<Lease, Error> {
        let operation = || format!("read the lease of bookmark `{bookmark}`");
        let found = self
            .bookmarks
            .find_one(doc! {"bookmark": bookmark})
            .projection(doc! {"leaseHolder": 1, "leaseEpoch": 1, "leaseBeat": 1})
            .await
            .map_err(|e| failed(operation(), e))?;
        let Some(document) = found.filter(|document| document.contains_key("leaseEpoch")) else {
            return Ok(Lease::default());
        };
        let read =
            |key| integer(&document, key).map_err(|problem| Error::provider(operation(), problem));
        let holder = document.get_str("leaseHolder").ok().map(str::to_owned);
        Ok(Lease::new(holder, read("leaseEpoch")?, read("leaseBeat")?))
    }

    /// The lease is kept in the bookmark's document (`leaseHolder`, `leaseEpoch`, `leaseBeat`),
    /// so that a fenced bookmark write is one document's atomic update; written under the
    /// majority write concern whatever the provider's, so that a failover does not undo a grant;
    /// needs the unique index on `bookmark` that `migrate` makes.
    async fn swap_lease(
        &self,
        bookmark: &str,
        expected: &Lease,
        new: &Lease,
    ) -> Result<bool, Error> {
        let operation = || format!("swap the lease of bookmark `{bookmark}`");
        let holder = |lease: &Lease| lease.holder.clone().map_or(Bson::Null, Bson::String);
        let update = doc! {"$set": {
            "leaseHolder": holder(new),
            "leaseEpoch": lease_number(new.epoch),
            "leaseBeat": lease_number(new.beat),
        }};
        // Every grant raises the epoch from 0, so a record equal to the default is one never
        // written: the document is missing or has no lease fields.
        let free = *expected == Lease::default();
        let filter = if free {
            doc! {"bookmark": bookmark, "leaseEpoch": {"$exists": false}}
        } else {
            doc! {
                "bookmark": bookmark,
                "leaseHolder": holder(expected),
                "leaseEpoch": lease_number(expected.epoch),
                "leaseBeat": lease_number(expected.beat),
            }
        };
        match self
            .bookmarks
            .update_one(filter, update)
            .upsert(free)
            .write_concern(WriteConcern::majority())
            .await
        {
            Ok(result) => Ok(result.matched_count == 1 || result.upserted_id.is_some()),
            // The upsert of a free lease found the document leased: the unique index refuses it.
            Err(error) if free && append::is_duplicate_key(&error) => Ok(false),
            Err(error) => Err(failed(operation(), error)),
        }
    }

    async fn set_checkpoint_leased(
        &self,
        bookmark: &str,
        checkpoint: &Checkpoint,
        lease: &Lease,
    ) -> Result<bool, Error> {
        let operation = || {
            format!(
                "store bookmark `{bookmark}` at position {} under its lease",
                checkpoint.position
            )
        };
        let Some(holder) = lease.holder.as_deref() else {
            return Ok(false);
        };
        let filter = doc! {
            "bookmark": bookmark,
            "leaseHolder": holder,
            "leaseEpoch": lease_number(lease.epoch),
        };
        let result = self
            .bookmarks
            .update_one(
                filter,
                checkpoint_update(checkpoint)
                    .map_err(|problem| Error::provider(operation(), problem))?,
            )
            .await
            .map_err(|e| failed(operation(), e))?;
        Ok(result.matched_count == 1)
    }

    /// By position, as evtstore reads: an event that commits late, below a position already
    /// read, is not found by a later read after that position. Handlers use
    /// [`Provider::read_after`], which finds it.
    async fn streams(&self) -> Result<Vec<String>, Error> {
        let operation = || format!("list the streams of `{}`", self.events.name());
        let values = self
            .events
            .distinct("stream", doc! {})
            .await
            .map_err(|e| failed(operation(), e))?;
        let mut names = values
            .into_iter()
            .map(|value| match value {
                Bson::String(name) => Ok(name),
                other => Err(format!("a `stream` is not a string: {other}")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|problem| Error::provider(operation(), problem))?;
        names.sort();
        Ok(names)
    }

    async fn bookmarks(&self) -> Result<Vec<(String, u64)>, Error> {
        let operation = || format!("list the bookmarks of `{}`", self.bookmarks.name());
        let documents: Vec<Document> = self
            .bookmarks
            .find(doc! {"position": {"$exists": true}})
            .sort(doc! {"bookmark": 1})
            .projection(doc! {"bookmark": 1, "position": 1})
            .await
            .map_err(|e| failed(operation(), e))?
            .try_collect()
            .await
            .map_err(|e| failed(operation(), e))?;
        documents
            .iter()
            .map(|document| {
                let name = document
                    .get_str("bookmark")
                    .map_err(|_| "a bookmark document has no string `bookmark`".to_owned())?;
                Ok((name.to_owned(), read_position(document, "position")?))
            })
            .collect::<Result<_, String>>()
            .map_err(|problem| Error::provider(operation(), problem))
    }

    async fn stream_summary(&self, stream: &str) -> Result<StreamSummary, Error> {
        let operation = || format!("count the aggregates and events of stream `{stream}`");
        let events = self
            .events
            .count_documents(doc! {"stream": stream})
            .await
            .map_err(|e| failed(operation(), e))?;
        let counted: Vec<Document> = self
            .events
            .aggregate([
                doc! {"$match": {"stream": stream}},
                doc! {"$group": {"_id": "$aggregateId"}},
                doc! {"$count": "aggregates"},
            ])
            .await
            .map_err(|e| failed(operation(), e))?
            .try_collect()
            .await
            .map_err(|e| failed(operation(), e))?;
        let aggregates = match counted.first() {
            Some(document) => integer(document, "aggregates")
                .map_err(|problem| Error::provider(operation(), problem))?,
            None => 0,
        };
        Ok(StreamSummary::new(aggregates, events))
    }

    async fn count_after(&self, streams: &[&str], after: u64) -> Result<u64, Error> {
        self.events
            .count_documents(
                doc! {"stream": {"$in": streams}, "position": {"$gt": timestamp(after)}},
            )
            .await
            .map_err(|e| {
                failed(
                    format!("count events of {streams:?} after position {after}"),
                    e,
                )
            })
    }

    async fn events_from(
        &self,
        streams: &[&str],
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        self.find_events(
            || format!("read events of {streams:?} after position {after}"),
            doc! {"stream": {"$in": streams}, "position": {"$gt": timestamp(after)}},
            doc! {"position": 1},
            limit,
            None,
        )
        .await
    }

    async fn read_after(
        &self,
        streams: &[&str],
        from: &Checkpoint,
        limit: usize,
    ) -> Result<Vec<(Arc<StoredEvent>, Checkpoint)>, Error> {
        self.read_feed(streams, from, limit.max(1)).await
    }

    async fn last_checkpoint(&self, streams: &[&str]) -> Result<Checkpoint, Error> {
        self.feed_end(streams).await
    }

    async fn aggregate_events(
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
            None,
        )
        .await
    }

    /// One query, its results streamed by the driver's cursor in batches of
    /// [`MongoProvider::limit`] (evtstore reads an aggregate in one query too).
    fn aggregate_stream<'a>(
        &'a self,
        stream: &'a str,
        aggregate_id: &'a str,
        after_version: u64,
    ) -> BoxStream<'a, Result<Arc<StoredEvent>, Error>> {
        let operation = move || {
            format!("read events of `{stream}/{aggregate_id}` after version {after_version}")
        };
        if after_version > 0 {
            // After a snapshot or a cached version: its own query, with that bound.
            let find = self
                .events
                .find(doc! {
                    "stream": stream,
                    "aggregateId": aggregate_id,
                    "version": {"$gt": after_version as i64},
                })
                .sort(doc! {"version": 1})
                // No projection: events after the version loaded rarely carry a snapshot, and
                // leaving fields out costs the SecantusDB server more than sending them.
                .batch_size(u32::try_from(self.limit).unwrap_or(u32::MAX));
            return futures_util::stream::once(find.into_future())
                .map(move |cursor| cursor.map_err(|e| failed(operation(), e)))
                .map_ok(move |cursor| {
                    cursor.map(move |document| {
                        let document = document.map_err(|e| failed(operation(), e))?;
                        stored_event(&document).map(Arc::new)
                    })
                })
                .try_flatten()
                .boxed();
        }
        // From the first event, through the load group: loads that arrive together are one
        // query (see `group.rs`).
        let received = self.loads.load(stream, aggregate_id);
        let chunks = futures_util::stream::unfold(Some(received), move |received| async move {
            let mut received = received?;
            let (chunk, next) = match received.recv().await {
                Some(Loaded::Events(documents)) => {
                    let events = documents
                        .iter()
                        .map(|document| stored_event(document).map(Arc::new))
                        .collect();
                    (events, Some(received))
                }
                Some(Loaded::End) => return None,
                Some(Loaded::Failed(error)) => (vec![Err(failed(operation(), error))], None),
                // Nothing was read or changed: another try may pass.
                None => (
                    vec![Err(Error::transient(
                        operation(),
                        "the load was abandoned (the runtime of its batch shut down)",
                    ))],
                    None,
                ),
            };
            Some((futures_util::stream::iter(chunk), next))
        });
        chunks.flatten().boxed()
    }

    async fn last_position(&self, streams: &[&str]) -> Result<u64, Error> {
        let operation = || format!("read the last position of {streams:?}");
        let last = self
            .events
            .find_one(doc! {"stream": {"$in": streams}})
            .sort(doc! {"position": -1})
            .projection(doc! {"position": 1})
            .await
            .map_err(|e| failed(operation(), e))?;
        match last {
            Some(document) => read_position(&document, "position")
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
        let append = Append::new(stream, aggregate_id, expected_version, events, snapshot);
        self.append_events(&append).await
    }

    /// Without reading back the positions the server gave the events: one round trip for one
    /// event. (An append above the aggregate's last version, which `evt`'s commands never make,
    /// is then not caught: evtstore does not catch it either.)
    async fn append_only(
        &self,
        stream: &str,
        aggregate_id: &str,
        expected_version: u64,
        events: &[NewEvent],
        snapshot: Option<&Snapshot>,
    ) -> Result<(), Error> {
        let append = Append {
            read_back: false,
            ..Append::new(stream, aggregate_id, expected_version, events, snapshot)
        };
        self.append_events(&append).await.map(drop)
    }

    async fn snapshot(&self, stream: &str, aggregate_id: &str) -> Result<Option<Snapshot>, Error> {
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
        let receiver = self.appended.subscribe();
        self.watch_appends();
        Some(receiver)
    }
}
