//! The provider conformance suite: every provider runs it with one call.
//!
//! ```
//! // In `tests/conformance.rs` of a provider crate:
//! use std::sync::Arc;
//! use evt_core::{MemoryProvider, Provider};
//!
//! evt_core::provider_tests!(|limit: usize| async move {
//!     Arc::new(MemoryProvider::with_limit(limit)) as Arc<dyn Provider>
//! });
//! # fn main() {}
//! ```
//!
//! The argument makes a fresh, empty provider reading pages of `limit` events, once per test.
//! The tests need `tokio` (with `macros` and `rt-multi-thread`) in the calling crate.
//!
//! The scenarios cover evtstore's own provider tests (appends, returned aggregates, multi-event
//! commands, empty aggregates, bookmarks, version conflicts, in-memory bookmarks, several streams,
//! tail options, continue-on-error, snapshots) and what evtstore gets wrong: atomic appends,
//! exactly one winner per version under concurrent writers, and handlers that see every event
//! exactly once, in position order, while many writers append; and the lease contract (one swap
//! wins, fenced bookmark writes, one started handler of a bookmark handles events at a time).
//!
//! [`wake_parent`] and [`failover_parent`] test a provider with real processes (a child
//! process wakes on an append; a killed lease holder is replaced and nothing is skipped).

mod processes;
mod proxy;

pub use processes::{child, child_store, failover_parent, wake_parent};
pub use proxy::{Answered, CutProxy};

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    Aggregate, Checkpoint, Domain, Error, Event, Lease, Meta, Metadata, NewEvent, Provider,
    Snapshot, StoredEvent, Upcasters, Versioned, aggregate, commands, event, projection,
};

/// The scenarios, in the order [`provider_tests!`](crate::provider_tests) runs them.
#[macro_export]
macro_rules! provider_tests {
    ($factory:expr) => {
        $crate::provider_tests!(@each $factory;
            append_returns_stored_events,
            stored_event_shape,
            command_returns_aggregate,
            multi_event_command,
            empty_aggregate,
            command_without_events,
            rejected_command_appends_nothing,
            version_conflict,
            failed_append_stores_nothing,
            load_pages_through_history,
            cache_reads_newer_events,
            cached_commands_decide_again,
            bookmark_without_position,
            bookmark_persists_position,
            memory_bookmark,
            several_streams,
            tail_stream,
            always_tail_stream,
            continue_on_error_off,
            continue_on_error_on,
            malformed_event,
            snapshot_absent,
            snapshot_present,
            snapshot_version_mismatch,
            started_handler_wakes_on_append,
            concurrent_writers_one_aggregate,
            appends_arriving_together,
            concurrent_commands_retry,
            concurrent_writers_with_handler,
            atomic_multi_event_appends,
            lease_contract,
            lease_swaps_race,
            one_started_handler_holds_the_lease,
            waiting_until_a_handler_handled_a_command,
            metadata_beside_events,
            upcasting_old_events,
            listing_streams_and_bookmarks
        );
    };
    (@each $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::testing::$name(&$factory).await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------------
// The test domain: two aggregates on two streams, one with snapshots, a recording projection.

/// Events of [`Example`].
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum ExampleEvent {
    /// The example was created.
    Created {
        /// Its name.
        name: String,
    },
    /// Its counter went up.
    Incremented {
        /// By how much.
        by: u32,
    },
    /// A note, left out of the stored document when `None`.
    Noted {
        /// The note.
        note_text: Option<String>,
    },
    /// An event the [`Recorder`] fails on.
    Poisoned,
}

/// An aggregate on the stream `examples`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Example {
    /// Set by `Created`.
    pub name: String,
    /// Sum of `Incremented`.
    pub count: u32,
    /// The `Noted` notes.
    pub notes: Vec<Option<String>>,
}

#[aggregate(stream = "examples", events = ExampleEvent)]
impl Example {
    fn created(&mut self, event: &Created) {
        self.name = event.name.clone();
    }
    fn incremented(&mut self, event: &Incremented) {
        self.count += event.by;
    }
    fn noted(&mut self, event: &Noted) {
        self.notes.push(event.note_text.clone());
    }
}

/// Payload of `create`.
pub struct Create {
    /// The name.
    pub name: String,
}
/// Payload of `increment` and `increment_retrying`.
#[derive(Clone)]
pub struct Increment {
    /// By how much.
    pub by: u32,
}
/// Payload of `note_many`: one `Noted` per note.
pub struct NoteMany {
    /// The notes.
    pub notes: Vec<Option<String>>,
}
/// Payload of `poison`.
pub struct Poison;

#[commands(client = pub ExampleCommands)]
impl Example {
    fn create(example: &Versioned<Self>, cmd: Create) -> Result<Created, String> {
        if example.exists() {
            return Err(format!("`{}` already exists", example.id));
        }
        Ok(Created { name: cmd.name })
    }

    async fn increment(example: &Versioned<Self>, cmd: Increment) -> Result<Incremented, String> {
        if !example.exists() {
            return Err(format!("`{}` does not exist", example.id));
        }
        Ok(Incremented { by: cmd.by })
    }

    #[command(retry = 1000)]
    fn increment_retrying(
        example: &Versioned<Self>,
        cmd: Increment,
    ) -> Result<Incremented, String> {
        if !example.exists() {
            return Err(format!("`{}` does not exist", example.id));
        }
        Ok(Incremented { by: cmd.by })
    }

    fn note_many(_: &Versioned<Self>, cmd: NoteMany) -> Result<Vec<ExampleEvent>, String> {
        Ok(cmd
            .notes
            .into_iter()
            .map(|note_text| Noted { note_text }.into())
            .collect())
    }

    fn poison(_: &Versioned<Self>, _: Poison) -> Result<Poisoned, String> {
        Ok(Poisoned)
    }
}

/// Events of [`Other`].
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum OtherEvent {
    /// Something happened on the other stream.
    Pinged {
        /// A sequence number.
        n: u32,
    },
}

/// An aggregate on the stream `others`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Other {
    /// How many pings.
    pub pings: u32,
}

#[aggregate(stream = "others", events = OtherEvent)]
impl Other {
    fn pinged(&mut self, _: &Pinged) {
        self.pings += 1;
    }
}

/// Payload of `ping`.
pub struct Ping {
    /// A sequence number.
    pub n: u32,
}

#[commands(client = pub OtherCommands)]
impl Other {
    fn ping(_: &Versioned<Self>, cmd: Ping) -> Result<Pinged, String> {
        Ok(Pinged { n: cmd.n })
    }
}

/// Events of [`Counter`].
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum CounterEvent {
    /// The counter went up.
    Added {
        /// By how much.
        n: u64,
    },
}

/// An aggregate with snapshots (`snapshot = "1"`) on the stream `counters`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    /// The sum of `Added`.
    pub total: u64,
    /// How many events were folded into this state (a snapshot carries it over).
    pub folded: u64,
}

#[aggregate(stream = "counters", events = CounterEvent, snapshot = "1")]
impl Counter {
    fn added(&mut self, event: &Added) {
        self.total += event.n;
        self.folded += 1;
    }
}

/// Payload of `add`.
pub struct Add {
    /// By how much.
    pub n: u64,
}

#[commands(client = pub CounterCommands)]
impl Counter {
    fn add(_: &Versioned<Self>, cmd: Add) -> Result<Added, String> {
        Ok(Added { n: cmd.n })
    }
}

/// A projection over `examples` and `others` that records what it sees, and fails on `Poisoned`.
#[derive(Debug, Default)]
pub struct Recorder {
    seen: Mutex<Vec<Meta>>,
}

impl Recorder {
    /// The metas of the events handled so far, in order.
    pub fn seen(&self) -> Vec<Meta> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, meta: &Meta) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(meta.clone());
    }
}

