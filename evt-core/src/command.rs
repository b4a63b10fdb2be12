//! Commands: load the aggregate, decide, append at the loaded version, return the new aggregate.
//!
//! `#[commands(client = ...)]` generates a typed client whose methods call these steps.

use std::marker::PhantomData;

use crate::{Aggregate, CommandError, Domain, Error, Versioned};

/// The untyped steps of every command on aggregates of type `A`, used by generated clients.
pub struct Commands<A> {
    domain: Domain,
    aggregate: PhantomData<fn() -> A>,
}

impl<A> Clone for Commands<A> {
    fn clone(&self) -> Self {
        Commands {
            domain: self.domain.clone(),
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> std::fmt::Debug for Commands<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands")
            .field("stream", &A::STREAM)
            .field("domain", &self.domain)
            .finish()
    }
}

impl<A: Aggregate> Commands<A> {
    /// Commands on `A` through `domain`.
    pub fn new(domain: &Domain) -> Self {
        Commands {
            domain: domain.clone(),
            aggregate: PhantomData,
        }
    }

    /// The domain the commands run in.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The tracing span of one command.
    pub fn span(&self, command: &'static str, aggregate_id: &str) -> tracing::Span {
        tracing::debug_span!("evt.command", stream = A::STREAM, command, aggregate_id)
    }

    /// Loads the aggregate a command decides on.
    pub async fn load(&self, aggregate_id: &str) -> Result<Versioned<A>, Error> {
        self.domain.load(aggregate_id).await
    }

    /// Appends what a handler decided on `aggregate` (its result through [`crate::Decision`]) and returns the new aggregate, or the
    /// handler's rejection, or [`Error::VersionConflict`] when another writer appended first.
    pub async fn commit<E>(
        &self,
        command: &'static str,
        aggregate: Versioned<A>,
        decision: Result<Vec<A::Event>, E>,
    ) -> Result<Versioned<A>, CommandError<E>> {
        match decision {
            Ok(events) => Ok(self.domain.append(aggregate, events).await?),
            Err(reason) => {
                tracing::debug!(
                    stream = A::STREAM,
                    aggregate_id = aggregate.id,
                    command,
                    "command rejected"
                );
                Err(CommandError::Rejected {
                    stream: A::STREAM,
                    aggregate_id: aggregate.id,
                    command,
                    reason,
                })
            }
        }
    }

    /// Whether a failed attempt should be decided again: a version conflict, or a store failure
    /// that changed nothing ([`Error::Transient`]), with attempts left. An append whose outcome is
    /// unknown ([`Error::AppendUnknown`]) is never decided again.
    pub fn should_retry<E>(
        &self,
        result: &Result<Versioned<A>, CommandError<E>>,
        attempt: u32,
        retries: u32,
    ) -> bool {
        let retry = attempt < retries
            && matches!(result, Err(e) if e.is_version_conflict() || e.is_transient());
        if retry {
            tracing::debug!(
                stream = A::STREAM,
                attempt,
                "version conflict or transient failure; deciding again"
            );
        }
        retry
    }
}
