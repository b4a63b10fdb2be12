//! The storage interface: what a provider (in memory, MongoDB, SQL) must do.
//!
//! Events cross it as JSON text ([`RawValue`]): encoded once from the typed event, stored and read
//! back as text, and decoded once into the typed event, never through a `Value` tree.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::watch;

use crate::{Error, Event, Metadata};

/// Where an event sits: its aggregate, its version in that aggregate, its position in the store.
///
/// Handlers receive it beside each event, as evtstore's `meta`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Meta {
    /// The stream, e.g. `"departments"`.
    pub stream: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The event's version in its aggregate: 1 for the first event.
    pub version: u64,
    /// The event's position in the whole store: at least 1, at most `i64::MAX`, never reused
    /// (gaps are allowed). In memory, PostgreSQL and SQLite it increases in the order events
    /// become visible; in MongoDB it is the server's `Timestamp` of the insert as `t << 32 | i`,
    /// which increases with time but not always in commit order (handlers do not rely on it: see
    /// [`Provider::read_after`]).
    pub position: u64,
    /// When the event was appended, to the millisecond.
    pub timestamp: DateTime<Utc>,
    /// What the command's caller said about it ([`crate::Domain::with_metadata`]); empty for
    /// events appended without metadata.
    pub metadata: Arc<Metadata>,
}

/// An event as stored: where it is, and its document `{"type": ..., ...fields}`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoredEvent {
    /// Where the event sits.
    pub meta: Meta,
    /// The event's type name (the document's `type`).
    pub event_type: String,
    /// The event document, including `type`, as JSON text.
    pub data: Box<RawValue>,
}

impl Meta {
    /// Where an event sits; for providers, which read it from their store.
    ///
    /// ```
    /// let meta = evt_core::Meta::new("departments", "d1", 1, 17, evt_core::chrono::Utc::now());
    /// assert_eq!((meta.version, meta.position), (1, 17));
    /// ```
    pub fn new(
        stream: impl Into<String>,
        aggregate_id: impl Into<String>,
        version: u64,
        position: u64,
        timestamp: DateTime<Utc>,
    ) -> Meta {
        Meta {
            stream: stream.into(),
            aggregate_id: aggregate_id.into(),
            version,
            position,
            timestamp,
            metadata: Metadata::none(),
        }
    }
}

impl StoredEvent {
    /// An event as a provider read it: `data` is its document, `type` included.
    ///
    /// ```
    /// use evt_core::{Meta, StoredEvent};
    /// let meta = Meta::new("departments", "d1", 1, 17, evt_core::chrono::Utc::now());
    /// let data = serde_json::value::RawValue::from_string(r#"{"type":"departmentDeleted"}"#.into());
    /// let event = StoredEvent::new(meta, "departmentDeleted", data.unwrap());
    /// assert_eq!(event.value()["type"], "departmentDeleted");
    /// ```
    pub fn new(meta: Meta, event_type: impl Into<String>, data: Box<RawValue>) -> StoredEvent {
        StoredEvent {
            meta,
            event_type: event_type.into(),
            data,
        }
    }

    /// The typed event, decoded from `data` by its stored type.
    pub(crate) fn decode<E: Event>(&self) -> Result<E, serde_json::Error> {
        E::from_json(&self.event_type, &self.data)
    }

    /// The event document as a [`Value`], for inspection; handlers get typed events instead.
    pub fn value(&self) -> Value {
        serde_json::from_str(self.data.get()).expect("a RawValue holds valid JSON")
    }
}

/// Equal when they sit at the same place and their documents are the same JSON, however spaced.
impl PartialEq for StoredEvent {
    fn eq(&self, other: &Self) -> bool {
        self.meta == other.meta
            && self.event_type == other.event_type
            && (self.data.get() == other.data.get() || self.value() == other.value())
    }
}

/// An event on its way into the store.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewEvent {
    /// The event's type name.
    pub event_type: &'static str,
    /// The event document, including `type`, as JSON text.
    pub data: Box<RawValue>,
    /// What the command's caller said about it, stored beside it (not in `data`); empty by
    /// default.
    pub metadata: Arc<Metadata>,
}