#[projection(bookmark = "recorder", streams = ["examples", "others"])]
impl Recorder {
    fn created(&self, _: &str, _: &Created, meta: &Meta) {
        self.record(meta);
    }
    async fn incremented(&self, _: &str, _: &Incremented, meta: &Meta) -> Result<(), String> {
        self.record(meta);
        Ok(())
    }
    fn noted(&self, _: &str, _: &Noted, meta: &Meta) {
        self.record(meta);
    }
    fn poisoned(&self, id: &str, _: &Poisoned, _: &Meta) -> Result<(), String> {
        Err(format!("`{id}` is poisoned"))
    }
    fn pinged(&self, _: &str, _: &Pinged, meta: &Meta) {
        self.record(meta);
    }
}

/// A projection over `examples` only.
#[derive(Debug, Default)]
pub struct ExamplesOnly {
    seen: Mutex<Vec<Meta>>,
}

#[projection(bookmark = "examples-only", streams = ["examples"])]
impl ExamplesOnly {
    fn created(&self, _: &str, _: &Created, meta: &Meta) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(meta.clone());
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Makes a fresh, empty provider reading pages of `limit` events: what
/// [`provider_tests!`](crate::provider_tests) takes. Any `Fn(usize) -> impl Future<Output =
/// Arc<dyn Provider>>` is one.
pub trait Factory {
    /// A fresh, empty provider reading pages of `limit` events.
    fn provider(&self, limit: usize) -> impl Future<Output = Arc<dyn Provider>>;
}

impl<F, Fut> Factory for F
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Arc<dyn Provider>>,
{
    fn provider(&self, limit: usize) -> impl Future<Output = Arc<dyn Provider>> {
        self(limit)
    }
}

async fn domain(factory: &impl Factory, limit: usize) -> Domain {
    Domain::from_arc(factory.provider(limit).await)
}

async fn create(commands: &ExampleCommands, id: &str) -> Versioned<Example> {
    commands
        .create(
            id,
            Create {
                name: id.to_owned(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("create `{id}`: {e}"))
}

/// The aggregate's last stored event, if it has any (read through [`Provider::aggregate_stream`]).
pub async fn last_event(
    provider: &dyn Provider,
    stream: &str,
    id: &str,
) -> Option<Arc<StoredEvent>> {
    let mut events = provider.aggregate_stream(stream, id, 0);
    let mut last = None;
    while let Some(event) = events.next().await {
        last = Some(event.unwrap_or_else(|e| panic!("read `{stream}/{id}`: {e}")));
    }
    last
}

async fn last_position(domain: &Domain, stream: &str, id: &str) -> u64 {
    let last = last_event(domain.provider().as_ref(), stream, id).await;
    last.unwrap_or_else(|| panic!("`{stream}/{id}` has no event"))
        .meta
        .position
}

fn positions(metas: &[Meta]) -> Vec<u64> {
    metas.iter().map(|meta| meta.position).collect()
}

/// Waits (bounded) until `done` holds; the bound is for liveness, not speed.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after 30 s waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The scenarios.

/// `streams`, `bookmarks`, `stream_summary` and `count_after` list and count what is stored
/// (beside what a factory may have stored first, e.g. evtstore's departments).
pub async fn listing_streams_and_bookmarks(factory: &impl Factory) {
    let provider = factory.provider(2).await;
    let streams_before = provider.streams().await.unwrap();
    let bookmarks_before = provider.bookmarks().await.unwrap();
    let event =
        |n: u32| NewEvent::from_value("incremented", &json!({"type": "incremented", "by": n}));
    let a = provider
        .append("examples", "a", 0, &[event(1), event(2)], None)
        .await
        .unwrap();
    provider
        .append("others", "x", 0, &[event(3)], None)
        .await
        .unwrap();
    provider
        .append("examples", "b", 0, &[event(4)], None)
        .await
        .unwrap();
    let mut streams = streams_before;
    streams.extend(["examples".to_owned(), "others".to_owned()]);
    streams.sort();
    streams.dedup();
    assert_eq!(provider.streams().await.unwrap(), streams);
    let summary = |stream: &'static str| {
        let provider = provider.clone();
        async move {
            let summary = provider.stream_summary(stream).await.unwrap();
            (summary.aggregates, summary.events)
        }
    };
    assert_eq!(summary("examples").await, (2, 3));
    assert_eq!(summary("others").await, (1, 1));
    assert_eq!(summary("missing").await, (0, 0));
    let count = |streams: &'static [&'static str], after: u64| {
        let provider = provider.clone();
        async move { provider.count_after(streams, after).await.unwrap() }
    };
    assert_eq!(count(&["examples", "others"], 0).await, 4);
    assert_eq!(count(&["examples", "examples"], 0).await, 3);
    assert_eq!(count(&["examples"], a[1].meta.position).await, 1);
    assert_eq!(count(&[], 0).await, 0);
    provider.set_position("z-last", 3).await.unwrap();
    provider.set_position("a-first", 0).await.unwrap();
    // A bookmark that only has a lease has no position: not listed (where leases are kept).
    let _ = provider
        .swap_lease(
            "leased-only",
            &Lease::default(),
            &Lease::default().granted_to("holder"),
        )
        .await;
    let mut bookmarks = bookmarks_before;
    bookmarks.extend([("a-first".to_owned(), 0), ("z-last".to_owned(), 3)]);
    bookmarks.sort();
    assert_eq!(provider.bookmarks().await.unwrap(), bookmarks);
}

/// Appending returns the stored events with versions and increasing positions; reads find them.
pub async fn append_returns_stored_events(factory: &impl Factory) {
    let provider = factory.provider(100).await;
    let event =
        |n: u32| NewEvent::from_value("incremented", &json!({"type": "incremented", "by": n}));
    let first = provider
        .append("examples", "a", 0, &[event(1)], None)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].meta.version, 1);
    assert_eq!(first[0].meta.stream, "examples");
    assert_eq!(first[0].meta.aggregate_id, "a");
    assert_eq!(first[0].event_type, "incremented");
    let second = provider
        .append("examples", "a", 1, &[event(2), event(3)], None)
        .await
        .unwrap();
    assert_eq!(
        second.iter().map(|e| e.meta.version).collect::<Vec<_>>(),
        [2, 3]
    );
    assert!(first[0].meta.position < second[0].meta.position);
    assert!(second[0].meta.position < second[1].meta.position);

    let history = provider
        .aggregate_events("examples", "a", 0, 100)
        .await
        .unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0], first[0]);
    assert_eq!(history[1..], second[..]);
    let after_one = provider
        .aggregate_events("examples", "a", 1, 100)
        .await
        .unwrap();
    assert_eq!(after_one[..], second[..]);
    let last = last_event(&*provider, "examples", "a").await;
    assert_eq!(last.as_ref(), second.last());
    assert_eq!(last_event(&*provider, "examples", "b").await, None);
    assert!(
        provider
            .aggregate_events("examples", "b", 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        provider
            .aggregate_events("others", "a", 0, 100)
            .await
            .unwrap()
            .is_empty()
    );

    let all = provider.events_from(&["examples"], 0, 100).await.unwrap();
    assert_eq!(all, history);
    let later = provider
        .events_from(&["examples"], first[0].meta.position, 100)
        .await
        .unwrap();
    assert_eq!(later[..], second[..]);
    assert_eq!(
        provider.last_position(&["examples"]).await.unwrap(),
        second[1].meta.position
    );
    assert_eq!(provider.last_position(&["others"]).await.unwrap(), 0);
}

