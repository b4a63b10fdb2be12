//! The errors of the store, of commands and of event handlers.

use std::fmt;

/// A boxed error from a provider's driver or a user's handler.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong when reading or writing events.
///
/// Every variant names what it was working on: the stream, the aggregate id, the version,
/// the position or the bookmark.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another writer appended to the aggregate first (optimistic concurrency).
    #[error(
        "version conflict on `{stream}/{aggregate_id}`: expected version {expected}, \
         but another writer appended first"
    )]
    VersionConflict {
        /// The aggregate's stream.
        stream: String,
        /// The aggregate's id.
        aggregate_id: String,
        /// The version the append expected to find.
        expected: u64,
    },

    /// An append was sent, but the connection failed before the store answered, and whether its
    /// events were stored could not be settled (the provider looked for them and did not find
    /// them, or could not look).
    ///
    /// Never retried automatically: load the aggregate to see whether the events are there
    /// before deciding again, or the command may be applied twice.
    #[error(
        "append to `{stream}/{aggregate_id}` at version {expected}: outcome unknown, the events \
         may or may not be stored ({source}); load the aggregate to see"
    )]
    AppendUnknown {
        /// The aggregate's stream.
        stream: String,
        /// The aggregate's id.
        aggregate_id: String,
        /// The version the append expected to find.
        expected: u64,
        /// Why the outcome is unknown.
        source: BoxError,
    },

    /// The store could not do it for now (unreachable, failing over, too busy with conflicting
    /// writes); nothing was changed, and the same call may succeed if tried again.
    #[error("{operation} failed for now, nothing was changed (try again): {source}")]
    Transient {
        /// What the provider was doing, e.g. "append to `departments/d-1` at version 3".
        operation: String,
        /// The driver's error.
        source: BoxError,
    },

    /// A stored event could not be turned into the typed event.
    #[error(
        "cannot decode event at position {position} (`{stream}/{aggregate_id}` version {version}): {source}"
    )]
    Decode {
        /// The event's stream.
        stream: String,
        /// The event's aggregate id.
        aggregate_id: String,
        /// The event's version.
        version: u64,
        /// The event's position.
        position: u64,
        /// What serde said.
        source: serde_json::Error,
    },

    /// A typed event or aggregate could not be serialized.
    #[error("cannot encode {what} for `{stream}/{aggregate_id}`: {source}")]
    Encode {
        /// What was encoded: an event type or "snapshot".
        what: String,
        /// The aggregate's stream.
        stream: String,
        /// The aggregate's id.
        aggregate_id: String,
        /// What serde said.
        source: serde_json::Error,
    },

    /// The provider returned an aggregate's history with a hole or out of order.
    #[error(
        "history of `{stream}/{aggregate_id}` is not contiguous: expected version {expected}, found {found}"
    )]
    Gap {
        /// The aggregate's stream.
        stream: String,
        /// The aggregate's id.
        aggregate_id: String,
        /// The version that should have come next.
        expected: u64,
        /// The version that came.
        found: u64,
    },

    /// An event handler failed on an event.
    #[error(
        "handler `{bookmark}` failed on event at position {position} \
         (`{stream}/{aggregate_id}` version {version}, type `{event_type}`): {source}"
    )]
    Handler {
        /// The handler's bookmark name (`(memory)` for an in-memory bookmark).
        bookmark: &'static str,
        /// The event's stream.
        stream: String,
        /// The event's aggregate id.
        aggregate_id: String,
        /// The event's version.
        version: u64,
        /// The event's position.
        position: u64,
        /// The event's type name.
        event_type: String,
        /// What the handler returned, or why its event could not be decoded.
        source: BoxError,
    },

    /// The storage failed; `operation` says on what.
    #[error("{operation} failed: {source}")]
    Provider {
        /// What the provider was doing, e.g. "append to `departments/d-1` at version 3".
        operation: String,
        /// The driver's error.
        source: BoxError,
    },
}

impl Error {
    /// A storage failure while doing `operation`.
    pub fn provider(operation: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Provider {
            operation: operation.into(),
            source: source.into(),
        }
    }

    /// A failure that may pass if the same call is made again, with nothing changed in between.
    pub fn transient(operation: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Transient {
            operation: operation.into(),
            source: source.into(),
        }
    }

    /// Whether this is a [`Error::VersionConflict`].
    pub fn is_version_conflict(&self) -> bool {
        matches!(self, Error::VersionConflict { .. })
    }

    /// Whether this is an [`Error::Transient`]: nothing was changed, and trying again may work.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient { .. })
    }

    /// Whether this is an [`Error::AppendUnknown`]: the append may or may not be stored.
    pub fn is_append_unknown(&self) -> bool {
        matches!(self, Error::AppendUnknown { .. })
    }
}

/// The result of a command: the command's own rejection, or a failure of the store.
///
/// `E` is the error type the command handler returns; match on [`CommandError::Rejected`]
/// to get it back.
#[derive(Debug)]
pub enum CommandError<E> {
    /// The command handler decided against the command.
    Rejected {
        /// The aggregate's stream.
        stream: &'static str,
        /// The aggregate's id.
        aggregate_id: String,
        /// The command's name.
        command: &'static str,
        /// What the handler returned.
        reason: E,
    },
    /// Loading or appending failed, or another writer won the race ([`Error::VersionConflict`]).
    Store(Error),
}

impl<E> CommandError<E> {
    /// The handler's rejection, if this is one.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            CommandError::Rejected { reason, .. } => Some(reason),
            CommandError::Store(_) => None,
        }
    }

    /// Whether another writer appended to the aggregate first.
    pub fn is_version_conflict(&self) -> bool {
        matches!(self, CommandError::Store(e) if e.is_version_conflict())
    }

    /// Whether the store failed for now without changing anything ([`Error::Transient`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, CommandError::Store(e) if e.is_transient())
    }
}

impl<E> From<Error> for CommandError<E> {
    fn from(error: Error) -> Self {
        CommandError::Store(error)
    }
}

impl<E: fmt::Display> fmt::Display for CommandError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Rejected {
                stream,
                aggregate_id,
                command,
                reason,
            } => write!(
                f,
                "command `{command}` on `{stream}/{aggregate_id}` rejected: {reason}"
            ),
            CommandError::Store(error) => fmt::Display::fmt(error, f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for CommandError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CommandError::Rejected { .. } => None,
            CommandError::Store(error) => Some(error),
        }
    }
}
