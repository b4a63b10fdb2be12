//! `evt show STREAM ID`: the events of one aggregate.

use std::io::Write;

use evt_core::StoredEvent;
use futures_util::TryStreamExt;

use crate::connection::Store;
use crate::failure::Failure;
use crate::lines::{Line, time};

/// The options of `evt show`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The aggregate's stream.
    stream: String,
    /// The aggregate's id.
    id: String,
    /// Only the events up to this version (the aggregate as it was then).
    #[arg(long, value_name = "N")]
    version: Option<u64>,
    /// One JSON object per line (the lines of `evt export`).
    #[arg(long)]
    json: bool,
}

/// An event on one line: version, type, position, time, metadata if any, document.
pub fn human(event: &StoredEvent) -> String {
    let meta = &event.meta;
    let metadata = if meta.metadata.is_empty() {
        String::new()
    } else {
        let text = serde_json::to_string(&*meta.metadata).unwrap_or_default();
        format!("  metadata {text}")
    };
    format!(
        "{}  {}  position {}  {}{metadata}  {}",
        meta.version,
        event.event_type,
        meta.position,
        time(&meta.timestamp),
        event.data.get()
    )
}

/// Prints the aggregate's events, one a line.
pub async fn run(store: &Store, args: Args) -> Result<(), Failure> {
    let provider = store.provider();
    let mut events = provider.aggregate_stream(&args.stream, &args.id, 0);
    let mut out = std::io::stdout().lock();
    let mut shown = 0u64;
    let reading = || format!("read `{}/{}`", args.stream, args.id);
    while let Some(event) = events
        .try_next()
        .await
        .map_err(|e| Failure::failed(reading(), e))?
    {
        if args.version.is_some_and(|last| event.meta.version > last) {
            break;
        }
        let text = if args.json {
            Line::event(&event).to_json()
        } else {
            human(&event)
        };
        writeln!(out, "{text}").map_err(Failure::output)?;
        shown += 1;
    }
    if shown == 0 {
        return Err(Failure::Failed(format!(
            "no events for `{}/{}`",
            args.stream, args.id
        )));
    }
    Ok(())
}