/// Events are stored as evtstore stores them: `type`, camelCase fields, `None` left out.
pub async fn stored_event_shape(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let commands = ExampleCommands::new(&domain);
    create(&commands, "a").await;
    commands
        .note_many(
            "a",
            NoteMany {
                notes: vec![Some("hello".into()), None],
            },
        )
        .await
        .unwrap();
    let stored = domain
        .provider()
        .aggregate_events("examples", "a", 0, 100)
        .await
        .unwrap();
    let data: Vec<_> = stored.iter().map(|e| e.value()).collect();
    assert_eq!(
        data,
        [
            json!({"type": "created", "name": "a"}),
            json!({"type": "noted", "noteText": "hello"}),
            json!({"type": "noted"}),
        ]
    );
    let timestamp = stored[0].meta.timestamp;
    assert_eq!(
        timestamp.timestamp_subsec_nanos() % 1_000_000,
        0,
        "millisecond timestamps"
    );
    let age = chrono::Utc::now() - timestamp;
    assert!(
        age.num_seconds().abs() < 3600,
        "timestamp {timestamp} is not now"
    );
    // A document written by evtstore reads back.
    let written = serde_json::value::RawValue::from_string(
        r#"{ "noteText" : "x", "type" : "noted" }"#.to_owned(),
    )
    .unwrap();
    let event = ExampleEvent::from_json("noted", &written).unwrap();
    assert_eq!(
        event,
        ExampleEvent::Noted(Noted {
            note_text: Some("x".into())
        })
    );
}

/// A command returns the new aggregate, with its version, and loading finds the same.
pub async fn command_returns_aggregate(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let commands = ExampleCommands::new(&domain);
    let created = create(&commands, "a").await;
    assert_eq!((created.id.as_str(), created.version), ("a", 1));
    assert_eq!(created.name, "a");
    let incremented = commands.increment("a", Increment { by: 5 }).await.unwrap();
    assert_eq!((incremented.version, incremented.count), (2, 5));
    let incremented = commands.increment("a", Increment { by: 2 }).await.unwrap();
    assert_eq!((incremented.version, incremented.count), (3, 7));
    let loaded: Versioned<Example> = domain.load("a").await.unwrap();
    assert_eq!(loaded, incremented);
}

/// Metadata set on a command's domain is stored beside each event of its append, not in the
/// event's document; loads, reads and handlers see it; events appended without it have none.
pub async fn metadata_beside_events(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let metadata = Metadata::new()
        .correlation_id("request-1")
        .causation_id("event-0")
        .user("alice")
        .with("tenant", "acme")
        .with("ip", "192.0.2.1");
    let request = ExampleCommands::new(&domain.with_metadata(metadata.clone()));
    create(&request, "with").await;
    let notes = NoteMany {
        notes: vec![Some("1".to_owned()), Some("2".to_owned())],
    };
    request.note_many("with", notes).await.unwrap();
    create(&ExampleCommands::new(&domain), "without").await;

    let provider = domain.provider();
    let with = provider
        .aggregate_events("examples", "with", 0, 100)
        .await
        .unwrap();
    assert_eq!(with.len(), 3);
    for event in &with {
        assert_eq!(
            *event.meta.metadata, metadata,
            "event {}",
            event.meta.version
        );
        let document = event.value();
        let keys: Vec<&String> = document.as_object().unwrap().keys().collect();
        assert!(
            keys.iter()
                .all(|key| ["type", "name", "noteText"].contains(&key.as_str())),
            "the metadata stays out of the event's document: {document}"
        );
    }
    let without = provider
        .aggregate_events("examples", "without", 0, 100)
        .await
        .unwrap();
    assert!(without[0].meta.metadata.is_empty());

    let read = provider.events_from(&["examples"], 0, 100).await.unwrap();
    let metadatas: Vec<bool> = read.iter().map(|e| e.meta.metadata.is_empty()).collect();
    assert_eq!(metadatas, [false, false, false, true]);

    let handler = domain.handler(Recorder::default());
    assert_eq!(handler.run_once().await.unwrap(), 4);
    let seen = handler.projection().seen();
    assert_eq!(*seen[0].metadata, metadata);
    assert_eq!(seen[2].metadata.custom["tenant"], "acme");
    assert!(seen[3].metadata.is_empty());
}

/// Events stored in an earlier shape (a field missing, a field and a type renamed) load and
/// reach handlers in the current one through the domain's upcasters, which leave current
/// events as they are; without them, the same history fails to load.
pub async fn upcasting_old_events(factory: &impl Factory) {
    let provider = factory.provider(2).await;
    let old = |value: serde_json::Value| {
        let event_type: &'static str = match value["type"].as_str().unwrap() {
            "created" => "created",
            "begun" => "begun",
            _ => "noted",
        };
        NewEvent::from_value(event_type, &value)
    };
    let history = [
        old(json!({"type": "begun", "title": "renamed type"})),
        old(json!({"type": "noted", "text": "old field name"})),
        old(json!({"type": "noted", "noteText": "current shape"})),
    ];
    provider
        .append("examples", "a", 0, &history, None)
        .await
        .unwrap();
    provider
        .append("examples", "b", 0, &[old(json!({"type": "created"}))], None)
        .await
        .unwrap();

    let plain = Domain::from_arc(provider.clone());
    let error = plain.load::<Example>("b").await.unwrap_err();
    assert!(matches!(error, Error::Decode { version: 1, .. }), "{error}");

    let upcasters = Upcasters::new()
        .add("examples", "created", |mut event: serde_json::Value| {
            if event.get("name").is_none() {
                event["name"] = json!("unnamed");
            }
            Ok(event)
        })
        .add("examples", "begun", |event: serde_json::Value| {
            Ok(json!({"type": "created", "title": event["title"]}))
        })
        .add("examples", "noted", |mut event: serde_json::Value| {
            if let Some(text) = event.as_object_mut().unwrap().remove("text") {
                event["noteText"] = text;
            }
            Ok(event)
        })
        .add("others", "created", |_: serde_json::Value| {
            Err("another stream's upcaster never runs here".into())
        });
    let domain = Domain::from_arc(provider.clone()).with_upcasters(upcasters);
    let a: Versioned<Example> = domain.load("a").await.unwrap();
    assert_eq!(
        a.name, "unnamed",
        "a chain: begun became created, then got its name"
    );
    let notes = [
        Some("old field name".to_owned()),
        Some("current shape".to_owned()),
    ];
    assert_eq!((a.version, a.notes.as_slice()), (3, notes.as_slice()));
    let b: Versioned<Example> = domain.load("b").await.unwrap();
    assert_eq!((b.version, b.name.as_str()), (1, "unnamed"));

    let handler = domain.handler(Recorder::default());
    assert_eq!(handler.run_once().await.unwrap(), 4);
    let seen = handler.projection().seen();
    let versions: Vec<(&str, u64)> = seen
        .iter()
        .map(|meta| (meta.aggregate_id.as_str(), meta.version))
        .collect();
    assert_eq!(versions, [("a", 1), ("a", 2), ("a", 3), ("b", 1)]);
    let stored = provider
        .aggregate_events("examples", "a", 0, 10)
        .await
        .unwrap();
    assert_eq!(
        stored[0].event_type, "begun",
        "the stored events are not rewritten"
    );

    let failing = Upcasters::new().add("examples", "begun", |_: serde_json::Value| {
        Err("no longer supported".into())
    });
    let domain = Domain::from_arc(provider).with_upcasters(failing);
    let error = domain.load::<Example>("a").await.unwrap_err();
    assert!(
        matches!(&error, Error::Upcast { version: 1, event_type, .. } if event_type == "begun"),
        "{error}"
    );
}

