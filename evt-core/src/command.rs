//! Commands: load the aggregate, decide, append at the loaded version, return the new aggregate.
//!
//! `#[commands(client = ...)]` generates a typed client whose methods call [`Commands::run`].

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use tracing::Instrument;

use crate::{Aggregate, CommandError, Domain, Error, Versioned};

/// The longest pause before deciding a command again (after a version conflict or a failure
/// that changed nothing).
const MAX_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The untyped steps of every command on aggregates of type `A`, used by generated clients.
#[doc(hidden)]
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

    /// Runs the command `command` on the aggregate `aggregate_id`: `decide` is the command
    /// handler with its payload, given the aggregate and a payload and giving both back with its
    /// decision (so that an `async fn` handler may borrow the aggregate).
    ///
    /// With the domain's cache on and a payload that can be cloned (`clone`), it decides on the
    /// cached aggregate first and appends at its version ([`Commands::commit_cached`]). Otherwise,
    /// or when that cannot tell, it loads the aggregate, decides and appends at the loaded version.
    /// After a version conflict or a failure that stored nothing it decides again on a fresh load,
    /// up to `retries` times (only with `clone`), after a pause that grows with each attempt and
    /// is drawn at random in its upper half, so that writers that collided do not collide again
    /// in step; a load that failed without changing anything is tried again the same way. The
    /// pause is tokio's: a command that retries needs a runtime with its timer enabled (as
    /// `#[tokio::main]` makes).
    pub async fn run<P, E, F, Fut>(
        &self,
        command: &'static str,
        aggregate_id: &str,
        payload: P,
        clone: Option<fn(&P) -> P>,
        retries: u32,
        mut decide: F,
    ) -> Result<Versioned<A>, CommandError<E>>
    where
        F: FnMut(Versioned<A>, P) -> Fut,
        Fut: Future<Output = (Versioned<A>, Result<Vec<A::Event>, E>)>,
    {
        let span = tracing::debug_span!("evt.command", stream = A::STREAM, command, aggregate_id);
        async move {
            if let Some(clone) = clone
                && let Some(aggregate) = self.cached(aggregate_id)
            {
                let (aggregate, decision) = decide(aggregate, clone(&payload)).await;
                if let Some(result) = self.commit_cached(command, aggregate, decision).await {
                    return result;
                }
            }
            let retries = if clone.is_some() { retries } else { 0 };
            let mut payload = Some(payload);
            let mut attempt = 0;
            loop {
                let aggregate = match self.load(aggregate_id).await {
                    Ok(aggregate) => aggregate,
                    // Reading changed nothing: try again while attempts are left.
                    Err(error) if error.is_transient() && attempt < retries => {
                        tracing::debug!(stream = A::STREAM, attempt, %error, "load failed; trying again");
                        tokio::time::sleep(retry_pause(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    Err(error) => return Err(error.into()),
                };
                let this_payload = match (clone, &payload) {
                    (Some(clone), Some(payload)) if attempt < retries => clone(payload),
                    _ => payload.take().expect("the last attempt takes the payload"),
                };
                let (aggregate, decision) = decide(aggregate, this_payload).await;
                let result = self.commit(command, aggregate, decision).await;
                if payload.is_none() || !self.should_retry(&result, attempt, retries) {
                    return result;
                }
                tokio::time::sleep(retry_pause(attempt)).await;
                attempt += 1;
            }
        }
        .instrument(span)
        .await
    }

    /// Loads the aggregate a command decides on.
    async fn load(&self, aggregate_id: &str) -> Result<Versioned<A>, Error> {
        self.domain.load(aggregate_id).await
    }

    /// The aggregate as the domain's cache holds it, without reading the store; `None` without a
    /// cache or when it does not hold `aggregate_id`. A command whose payload can be cloned
    /// decides on it first and commits through [`Commands::commit_cached`].
    fn cached(&self, aggregate_id: &str) -> Option<Versioned<A>> {
        self.domain.cached(aggregate_id)
    }

    /// Appends what a command decided on a cached aggregate, at the cached version: one round
    /// trip instead of a read and an append. `None` when the command must be decided again on a
    /// fresh load, because the decision may depend on events the cache has not seen: it was a
    /// rejection or appended nothing, or the store refused the version (another writer appended
    /// first) or failed without storing anything ([`Error::Transient`]). Otherwise the
    /// command's result, as [`Commands::commit`] gives it.
    async fn commit_cached<E>(
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

    /// Appends what a handler decided on `aggregate` and returns the new aggregate, or the
    /// handler's rejection, or [`Error::VersionConflict`] when another writer appended first.
    async fn commit<E>(
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
    fn should_retry<E>(
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

/// The pause before attempt `attempt + 2` of a command: at random between half and all of
/// 2 ms × 2^attempt, at most [`MAX_RETRY_PAUSE`] ("equal jitter": long enough that the timer,
/// which counts whole milliseconds, wakes colliding writers apart).
fn retry_pause(attempt: u32) -> Duration {
    let ceiling = Duration::from_millis(2 << attempt.min(16)).min(MAX_RETRY_PAUSE);
    let random = crate::util::append_id().unsigned_abs();
    ceiling / 2 + (ceiling / 2).mul_f64((random % 1024) as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_pauses_grow_and_stay_bounded() {
        for attempt in [0, 1, 5, 20, u32::MAX] {
            let ceiling = Duration::from_millis(2 << attempt.min(16)).min(MAX_RETRY_PAUSE);
            let pauses: Vec<Duration> = (0..200).map(|_| retry_pause(attempt)).collect();
            assert!(
                pauses
                    .iter()
                    .all(|pause| *pause >= ceiling / 2 && *pause <= ceiling)
            );
            assert!(pauses.iter().any(|pause| *pause != pauses[0]), "jittered");
        }
    }
}
