//! Event sourcing and CQRS for Rust services, driven by macros: the runtime of `evt`,
//! a port of the TypeScript library evtstore.
//!
//! | evtstore | evt |
//! |---|---|
//! | an event union `{type: 'departmentCreated', ...}` | an enum with [`#[event]`](macro@event): one struct per event type |
//! | `createAggregate({stream, create, fold})` | [`#[aggregate(stream = "...", events = ...)]`](macro@aggregate) on the fold methods |
//! | `createDomain({provider, useCache}, ...)` | [`Domain::new`], [`Domain::with_cache`] |
//! | `createCommands(domain.departments, {...})` | [`#[commands(client = ...)]`](macro@commands): a typed client |
//! | `createHandler(bookmark, streams, options)` + `handle(...)` | [`#[projection(bookmark = "...", streams = [...])]`](macro@projection), [`Handler`] |
//! | `VersionError` | [`Error::VersionConflict`] |
//! | `Provider` | [`Provider`]; [`MemoryProvider`] here, others in their own crates |
//!
//! # Example
//!
//! ```
//! use evt_core::{aggregate, commands, event, Domain, MemoryProvider, Versioned};
//!
//! #[event]
//! #[derive(Debug, Clone, PartialEq)]
//! pub enum CounterEvent {
//!     Incremented { by: u32 },
//!     Reset,
//! }
//!
//! #[derive(Debug, Clone, Default)]
//! pub struct Counter {
//!     value: u32,
//! }
//!
//! #[aggregate(stream = "counters", events = CounterEvent)]
//! impl Counter {
//!     fn incremented(&mut self, event: &Incremented) {
//!         self.value += event.by;
//!     }
//!     fn reset(&mut self, _: &Reset) {
//!         self.value = 0;
//!     }
//! }
//!
//! pub struct Increment {
//!     pub by: u32,
//! }
//!
//! #[commands(client = pub CounterCommands)]
//! impl Counter {
//!     fn increment(counter: &Versioned<Self>, command: Increment) -> Result<Incremented, String> {
//!         if counter.value + command.by > 10 {
//!             return Err(format!("{} would pass 10", counter.value + command.by));
//!         }
//!         Ok(Incremented { by: command.by })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let domain = Domain::new(MemoryProvider::new());
//! let counters = CounterCommands::new(&domain);
//! let counter = counters.increment("counter-1", Increment { by: 4 }).await?;
//! assert_eq!((counter.version, counter.value), (1, 4));
//! assert!(counters.increment("counter-1", Increment { by: 7 }).await.is_err());
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `macros` | yes | the macros [`event`](macro@event), [`aggregate`](macro@aggregate), [`commands`](macro@commands), [`projection`](macro@projection) |
//! | `test-util` | no | [`testing`]: the conformance suite every provider runs |

#![cfg_attr(docsrs, feature(doc_cfg))]

// Lets the macros' `::evt_core` paths resolve inside this crate too (the conformance suite uses them).
extern crate self as evt_core;

mod aggregate;
mod cache;
mod checks;
mod command;
mod domain;
mod error;
mod event;
mod group;
mod handler;
mod lease;
mod memory;
mod metadata;
mod provider;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod testkit;
mod upcast;
mod util;

/// The `chrono` crate, whose `DateTime<Utc>` is [`Meta::timestamp`].
pub use chrono;

pub use aggregate::{Aggregate, Versioned};
pub use domain::Domain;
pub use error::{BoxError, CommandError, Error};
pub use event::Event;
pub use handler::{DEFAULT_LEASE_TIME, DEFAULT_POLL_INTERVAL, Handler, HandlerOptions, Projection};
pub use memory::{DEFAULT_LIMIT, MemoryProvider};
pub use metadata::Metadata;
pub use provider::{
    Checkpoint, Lease, Meta, NewEvent, Provider, Snapshot, StoredEvent, StreamSummary,
};
pub use upcast::Upcasters;