/// A command returning several events appends them all, in order, at consecutive versions.
pub async fn multi_event_command(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let commands = ExampleCommands::new(&domain);
    create(&commands, "a").await;
    let notes = vec![Some("1".to_owned()), Some("2".to_owned()), None];
    let example = commands
        .note_many(
            "a",
            NoteMany {
                notes: notes.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!((example.version, &example.notes), (4, &notes));
    let stored = domain
        .provider()
        .aggregate_events("examples", "a", 1, 100)
        .await
        .unwrap();
    assert_eq!(
        stored.iter().map(|e| e.meta.version).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    let loaded: Versioned<Example> = domain.load("a").await.unwrap();
    assert_eq!(loaded.notes, notes);
}

/// An aggregate without events loads at version 0 with the initial state.
pub async fn empty_aggregate(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let example: Versioned<Example> = domain.load("nobody").await.unwrap();
    assert_eq!(example, Versioned::new("nobody"));
    assert!(!example.exists());
    assert_eq!(example.version, 0);
}

/// A command that decides nothing appends nothing and returns the aggregate as it was.
pub async fn command_without_events(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let commands = ExampleCommands::new(&domain);
    create(&commands, "a").await;
    let example = commands
        .note_many("a", NoteMany { notes: vec![] })
        .await
        .unwrap();
    assert_eq!(example.version, 1);
    let stored = domain
        .provider()
        .aggregate_events("examples", "a", 0, 100)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
}

/// A rejected command returns the handler's error, naming stream and id, and appends nothing.
pub async fn rejected_command_appends_nothing(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let commands = ExampleCommands::new(&domain);
    let error = commands
        .increment("a", Increment { by: 1 })
        .await
        .unwrap_err();
    assert_eq!(
        error.rejection().map(String::as_str),
        Some("`a` does not exist")
    );
    assert_eq!(
        error.to_string(),
        "command `increment` on `examples/a` rejected: `a` does not exist"
    );
    create(&commands, "a").await;
    let again = commands
        .create("a", Create { name: "b".into() })
        .await
        .unwrap_err();
    assert!(again.rejection().is_some());
    let loaded: Versioned<Example> = domain.load("a").await.unwrap();
    assert_eq!((loaded.version, loaded.name.as_str()), (1, "a"));
}

/// Appending at a stale version fails with a version conflict naming stream, id and version.
pub async fn version_conflict(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let commands = ExampleCommands::new(&domain);
    create(&commands, "a").await;
    let stale: Versioned<Example> = domain.load("a").await.unwrap();
    commands.increment("a", Increment { by: 1 }).await.unwrap();
    let error = domain
        .append(stale, vec![Incremented { by: 2 }.into()])
        .await
        .unwrap_err();
    assert!(error.is_version_conflict(), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("examples/a") && message.contains("expected version 1"),
        "{message}"
    );
    let error = domain
        .provider()
        .append(
            "examples",
            "a",
            0,
            &[NewEvent::from_value(
                "created",
                &json!({"type": "created", "name": "x"}),
            )],
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            Error::VersionConflict { stream, aggregate_id, expected: 0 } if stream == "examples" && aggregate_id == "a"
        ),
        "{error}"
    );
    let loaded: Versioned<Example> = domain.load("a").await.unwrap();
    assert_eq!((loaded.version, loaded.count), (2, 1));
}

/// A multi-event append that conflicts stores none of its events.
pub async fn failed_append_stores_nothing(factory: &impl Factory) {
    let provider = factory.provider(100).await;
    let noted = NewEvent::from_value("noted", &json!({"type": "noted"}));
    provider
        .append("examples", "a", 0, std::slice::from_ref(&noted), None)
        .await
        .unwrap();
    let three = [noted.clone(), noted.clone(), noted.clone()];
    for expected in [0, 2, 5] {
        let error = provider
            .append("examples", "a", expected, &three, None)
            .await
            .unwrap_err();
        assert!(error.is_version_conflict(), "{error}");
    }
    assert_eq!(
        provider
            .aggregate_events("examples", "a", 0, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        provider
            .events_from(&["examples"], 0, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    // Nor its snapshot.
    let kept = Snapshot {
        snapshot_version: "1".into(),
        version: 2,
        state: json!({"kept": true}),
    };
    let one = std::slice::from_ref(&noted);
    provider
        .append("examples", "a", 1, one, Some(&kept))
        .await
        .unwrap();
    let lost = Snapshot {
        snapshot_version: "1".into(),
        version: 9,
        state: json!({"kept": false}),
    };
    let error = provider
        .append("examples", "a", 1, &three, Some(&lost))
        .await
        .unwrap_err();
    assert!(error.is_version_conflict(), "{error}");
    assert_eq!(
        provider.snapshot("examples", "a").await.unwrap(),
        Some(kept)
    );
    // A stream listed twice is read once.
    let twice = provider
        .events_from(&["examples", "examples"], 0, 100)
        .await
        .unwrap();
    assert_eq!(twice.len(), 2);
}

/// Loading an aggregate with more events than the page limit reads every page.
pub async fn load_pages_through_history(factory: &impl Factory) {
    let domain = domain(factory, 3).await;
    let commands = ExampleCommands::new(&domain);
    create(&commands, "a").await;
    for by in 1..=10 {
        commands.increment("a", Increment { by }).await.unwrap();
    }
    let loaded: Versioned<Example> = domain.load("a").await.unwrap();
    assert_eq!((loaded.version, loaded.count), (11, 55));
    let page = domain
        .provider()
        .aggregate_events("examples", "a", 0, 100)
        .await
        .unwrap();
    assert_eq!(page.len(), 11);
    let handler = domain.handler(Recorder::default());
    assert_eq!(handler.run_once().await.unwrap(), 11);
}

/// A cached aggregate is brought up to date with events appended through another domain.
pub async fn cache_reads_newer_events(factory: &impl Factory) {
    let provider = factory.provider(100).await;
    let cached = Domain::from_arc(provider.clone()).with_cache(2);
    let uncached = Domain::from_arc(provider);
    let commands = ExampleCommands::new(&cached);
    create(&commands, "a").await;
    commands.increment("a", Increment { by: 1 }).await.unwrap();
    ExampleCommands::new(&uncached)
        .increment("a", Increment { by: 10 })
        .await
        .unwrap();
    let loaded: Versioned<Example> = cached.load("a").await.unwrap();
    assert_eq!((loaded.version, loaded.count), (3, 11));
    let after = commands
        .increment("a", Increment { by: 100 })
        .await
        .unwrap();
    assert_eq!((after.version, after.count), (4, 111));
    // More aggregates than the capacity: all still load correctly.
    for id in ["b", "c", "d"] {
        create(&commands, id).await;
    }
    for id in ["a", "b", "c", "d"] {
        let loaded: Versioned<Example> = cached.load(id).await.unwrap();
        assert!(loaded.exists(), "{id}");
    }
}

/// With the cache on, a command whose payload is `Clone` decides on the cached aggregate and
/// appends at its version without reading first. When another writer appended meanwhile, the
/// caller sees neither the version conflict nor a rejection made on the stale state: the command
/// loads the new events and decides again.
pub async fn cached_commands_decide_again(factory: &impl Factory) {
    let provider = factory.provider(100).await;
    let cached = Domain::from_arc(provider.clone()).with_cache(10);
    let commands = ExampleCommands::new(&cached);
    let other = ExampleCommands::new(&Domain::from_arc(provider));
    // Behind by one event: the append at the cached version is refused, then made at the next.
    create(&commands, "a").await;
    other.increment("a", Increment { by: 10 }).await.unwrap();
    let after = commands.increment("a", Increment { by: 1 }).await.unwrap();
    assert_eq!((after.version, after.count), (3, 11));
    // Cached as missing, created elsewhere: the stale rejection is not the answer.
    let missing: Versioned<Example> = cached.load("b").await.unwrap();
    assert!(!missing.exists());
    create(&other, "b").await;
    let after = commands.increment("b", Increment { by: 2 }).await.unwrap();
    assert_eq!((after.version, after.count), (2, 2));
    // The same through a command that retries.
    other.increment("b", Increment { by: 3 }).await.unwrap();
    let after = commands
        .increment_retrying("b", Increment { by: 4 })
        .await
        .unwrap();
    assert_eq!((after.version, after.count), (4, 9));
    // A rejection on a current cached aggregate stays a rejection.
    let loaded: Versioned<Example> = cached.load("c").await.unwrap();
    assert!(!loaded.exists());
    let rejected = commands.increment("c", Increment { by: 1 }).await;
    assert!(rejected.is_err_and(|e| e.rejection().is_some()));
    let uncached: Versioned<Example> = Domain::from_arc(cached.provider().clone())
        .load("a")
        .await
        .unwrap();
    assert_eq!((uncached.version, uncached.count), (3, 11));
}

/// A bookmark never set reads as `None`, and a handler starts from the first event.
pub async fn bookmark_without_position(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    assert_eq!(domain.provider().position("recorder").await.unwrap(), None);
    let commands = ExampleCommands::new(&domain);
    create(&commands, "a").await;
    create(&commands, "b").await;
    let handler = domain.handler(Recorder::default());
    assert_eq!(handler.run_once().await.unwrap(), 2);
    assert_eq!(handler.projection().seen().len(), 2);
}

/// The bookmark is stored; a new handler with the same bookmark resumes after it.
pub async fn bookmark_persists_position(factory: &impl Factory) {
    let domain = domain(factory, 2).await;
    let commands = ExampleCommands::new(&domain);
    for id in ["a", "b", "c"] {
        create(&commands, id).await;
    }
    let handler = domain.handler(Recorder::default());
    assert_eq!(handler.run_once().await.unwrap(), 3);
    assert_eq!(handler.run_once().await.unwrap(), 0);
    let last = domain
        .provider()
        .last_position(&["examples"])
        .await
        .unwrap();
    assert_eq!(
        domain.provider().position("recorder").await.unwrap(),
        Some(last)
    );
    create(&commands, "d").await;
    let resumed = domain.handler(Recorder::default());
    assert_eq!(resumed.run_once().await.unwrap(), 1);
    assert_eq!(resumed.projection().seen()[0].aggregate_id, "d");
    // `reset` re-reads the stored bookmark: nothing to do again.
    handler.reset().await;
    assert_eq!(handler.run_once().await.unwrap(), 0);
    domain.provider().set_position("recorder", 0).await.unwrap();
    handler.reset().await;
    assert_eq!(handler.run_once().await.unwrap(), 4);
}

/// An in-memory bookmark leaves the provider's bookmarks alone.
pub async fn memory_bookmark(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let commands = ExampleCommands::new(&domain);
    create(&commands, "a").await;
    let handler = domain.handler(Recorder::default()).memory_bookmark();
    assert_eq!(handler.run_once().await.unwrap(), 1);
    assert_eq!(handler.run_once().await.unwrap(), 0);
    create(&commands, "b").await;
    assert_eq!(handler.run_once().await.unwrap(), 1);
    assert_eq!(domain.provider().position("recorder").await.unwrap(), None);
    let other = domain.handler(Recorder::default()).memory_bookmark();
    assert_eq!(other.run_once().await.unwrap(), 2);
    handler.reset().await;
    assert_eq!(
        handler.run_once().await.unwrap(),
        2,
        "reset() rewinds an in-memory bookmark to the beginning, as evtstore's"
    );
}

/// One handler reads several streams, in position order; another reads only its own.
pub async fn several_streams(factory: &impl Factory) {
    let domain = domain(factory, 2).await;
    let examples = ExampleCommands::new(&domain);
    let others = OtherCommands::new(&domain);
    create(&examples, "a").await;
    others.ping("x", Ping { n: 1 }).await.unwrap();
    examples.increment("a", Increment { by: 1 }).await.unwrap();
    others.ping("y", Ping { n: 2 }).await.unwrap();
    create(&examples, "b").await;
    let both = domain.handler(Recorder::default());
    assert_eq!(both.run_once().await.unwrap(), 5);
    let seen = both.projection().seen();
    let streams: Vec<_> = seen.iter().map(|m| m.stream.as_str()).collect();
    assert_eq!(
        streams,
        ["examples", "others", "examples", "others", "examples"]
    );
    assert!(positions(&seen).windows(2).all(|w| w[0] < w[1]));
    let only = domain.handler(ExamplesOnly::default());
    assert_eq!(
        only.run_once().await.unwrap(),
        3,
        "events without a handler method count"
    );
    assert_eq!(only.projection().seen.lock().unwrap().len(), 2);
}

/// `tail_stream`: a first start skips history; once bookmarked, it resumes from the bookmark.
pub async fn tail_stream(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let commands = ExampleCommands::new(&domain);
    create(&commands, "old").await;
    let handler = domain.handler(Recorder::default()).tail_stream(true);
    assert_eq!(handler.run_once().await.unwrap(), 0);
    let stored = domain.provider().checkpoint("recorder").await.unwrap();
    assert!(
        stored.is_some(),
        "the tail is stored as the bookmark at once (evtstore stores nothing until it handles an event)"
    );
    create(&commands, "new").await;
    let restarted = domain.handler(Recorder::default()).tail_stream(true);
    assert_eq!(
        restarted.run_once().await.unwrap(),
        1,
        "a restart goes on from the stored tail, so an event appended before it is handled"
    );
    assert_eq!(handler.run_once().await.unwrap(), 1);
    assert_eq!(handler.projection().seen()[0].aggregate_id, "new");
    handler.reset().await;
    create(&commands, "newer").await;
    assert_eq!(
        handler.run_once().await.unwrap(),
        1,
        "resumes from its bookmark"
    );
    let fresh = domain.handler(Recorder::default()).tail_stream(true);
    create(&commands, "newest").await;
    assert_eq!(
        fresh.run_once().await.unwrap(),
        1,
        "the stored bookmark wins over tailing"
    );
}

/// `always_tail_stream`: every start skips what was appended while it was stopped.
pub async fn always_tail_stream(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let commands = ExampleCommands::new(&domain);
    create(&commands, "old").await;
    let handler = domain.handler(Recorder::default()).always_tail_stream(true);
    assert_eq!(handler.run_once().await.unwrap(), 0);
    create(&commands, "a").await;
    assert_eq!(handler.run_once().await.unwrap(), 1);
    handler.reset().await;
    create(&commands, "missed").await;
    assert_eq!(handler.run_once().await.unwrap(), 0);
    create(&commands, "b").await;
    assert_eq!(handler.run_once().await.unwrap(), 1);
    let ids: Vec<_> = handler
        .projection()
        .seen()
        .into_iter()
        .map(|m| m.aggregate_id)
        .collect();
    assert_eq!(ids, ["a", "b"]);
}

/// Without `continue_on_error` a failing event stops the run, the bookmark stays before it,
/// and the next run tries it again.
pub async fn continue_on_error_off(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let commands = ExampleCommands::new(&domain);
    create(&commands, "a").await;
    let good = last_position(&domain, "examples", "a").await;
    commands.poison("a", Poison).await.unwrap();
    let poisoned = last_position(&domain, "examples", "a").await;
    create(&commands, "b").await;
    let handler = domain.handler(Recorder::default());
    let error = handler.run_once().await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(&error, Error::Handler { position, version: 2, .. } if *position == poisoned),
        "{message}"
    );
    for part in [
        "recorder",
        "examples/a",
        "version 2",
        "poisoned",
        "is poisoned",
    ] {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
    assert_eq!(handler.projection().seen().len(), 1);
    let before = domain.provider().position("recorder").await.unwrap();
    assert_eq!(before, Some(good));
    assert!(
        handler.run_once().await.is_err(),
        "tries the failing event again"
    );
    assert_eq!(handler.projection().seen().len(), 1, "never passes it");
}

/// With `continue_on_error` a failing event goes to the error callback and the run goes on.
pub async fn continue_on_error_on(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let commands = ExampleCommands::new(&domain);
    create(&commands, "a").await;
    commands.poison("a", Poison).await.unwrap();
    let poisoned = last_position(&domain, "examples", "a").await;
    create(&commands, "b").await;
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = errors.clone();
    let handler = domain
        .handler(Recorder::default())
        .continue_on_error(true)
        .on_error(move |error| sink.lock().unwrap().push(error.to_string()));
    assert_eq!(
        handler.run_once().await.unwrap(),
        3,
        "the failing event counts as handled"
    );
    let errors = errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 1);
    assert_eq!(handler.projection().seen().len(), 2);
    assert!(
        errors[0].contains(&format!("position {poisoned}")),
        "{}",
        errors[0]
    );
    assert_eq!(
        handler.run_once().await.unwrap(),
        0,
        "the bookmark moved past it"
    );
}

/// A stored event that does not decode: loading names it; a handler stops before it.
pub async fn malformed_event(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let commands = ExampleCommands::new(&domain);
    create(&commands, "a").await;
    let good = last_position(&domain, "examples", "a").await;
    let bad = domain
        .provider()
        .append(
            "examples",
            "a",
            1,
            &[NewEvent::from_value(
                "incremented",
                &json!({"type": "incremented", "by": "many"}),
            )],
            None,
        )
        .await
        .unwrap();
    let error = domain.load::<Example>("a").await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, Error::Decode { version: 2, .. }),
        "{message}"
    );
    assert!(
        message.contains("examples/a")
            && message.contains(&format!("position {}", bad[0].meta.position)),
        "{message}"
    );
    let handler = domain.handler(Recorder::default());
    let error = handler.run_once().await.unwrap_err();
    assert!(
        matches!(error, Error::Handler { version: 2, .. }),
        "{error}"
    );
    assert_eq!(
        domain.provider().position("recorder").await.unwrap(),
        Some(good)
    );
    let unknown = domain
        .provider()
        .append(
            "others",
            "x",
            0,
            &[NewEvent::from_value(
                "vanished",
                &json!({"type": "vanished"}),
            )],
            None,
        )
        .await
        .unwrap();
    let error = domain.load::<Other>("x").await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unknown event type `vanished`, expected `pinged`"),
        "{error}"
    );
    assert_eq!(unknown.len(), 1);
}

/// Without snapshots, none is stored; with them, each append stores the state with its last event.
pub async fn snapshot_absent(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    create(&ExampleCommands::new(&domain), "a").await;
    assert_eq!(
        domain.provider().snapshot("examples", "a").await.unwrap(),
        None
    );
    assert_eq!(
        domain.provider().snapshot("counters", "c").await.unwrap(),
        None
    );
    let commands = CounterCommands::new(&domain);
    for n in 1..=4 {
        commands.add("c", Add { n }).await.unwrap();
    }
    let snapshot = domain
        .provider()
        .snapshot("counters", "c")
        .await
        .unwrap()
        .expect("a snapshot with the last event");
    assert_eq!(
        (snapshot.snapshot_version.as_str(), snapshot.version),
        ("1", 4)
    );
    assert_eq!(snapshot.state, json!({"total": 10, "folded": 4}));
    // Loading starts from the snapshot: nothing is folded twice, nothing is folded at all.
    let loaded: Versioned<Counter> = domain.load("c").await.unwrap();
    assert_eq!((loaded.version, loaded.total, loaded.folded), (4, 10, 4));
}

fn planted(snapshot_version: &str, version: u64) -> Snapshot {
    Snapshot {
        snapshot_version: snapshot_version.into(),
        version,
        state: json!({"total": 1000, "folded": 0}),
    }
}

/// A stored snapshot with the aggregate's version is used, and later events are folded on it.
pub async fn snapshot_present(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let added = |n: u64| NewEvent::from_value("added", &json!({"type": "added", "n": n}));
    let provider = domain.provider();
    provider
        .append("counters", "c", 0, &[added(1), added(2)], None)
        .await
        .unwrap();
    // A snapshot that claims more than the events say proves that it was read.
    let snapshot = planted(Counter::SNAPSHOT.unwrap(), 3);
    provider
        .append("counters", "c", 2, &[added(3)], Some(&snapshot))
        .await
        .unwrap();
    let loaded: Versioned<Counter> = domain.load("c").await.unwrap();
    assert_eq!((loaded.version, loaded.total, loaded.folded), (3, 1000, 0));
    provider
        .append("counters", "c", 3, &[added(5)], None)
        .await
        .unwrap();
    let loaded: Versioned<Counter> = domain.load("c").await.unwrap();
    assert_eq!(
        (loaded.version, loaded.total, loaded.folded),
        (4, 1005, 1),
        "later events folded on it"
    );
    let after = CounterCommands::new(&domain)
        .add("c", Add { n: 10 })
        .await
        .unwrap();
    assert_eq!((after.version, after.total), (5, 1015));
    let stored = provider.snapshot("counters", "c").await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.state.clone()),
        (5, json!({"total": 1015, "folded": 2}))
    );
}

