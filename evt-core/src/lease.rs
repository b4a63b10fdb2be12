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
//!   until `lease_time` after the start of its last successful renewal: no standby can take it
//!   over before then, as a standby's wait starts no earlier than that renewal's write. A refused
//!   renewal, or no successful one in time, ends the holding.
//! - *Fencing*: the handler stores its bookmark only while the record still has its holder and
//!   epoch, checked by the provider in the same atomic write
//!   ([`Provider::set_checkpoint_leased`]). A holder that was paused past its lease (or cut off)
//!   and wakes cannot move the bookmark back; it stops before its next event.

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
    /// Whether `held` is a lease of epoch `epoch` still valid now.
    pub(crate) fn is_valid(held: Option<&Held>, epoch: u64) -> bool {
        held.is_some_and(|held| held.lease.epoch == epoch && held.valid_until > Instant::now())
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
        match provider
            .swap_lease(bookmark, &lease, &lease.released())
            .await
        {
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
    match provider.swap_lease(bookmark, lease, &renewed).await {
        Ok(true) => {
            held.send_replace(Some(Held {
                lease: renewed.clone(),
                valid_until: started + lease_time,
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
            if Held::is_valid(held.borrow().as_ref(), lease.epoch) {
                tracing::warn!(bookmark, holder, %error, "lease not renewed; trying again");
                return Some(lease.clone());
            }
            held.send_replace(None);
            tracing::warn!(bookmark, holder, epoch = lease.epoch, %error, "lease lost: not renewed within the lease time");
            None
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
    let current = match provider.get_lease(bookmark).await {
        Ok(current) => current,
        Err(error) => {
            tracing::warn!(bookmark, holder, %error, "lease not read; trying again");
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
    match provider.swap_lease(bookmark, &current, &granted).await {
        Ok(true) => {
            held.send_replace(Some(Held {
                lease: granted.clone(),
                valid_until: started + lease_time,
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