impl NewEvent {
    /// An event of type `event_type` with the document `data` (which includes `"type"`).
    ///
    /// ```
    /// let data = serde_json::value::RawValue::from_string(r#"{"type":"departmentDeleted"}"#.into());
    /// let event = evt_core::NewEvent::new("departmentDeleted", data.unwrap());
    /// assert_eq!(event.data.get(), r#"{"type":"departmentDeleted"}"#);
    /// ```
    pub fn new(event_type: &'static str, data: Box<RawValue>) -> NewEvent {
        NewEvent {
            event_type,
            data,
            metadata: Metadata::none(),
        }
    }

    /// An event of type `event_type` with the document `data` (which includes `"type"`), e.g. for
    /// a provider's tests or an import.
    pub fn from_value(event_type: &'static str, data: &Value) -> NewEvent {
        NewEvent::new(
            event_type,
            serde_json::value::to_raw_value(data).expect("a Value always serializes"),
        )
    }
}

/// An aggregate state stored with its last event (evtstore's `persistAggregate`), reused only
/// while the aggregate's snapshot version is still `snapshot_version`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The aggregate's snapshot version (`#[aggregate(snapshot = "1")]`); bump it when the fold changes.
    pub snapshot_version: String,
    /// The version of the last event folded into `state`.
    pub version: u64,
    /// The aggregate state.
    pub state: Value,
}

impl Snapshot {
    /// The state `state` of an aggregate after its event `version`, under `snapshot_version`.
    ///
    /// ```
    /// let snapshot = evt_core::Snapshot::new("1", 12, serde_json::json!({"managers": []}));
    /// assert_eq!(snapshot.to_json()["snapshotVersion"], "1");
    /// ```
    pub fn new(snapshot_version: impl Into<String>, version: u64, state: Value) -> Snapshot {
        Snapshot {
            snapshot_version: snapshot_version.into(),
            version,
            state,
        }
    }

    /// The stored document: `{"snapshotVersion": .., "version": .., "state": ..}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "snapshotVersion": self.snapshot_version,
            "version": self.version,
            "state": self.state,
        })
    }

    /// Reads the stored document; says what is missing when it does not fit.
    pub fn from_json(mut value: Value) -> Result<Snapshot, String> {
        let snapshot_version = value.get("snapshotVersion").and_then(Value::as_str);
        let version = value.get("version").and_then(Value::as_u64);
        match (snapshot_version, version) {
            (Some(snapshot_version), Some(version)) => Ok(Snapshot {
                snapshot_version: snapshot_version.to_owned(),
                version,
                state: value.get_mut("state").map(Value::take).unwrap_or_default(),
            }),
            _ => Err(format!(
                "malformed snapshot: needs a string `snapshotVersion` and an integer `version`, found {value}"
            )),
        }
    }
}

/// Where a handler stands in the store: the position of the last event it handled, and what the
/// provider needs beyond it to go on exactly from there.
///
/// Providers whose positions increase in commit order (memory, PostgreSQL, SQLite) need only the
/// position. MongoDB's positions are filled at insert, not at commit, so its handlers follow a
/// change stream and keep its resume token in `resume`.
///
/// ```
/// use evt_core::Checkpoint;
///
/// let start = Checkpoint::default();
/// assert_eq!(start.position, 0);
/// assert_eq!(Checkpoint::at(42).position, 42);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Checkpoint {
    /// The position of the last event handled (0: none yet); what evtstore's bookmarks store.
    pub position: u64,
    /// The provider's own resume point (MongoDB: a change stream's resume token), as it wrote
    /// it; `None` to go on by position.
    pub resume: Option<String>,
}

impl Checkpoint {
    /// Just after `position`, without a resume point.
    pub fn at(position: u64) -> Checkpoint {
        Checkpoint {
            position,
            resume: None,
        }
    }

    /// Just after `position`, with the provider's resume point `resume`.
    ///
    /// ```
    /// let checkpoint = evt_core::Checkpoint::resuming(42, r#"{"_data":"82.."}"#);
    /// assert_eq!(checkpoint.resume.as_deref(), Some(r#"{"_data":"82.."}"#));
    /// ```
    pub fn resuming(position: u64, resume: impl Into<String>) -> Checkpoint {
        Checkpoint {
            position,
            resume: Some(resume.into()),
        }
    }
}