/// A snapshot of another version is ignored: the state is folded from the first event again,
/// and the next command stores one of the current version.
pub async fn snapshot_version_mismatch(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let added = |n: u64| NewEvent::from_value("added", &json!({"type": "added", "n": n}));
    let provider = domain.provider();
    provider
        .append("counters", "c", 0, &[added(1), added(2)], None)
        .await
        .unwrap();
    provider
        .append("counters", "c", 2, &[added(3)], Some(&planted("0", 3)))
        .await
        .unwrap();
    let loaded: Versioned<Counter> = domain.load("c").await.unwrap();
    assert_eq!((loaded.version, loaded.total, loaded.folded), (3, 6, 3));
    CounterCommands::new(&domain)
        .add("c", Add { n: 4 })
        .await
        .unwrap();
    let stored = provider.snapshot("counters", "c").await.unwrap().unwrap();
    assert_eq!(
        stored.snapshot_version, "1",
        "replaced by the current version"
    );
    assert_eq!(stored.state, json!({"total": 10, "folded": 4}));
}

/// A started handler handles new events without being asked, and stops when told.
pub async fn started_handler_wakes_on_append(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let commands = ExampleCommands::new(&domain);
    let handler = domain.handler(Recorder::default());
    handler.start();
    assert!(handler.is_running());
    create(&commands, "a").await;
    eventually("the started handler saw `a`", || {
        handler.projection().seen().len() == 1
    })
    .await;
    create(&commands, "b").await;
    eventually("the started handler saw `b`", || {
        handler.projection().seen().len() == 2
    })
    .await;
    handler.stop().await;
    assert!(!handler.is_running());
    create(&commands, "c").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        handler.projection().seen().len(),
        2,
        "a stopped handler does nothing"
    );
    assert_eq!(handler.run_once().await.unwrap(), 1);
}

