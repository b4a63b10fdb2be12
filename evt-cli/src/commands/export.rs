//! `evt export [--streams a,b]`: the store as JSON lines on standard output, page by page.

use std::io::Write;

use crate::connection::Store;
use crate::failure::Failure;
use crate::lines::Line;
use crate::progress::Progress;

/// The options of `evt export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these streams (`a,b`); every stream by default.
    #[arg(long, value_name = "STREAMS", num_args = 1..)]
    streams: Vec<String>,
}

/// Writes the bookmark lines, then every event of the streams by position.
pub async fn run(store: &Store, args: Args) -> Result<(), Failure> {
    let provider = store.provider();
    let mut streams = super::stream_list(&args.streams);
    if streams.is_empty() {
        streams = provider.streams().await?;
    }
    let streams: Vec<&str> = streams.iter().map(String::as_str).collect();
    let total = provider.count_after(&streams, 0).await?;
    let writing = Failure::output;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let bookmarks = provider.bookmarks().await?;
    for (name, position) in &bookmarks {
        writeln!(out, "{}", Line::bookmark(name, *position).to_json()).map_err(writing)?;
    }
    let mut progress = Progress::new("exported", Some(total));
    let limit = provider.page_size().max(1);
    let mut after = 0;
    loop {
        let page = provider.events_from(&streams, after, limit).await?;
        for event in &page {
            writeln!(out, "{}", Line::event(event).to_json()).map_err(writing)?;
        }
        progress.add(page.len() as u64);
        match page.last() {
            Some(last) if page.len() == limit => after = last.meta.position,
            _ => break,
        }
    }
    out.flush().map_err(writing)?;
    progress.finish(&format!(
        " of {} and {}",
        super::counted(streams.len() as u64, "stream"),
        super::counted(bookmarks.len() as u64, "bookmark")
    ));
    Ok(())
}