/// Who may handle events for a bookmark: what [`Provider::lease`] reads and
/// [`Provider::swap_lease`] compares and stores (see [`crate::Handler::lease_time`]).
///
/// A bookmark never leased reads as `Lease::default()`: no holder, epoch 0, beat 0.
///
/// ```
/// use evt_core::Lease;
///
/// let free = Lease::default();
/// let granted = free.granted_to("host-a/412/9f3c");
/// assert_eq!((granted.epoch, granted.beat), (1, 0));
/// assert_eq!(granted.renewed().beat, 1);
/// assert_eq!(granted.released().holder, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The holder's name, or `None` when no one holds it.
    pub holder: Option<String>,
    /// Goes up by one at every grant: with `holder`, the fencing token a bookmark write must
    /// present ([`Provider::set_checkpoint_leased`]).
    pub epoch: u64,
    /// Goes up at every renewal: standbys take the lease over once it has not moved for the
    /// lease time (measured on their own clock, so the processes' clocks need not agree).
    pub beat: u64,
}

impl Lease {
    /// A lease record with these fields, as a provider reads it back.
    pub fn new(holder: Option<String>, epoch: u64, beat: u64) -> Lease {
        Lease {
            holder,
            epoch,
            beat,
        }
    }

    /// This lease granted to `holder`: the next epoch, beat 0.
    #[must_use]
    pub fn granted_to(&self, holder: &str) -> Lease {
        Lease::new(Some(holder.to_owned()), self.epoch + 1, 0)
    }

    /// This lease renewed by its holder: the next beat.
    #[must_use]
    pub fn renewed(&self) -> Lease {
        Lease::new(self.holder.clone(), self.epoch, self.beat + 1)
    }

    /// This lease given up: no holder, the same epoch, the next beat.
    #[must_use]
    pub fn released(&self) -> Lease {
        Lease::new(None, self.epoch, self.beat + 1)
    }
}

/// What a stream holds: how many aggregates and events ([`Provider::stream_summary`]).
///
/// ```
/// let summary = evt_core::StreamSummary::new(2, 7);
/// assert_eq!((summary.aggregates, summary.events), (2, 7));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamSummary {
    /// The number of aggregates with at least one event in the stream.
    pub aggregates: u64,
    /// The number of events in the stream.
    pub events: u64,
}

impl StreamSummary {
    /// A stream of `aggregates` aggregates holding `events` events.
    pub fn new(aggregates: u64, events: u64) -> StreamSummary {
        StreamSummary { aggregates, events }
    }
}

fn no_listing(what: &str) -> Error {
    Error::provider(
        format!("list the {what} of the store"),
        "this provider does not implement it (`Provider::streams`, `Provider::bookmarks` and \
         `Provider::stream_summary` are optional)",
    )
}

fn no_leases(bookmark: &str) -> Error {
    Error::provider(
        format!("lease bookmark `{bookmark}`"),
        "this provider does not keep leases; start the handler with `without_lease()`",
    )
}

/// A store of events, bookmarks and snapshots.
///
/// Contract, checked by the conformance suite (`evt_core::testing`, feature `test-util`):
/// - `append` is atomic and version-checked: all events or none, and [`Error::VersionConflict`]
///   unless the aggregate's last version is `expected_version`;
/// - [`Provider::read_after`] (what handlers read) skips nothing: a reader that goes on from the
///   checkpoints it was given sees every event of its streams once, each append's events
///   together and in version order, whoever wrote them and whenever they commit;
/// - reads return events in ascending version (for one aggregate) or position (across streams).
///   Where positions increase in commit order (memory, PostgreSQL, SQLite: a reader that has seen
///   position `p` never later finds a new event below `p`), `read_after` is `events_from`;
///   where they do not (MongoDB), the provider implements `read_after` on its own.
/// - leases (optional; started handlers use them unless started `without_lease()`):
///   [`Provider::swap_lease`] is an atomic compare-and-swap of the whole [`Lease`] record against
///   every process, and [`Provider::set_checkpoint_leased`] stores a bookmark only while the record
///   has the given holder and epoch, in the same atomic step; taking a lease stores no position.
///
/// Events come back shared (`Arc`), so that a provider holding them in memory hands them out
/// without copying their documents.
#[async_trait]
pub trait Provider: Any + Send + Sync {
    /// How many events one read returns at most.
    fn page_size(&self) -> usize;

