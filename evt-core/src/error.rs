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
         but another writer appended first",
        stream = cut(.stream),
        aggregate_id = cut(.aggregate_id)
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
         may or may not be stored ({source}); load the aggregate to see",
        stream = cut(.stream),
        aggregate_id = cut(.aggregate_id)
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
    #[error(
        "{operation} failed for now, nothing was changed (try again): {source}",
        operation = Cut::new(.operation, OPERATION_CHARS)
    )]
    Transient {
        /// What the provider was doing, e.g. "append to `departments/d-1` at version 3".
        operation: String,
        /// The driver's error.
        source: BoxError,
    },

    /// A stored event could not be turned into the typed event.
    #[error(
        "cannot decode event at position {position} (`{stream}/{aggregate_id}` version {version}): {source}",
        stream = cut(.stream),
        aggregate_id = cut(.aggregate_id)
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

    /// An upcaster ([`crate::Upcasters`]) failed on a stored event.
    #[error(
        "cannot upcast event at position {position} (`{stream}/{aggregate_id}` version {version}, \
         type `{event_type}`): {source}",
        stream = cut(.stream),
        aggregate_id = cut(.aggregate_id),
        event_type = cut(.event_type)
    )]
    Upcast {
        /// The event's stream.
        stream: String,
        /// The event's aggregate id.
        aggregate_id: String,
        /// The event's version.
        version: u64,
        /// The event's position.
        position: u64,
        /// The type the failing upcaster was given.
        event_type: String,
        /// What the upcaster said.
        source: BoxError,
    },

    /// A typed event or aggregate could not be serialized.
    #[error(
        "cannot encode {what} for `{stream}/{aggregate_id}`: {source}",
        what = cut(.what),
        stream = cut(.stream),
        aggregate_id = cut(.aggregate_id)
    )]
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
        "history of `{stream}/{aggregate_id}` is not contiguous: expected version {expected}, found {found}",
        stream = cut(.stream),
        aggregate_id = cut(.aggregate_id)
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
         (`{stream}/{aggregate_id}` version {version}{event_type}): {source}",
        bookmark = cut(.bookmark),
        stream = cut(.stream),
        aggregate_id = cut(.aggregate_id),
        event_type = OfType(.event_type)
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
        /// The event's type name (`""` when the stored document has none).
        event_type: String,
        /// What the handler returned, or why its event could not be decoded.
        source: BoxError,
    },

    /// [`Handler::wait_until_handled`](crate::Handler::wait_until_handled) gave up: the
    /// handler has not handled the aggregate's event; `reason` says why (time up, with where the
    /// handler is; the failing event it stopped at; a stream it does not read).
    #[error(
        "the handler of bookmark `{bookmark}` has not handled `{stream}/{aggregate_id}` version {version}: {reason}",
        bookmark = cut(.bookmark),
        stream = cut(.stream),
        aggregate_id = cut(.aggregate_id)
    )]
    NotHandled {
        /// The handler's bookmark.
        bookmark: String,
        /// The aggregate's stream.
        stream: String,
        /// The aggregate's id.
        aggregate_id: String,
        /// The version waited for.
        version: u64,
        /// Why.
        reason: String,
    },

    /// A started handler lost its bookmark's lease (another instance took it over, or it could
    /// not renew it in time), so it stopped before storing the bookmark; it waits as a standby.
    #[error(
        "the handler of bookmark `{bookmark}` lost its lease (holder `{holder}`, epoch {epoch}): another instance handles its events now",
        bookmark = cut(.bookmark)
    )]
    LeaseLost {
        /// The bookmark.
        bookmark: String,
        /// This handler's holder name.
        holder: String,
        /// The epoch of the lease it held.
        epoch: u64,
    },

    /// The storage failed; `operation` says on what.
    #[error("{operation} failed: {source}", operation = Cut::new(.operation, OPERATION_CHARS))]
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

/// How many characters of a name (stream, aggregate id, bookmark, event type) an error text keeps.
const NAME_CHARS: usize = 100;

/// How many characters of a provider's operation an error text keeps: it holds names and more.
const OPERATION_CHARS: usize = 300;

/// A name in an error text: whole when short, else its first characters, `…` and its length in
/// bytes, so that a 1 MiB aggregate id does not make a 1 MiB message. Cuts between characters.
pub(crate) struct Cut<'a> {
    text: &'a str,
    chars: usize,
}

