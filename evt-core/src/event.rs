//! Typed events: the enum an aggregate folds, and one struct per event type.
//!
//! Write the enum and put `#[evt_core::event]` on it; the macro implements everything here.

use std::fmt::Debug;

use serde_json::value::RawValue;

/// An aggregate's event enum, stored as evtstore stores it: `{"type": "departmentCreated", ...camelCase fields}`.
///
/// Implemented by `#[event]`, never by hand.
pub trait Event: Clone + Debug + Send + Sync + Sized + 'static {
    /// Every event type name of the enum, in declaration order.
    const TYPES: &'static [&'static str];

    /// This event's type name, e.g. `"departmentCreated"`.
    fn event_type(&self) -> &'static str;

    /// The stored document, including its `type` (first), as JSON text.
    fn to_json(&self) -> Result<Box<RawValue>, serde_json::Error>;

    /// Reads a stored document of type `event_type` (its `type`); fails on an unknown type or on
    /// fields that do not fit.
    fn from_json(event_type: &str, json: &RawValue) -> Result<Self, serde_json::Error>;
}

/// One event type: a struct that `#[event]` made from a variant of the enum `Self::Event`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event type",
    label = "not a variant of an `#[event]` enum",
    note = "event types are the variants of an enum marked `#[evt_core::event]`"
)]
pub trait EventVariant: Into<Self::Event> + Sized {
    /// The enum this event type belongs to.
    type Event: Event;
    /// The type name, e.g. `"departmentCreated"`.
    const TYPE: &'static str;
    /// Reads this event type from its stored document (its `type` is not checked here).
    fn from_json(json: &RawValue) -> Result<Self, serde_json::Error>;
}

/// Says that `Self` is a variant of the event enum `E`; lets a fold method pick its event out.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event of `{E}`",
    label = "not a variant of `{E}`",
    note = "an aggregate folds only the variants of the enum it names in `events = ...`"
)]
pub trait EventOf<E>: Sized {
    /// This variant of the enum, if `event` is one; otherwise `event` back.
    fn take(event: E) -> Result<Self, E>;
}

/// Ties an event enum to the stream of the aggregate that folds it.
///
/// Implemented by `#[aggregate]`, so that projections can check their handlers against their streams.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not the event type of any aggregate",
    label = "no `#[aggregate(events = {Self})]` names this enum",
    note = "add `#[evt_core::aggregate(stream = \"...\", events = {Self})]` to the aggregate's fold `impl` block"
)]
pub trait EventStream: Event {
    /// The stream events of this type are stored in.
    const STREAM: &'static str;
}

/// What a command handler may return as its events: one event, none, or several.
///
/// Implemented for the event enum and each event type (one event), `()` (none), `Option<T>`,
/// `Vec<T>`, arrays and tuples of up to four events of any types of the same enum.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned as events of `{E}`",
    label = "a command returns an event, `()`, `Option`, `Vec`, an array or a tuple of events",
    note = "return `Ok(SomeEvent {{ .. }})`, `Ok(())`, `Ok(None)` or `Ok(vec![a.into(), b.into()])`"
)]
pub trait IntoEvents<E> {
    /// The events, in order.
    fn into_events(self) -> Vec<E>;
}

impl<E> IntoEvents<E> for () {
    fn into_events(self) -> Vec<E> {
        Vec::new()
    }
}

impl<E, T: Into<E>> IntoEvents<E> for Option<T> {
    fn into_events(self) -> Vec<E> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<E, T: Into<E>> IntoEvents<E> for Vec<T> {
    fn into_events(self) -> Vec<E> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<E, T: Into<E>, const N: usize> IntoEvents<E> for [T; N] {
    fn into_events(self) -> Vec<E> {
        self.into_iter().map(Into::into).collect()
    }
}

macro_rules! tuple_into_events {
    ($($name:ident)+) => {
        impl<E, $($name: Into<E>),+> IntoEvents<E> for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_events(self) -> Vec<E> {
                let ($($name,)+) = self;
                vec![$($name.into()),+]
            }
        }
    };
}
tuple_into_events!(A B);
tuple_into_events!(A B C);
tuple_into_events!(A B C D);

/// The outcome of a command handler: events to append, or the handler's own error.
///
/// Implemented for `Result<T, E>` where `T: IntoEvents`; the generated command client uses it
/// to name the error type of every command.
#[diagnostic::on_unimplemented(
    message = "a command handler must return `Result<events, error>`, found `{Self}`",
    note = "for example `-> Result<DepartmentCreated, DepartmentError>`"
)]
pub trait Decision<E> {
    /// The handler's error type.
    type Error;
    /// The events to append, or the rejection.
    fn into_events(self) -> Result<Vec<E>, Self::Error>;
}

impl<E, T: IntoEvents<E>, R> Decision<E> for Result<T, R> {
    type Error = R;
    fn into_events(self) -> Result<Vec<E>, R> {
        self.map(IntoEvents::into_events)
    }
}
