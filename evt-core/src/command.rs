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

    /// The aggregate as the domain's cache holds it, without reading the store; `None` without a
    /// cache or when it does not hold `aggregate_id`. A command whose payload can be cloned
    /// decides on it first and commits through [`Commands::commit_cached`].
    pub fn cached(&self, aggregate_id: &str) -> Option<Versioned<A>> {
        self.domain.cached(aggregate_id)
    }

    /// Appends what a command decided on a cached aggregate, at the cached version: one round
    /// trip instead of a read and an append. `None` when the command must be decided again on a
    /// fresh load, because the decision may depend on events the cache has not seen: it was a
    /// rejection or appended nothing, or the store refused the version (another writer appended
    /// first) or failed without storing anything ([`Error::Transient`]). Otherwise the
    /// command's result, as [`Commands::commit`] gives it.
    pub async fn commit_cached<E>(
        &self,
        command: &'static str,
        aggregate: Versioned<A>,
        decision: Result<Vec<A::Event>, E>,
    ) -> Option<Result<Versioned<A>, CommandError<E>>> {
        let events = decision.ok().filter(|events| !events.is_empty())?;
        match self.domain.append(aggregate, events).await {
            Ok(aggregate) => Some(Ok(aggregate)),
            Err(error) if error.is_version_conflict() || error.is_transient() => {
                tracing::debug!(
                    stream = A::STREAM,
                    command,
                    %error,
                    "the cached aggregate was behind or the store failed; loading it and deciding again"
                );
                None
            }
            Err(error) => Some(Err(error.into())),
        }
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