/// Many writers race on one aggregate: exactly one append wins each version and nothing is lost.
pub async fn concurrent_writers_one_aggregate(factory: &impl Factory) {
    const WRITERS: u32 = 8;
    const EACH: u32 = 25;
    let provider = factory.provider(1000).await;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let provider = provider.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            let mut conflicts = 0u32;
            for n in 0..EACH {
                let event = NewEvent::from_value(
                    "incremented",
                    &json!({"type": "incremented", "by": writer * 1000 + n}),
                );
                loop {
                    let last = last_event(&*provider, "examples", "a").await;
                    let version = last.map_or(0, |e| e.meta.version);
                    match provider
                        .append("examples", "a", version, std::slice::from_ref(&event), None)
                        .await
                    {
                        Ok(stored) => {
                            assert_eq!(stored[0].meta.version, version + 1);
                            won.push(stored[0].meta.version);
                            break;
                        }
                        Err(error) if error.is_version_conflict() => conflicts += 1,
                        Err(error) => panic!("append: {error}"),
                    }
                }
            }
            (won, conflicts)
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        let (won, _conflicts) = task.await.unwrap();
        versions.extend(won);
    }
    versions.sort_unstable();
    let total = u64::from(WRITERS * EACH);
    assert_eq!(
        versions,
        (1..=total).collect::<Vec<_>>(),
        "one winner per version"
    );
    let history = provider
        .aggregate_events("examples", "a", 0, 1000)
        .await
        .unwrap();
    assert_eq!(history.len() as u64, total);
    let values: BTreeSet<_> = history
        .iter()
        .map(|e| e.value()["by"].as_u64().unwrap())
        .collect();
    assert_eq!(
        values.len() as u64,
        total,
        "every writer's events are there once"
    );
    assert!(
        history
            .windows(2)
            .all(|w| w[0].meta.position < w[1].meta.position)
    );
}

