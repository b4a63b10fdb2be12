//! With the cache on, a command on a cached aggregate appends without reading the store first
//! when its payload can be cloned (it can decide again), and reads first when it cannot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use evt_core::testing::{Create, ExampleCommands, Increment, NoteMany};
use evt_core::{Domain, Error, MemoryProvider, NewEvent, Provider, Snapshot, StoredEvent};
use futures_util::stream::BoxStream;

/// The memory provider, counting the reads a load makes.
#[derive(Debug, Default)]
struct Counting {
    inner: MemoryProvider,
    reads: AtomicUsize,
}

impl Counting {
    fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl Provider for Counting {
    fn page_size(&self) -> usize {
        self.inner.page_size()
    }
    async fn position(&self, bookmark: &str) -> Result<Option<u64>, Error> {
        self.inner.position(bookmark).await
    }
    async fn set_position(&self, bookmark: &str, position: u64) -> Result<(), Error> {
        self.inner.set_position(bookmark, position).await
    }
    async fn events_from(
        &self,
        streams: &[&str],
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        self.inner.events_from(streams, after, limit).await
    }
    async fn aggregate_events(
        &self,
        stream: &str,
        aggregate_id: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        self.read();
        self.inner
            .aggregate_events(stream, aggregate_id, after_version, limit)
            .await
    }
    fn aggregate_stream<'a>(
        &'a self,
        stream: &'a str,
        aggregate_id: &'a str,
        after_version: u64,
    ) -> BoxStream<'a, Result<Arc<StoredEvent>, Error>> {
        self.read();
        self.inner
            .aggregate_stream(stream, aggregate_id, after_version)
    }
    async fn last_position(&self, streams: &[&str]) -> Result<u64, Error> {
        self.inner.last_position(streams).await
    }
    async fn append(
        &self,
        stream: &str,
        aggregate_id: &str,
        expected_version: u64,
        events: &[NewEvent],
        snapshot: Option<&Snapshot>,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        self.inner
            .append(stream, aggregate_id, expected_version, events, snapshot)
            .await
    }
    async fn snapshot(&self, stream: &str, aggregate_id: &str) -> Result<Option<Snapshot>, Error> {
        self.read();
        self.inner.snapshot(stream, aggregate_id).await
    }
}

#[tokio::test]
async fn a_cached_command_reads_nothing_when_its_payload_is_clone() {
    let provider = Arc::new(Counting::default());
    let domain = Domain::from_arc(provider.clone()).with_cache(10);
    let commands = ExampleCommands::new(&domain);
    let reads = || provider.reads.load(Ordering::Relaxed);
    // `Create` is not `Clone`: the command reads first, although nothing is cached yet.
    commands
        .create("a", Create { name: "a".into() })
        .await
        .unwrap();
    let after_create = reads();
    assert!(after_create > 0);
    for by in 1..=9 {
        commands.increment("a", Increment { by }).await.unwrap();
    }
    assert_eq!(reads(), after_create, "`Increment` is `Clone`: no reads");
    // `NoteMany` is not `Clone`: it reads the events after the cached version.
    let noted = commands
        .note_many("a", NoteMany { notes: vec![None] })
        .await
        .unwrap();
    assert_eq!((noted.version, noted.count), (11, 45));
    assert_eq!(reads(), after_create + 1);
    // Without the cache, every command reads.
    let uncached = ExampleCommands::new(&Domain::from_arc(provider.clone()));
    uncached.increment("a", Increment { by: 1 }).await.unwrap();
    assert!(reads() > after_create + 1);
}