    /// The stored position of a bookmark, or `None` if it was never set.
    async fn position(&self, bookmark: &str) -> Result<Option<u64>, Error>;

    /// Stores the position of a bookmark.
    async fn set_position(&self, bookmark: &str, position: u64) -> Result<(), Error>;

    /// Up to `limit` events of the given streams with a position above `after` (0: from the
    /// start), by position; a stream listed twice is read once. `limit` is the caller's, usually
    /// [`Provider::page_size`].
    async fn events_from(
        &self,
        streams: &[&str],
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, Error>;

    /// Up to `limit` events of one aggregate with a version above `after_version`, by version.
    async fn aggregate_events(
        &self,
        stream: &str,
        aggregate_id: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, Error>;

    /// Every event of one aggregate with a version above `after_version`, by version, as a
    /// stream: what loading an aggregate folds, one event at a time (from every provider but a
    /// bare `MemoryProvider`, which folds the events it keeps decoded).
    ///
    /// By default: pages of [`Provider::aggregate_events`] of [`Provider::page_size`] events. A provider
    /// whose driver streams a query's results (MongoDB's cursor) reads them in one query.
    fn aggregate_stream<'a>(
        &'a self,
        stream: &'a str,
        aggregate_id: &'a str,
        after_version: u64,
    ) -> BoxStream<'a, Result<Arc<StoredEvent>, Error>> {
        let limit = self.page_size().max(1);
        let pages =
            futures_util::stream::try_unfold(Some(after_version), move |after| async move {
                let Some(after) = after else {
                    return Ok(None);
                };
                let page = self
                    .aggregate_events(stream, aggregate_id, after, limit)
                    .await?;
                let next = match page.last() {
                    Some(last) if page.len() == limit => Some(last.meta.version),
                    _ => None,
                };
                Ok::<_, Error>(Some((
                    futures_util::stream::iter(page.into_iter().map(Ok)),
                    next,
                )))
            });
        pages.try_flatten().boxed()
    }

    /// The position of the last visible event of the given streams (0 if none): where a tailing
    /// handler starts.
    async fn last_position(&self, streams: &[&str]) -> Result<u64, Error>;

    /// Appends `events` (never empty) to the aggregate, atomically, if its last version is
    /// `expected_version`, and with them the aggregate's `snapshot` after the last of them, if
    /// given. A version conflict stores nothing, the snapshot included.
    ///
    /// Returns the stored events with their versions `expected_version + 1 ..` and positions.
    async fn append(
        &self,
        stream: &str,
        aggregate_id: &str,
        expected_version: u64,
        events: &[NewEvent],
        snapshot: Option<&Snapshot>,
    ) -> Result<Vec<Arc<StoredEvent>>, Error>;

    /// [`Provider::append`] for a caller that does not use the stored events (commands do not):
    /// a provider that would read them back for what the server filled in (MongoDB's positions)
    /// may save that read.
    ///
    /// By default: `append`, its result dropped.
    async fn append_only(
        &self,
        stream: &str,
        aggregate_id: &str,
        expected_version: u64,
        events: &[NewEvent],
        snapshot: Option<&Snapshot>,
    ) -> Result<(), Error> {
        self.append(stream, aggregate_id, expected_version, events, snapshot)
            .await
            .map(drop)
    }

    /// The snapshot stored by the aggregate's latest append that had one.
    async fn snapshot(&self, stream: &str, aggregate_id: &str) -> Result<Option<Snapshot>, Error>;

    /// The next events of the given streams after `from`, at most `limit`, each with the
    /// checkpoint just after it, in the order a handler must handle them. Handlers read through
    /// it; going on from the checkpoints it gives skips nothing (see the trait's contract).
    ///
    /// By default: [`Provider::events_from`] after `from.position`.
    async fn read_after(
        &self,
        streams: &[&str],
        from: &Checkpoint,
        limit: usize,
    ) -> Result<Vec<(Arc<StoredEvent>, Checkpoint)>, Error> {
        let events = self.events_from(streams, from.position, limit).await?;
        Ok(events
            .into_iter()
            .map(|event| {
                let checkpoint = Checkpoint::at(event.meta.position);
                (event, checkpoint)
            })
            .collect())
    }

