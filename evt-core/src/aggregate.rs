//! Aggregates: a stream, an initial state and a fold; and [`Versioned`], the loaded aggregate.

use std::ops::Deref;

use serde_json::Value;

use crate::{Error, Event, StoredEvent};

/// A state rebuilt by folding its events, stored in one stream.
///
/// Implemented by `#[aggregate(stream = "...", events = ...)]` on the impl block of fold methods.
pub trait Aggregate: Clone + Send + Sync + 'static {
    /// The event enum this aggregate folds.
    type Event: Event;

    /// The stream its events are stored in, e.g. `"departments"`.
    const STREAM: &'static str;

    /// `Some(version)` when the state is persisted as a snapshot (evtstore's `persistAggregate`);
    /// a snapshot is reused only when its version is this one.
    const SNAPSHOT: Option<&'static str> = None;

    /// The state before any event (evtstore's `create`).
    fn create() -> Self;

    /// Applies one event (evtstore's `fold`); events without a fold method leave the state as it is.
    fn fold(&mut self, event: Self::Event);

    /// The state as a snapshot document. Generated when `SNAPSHOT` is set.
    fn to_snapshot(&self) -> Result<Value, serde_json::Error> {
        Err(serde::ser::Error::custom("snapshots are not enabled"))
    }

    /// The state from a snapshot document. Generated when `SNAPSHOT` is set.
    fn from_snapshot(value: &Value) -> Result<Self, serde_json::Error> {
        let _ = value;
        Err(serde::de::Error::custom("snapshots are not enabled"))
    }
}

/// A loaded aggregate: its id, its version (0 = no events yet) and its state.
///
/// Dereferences to the state, so `department.name` reads the state's field while
/// `department.version` and `department.id` read the wrapper's.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<A> {
    /// The aggregate's id.
    pub id: String,
    /// The number of events folded in: 0 when the aggregate has none.
    pub version: u64,
    /// The state.
    pub state: A,
}

impl<A: Aggregate> Versioned<A> {
    /// An aggregate with no events: `A::create()` at version 0.
    pub fn new(id: impl Into<String>) -> Self {
        Versioned {
            id: id.into(),
            version: 0,
            state: A::create(),
        }
    }

    /// Folds a stored event, checking that it is the next one.
    pub(crate) fn apply(&mut self, stored: &StoredEvent) -> Result<(), Error> {
        let meta = &stored.meta;
        if meta.version != self.version + 1 {
            return Err(Error::Gap {
                stream: A::STREAM.to_owned(),
                aggregate_id: self.id.clone(),
                expected: self.version + 1,
                found: meta.version,
            });
        }
        self.state.fold(decode_event::<A>(stored)?);
        self.version = meta.version;
        Ok(())
    }
}

impl<A> Versioned<A> {
    /// Whether the aggregate has any event (evtstore's `if (agg.version)`).
    pub fn exists(&self) -> bool {
        self.version > 0
    }
}

impl<A> Deref for Versioned<A> {
    type Target = A;

    fn deref(&self) -> &A {
        &self.state
    }
}

/// The typed event of a stored event of `A`'s stream; an error naming it when it does not decode.
pub(crate) fn decode_event<A: Aggregate>(stored: &StoredEvent) -> Result<A::Event, Error> {
    stored.decode::<A::Event>().map_err(|source| Error::Decode {
        stream: stored.meta.stream.clone(),
        aggregate_id: stored.meta.aggregate_id.clone(),
        version: stored.meta.version,
        position: stored.meta.position,
        source,
    })
}
