//! Compile-time checks for generated code: whether a type implements one of evt's traits, as a
//! constant, so that a missing `#[event]` or `#[aggregate]` is one error at the user's token
//! (a panicking constant) instead of one trait error per use.

use std::marker::PhantomData;

use crate::__private::contains;
use crate::event::{EventStream, EventVariant};
use crate::{Aggregate, Event};

/// `Probe::<T>::IS_EVENT` (and the others) is `true` when `T` implements the trait: the
/// inherent constant, whose bound then holds, is chosen before [`ProbeFallback`]'s `false`
/// (with `ProbeFallback` in scope).
pub struct Probe<T: ?Sized>(PhantomData<fn() -> *const T>);

impl<T: Event> Probe<T> {
    /// `T` is an event enum.
    pub const IS_EVENT: bool = true;
}

impl<T: EventVariant> Probe<T> {
    /// `T` is an event type (a variant struct of an event enum).
    pub const IS_EVENT_VARIANT: bool = true;
}

impl<T: EventStream> Probe<T> {
    /// `T` is the event enum of an aggregate.
    pub const IS_EVENT_STREAM: bool = true;
}

impl<T: Aggregate> Probe<T> {
    /// `T` is an aggregate.
    pub const IS_AGGREGATE: bool = true;
}

/// The `false` of each [`Probe`] constant, for types that do not implement the trait.
pub trait ProbeFallback {
    /// Not an event enum.
    const IS_EVENT: bool = false;
    /// Not an event type.
    const IS_EVENT_VARIANT: bool = false;
    /// Not the event enum of an aggregate.
    const IS_EVENT_STREAM: bool = false;
    /// Not an aggregate.
    const IS_AGGREGATE: bool = false;
}

impl<T: ?Sized> ProbeFallback for Probe<T> {}

/// `<Checked<T, { check }> as Pass>::Out` is `T` once the constant `check` (an assertion with
/// the user's message) evaluates to `true`. When it panics instead, the type is an error, and
/// rustc reports nothing else about the code that uses it: one mistake, one message.
pub struct Checked<T: ?Sized, const OK: bool>(PhantomData<fn() -> *const T>);

/// See [`Checked`].
pub trait Pass {
    /// The checked type.
    type Out: ?Sized;
}

impl<T: ?Sized> Pass for Checked<T, true> {
    type Out = T;
}

impl<T: Into<crate::BoxError>> Probe<T> {
    /// `T` converts into the boxed error the runtime reports.
    pub const IS_BOX_ERROR: bool = true;
}

/// The `false` of [`Probe::IS_BOX_ERROR`].
pub trait ProbeBoxFallback {
    /// Does not convert into a boxed error.
    const IS_BOX_ERROR: bool = false;
}

impl<T: ?Sized> ProbeBoxFallback for Probe<T> {}

/// A message built in a constant from string parts, for `panic!("{}", message.as_str())`: a
/// constant's panic cannot format, and the stream names it shows are only known to rustc.
pub struct Message {
    bytes: [u8; 1024],
    len: usize,
}

impl Message {
    /// An empty message.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Message {
            bytes: [0; 1024],
            len: 0,
        }
    }

    /// Appends `part` (cut at 1024 bytes).
    pub const fn push(mut self, part: &str) -> Self {
        let part = part.as_bytes();
        let mut i = 0;
        while i < part.len() && self.len < self.bytes.len() {
            self.bytes[self.len] = part[i];
            self.len += 1;
            i += 1;
        }
        self
    }

    /// Appends each of `items` once, in backticks, separated by commas.
    pub const fn push_list(mut self, items: &[&str]) -> Self {
        let mut i = 0;
        let mut first = true;
        while i < items.len() {
            let (before, _) = items.split_at(i);
            if !contains(before, items[i]) {
                if !first {
                    self = self.push(", ");
                }
                self = self.push("`").push(items[i]).push("`");
                first = false;
            }
            i += 1;
        }
        self
    }

    /// The message.
    pub const fn as_str(&self) -> &str {
        let (bytes, _) = self.bytes.split_at(self.len);
        match std::str::from_utf8(bytes) {
            Ok(message) => message,
            Err(_) => "(the message was cut inside a character)",
        }
    }
}

/// Whether every one of `streams` is one of `handled`, in a constant.
pub const fn all_in(streams: &[&str], handled: &[&str]) -> bool {
    let mut i = 0;
    while i < streams.len() {
        if !contains(handled, streams[i]) {
            return false;
        }
        i += 1;
    }
    true
}
