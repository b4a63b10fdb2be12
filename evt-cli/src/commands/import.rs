//! `evt import [--append]`: JSON lines from `evt export` on standard input into the store.
//!
//! Reads one line at a time and appends each run of consecutive events of one aggregate (at most
//! a page) in one [`evt_core::Provider::append`], at the version the lines give: memory stays
//! constant whatever the size of the input. Positions are the target store's own; each bookmark
//! is moved to the target position of the last event at or before its source position.

use std::collections::HashMap;
use std::io::BufRead;

use evt_core::{NewEvent, Provider};

use crate::connection::Store;
use crate::failure::Failure;
use crate::lines::{Imported, ImportedEvent, parse};
use crate::progress::Progress;

/// The options of `evt import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Imports into a store that already holds events or bookmarks (aggregates that exist must
    /// go on at the next version).
    #[arg(long)]
    append: bool,
}

/// A bookmark waiting for the events up to its source position.
struct Pending {
    name: String,
    source: u64,
    target: u64,
}

/// Consecutive events of one aggregate, not yet appended.
struct Batch {
    stream: String,
    aggregate_id: String,
    first_version: u64,
    events: Vec<NewEvent>,
    sources: Vec<u64>,
}

/// Where the import stands.
struct Importer<'a> {
    provider: &'a dyn Provider,
    /// Event type names, each leaked once: `NewEvent` takes a `&'static str`, and a store has
    /// few types however many events.
    types: HashMap<String, &'static str>,
    bookmarks: Vec<Pending>,
    /// How many bookmarks have all the events up to their position.
    placed: usize,
    /// The target position of the last event appended.
    last_target: u64,
    batch: Option<Batch>,
    limit: usize,
    progress: Progress,
}

/// Imports standard input.
pub async fn run(store: &Store, args: Args) -> Result<(), Failure> {
    let provider = store.provider();
    if !args.append {
        let streams = provider.streams().await?;
        let bookmarks = provider.bookmarks().await?;
        if !streams.is_empty() || !bookmarks.is_empty() {
            return Err(Failure::Refused(format!(
                "the store is not empty ({}, {}): import into an empty store, \
                 or pass --append to add to it",
                super::counted(streams.len() as u64, "stream"),
                super::counted(bookmarks.len() as u64, "bookmark")
            )));
        }
    }
    let mut importer = Importer {
        provider,
        types: HashMap::new(),
        bookmarks: Vec::new(),
        placed: 0,
        last_target: 0,
        batch: None,
        limit: provider.page_size().clamp(1, 1000),
        progress: Progress::new("imported", None),
    };
    let mut input = std::io::stdin().lock();
    let mut text = String::new();
    let mut number = 0u64;
    let mut events_seen = false;
    loop {
        text.clear();
        let read = input.read_line(&mut text).map_err(|e| {
            Failure::failed(format!("read line {} of standard input", number + 1), e)
        })?;
        if read == 0 {
            break;
        }
        number += 1;
        if text.trim().is_empty() {
            continue;
        }
        match parse(number, text.trim_end()).map_err(Failure::Failed)? {
            Imported::Bookmark(name, source) => {
                if events_seen {
                    return Err(Failure::Failed(format!(
                        "line {number}: bookmark `{name}` after events; bookmark lines come \
                         first, as `evt export` writes them"
                    )));
                }
                importer.bookmarks.push(Pending {
                    name,
                    source,
                    target: 0,
                });
            }
            Imported::Event(event) => {
                if !events_seen {
                    events_seen = true;
                    importer.bookmarks.sort_by_key(|pending| pending.source);
                }
                importer.add(event).await?;
            }
        }
    }
    importer.flush().await?;
    importer.finish().await
}

impl Importer<'_> {
    /// Adds an event to the batch, appending the batch first if the event does not extend it.
    async fn add(&mut self, event: ImportedEvent) -> Result<(), Failure> {
        let extends = self.batch.as_ref().is_some_and(|batch| {
            batch.stream == event.stream
                && batch.aggregate_id == event.aggregate_id
                && batch.first_version + batch.events.len() as u64 == event.version
                && batch.events.len() < self.limit
        });
        if !extends {
            self.flush().await?;
        }
        let event_type = match self.types.get(&event.event_type) {
            Some(name) => *name,
            None => {
                let name: &'static str = Box::leak(event.event_type.clone().into_boxed_str());
                self.types.insert(event.event_type.clone(), name);
                name
            }
        };
        let mut new = NewEvent::new(event_type, event.event);
        if let Some(metadata) = event.metadata {
            new.metadata = metadata;
        }
        let batch = self.batch.get_or_insert_with(|| Batch {
            stream: event.stream,
            aggregate_id: event.aggregate_id,
            first_version: event.version,
            events: Vec::new(),
            sources: Vec::new(),
        });
        batch.events.push(new);
        batch.sources.push(event.position);
        Ok(())
    }

    /// Appends the batch, and places the bookmarks its events pass.
    async fn flush(&mut self) -> Result<(), Failure> {
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        let expected = batch.first_version - 1;
        let stored = self
            .provider
            .append(
                &batch.stream,
                &batch.aggregate_id,
                expected,
                &batch.events,
                None,
            )
            .await
            .map_err(|e| {
                Failure::failed(
                    format!(
                        "append versions {}..={} of `{}/{}`",
                        batch.first_version,
                        expected + batch.events.len() as u64,
                        batch.stream,
                        batch.aggregate_id
                    ),
                    e,
                )
            })?;
        for (source, event) in batch.sources.iter().zip(&stored) {
            while let Some(pending) = self.bookmarks.get_mut(self.placed) {
                if pending.source >= *source {
                    break;
                }
                pending.target = self.last_target;
                self.placed += 1;
            }
            self.last_target = event.meta.position;
        }
        self.progress.add(stored.len() as u64);
        Ok(())
    }

    /// Stores the bookmarks and prints the summary.
    async fn finish(mut self) -> Result<(), Failure> {
        for pending in &mut self.bookmarks[self.placed..] {
            pending.target = self.last_target;
        }
        for pending in &self.bookmarks {
            self.provider
                .set_position(&pending.name, pending.target)
                .await?;
        }
        self.progress.finish(&format!(
            " and {}",
            super::counted(self.bookmarks.len() as u64, "bookmark")
        ));
        Ok(())
    }
}
