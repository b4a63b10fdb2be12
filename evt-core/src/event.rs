//! Typed events: the enum an aggregate folds, and one struct per event type.
//!
//! Write the enum and put `#[evt_core::event]` on it; the macro implements everything here.

use std::fmt::{self, Debug};

use serde_json::Value;
use serde_json::value::RawValue;

/// An aggregate's event enum, stored as evtstore stores it: `{"type": "departmentCreated", ...camelCase fields}`.
///
/// Implemented by `#[event]`, never by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event enum",
    label = "not an enum marked `#[event]`",
    note = "add `#[evt_core::event]` above the enum `{Self}` (with `#[derive(Debug, Clone)]`)"
)]
pub trait Event: Clone + Debug + Send + Sync + Sized + 'static {
    /// Every event type name of the enum, in declaration order.
    const TYPES: &'static [&'static str];

    /// This event's type name, e.g. `"departmentCreated"`.
    fn event_type(&self) -> &'static str;

    /// The stored document, including its `type` (first), as JSON text.
    fn to_json(&self) -> Result<Box<RawValue>, serde_json::Error>;

    /// Reads a stored document of type `event_type` (its `type`); fails on an unknown type, on a
    /// document without a string `type` (`event_type` is `""` then) or on fields that do not fit.
    fn from_json(event_type: &str, json: &RawValue) -> Result<Self, serde_json::Error>;
}

/// One event type: a struct that `#[event]` made from a variant of the enum `Self::Event`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event type",
    label = "not a variant of an `#[event]` enum",
    note = "event types are the variants of an enum marked `#[evt_core::event]`"
)]
#[doc(hidden)]
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
#[doc(hidden)]
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
#[doc(hidden)]
pub trait EventStream: Event {
    /// The stream events of this type are stored in.
    const STREAM: &'static str;
}

/// What a command handler may return as its events: one event, none, or several.
///
/// Implemented for the event enum and each event type (one event), `()` (none), `Option<T>`,
/// `Vec<T>`, arrays, and tuples of up to four of these (`(Opened, Option<Named>)`) for events of
/// any types of the same enum.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned as events of `{E}`",
    label = "a command returns an event, `()`, `Option`, `Vec`, an array, or a tuple of events and `Option`s of events",
    note = "return a variant of `{E}` (`Ok(Variant {{ .. }})`), `Ok(())`, `Ok(None)`, `Ok(vec![a.into(), b.into()])` or `Ok((a, Some(b)))`"
)]
#[doc(hidden)]
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

// Each element is itself events: one event, or an `Option` (or `Vec`, ...) of them, so that
// `(Opened, Option<Named>)` is one event and maybe another.
macro_rules! tuple_into_events {
    ($($name:ident)+) => {
        impl<E, $($name: IntoEvents<E>),+> IntoEvents<E> for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_events(self) -> Vec<E> {
                let ($($name,)+) = self;
                let mut events = Vec::new();
                $(events.extend($name.into_events());)+
                events
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
    note = "for example `-> Result<T, String>` where `T` is a variant of `{E}`, an `Option` or a `Vec` of them, or a tuple of these"
)]
#[doc(hidden)]
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

/// Why a stored event of type `found` is none of `expected`: the error that loading an aggregate
/// and running a handler both give.
///
/// With `found` empty, the document is looked at to say what is wrong with it: it is not an
/// object, it has no `type`, or its `type` is not a string.
pub(crate) fn type_error(found: &str, json: &RawValue, expected: &[&str]) -> serde_json::Error {
    let problem = if found.is_empty() {
        untyped(json)
    } else {
        None
    };
    let message = problem.unwrap_or_else(|| {
        format!(
            "unknown event type `{}`, expected {}",
            crate::error::cut(found),
            OneOf(expected)
        )
    });
    serde::de::Error::custom(message)
}

/// What keeps a stored document from having an event type, or `None` if it has a string `type`.
fn untyped(json: &RawValue) -> Option<String> {
    let Ok(value) = serde_json::from_str::<Value>(json.get()) else {
        return Some("the stored document is not an event object: it is not JSON".to_owned());
    };
    match value {
        Value::Object(fields) => match fields.get("type") {
            None => Some("the stored event has no `type`".to_owned()),
            Some(Value::String(_)) => None,
            Some(other) => Some(format!(
                "the stored event's `type` is not a string: it is {}",
                kind(other)
            )),
        },
        other => Some(format!(
            "the stored document is not an event object (`{{\"type\": \"...\", ...}}`): it is {}",
            kind(&other)
        )),
    }
}

/// What a JSON value is, for a message.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "`null`",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `` `a` ``, `` one of `a`, `b` `` or `no type at all`, as serde lists expected names.
struct OneOf<'a>(&'a [&'a str]);

impl fmt::Display for OneOf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => f.write_str("no type at all"),
            [one] => write!(f, "`{one}`"),
            names => {
                f.write_str("one of ")?;
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "`{name}`")?;
                }
                Ok(())
            }
        }
    }
}