/// Appends that arrive together (a provider may send them to the store together, group commit)
/// each get their own outcome: on 6 aggregates, two appends race at version 0 and exactly one
/// wins each; 6 more aggregates have one append each, which all win. Every winner's returned
/// events are what is stored (versions, positions, documents), positions rise within an append,
/// and each loser stored nothing.
pub async fn appends_arriving_together(factory: &impl Factory) {
    const CONTESTED: usize = 6;
    const ALONE: usize = 6;
    let provider = factory.provider(1000).await;
    let appends: Vec<(String, usize)> = (0..CONTESTED)
        .flat_map(|k| [(format!("raced-{k}"), 0), (format!("raced-{k}"), 1)])
        .chain((0..ALONE).map(|k| (format!("alone-{k}"), 0)))
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(appends.len()));
    let mut tasks = Vec::new();
    for (id, contender) in appends {
        let (provider, barrier) = (provider.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let events: Vec<NewEvent> = (0..3)
                .map(|n| {
                    NewEvent::from_value(
                        "noted",
                        &json!({"type": "noted", "note": format!("{id}/{contender}/{n}")}),
                    )
                })
                .collect();
            barrier.wait().await;
            let outcome = provider.append("examples", &id, 0, &events, None).await;
            (id, contender, outcome)
        }));
    }
    let mut winners: HashMap<String, Vec<Arc<StoredEvent>>> = HashMap::new();
    let mut conflicts: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        let (id, contender, outcome) = task.await.unwrap();
        match outcome {
            Ok(stored) => {
                assert_eq!(stored.len(), 3, "`{id}`: every event of the append");
                for (n, event) in stored.iter().enumerate() {
                    assert_eq!(event.meta.aggregate_id, id);
                    assert_eq!(event.meta.version, n as u64 + 1);
                    assert_eq!(
                        event.value()["note"],
                        json!(format!("{id}/{contender}/{n}"))
                    );
                }
                assert!(
                    stored
                        .windows(2)
                        .all(|w| w[0].meta.position < w[1].meta.position),
                    "`{id}`: positions rise within the append"
                );
                assert!(
                    winners.insert(id.clone(), stored).is_none(),
                    "`{id}` won twice"
                );
            }
            Err(error) if error.is_version_conflict() => {
                assert!(id.starts_with("raced-"), "`{id}` had no rival: {error}");
                *conflicts.entry(id).or_default() += 1;
            }
            Err(error) => panic!("append to `{id}`: {error}"),
        }
    }
    assert_eq!(winners.len(), CONTESTED + ALONE, "one winner per aggregate");
    assert_eq!(conflicts.len(), CONTESTED);
    assert!(
        conflicts.values().all(|&n| n == 1),
        "one loser per raced aggregate"
    );
    for (id, won) in &winners {
        let history = provider
            .aggregate_events("examples", id, 0, 1000)
            .await
            .unwrap();
        let read: Vec<_> = history
            .iter()
            .map(|e| (e.meta.version, e.meta.position, e.value()))
            .collect();
        let returned: Vec<_> = won
            .iter()
            .map(|e| (e.meta.version, e.meta.position, e.value()))
            .collect();
        assert_eq!(
            read, returned,
            "`{id}`: what the append returned is what is stored"
        );
    }
}

/// Concurrent commands with `#[command(retry = ...)]` all succeed by deciding again.
pub async fn concurrent_commands_retry(factory: &impl Factory) {
    let domain = domain(factory, 1000).await;
    let commands = ExampleCommands::new(&domain);
    create(&commands, "a").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let commands = commands.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                commands
                    .increment_retrying("a", Increment { by: 1 })
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let loaded: Versioned<Example> = domain.load("a").await.unwrap();
    assert_eq!((loaded.version, loaded.count), (81, 80));
}