impl<'a> Cut<'a> {
    fn new(text: &'a str, chars: usize) -> Self {
        Cut { text, chars }
    }
}

/// `name` for an error text, cut after [`NAME_CHARS`] characters.
pub(crate) fn cut(name: &str) -> Cut<'_> {
    Cut::new(name, NAME_CHARS)
}

impl fmt::Display for Cut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text.char_indices().nth(self.chars) {
            None => f.write_str(self.text),
            Some((end, _)) => write!(f, "{}… ({} bytes)", &self.text[..end], self.text.len()),
        }
    }
}

/// `, type `name`` after an event's place in an error text, or nothing when it has no type.
struct OfType<'a>(&'a str);

impl fmt::Display for OfType<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, ", type `{}`", cut(self.0))
        }
    }
}

/// The result of a command: the command's own rejection, or a failure of the store.
///
/// `E` is the error type the command handler returns; match on [`CommandError::Rejected`]
/// to get it back.
#[derive(Debug)]
#[non_exhaustive]
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
                "command `{command}` on `{}/{}` rejected: {reason}",
                cut(stream),
                cut(aggregate_id)
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    /// Every variant that names something, with `long` as each of its names.
    fn every_error(long: &str) -> Vec<Error> {
        let json = || serde_json::from_str::<()>("1").unwrap_err();
        vec![
            Error::VersionConflict {
                stream: long.to_owned(),
                aggregate_id: long.to_owned(),
                expected: 1,
            },
            Error::Decode {
                stream: long.to_owned(),
                aggregate_id: long.to_owned(),
                version: 1,
                position: 1,
                source: json(),
            },
            Error::Encode {
                what: long.to_owned(),
                stream: long.to_owned(),
                aggregate_id: long.to_owned(),
                source: json(),
            },
            Error::Gap {
                stream: long.to_owned(),
                aggregate_id: long.to_owned(),
                expected: 1,
                found: 3,
            },
            Error::Handler {
                bookmark: long.to_owned().leak(),
                stream: long.to_owned(),
                aggregate_id: long.to_owned(),
                version: 1,
                position: 1,
                event_type: long.to_owned(),
                source: "failed".into(),
            },
            Error::provider(format!("append to `s/{long}` at version 3"), "failed"),
            Error::transient(format!("append to `s/{long}` at version 3"), "failed"),
            Error::AppendUnknown {
                stream: long.to_owned(),
                aggregate_id: long.to_owned(),
                expected: 3,
                source: "connection lost".into(),
            },
            Error::NotHandled {
                bookmark: long.to_owned(),
                stream: long.to_owned(),
                aggregate_id: long.to_owned(),
                version: 2,
                reason: "not within 1s".to_owned(),
            },
            Error::LeaseLost {
                bookmark: long.to_owned(),
                holder: "h/1/ab".to_owned(),
                epoch: 2,
            },
        ]
    }

    #[test]
    fn long_names_are_cut() {
        let long = "x".repeat(MIB);
        for error in every_error(&long) {
            let message = error.to_string();
            assert!(message.len() < 1500, "{} bytes: {error:?}", message.len());
            assert!(message.contains("x… ("), "{message}");
        }
        let rejected = CommandError::Rejected {
            stream: "s",
            aggregate_id: long.clone(),
            command: "act",
            reason: "no",
        }
        .to_string();
        assert_eq!(
            rejected,
            format!(
                "command `act` on `s/{}… (1048576 bytes)` rejected: no",
                "x".repeat(100)
            )
        );
    }

    #[test]
    fn short_names_are_whole() {
        let name = "é".repeat(NAME_CHARS);
        for error in every_error(&name) {
            let message = error.to_string();
            assert!(!message.contains('…'), "{message}");
            assert!(message.contains(&name), "{message}");
        }
    }

    #[test]
    fn names_are_cut_between_characters() {
        let name = "é".repeat(MIB);
        assert_eq!(
            cut(&name).to_string(),
            format!("{}… ({} bytes)", "é".repeat(NAME_CHARS), 2 * MIB)
        );
        let mixed = format!("{}€{}", "a".repeat(NAME_CHARS - 1), "b".repeat(10));
        assert_eq!(
            cut(&mixed).to_string(),
            format!("{}€… (112 bytes)", "a".repeat(NAME_CHARS - 1))
        );
    }
}
