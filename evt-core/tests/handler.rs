//! A started handler's life: stopping between pages, concurrent stops, panicking handler methods,
//! failing storage, and ending when every `Handler` value is dropped.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use evt_core::testing::{Create, ExampleCommands};
use evt_core::{
    Domain, Error, MemoryProvider, Meta, NewEvent, Provider, Snapshot, StoredEvent, projection,
};

/// Waits (bounded) until `done` holds; the bound is for liveness, not speed.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("gave up after 30 s waiting until {what}");
}

async fn created(domain: &Domain, count: usize) {
    let commands = ExampleCommands::new(domain);
    for n in 0..count {
        let id = format!("e{n}");
        commands
            .create(&id, Create { name: id.clone() })
            .await
            .unwrap();
    }
}

/// Counts creations, slowly, and panics once if told to.
#[derive(Default)]
struct Slow {
    seen: AtomicUsize,
    panic_once: AtomicBool,
    token: Arc<()>,
}

#[projection(bookmark = "slow", streams = ["examples"])]
impl Slow {
    async fn created(&self, _: &str, _: &evt_core::testing::Created, _: &Meta) {
        if self.panic_once.swap(false, Ordering::SeqCst) {
            panic!("a handler method panicked on purpose");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.seen.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_after_the_page_it_is_handling() {
    let domain = Domain::new(MemoryProvider::with_limit(10));
    created(&domain, 300).await;
    let handler = domain.handler(Slow::default());
    handler.start();
    eventually("the handler started", || {
        handler.projection().seen.load(Ordering::SeqCst) > 0
    })
    .await;
    handler.stop().await;
    assert!(!handler.is_running());
    let seen = handler.projection().seen.load(Ordering::SeqCst);
    assert!(
        seen < 300,
        "stopped after a page, not after the whole backlog ({seen} handled)"
    );
    let bookmark = domain.provider().position("slow").await.unwrap();
    assert_eq!(
        bookmark.map(|p| p as usize),
        Some(seen),
        "the bookmark is where it stopped"
    );
    assert_eq!(handler.run_once().await.unwrap(), 300 - seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stops_both_wait_for_the_task() {
    let domain = Domain::new(MemoryProvider::with_limit(10));
    created(&domain, 100).await;
    let handler = domain.handler(Slow::default());
    handler.start();
    let (a, b) = (handler.clone(), handler.clone());
    tokio::join!(a.stop(), b.stop());
    assert!(!a.is_running() && !b.is_running());
    let seen = handler.projection().seen.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        handler.projection().seen.load(Ordering::SeqCst),
        seen,
        "nothing runs after stop"
    );
    handler.start();
    assert!(handler.is_running(), "a stopped handler starts again");
    handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_method_is_tried_again() {
    let domain = Domain::new(MemoryProvider::new());
    created(&domain, 3).await;
    let handler = domain
        .handler(Slow {
            panic_once: AtomicBool::new(true),
            ..Slow::default()
        })
        .poll_interval(Duration::from_millis(10));
    handler.start();
    eventually("the events after the panic were handled", || {
        handler.projection().seen.load(Ordering::SeqCst) == 3
    })
    .await;
    assert!(handler.is_running(), "the task survived the panic");
    handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handler_ends_its_task() {
    let domain = Domain::new(MemoryProvider::new());
    let slow = Slow::default();
    let token = slow.token.clone();
    let handler = domain
        .handler(slow)
        .poll_interval(Duration::from_millis(10));
    handler.start();
    created(&domain, 1).await;
    eventually("the event was handled", || {
        handler.projection().seen.load(Ordering::SeqCst) == 1
    })
    .await;
    drop(handler);
    eventually("the task let go of the projection", || {
        Arc::strong_count(&token) == 1
    })
    .await;
}

/// What [`Failing`] fails at.
#[derive(Debug, Clone, Copy)]
enum Fail {
    /// Reading a page of events.
    Read,
    /// Storing a bookmark.
    Bookmark,
}

/// The memory provider, failing at one thing.
struct Failing {
    inner: MemoryProvider,
    fail: Fail,
}

#[async_trait::async_trait]
impl Provider for Failing {
    fn page_size(&self) -> usize {
        self.inner.page_size()
    }

    async fn position(&self, bookmark: &str) -> Result<Option<u64>, Error> {
        self.inner.position(bookmark).await
    }

    async fn set_position(&self, bookmark: &str, position: u64) -> Result<(), Error> {
        match self.fail {
            Fail::Bookmark => Err(Error::provider(
                format!("store bookmark `{bookmark}` at position {position}"),
                "the disk is full",
            )),
            Fail::Read => self.inner.set_position(bookmark, position).await,
        }
    }

    async fn events_from(
        &self,
        streams: &[&str],
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        match self.fail {
            Fail::Read => Err(Error::provider(
                format!("read events of {streams:?} after position {after}"),
                "the connection was reset",
            )),
            Fail::Bookmark => self.inner.events_from(streams, after, limit).await,
        }
    }

    async fn aggregate_events(
        &self,
        stream: &str,
        aggregate_id: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, Error> {
        (self.inner)
            .aggregate_events(stream, aggregate_id, after_version, limit)
            .await
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
        (self.inner)
            .append(stream, aggregate_id, expected_version, events, snapshot)
            .await
    }

    async fn snapshot(&self, stream: &str, aggregate_id: &str) -> Result<Option<Snapshot>, Error> {
        self.inner.snapshot(stream, aggregate_id).await
    }
}

/// Keeps the fields of every error-level tracing event, as `name=value` lines.
struct ErrorLog(Arc<Mutex<Vec<String>>>);

impl ErrorLog {
    fn lines(log: &Mutex<Vec<String>>) -> Vec<String> {
        log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl tracing::Subscriber for ErrorLog {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?}\n", field.name()));
            }
        }
        if *event.metadata().level() == tracing::Level::ERROR {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(fields.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

// On one thread, so that the started handler's task logs to this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_failing_storage_is_logged_as_such() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let _logging = tracing::subscriber::set_default(ErrorLog(log.clone()));
    for (fail, what) in [
        (
            Fail::Read,
            "read events of [\"examples\"] after position 0 failed: the connection was reset",
        ),
        (
            Fail::Bookmark,
            "store bookmark `slow` at position 1 failed: the disk is full",
        ),
    ] {
        log.lock().unwrap().clear();
        let domain = Domain::from_arc(Arc::new(Failing {
            inner: MemoryProvider::new(),
            fail,
        }));
        created(&domain, 1).await;
        let handler = domain
            .handler(Slow::default())
            .poll_interval(Duration::from_millis(10))
            // The wrapper forwards no lease methods.
            .without_lease();
        handler.start();
        eventually("the failure was logged", || {
            !ErrorLog::lines(&log).is_empty()
        })
        .await;
        handler.stop().await;
        let line = &ErrorLog::lines(&log)[0];
        assert!(
            line.contains(what),
            "{fail:?}: `{what}` missing from: {line}"
        );
        assert!(
            line.contains("handler stopped: the storage failed"),
            "{fail:?}: {line}"
        );
        assert!(!line.contains("at an event"), "{fail:?}: {line}");
    }
}
