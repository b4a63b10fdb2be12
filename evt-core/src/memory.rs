//! The in-memory provider: the reference implementation, for tests and examples.

use std::any::Any;
use std::collections::HashMap as StdHashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::watch;

use crate::aggregate::decode_event;
use crate::provider::{
    Checkpoint, Lease, Meta, NewEvent, Provider, Snapshot, StoredEvent, StreamSummary,
};
use crate::{Aggregate, Error, Versioned};

/// Maps keyed by stream and aggregate id: a fast hash (foldhash), since a command looks up
/// several and the keys are the application's own.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

/// The page size of [`MemoryProvider::new`].
pub const DEFAULT_LIMIT: usize = 1000;

/// Events, bookmarks and snapshots in process memory.
///
/// Appends are atomic (one lock) and version-checked; reads by aggregate and by position use
/// indexes, never a scan of the whole log.
#[derive(Debug)]
pub struct MemoryProvider {
    state: RwLock<State>,
    limit: usize,
    appended: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// The log: the event at position `p` is `log[p - 1]`. Reads share its events.
    log: Vec<Arc<StoredEvent>>,
    /// Per stream, then per aggregate id: its events.
    aggregates: HashMap<String, HashMap<String, AggregateLog>>,
    /// Per stream: log indexes in position order.
    streams: HashMap<String, Vec<usize>>,
    bookmarks: HashMap<String, u64>,
    leases: HashMap<String, Lease>,
    snapshots: HashMap<(String, String), Snapshot>,
}

/// One aggregate's events.
struct AggregateLog {
    /// Log indexes in version order.
    versions: Vec<usize>,
    /// Its events from the first, decoded into the events of the aggregate type that last
    /// loaded it from the first (an `Arc<Vec<A::Event>>`), side by side in memory, for loads to
    /// clone and fold ([`MemoryProvider::fold`]).
    decoded: Mutex<Option<Box<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for AggregateLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateLog")
            .field("versions", &self.versions)
            .finish_non_exhaustive()
    }
}

impl AggregateLog {
    fn new(versions: Vec<usize>) -> Self {
        AggregateLog {
            versions,
            decoded: Mutex::default(),
        }
    }
}

