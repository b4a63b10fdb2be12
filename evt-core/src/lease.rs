//! Leases: at most one started handler per bookmark, across processes, handles events.
//!
//! The provider keeps one [`Lease`] record per bookmark and swaps it atomically; everything else is
//! here, the same for every provider. A started handler runs [`keep`] beside its loop:
//!
//! - *Standby*: it reads the record every `lease_time / 4`. A free record (never leased, or
//!   released by a holder that stopped) is taken at once; a held one is taken over once it has not
//!   changed for `lease_time`, measured on this process's clock from when this standby first saw
//!   it (so clocks of different machines need not agree). Taking it raises the epoch.
//! - *Holder*: it renews every `lease_time / 3` (the beat goes up). It counts the lease as its own
//!   until four fifths of `lease_time` after the start of its last successful renewal: no standby
//!   can take it over before `lease_time` after it, as a standby's wait starts no earlier than
//!   that renewal's write (the fifth is a margin for clocks running at slightly different
//!   rates). A refused renewal ends the holding; a renewal that succeeds late (after a lapse)
//!   resumes it, since its compare-and-swap proves no one took the lease over in between. A
//!   write whose answer was lost is recognised by reading the record again. Every call to the
//!   store is bounded by a third of the lease time.
//! - *Fencing*: the handler stores its bookmark only while the record still has its holder and
//!   epoch, checked by the provider in the same atomic write
//!   ([`Provider::set_checkpoint_leased`]). A holder that was paused past its lease (or cut off)
//!   and wakes cannot move the bookmark back; it stops before its next event.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::provider::{Lease, Provider};

/// A lease this process holds, and until when no other process can take it.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) lease: Lease,
    pub(crate) valid_until: Instant,
}

impl Held {
    /// Whether it is still valid now.
    pub(crate) fn is_valid(&self) -> bool {
        self.valid_until > Instant::now()
    }

    /// Whether it is a lease of epoch `epoch` still valid now.
    pub(crate) fn is_valid_for(&self, epoch: u64) -> bool {
        self.lease.epoch == epoch && self.is_valid()
    }
}

/// How long a lease stays valid for its holder after the start of a renewal: four fifths of the
/// lease time (standbys wait the whole of it).
fn validity(lease_time: Duration) -> Duration {
    lease_time - lease_time / 5
}

/// A call to the store, given up after `limit` (a hung connection must not keep the keeper from
/// renewing, standing by or stopping).
async fn bounded<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, crate::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// A name for this holder, unique across processes: host, process id and a random part, e.g.
/// `build-7/4121/2c9f0a`.
pub(crate) fn holder_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let random = crate::util::append_id() as u64 & 0xff_ffff;
    format!("{host}/{}/{random:06x}", std::process::id())
}

/// Keeps (or waits for) the lease of `bookmark` for `holder` until `done` says the handler
/// stopped, publishing it in `held`; then gives it up.
pub(crate) async fn keep(
    provider: Arc<dyn Provider>,
    bookmark: &'static str,
    holder: String,
    lease_time: Duration,
    held: watch::Sender<Option<Held>>,
    mut done: watch::Receiver<bool>,
) {
    let mut mine: Option<Lease> = None;
    // The record as this standby last saw it change, and when.
    let mut seen: Option<(Lease, Instant)> = None;
    loop {
        if *done.borrow_and_update() {
            break;
        }
        let wait = match mine.take() {
            Some(lease) => {
                mine = renew(&*provider, bookmark, &lease, lease_time, &held).await;
                if mine.is_none() {
                    seen = None;
                }
                lease_time / 3
            }
            None => {
                mine = try_take(&*provider, bookmark, &holder, lease_time, &held, &mut seen).await;
                if mine.is_some() {
                    lease_time / 3
                } else {
                    lease_time / 4
                }
            }
        };
        tokio::select! {
            changed = done.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(wait) => {}
        }
    }
    if let Some(lease) = mine {
        let released = lease.released();
        let release = provider.swap_lease(bookmark, &lease, &released);
        match bounded(lease_time, release).await {
            Ok(_) => tracing::info!(bookmark, holder, epoch = lease.epoch, "lease released"),
            Err(error) => {
                tracing::warn!(bookmark, holder, %error, "lease not released; a standby takes it over after the lease time")
            }
        }
    }
    held.send_replace(None);
}

