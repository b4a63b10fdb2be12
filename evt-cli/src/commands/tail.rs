//! `evt tail [STREAMS]`: events as they are appended.

use std::io::Write;
use std::time::Duration;

use evt_core::Checkpoint;

use crate::connection::Store;
use crate::failure::Failure;
use crate::lines::Line;

/// How often the store is read.
const POLL: Duration = Duration::from_millis(200);

/// The options of `evt tail`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The streams (`a,b` or several); every stream by default, new ones included.
    streams: Vec<String>,
    /// Starts after this position instead of at the end (0: from the first event).
    #[arg(long, value_name = "POSITION")]
    after: Option<u64>,
    /// Stops after this many events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// One JSON object per line (the lines of `evt export`).
    #[arg(long)]
    json: bool,
}

/// Prints events as they come, until interrupted (or `--count` events).
pub async fn run(store: &Store, args: Args) -> Result<(), Failure> {
    let provider = store.provider();
    let given = super::stream_list(&args.streams);
    let streams = |listed: Vec<String>| {
        if given.is_empty() {
            listed
        } else {
            given.clone()
        }
    };
    let mut names = streams(if given.is_empty() {
        provider.streams().await?
    } else {
        Vec::new()
    });
    let mut from = match args.after {
        Some(position) => Checkpoint::at(position),
        None => {
            let all: Vec<&str> = names.iter().map(String::as_str).collect();
            provider.last_checkpoint(&all).await?
        }
    };
    eprintln!(
        "evt: tailing {} after position {}",
        if given.is_empty() {
            "every stream".to_owned()
        } else {
            given.join(", ")
        },
        from.position
    );
    let mut printed = 0u64;
    let limit = provider.page_size().max(1);
    let mut out = std::io::stdout().lock();
    loop {
        if args.count.is_some_and(|count| printed >= count) {
            return Ok(());
        }
        if given.is_empty() {
            names = provider.streams().await?;
        }
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        let page = provider.read_after(&all, &from, limit).await?;
        for (event, checkpoint) in &page {
            let text = if args.json {
                Line::event(event).to_json()
            } else {
                format!(
                    "{}/{}  {}",
                    event.meta.stream,
                    event.meta.aggregate_id,
                    super::show::human(event)
                )
            };
            writeln!(out, "{text}").map_err(Failure::output)?;
            out.flush().map_err(Failure::output)?;
            from = checkpoint.clone();
            printed += 1;
            if args.count.is_some_and(|count| printed >= count) {
                return Ok(());
            }
        }
        if page.len() < limit {
            tokio::time::sleep(POLL).await;
        }
    }
}