impl Default for MemoryProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryProvider {
    /// An empty store reading pages of [`DEFAULT_LIMIT`] events.
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_LIMIT)
    }

    /// An empty store reading pages of `limit` events (at least 1).
    pub fn with_limit(limit: usize) -> Self {
        MemoryProvider {
            state: RwLock::default(),
            limit: limit.max(1),
            appended: watch::Sender::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Folds the aggregate's events after its version into it, as a load through
    /// [`Provider::aggregate_stream`] would (what [`crate::Domain`] does for a bare
    /// `MemoryProvider` without upcasters), from events kept decoded side by side: each stored
    /// event is decoded from its JSON once per aggregate type, and a load clones and folds them,
    /// with no `Arc` and no stream item per event (half the time of a long load). The fold, the
    /// application's code, runs after the locks are let go.
    pub(crate) fn fold<A: Aggregate>(&self, aggregate: &mut Versioned<A>) -> Result<(), Error> {
        let (kept, after) = {
            let state = self.read();
            let Some(log) = state
                .aggregates
                .get(A::STREAM)
                .and_then(|ids| ids.get(&aggregate.id))
            else {
                return Ok(());
            };
            let versions = &log.versions;
            let after = usize::try_from(aggregate.version)
                .map_or(versions.len(), |v| v.min(versions.len()));
            if after == versions.len() {
                return Ok(());
            }
            let mut decoded = log.decoded.lock().unwrap_or_else(PoisonError::into_inner);
            let kept_len = decoded
                .as_ref()
                .and_then(|kept| kept.downcast_ref::<Arc<Vec<A::Event>>>())
                .map_or(0, |kept| kept.len());
            if kept_len < after {
                // From a snapshot or a cached aggregate, past what loads from the first event
                // kept (of this type): these events alone, leaving what is kept as it is.
                let stored: Vec<Arc<StoredEvent>> = versions[after..]
                    .iter()
                    .map(|&index| state.log[index].clone())
                    .collect();
                drop(decoded);
                drop(state);
                for event in &stored {
                    aggregate.state.fold(decode_event::<A>(event)?);
                    aggregate.version = event.meta.version;
                }
                return Ok(());
            }
            // Here `after` is at most what is kept, so a kept list of another type (`kept_len`
            // 0) is replaced only by a load from the first event.
            if !decoded
                .as_ref()
                .is_some_and(|kept| kept.is::<Arc<Vec<A::Event>>>())
            {
                *decoded = Some(Box::new(Arc::new(Vec::<A::Event>::new())));
            }
            let kept = decoded
                .as_mut()
                .and_then(|kept| kept.downcast_mut::<Arc<Vec<A::Event>>>())
                .expect("kept just above");
            if kept.len() < versions.len() {
                // A copy only if a load still folds the list it shares.
                let events = Arc::make_mut(kept);
                for &index in &versions[events.len()..] {
                    events.push(decode_event::<A>(&state.log[index])?);
                }
            }
            (kept.clone(), after)
        };
        for event in &kept[after..] {
            aggregate.state.fold(event.clone());
        }
        aggregate.version = kept.len() as u64;
        Ok(())
    }
}

impl State {
    fn versions(&self, stream: &str, aggregate_id: &str) -> &[usize] {
        self.aggregates
            .get(stream)
            .and_then(|ids| ids.get(aggregate_id))
            .map_or(&[], |log| log.versions.as_slice())
    }

    /// Up to `limit` events of one aggregate with a version above `after_version`, by version.
    fn aggregate_events(
        &self,
        stream: &str,
        aggregate_id: &str,
        after_version: u64,
        limit: usize,
    ) -> Vec<Arc<StoredEvent>> {
        let versions = self.versions(stream, aggregate_id);
        let start =
            usize::try_from(after_version).map_or(versions.len(), |v| v.min(versions.len()));
        let end = start.saturating_add(limit).min(versions.len());
        versions[start..end]
            .iter()
            .map(|&i| self.log[i].clone())
            .collect()
    }

    /// Adds the log indexes `new` to their stream's and their aggregate's lists: one lookup per
    /// map where the lists exist, as they do for every append but an aggregate's first.
    fn push_indexes(&mut self, stream: &str, aggregate_id: &str, new: Range<usize>) {
        match self.streams.get_mut(stream) {
            Some(indexes) => indexes.extend(new.clone()),
            None => {
                self.streams
                    .insert(stream.to_owned(), new.clone().collect());
            }
        }
        match self.aggregates.get_mut(stream) {
            Some(ids) => match ids.get_mut(aggregate_id) {
                Some(log) => log.versions.extend(new),
                None => {
                    ids.insert(aggregate_id.to_owned(), AggregateLog::new(new.collect()));
                }
            },
            None => {
                let log = AggregateLog::new(new.collect());
                let ids = HashMap::from_iter([(aggregate_id.to_owned(), log)]);
                self.aggregates.insert(stream.to_owned(), ids);
            }
        }
    }

    /// Index lists of the streams, each cut to the entries with a position above `after`.
    fn stream_tails(&self, streams: &[&str], after: u64) -> Vec<&[usize]> {
        streams
            .iter()
            .filter_map(|stream| self.streams.get(*stream))
            .map(|indexes| {
                // Position p is index p - 1: keep indexes >= after.
                let start = indexes.partition_point(|&i| (i as u64) < after);
                &indexes[start..]
            })
            .filter(|tail| !tail.is_empty())
            .collect()
    }
}

#[async_trait]
impl Provider for MemoryProvider {
    fn page_size(&self) -> usize {
        self.limit
    }

    async fn position(&self, bookmark: &str) -> Result<Option<u64>, Error> {
        Ok(self.read().bookmarks.get(bookmark).copied())
    }

    async fn set_position(&self, bookmark: &str, position: u64) -> Result<(), Error> {
        self.write().bookmarks.insert(bookmark.to_owned(), position);
        Ok(())
    }

    async fn lease(&self, bookmark: &str) -> Result<Lease, Error> {
        Ok(self
            .read()
            .leases
            .get(bookmark)
            .cloned()
            .unwrap_or_default())
    }

    async fn swap_lease(
        &self,
        bookmark: &str,
        expected: &Lease,
        new: &Lease,
    ) -> Result<bool, Error> {
        let mut state = self.write();
        let current = state.leases.entry(bookmark.to_owned()).or_default();
        let swapped = current == expected;
        if swapped {
            *current = new.clone();
        }
        Ok(swapped)
    }

    async fn set_checkpoint_leased(
        &self,
        bookmark: &str,
        checkpoint: &Checkpoint,
        lease: &Lease,
    ) -> Result<bool, Error> {
        let mut state = self.write();
        let held = state.leases.get(bookmark).is_some_and(|current| {
            current.holder.is_some()
                && current.holder == lease.holder
                && current.epoch == lease.epoch
        });
        if held {
            state
                .bookmarks
                .insert(bookmark.to_owned(), checkpoint.position);
        }
        Ok(held)
    }

    async fn events_from(
        &self,
        streams: &[&str],
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let state = self.read();
        let mut distinct: Vec<&str> = Vec::with_capacity(streams.len());
        for stream in streams {
            if !distinct.contains(stream) {
                distinct.push(stream);
            }
        }
        let mut tails = state.stream_tails(&distinct, after);
        let mut events = Vec::with_capacity(limit.min(64));
        // A k-way merge of the streams' position-ordered indexes.
        while events.len() < limit {
            let Some((k, _)) = tails
                .iter()
                .enumerate()
                .filter_map(|(k, tail)| tail.first().map(|&i| (k, i)))
                .min_by_key(|&(_, i)| i)
            else {
                break;
            };
            let index = tails[k][0];
            tails[k] = &tails[k][1..];
            events.push(state.log[index].clone());
        }
        Ok(events)
    }

    async fn aggregate_events(
        &self,
        stream: &str,
        aggregate_id: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        Ok(self
            .read()
            .aggregate_events(stream, aggregate_id, after_version, limit))
    }

    /// The aggregate's events under one read lock, handed out one at a time: the log is in
    /// memory, so there is nothing to gain from pages.
    fn aggregate_stream<'a>(
        &'a self,
        stream: &'a str,
        aggregate_id: &'a str,
        after_version: u64,
    ) -> BoxStream<'a, Result<Arc<StoredEvent>, Error>> {
        let events = self
            .read()
            .aggregate_events(stream, aggregate_id, after_version, usize::MAX);
        futures_util::stream::iter(events.into_iter().map(Ok)).boxed()
    }

    async fn last_position(&self, streams: &[&str]) -> Result<u64, Error> {
        let state = self.read();
        Ok(streams
            .iter()
            .filter_map(|stream| state.streams.get(*stream)?.last())
            .map(|&i| i as u64 + 1)
            .max()
            .unwrap_or(0))
    }

    async fn append(
        &self,
        stream: &str,
        aggregate_id: &str,
        expected_version: u64,
        events: &[NewEvent],
        snapshot: Option<&Snapshot>,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        let stored = {
            let mut state = self.write();
            // Under the lock, so timestamps do not go back as positions go up.
            let timestamp = crate::util::now();
            let current = state.versions(stream, aggregate_id).len() as u64;
            if current != expected_version {
                return Err(Error::VersionConflict {
                    stream: stream.to_owned(),
                    aggregate_id: aggregate_id.to_owned(),
                    expected: expected_version,
                });
            }
            let first = state.log.len();
            let stored: Vec<Arc<StoredEvent>> = events
                .iter()
                .zip(1..)
                .map(|(event, n)| {
                    let meta = Meta {
                        stream: stream.to_owned(),
                        aggregate_id: aggregate_id.to_owned(),
                        version: expected_version + n,
                        position: (first as u64) + n,
                        timestamp,
                        metadata: event.metadata.clone(),
                    };
                    Arc::new(StoredEvent::new(meta, event.event_type, event.data.clone()))
                })
                .collect();
            let indexes = first..first + stored.len();
            state.log.extend(stored.iter().cloned());
            state.push_indexes(stream, aggregate_id, indexes);
            if let Some(snapshot) = snapshot {
                state.snapshots.insert(
                    (stream.to_owned(), aggregate_id.to_owned()),
                    snapshot.clone(),
                );
            }
            stored
        };
        if let Some(last) = stored.last() {
            self.appended.send_replace(last.meta.position);
        }
        Ok(stored)
    }

    async fn snapshot(&self, stream: &str, aggregate_id: &str) -> Result<Option<Snapshot>, Error> {
        Ok(self
            .read()
            .snapshots
            .get(&(stream.to_owned(), aggregate_id.to_owned()))
            .cloned())
    }

    async fn streams(&self) -> Result<Vec<String>, Error> {
        let state = self.read();
        let mut names: Vec<String> = state
            .streams
            .iter()
            .filter(|(_, indexes)| !indexes.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        Ok(names)
    }

    async fn bookmarks(&self) -> Result<Vec<(String, u64)>, Error> {
        let mut bookmarks: Vec<(String, u64)> = self
            .read()
            .bookmarks
            .iter()
            .map(|(name, position)| (name.clone(), *position))
            .collect();
        bookmarks.sort();
        Ok(bookmarks)
    }

    async fn stream_summary(&self, stream: &str) -> Result<StreamSummary, Error> {
        let state = self.read();
        let aggregates = state.aggregates.get(stream).map_or(0, |ids| {
            ids.values().filter(|log| !log.versions.is_empty()).count()
        });
        let events = state.streams.get(stream).map_or(0, Vec::len);
        Ok(StreamSummary::new(aggregates as u64, events as u64))
    }

    async fn count_after(&self, streams: &[&str], after: u64) -> Result<u64, Error> {
        let mut streams = streams.to_vec();
        streams.sort_unstable();
        streams.dedup();
        let state = self.read();
        Ok(state
            .stream_tails(&streams, after)
            .iter()
            .map(|tail| tail.len() as u64)
            .sum())
    }

    fn subscribe(&self) -> Option<watch::Receiver<u64>> {
        Some(self.appended.subscribe())
    }
}