/// The holder's renewal: the renewed lease, or `None` once it is lost.
async fn renew(
    provider: &dyn Provider,
    bookmark: &'static str,
    lease: &Lease,
    lease_time: Duration,
    held: &watch::Sender<Option<Held>>,
) -> Option<Lease> {
    let started = Instant::now();
    let renewed = lease.renewed();
    let holder = lease.holder.as_deref().unwrap_or_default();
    let limit = lease_time / 3;
    let mut outcome = bounded(limit, provider.swap_lease(bookmark, lease, &renewed)).await;
    if !matches!(outcome, Ok(true)) {
        // The renewal may have been stored with its answer lost: then the record is ours.
        if let Ok(current) = bounded(limit, provider.lease(bookmark)).await {
            if current == renewed {
                outcome = Ok(true);
            } else if current.holder != lease.holder || current.epoch != lease.epoch {
                outcome = Ok(false);
            }
        }
    }
    match outcome {
        Ok(true) => {
            held.send_replace(Some(Held {
                lease: renewed.clone(),
                valid_until: started + validity(lease_time),
            }));
            Some(renewed)
        }
        Ok(false) => {
            held.send_replace(None);
            tracing::warn!(
                bookmark,
                holder,
                epoch = lease.epoch,
                "lease lost: another instance took it over"
            );
            None
        }
        Err(error) => {
            // Still ours in the store as far as anyone knows: keep renewing. While it has
            // lapsed here, the handler handles nothing; a standby may take it over meanwhile,
            // which the next renewal finds.
            tracing::warn!(bookmark, holder, %error, "lease not renewed; trying again");
            Some(lease.clone())
        }
    }
}

/// The standby's look at the record: the lease if it took it.
async fn try_take(
    provider: &dyn Provider,
    bookmark: &'static str,
    holder: &str,
    lease_time: Duration,
    held: &watch::Sender<Option<Held>>,
    seen: &mut Option<(Lease, Instant)>,
) -> Option<Lease> {
    let limit = lease_time / 3;
    let current = match bounded(limit, provider.lease(bookmark)).await {
        Ok(current) => current,
        Err(error) => {
            tracing::error!(
                bookmark,
                holder,
                %error,
                "lease not read: the handler handles nothing until it can (run the provider's \
                 `migrate`, or start the handler `without_lease()`); trying again"
            );
            return None;
        }
    };
    let expired = match seen {
        Some((lease, since)) if *lease == current => since.elapsed() >= lease_time,
        _ => {
            *seen = Some((current.clone(), Instant::now()));
            false
        }
    };
    if current.holder.is_some() && !expired {
        return None;
    }
    let started = Instant::now();
    let granted = current.granted_to(holder);
    let mut outcome = bounded(limit, provider.swap_lease(bookmark, &current, &granted)).await;
    if outcome.is_err()
        && let Ok(now) = bounded(limit, provider.lease(bookmark)).await
    {
        // Stored with its answer lost: the lease is ours.
        outcome = Ok(now == granted);
    }
    match outcome {
        Ok(true) => {
            held.send_replace(Some(Held {
                lease: granted.clone(),
                valid_until: started + validity(lease_time),
            }));
            match &current.holder {
                Some(previous) => tracing::info!(
                    bookmark,
                    holder,
                    epoch = granted.epoch,
                    previous,
                    "lease taken over from an instance that stopped renewing it"
                ),
                None => tracing::info!(bookmark, holder, epoch = granted.epoch, "lease acquired"),
            }
            *seen = None;
            Some(granted)
        }
        Ok(false) => {
            *seen = None;
            None
        }
        Err(error) => {
            tracing::warn!(bookmark, holder, %error, "lease not taken; trying again");
            None
        }
    }
}