    /// The stored checkpoint of a bookmark, or `None` if it was never set.
    ///
    /// By default: [`Provider::position`], without a resume point.
    async fn checkpoint(&self, bookmark: &str) -> Result<Option<Checkpoint>, Error> {
        Ok(self.position(bookmark).await?.map(Checkpoint::at))
    }

    /// Stores the checkpoint of a bookmark.
    ///
    /// By default: [`Provider::set_position`] with its position.
    async fn set_checkpoint(&self, bookmark: &str, checkpoint: &Checkpoint) -> Result<(), Error> {
        self.set_position(bookmark, checkpoint.position).await
    }

    /// The checkpoint after the last visible event of the given streams: where a tailing
    /// handler starts.
    ///
    /// By default: [`Provider::last_position`], without a resume point.
    async fn last_checkpoint(&self, streams: &[&str]) -> Result<Checkpoint, Error> {
        Ok(Checkpoint::at(self.last_position(streams).await?))
    }

    /// The lease of a bookmark (`Lease::default()` if it was never leased).
    ///
    /// Leases are optional: by default a provider has none and says so.
    async fn lease(&self, bookmark: &str) -> Result<Lease, Error> {
        Err(no_leases(bookmark))
    }

    /// Replaces the bookmark's lease by `new` if it is `expected` (all three fields), atomically
    /// against every other caller in every process; returns whether it did. `expected ==
    /// Lease::default()` also matches a bookmark never leased.
    async fn swap_lease(
        &self,
        bookmark: &str,
        expected: &Lease,
        new: &Lease,
    ) -> Result<bool, Error> {
        let _ = (expected, new);
        Err(no_leases(bookmark))
    }

    /// Stores the checkpoint of a bookmark if its lease still has `lease`'s holder and epoch
    /// (its beat may have moved), atomically with that check; returns whether it did. The
    /// fencing that keeps a holder that lost its lease from moving the bookmark.
    async fn set_checkpoint_leased(
        &self,
        bookmark: &str,
        checkpoint: &Checkpoint,
        lease: &Lease,
    ) -> Result<bool, Error> {
        let _ = (checkpoint, lease);
        Err(no_leases(bookmark))
    }

    /// The names of the streams that hold at least one event, sorted: what a tool that reads the
    /// whole store (an export, a status report) goes through.
    ///
    /// Optional: by default a provider cannot list them and says so.
    async fn streams(&self) -> Result<Vec<String>, Error> {
        Err(no_listing("streams"))
    }

    /// Every stored bookmark with its position, sorted by name (a bookmark that only has a
    /// lease, and no position yet, is not listed).
    ///
    /// Optional: by default a provider cannot list them and says so.
    async fn bookmarks(&self) -> Result<Vec<(String, u64)>, Error> {
        Err(no_listing("bookmarks"))
    }

    /// How many aggregates and events `stream` holds (zero for a stream with no event).
    ///
    /// Optional: by default a provider cannot count them and says so.
    async fn stream_summary(&self, stream: &str) -> Result<StreamSummary, Error> {
        let _ = stream;
        Err(no_listing("aggregates and events of a stream"))
    }

    /// How many events of the given streams have a position above `after`: how far a bookmark
    /// at `after` is behind.
    ///
    /// By default: pages of [`Provider::events_from`], counted; a provider that can count in one
    /// query does so.
    async fn count_after(&self, streams: &[&str], after: u64) -> Result<u64, Error> {
        let limit = self.page_size().max(1);
        let (mut after, mut count) = (after, 0);
        loop {
            let page = self.events_from(streams, after, limit).await?;
            count += page.len() as u64;
            match page.last() {
                Some(last) if page.len() == limit => after = last.meta.position,
                _ => return Ok(count),
            }
        }
    }

    /// A signal that changes after each append made through this provider value, so that a
    /// started handler in the same process wakes at once instead of waiting for its next poll.
    /// (MongoDB's changes after every append to its events collection, from any process.)
    fn subscribe(&self) -> Option<watch::Receiver<u64>> {
        None
    }
}

impl std::fmt::Debug for dyn Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("page_size", &self.page_size())
            .finish_non_exhaustive()
    }
}