/// Marks an event enum: one struct per variant, stored as evtstore stores events.
///
/// ```
/// #[evt_core::event]
/// #[derive(Debug, Clone, PartialEq)]
/// pub enum DepartmentEvent {
///     DepartmentCreated { tenant_id: String, name: String, description: Option<String> },
///     DepartmentDeleted { deleted_by: Option<String> },
/// }
/// // becomes `pub struct DepartmentCreated { pub tenant_id: String, .. }`, ..., and
/// // `pub enum DepartmentEvent { DepartmentCreated(DepartmentCreated), .. }`, stored as
/// // `{"type": "departmentCreated", "tenantId": "..", "name": ".."}` (a `None` is left out).
/// let event: DepartmentEvent = DepartmentDeleted { deleted_by: None }.into();
/// assert_eq!(evt_core::Event::event_type(&event), "departmentDeleted");
/// ```
///
/// Variants must have named fields or none:
///
/// ```compile_fail
/// #[evt_core::event]
/// #[derive(Debug, Clone)]
/// pub enum Bad {
///     Tuple(String),
/// }
/// ```
#[cfg(feature = "macros")]
pub use evt_macros::event;

/// Implements [`Aggregate`] from an impl block of fold methods, one per event type it handles.
///
/// A fold method is `fn name(&mut self, event: EventType)`: it takes its event by value (to move
/// the event's fields into the state without cloning) or by reference (`event: &EventType`).
///
/// Arguments: `stream = "..."` (required), `events = EnumType` (required),
/// `snapshot = "1"` (persist the state, reused only with the same version; needs `Serialize` and
/// `Deserialize`), `create = path::to_fn` (initial state; `Default::default` otherwise),
/// `crate = "path"` (where `evt_core` is).
///
/// ```compile_fail
/// # use evt_core::aggregate;
/// # #[evt_core::event] #[derive(Debug, Clone)] pub enum E { Happened }
/// # #[derive(Clone, Default)] struct State;
/// #[aggregate(events = E)] // error: missing `stream`
/// impl State {
///     fn happened(&mut self, _: &Happened) {}
/// }
/// ```
#[cfg(feature = "macros")]
pub use evt_macros::aggregate;

/// Generates a typed command client from an impl block of command handlers on an aggregate.
///
/// Each `fn name(aggregate: &Versioned<Self>, command: Payload) -> Result<Events, YourError>`
/// (or `async fn`) becomes `client.name(aggregate_id, payload).await`, which loads the
/// aggregate, decides, appends at the loaded version and returns the new aggregate, or
/// `CommandError::Rejected { reason: YourError, .. }`. `Events` is one event (an event type or
/// the enum), `()` for none, `Option<_>`, `Vec<_>`, an array, or a tuple of up to four events
/// each of which may be an `Option`; `YourError` is any type. Handlers are associated functions
/// of the aggregate type, beside its fold methods: their names must differ from those (a handler
/// named `create` hides `Aggregate::create`, then called as `<A as Aggregate>::create()`).
/// `#[command(retry = N)]` on a handler decides again up to `N` times after a version conflict
/// (its payload must be `Clone`), after a short random pause.
///
/// ```compile_fail
/// # use evt_core::{aggregate, commands, event, Versioned};
/// # #[event] #[derive(Debug, Clone)] pub enum E { Happened }
/// # #[derive(Clone, Default)] pub struct State;
/// # #[aggregate(stream = "s", events = E)] impl State {}
/// #[commands] // error: missing `client`
/// impl State {
///     fn act(_: &Versioned<Self>, _: ()) -> Result<Happened, String> { Ok(Happened) }
/// }
/// ```
#[cfg(feature = "macros")]
pub use evt_macros::commands;

/// Options of one command handler inside a [`commands`](macro@commands) block:
/// `#[command(retry = 3)]`. Read and removed by `#[commands]`, so it needs no import there;
/// anywhere else it is an error saying so.
#[cfg(feature = "macros")]
pub use evt_macros::command;

/// Implements [`Projection`] from an impl block of handler methods, one per event type.
///
/// Each `fn` or `async fn name(&self, id: &str, event: &EventType, meta: &Meta)` handles one
/// event type, returning `()` or `Result<(), E>` where `E` converts into
/// `Box<dyn std::error::Error + Send + Sync>` (a type implementing `std::error::Error`, a
/// `String`, a boxed error). The type must belong to one of the `streams`, and each listed
/// stream must have a handler; the projection type must be `Send + Sync + 'static`. Events of other types
/// pass, but one of a type that its stream's event enum does not know (renamed or removed) stops
/// the handler as it stops loading the aggregate, unless `skip_unknown_events` is set.
/// Arguments: `bookmark = "..."` and `streams = ["..."]` (required; one stream may be written
/// `streams = "..."`), `tail_stream`, `always_tail_stream`, `continue_on_error`,
/// `skip_unknown_events` (flags), `crate = "path"`.
#[cfg(feature = "macros")]
pub use evt_macros::projection;

