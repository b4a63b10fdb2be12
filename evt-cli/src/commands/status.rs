//! `evt status`: where each bookmark stands and what each stream holds.

use std::time::Duration;

use serde::Serialize;

use crate::connection::Store;
use crate::failure::Failure;

/// The options of `evt status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// One JSON object.
    #[arg(long)]
    json: bool,
    /// Prints it again every second, until interrupted.
    #[arg(long)]
    watch: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    /// The position of the last event of the store.
    head: u64,
    bookmarks: Vec<BookmarkStatus>,
    streams: Vec<StreamStatus>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BookmarkStatus {
    bookmark: String,
    position: u64,
    /// Events of the store after the bookmark's position.
    lag: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_holder: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StreamStatus {
    stream: String,
    aggregates: u64,
    events: u64,
}

async fn status(store: &Store) -> Result<Status, Failure> {
    let provider = store.provider();
    let names = provider.streams().await?;
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    let head = provider.last_position(&all).await?;
    let mut bookmarks = Vec::new();
    for (bookmark, position) in provider.bookmarks().await? {
        let lag = provider.count_after(&all, position).await?;
        // A provider without leases has no holder to show.
        let lease_holder = provider
            .lease(&bookmark)
            .await
            .ok()
            .and_then(|lease| lease.holder);
        bookmarks.push(BookmarkStatus {
            bookmark,
            position,
            lag,
            lease_holder,
        });
    }
    let mut streams = Vec::new();
    for stream in names {
        let summary = provider.stream_summary(&stream).await?;
        streams.push(StreamStatus {
            stream,
            aggregates: summary.aggregates,
            events: summary.events,
        });
    }
    Ok(Status {
        head,
        bookmarks,
        streams,
    })
}

fn human(status: &Status) -> String {
    let mut text = format!("head position {}\n", status.head);
    let width = |names: &mut dyn Iterator<Item = usize>| names.max().unwrap_or(0);
    text.push_str(&format!("bookmarks ({}):\n", status.bookmarks.len()));
    let w = width(&mut status.bookmarks.iter().map(|b| b.bookmark.len()));
    for b in &status.bookmarks {
        text.push_str(&format!(
            "  {:w$}  position {}  lag {}{}\n",
            b.bookmark,
            b.position,
            super::counted(b.lag, "event"),
            b.lease_holder
                .as_ref()
                .map_or(String::new(), |holder| format!("  leased by {holder}"))
        ));
    }
    text.push_str(&format!("streams ({}):\n", status.streams.len()));
    let w = width(&mut status.streams.iter().map(|s| s.stream.len()));
    for s in &status.streams {
        text.push_str(&format!(
            "  {:w$}  {}  {}\n",
            s.stream,
            super::counted(s.aggregates, "aggregate"),
            super::counted(s.events, "event")
        ));
    }
    text
}

/// Prints the status, once or every second.
pub async fn run(store: &Store, args: Args) -> Result<(), Failure> {
    loop {
        let status = status(store).await?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string(&status).expect("a status always serializes")
            );
        } else {
            if args.watch {
                // Clear the screen and go home.
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", human(&status));
        }
        if !args.watch {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