/// Many writers append to different aggregates while a started handler runs: the handler sees
/// every event exactly once, in position order.
pub async fn concurrent_writers_with_handler(factory: &impl Factory) {
    const WRITERS: usize = 8;
    const EACH: usize = 40;
    let domain = domain(factory, 7).await;
    let handler = domain.handler(Recorder::default());
    handler.start();
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let examples = ExampleCommands::new(&domain);
        let others = OtherCommands::new(&domain);
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                let id = format!("w{writer}-{n}");
                if n % 2 == 0 {
                    create(&examples, &id).await;
                } else {
                    others.ping(&id, Ping { n: n as u32 }).await.unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = WRITERS * EACH;
    eventually("the handler saw every event", || {
        handler.projection().seen().len() >= total
    })
    .await;
    handler.stop().await;
    assert_eq!(handler.run_once().await.unwrap(), 0);
    let seen = handler.projection().seen();
    assert_eq!(seen.len(), total, "each event exactly once");
    // Each aggregate's events in version order; across aggregates, in the order they became
    // visible, which is position order only where positions follow commits (not MongoDB's).
    let mut last_version: HashMap<(String, String), u64> = HashMap::new();
    for meta in &seen {
        let last = last_version
            .entry((meta.stream.clone(), meta.aggregate_id.clone()))
            .or_default();
        assert_eq!(
            meta.version,
            *last + 1,
            "`{}` in version order",
            meta.aggregate_id
        );
        *last = meta.version;
    }
    let mut seen_positions = positions(&seen);
    seen_positions.sort_unstable();
    let stored = domain
        .provider()
        .events_from(&["examples", "others"], 0, 10_000)
        .await
        .unwrap();
    assert_eq!(
        seen_positions,
        positions(&stored.iter().map(|e| e.meta.clone()).collect::<Vec<_>>())
    );
}

/// A command's events are visible all together or not at all, even to a concurrent reader.
pub async fn atomic_multi_event_appends(factory: &impl Factory) {
    const WRITERS: usize = 4;
    const EACH: usize = 25;
    let domain = domain(factory, 10_000).await;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let provider = domain.provider().clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut reads = 0u32;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let events = provider
                    .events_from(&["examples"], 0, 10_000)
                    .await
                    .unwrap();
                let mut per_aggregate: HashMap<String, usize> = HashMap::new();
                for event in &events {
                    *per_aggregate
                        .entry(event.meta.aggregate_id.clone())
                        .or_default() += 1;
                }
                for (id, count) in per_aggregate {
                    assert_eq!(count % 3, 0, "`{id}` shows {count} events: half a command");
                }
                reads += 1;
                if finished {
                    return reads;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let commands = ExampleCommands::new(&domain);
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                let id = format!("w{writer}-{}", n % 5);
                let notes = vec![Some(format!("{n}")), None, Some("last".into())];
                commands.note_many(&id, NoteMany { notes }).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let reads = reader.await.unwrap();
    assert!(reads > 0);
    let all = domain
        .provider()
        .events_from(&["examples"], 0, 10_000)
        .await
        .unwrap();
    assert_eq!(all.len(), WRITERS * EACH * 3);
}

/// The lease record's contract: a free record is taken by one swap only; a bookmark write is
/// fenced by holder and epoch (a renewal does not stale it, a takeover does); leasing a bookmark
/// does not store a position; leases are per bookmark.
pub async fn lease_contract(factory: &impl Factory) {
    let provider = factory.provider(100).await;
    let free = provider.lease("leased").await.unwrap();
    assert_eq!(free, Lease::default(), "a bookmark never leased");
    let stored = |position| Checkpoint::at(position);

    let a = free.granted_to("a");
    assert!(provider.swap_lease("leased", &free, &a).await.unwrap());
    let b = free.granted_to("b");
    assert!(
        !provider.swap_lease("leased", &free, &b).await.unwrap(),
        "a second grant from the free record must fail"
    );
    assert_eq!(provider.lease("leased").await.unwrap(), a);
    assert_eq!(
        provider.checkpoint("leased").await.unwrap(),
        None,
        "taking a lease stores no position (tail_stream depends on it)"
    );
    assert_eq!(provider.lease("other").await.unwrap(), Lease::default());

    let a_renewed = a.renewed();
    assert!(provider.swap_lease("leased", &a, &a_renewed).await.unwrap());
    assert!(
        !provider
            .swap_lease("leased", &a, &a.renewed())
            .await
            .unwrap(),
        "a swap from a stale beat must fail"
    );
    assert!(
        provider
            .set_checkpoint_leased("leased", &stored(7), &a)
            .await
            .unwrap(),
        "the holder stores its bookmark across its own renewals"
    );
    assert_eq!(provider.position("leased").await.unwrap(), Some(7));

    let b = a_renewed.granted_to("b");
    assert!(provider.swap_lease("leased", &a_renewed, &b).await.unwrap());
    assert_eq!(b.epoch, 2);
    assert!(
        !provider
            .set_checkpoint_leased("leased", &stored(5), &a)
            .await
            .unwrap(),
        "a holder that lost the lease must not store the bookmark"
    );
    assert_eq!(provider.position("leased").await.unwrap(), Some(7));
    assert!(
        provider
            .set_checkpoint_leased("leased", &stored(9), &b)
            .await
            .unwrap()
    );
    assert_eq!(provider.position("leased").await.unwrap(), Some(9));

    let released = b.released();
    assert!(provider.swap_lease("leased", &b, &released).await.unwrap());
    assert!(
        !provider
            .set_checkpoint_leased("leased", &stored(11), &b)
            .await
            .unwrap(),
        "a released lease fences its old holder"
    );
    assert!(
        !provider
            .set_checkpoint_leased("never-leased", &stored(3), &a)
            .await
            .unwrap(),
        "a bookmark without a lease record is not written under one"
    );
    assert_eq!(provider.position("never-leased").await.unwrap(), None);
    assert!(
        !provider
            .set_checkpoint_leased("leased", &stored(11), &released)
            .await
            .unwrap(),
        "a lease without a holder fences everyone"
    );
    // A bookmark stored before any lease (evtstore's, or one from before leases) is leased as it
    // is, and keeps its position.
    provider.set_position("stored-first", 4).await.unwrap();
    let free = provider.lease("stored-first").await.unwrap();
    assert_eq!(free, Lease::default());
    let d = free.granted_to("d");
    assert!(
        provider
            .swap_lease("stored-first", &free, &d)
            .await
            .unwrap()
    );
    assert!(
        !provider
            .swap_lease("stored-first", &free, &free.granted_to("e"))
            .await
            .unwrap()
    );
    assert_eq!(provider.position("stored-first").await.unwrap(), Some(4));
    assert!(
        provider
            .set_checkpoint_leased("stored-first", &stored(6), &d)
            .await
            .unwrap()
    );
    assert_eq!(provider.position("stored-first").await.unwrap(), Some(6));
    let c = released.granted_to("c");
    assert!(provider.swap_lease("leased", &released, &c).await.unwrap());
    assert_eq!(
        (c.epoch, provider.position("leased").await.unwrap()),
        (3, Some(9))
    );
}

/// Sixteen contenders swap the same free record at once: exactly one wins, then sixteen
/// takeovers of the winner's record: exactly one wins again.
pub async fn lease_swaps_race(factory: &impl Factory) {
    let provider = factory.provider(100).await;
    for round in 0..2 {
        let current = provider.lease("raced").await.unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|n| {
                let provider = provider.clone();
                let current = current.clone();
                tokio::spawn(async move {
                    let granted = current.granted_to(&format!("contender-{n}"));
                    provider
                        .swap_lease("raced", &current, &granted)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            won += usize::from(task.await.unwrap());
        }
        assert_eq!(won, 1, "round {round}: exactly one swap wins");
        assert_eq!(provider.lease("raced").await.unwrap().epoch, round + 1);
    }
}

/// Two started handlers of one bookmark: one holds the lease and handles events, the other
/// waits; once the holder stops (giving the lease up), the standby takes over at once and goes
/// on from the bookmark. Each event is handled once.
pub async fn one_started_handler_holds_the_lease(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let commands = ExampleCommands::new(&domain);
    // Long enough that a renewal slowed by a loaded machine (a durable write on a busy server)
    // does not let the lease lapse.
    let lease_time = Duration::from_millis(1500);
    let first = domain.handler(Recorder::default()).lease_time(lease_time);
    let second = domain.handler(Recorder::default()).lease_time(lease_time);
    first.start();
    eventually("the first handler holds the lease", || first.holds_lease()).await;
    second.start();
    create(&commands, "a").await;
    create(&commands, "b").await;
    eventually("the holder handled `a` and `b`", || {
        first.projection().seen().len() == 2
    })
    .await;
    tokio::time::sleep(lease_time).await;
    assert!(first.holds_lease(), "renewals keep the lease");
    assert!(!second.holds_lease(), "the standby waits");
    assert!(
        second.projection().seen().is_empty(),
        "the standby handles nothing"
    );

    first.stop().await;
    assert!(!first.holds_lease());
    let stopped = tokio::time::Instant::now();
    eventually("the standby took the lease", || second.holds_lease()).await;
    assert!(
        stopped.elapsed() < lease_time,
        "a lease given up is taken at once, not after the lease time ({:?})",
        stopped.elapsed()
    );
    create(&commands, "c").await;
    eventually("the new holder handled `c`", || {
        second.projection().seen().len() == 1
    })
    .await;
    assert_eq!(second.projection().seen()[0].aggregate_id, "c");
    assert_eq!(
        first.projection().seen().len(),
        2,
        "the stopped holder handles nothing more"
    );

    // A lease whose holder stops renewing (a killed process) is taken over after the lease time.
    let provider = domain.provider();
    second.stop().await;
    let lease = provider.lease("recorder").await.unwrap();
    let ghost = lease.granted_to("ghost");
    assert!(
        provider
            .swap_lease("recorder", &lease, &ghost)
            .await
            .unwrap()
    );
    let started = tokio::time::Instant::now();
    let third = domain.handler(Recorder::default()).lease_time(lease_time);
    third.start();
    create(&commands, "d").await;
    eventually("a standby took over from the silent holder", || {
        third.projection().seen().len() == 1
    })
    .await;
    assert!(
        started.elapsed() >= lease_time,
        "taken over after {:?}, before the lease time",
        started.elapsed()
    );
    assert_eq!(third.projection().seen()[0].aggregate_id, "d");
    third.stop().await;
}

/// Read your writes: a command's result can be awaited on a started handler (in this process,
/// or through the stored bookmark for another one); a stopped handler times out saying where it
/// is; one that stopped at a failing event says so at once.
pub async fn waiting_until_a_handler_handled_a_command(factory: &impl Factory) {
    let domain = domain(factory, 100).await;
    let commands = ExampleCommands::new(&domain);
    let handler = domain.handler(Recorder::default());
    handler.start();
    let wait = Duration::from_secs(30);
    for id in ["a", "b", "c"] {
        let example = create(&commands, id).await;
        handler.wait_until_handled(&example, wait).await.unwrap();
        let seen = handler.projection().seen();
        assert_eq!(seen.last().map(|meta| meta.aggregate_id.as_str()), Some(id));
    }
    // A second handler value of the same bookmark, never run here, sees the stored bookmark.
    let other = domain.handler(Recorder::default());
    let c = domain.load::<Example>("c").await.unwrap();
    other.wait_until_handled(&c, wait).await.unwrap();
    assert!(
        other.projection().seen().is_empty(),
        "it waited without handling"
    );
    let nothing = Versioned::<Example>::new("none");
    other.wait_until_handled(&nothing, wait).await.unwrap();

    handler.stop().await;
    let d = create(&commands, "d").await;
    let error = handler
        .wait_until_handled(&d, Duration::from_millis(100))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, Error::NotHandled { version: 1, .. }),
        "{message}"
    );
    for part in ["recorder", "examples/d", "not within 100ms"] {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }

    let poisoned = commands.poison("d", Poison).await.unwrap();
    let error = handler.run_once().await.unwrap_err();
    assert!(matches!(error, Error::Handler { .. }), "{error}");
    let started = tokio::time::Instant::now();
    let error = handler
        .wait_until_handled(&poisoned, wait)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("stopped at the event at position") && error.contains("is poisoned"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "said at once");
}