/// The traits, for `use evt_core::prelude::*`.
pub mod prelude {
    pub use crate::{Aggregate, Event, Projection, Provider};
}

#[doc(hidden)]
pub mod __private {
    //! What generated code and the provider crates need, so that users need not depend on it
    //! themselves. Not part of the public API: it changes without notice.
    pub use crate::command::Commands;
    pub use crate::event::{Decision, EventOf, EventStream, EventVariant, IntoEvents};
    pub use crate::group::{Answered, Batcher, Request};
    /// Helpers for provider implementations.
    pub mod util {
        pub use crate::util::*;
    }
    pub use serde;
    pub use serde_json;
    pub use std::boxed::Box;
    pub use std::vec;
    pub use std::vec::Vec;

    pub use crate::checks::{
        Checked, Message, Pass, Probe, ProbeBoxFallback, ProbeFallback, all_in,
    };

    /// Compares two strings in a constant (stream checks of `#[projection]`).
    pub const fn str_eq(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    /// Whether `stream` is one of `streams`, in a constant.
    pub const fn contains(streams: &[&str], stream: &str) -> bool {
        let mut i = 0;
        while i < streams.len() {
            if str_eq(streams[i], stream) {
                return true;
            }
            i += 1;
        }
        false
    }

    /// The stored document of one event type, with its `type` first, as JSON text.
    pub fn encode<T: serde::Serialize>(
        event_type: &'static str,
        event: &T,
    ) -> Result<Box<serde_json::value::RawValue>, serde_json::Error> {
        #[derive(serde::Serialize)]
        #[serde(crate = "serde")]
        struct Tagged<'a, T> {
            #[serde(rename = "type")]
            event_type: &'static str,
            #[serde(flatten)]
            event: &'a T,
        }
        serde_json::value::to_raw_value(&Tagged { event_type, event })
    }

    /// One event type read from its stored document.
    pub fn decode<T: serde::de::DeserializeOwned>(
        json: &serde_json::value::RawValue,
    ) -> Result<T, serde_json::Error> {
        serde_json::from_str(json.get())
    }

    /// The error for a `type` that is none of the enum's, or for a document without a string
    /// `type` (`found` is `""`).
    pub fn unknown_type(
        found: &str,
        json: &serde_json::value::RawValue,
        expected: &'static [&'static str],
    ) -> serde_json::Error {
        crate::event::type_error(found, json, expected)
    }

    /// `(&CloneProbe::<T>::new()).cloner()` is `Some(T::clone)` when `T: Clone` and `None`
    /// otherwise (with [`ProbeClone`] and [`ProbeNoClone`] in scope): a command whose payload can
    /// be cloned may decide on a cached aggregate first, since it can decide again.
    pub struct CloneProbe<T>(std::marker::PhantomData<fn() -> T>);

    impl<T> CloneProbe<T> {
        /// The probe of `T`.
        #[allow(clippy::new_without_default)]
        pub const fn new() -> Self {
            CloneProbe(std::marker::PhantomData)
        }
    }

    /// Chosen by method resolution when `T: Clone`.
    pub trait ProbeClone<T> {
        /// `Some(T::clone)`.
        fn cloner(&self) -> Option<fn(&T) -> T>;
    }

    impl<T: Clone> ProbeClone<T> for CloneProbe<T> {
        fn cloner(&self) -> Option<fn(&T) -> T> {
            Some(T::clone)
        }
    }

    /// Chosen by method resolution (one auto-reference later) when `T` is not `Clone`.
    pub trait ProbeNoClone<T> {
        /// `None`.
        fn cloner(&self) -> Option<fn(&T) -> T>;
    }

    impl<T> ProbeNoClone<T> for &CloneProbe<T> {
        fn cloner(&self) -> Option<fn(&T) -> T> {
            None
        }
    }

    /// Turns a handler's error into the boxed error the runtime reports.
    pub fn box_error<E: Into<crate::BoxError>>(error: E) -> crate::BoxError {
        error.into()
    }
}
