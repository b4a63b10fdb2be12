//! `evt`: the operator's tool for an evt (evtstore) event store.
//!
//! Connects to PostgreSQL, MongoDB or SQLite (`--url`, or `EVT_MONGO_URL`, `EVT_POSTGRES_URL`,
//! `EVT_SQLITE_PATH`), then migrates, shows an aggregate, moves bookmarks, exports and imports
//! the store as JSON lines, reports its status and tails new events.
//!
//! Exit codes: 0 done, 1 failed, 2 refused (a usage error, or an operation that needs
//! `--yes`/`--append`).

mod commands;
mod connection;
mod failure;
mod lines;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::connection::Target;
use crate::failure::Failure;

/// The operator's tool for an evt (evtstore) event store.
#[derive(Debug, Parser)]
#[command(name = "evt", version, about)]
struct Cli {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates or updates the tables (collections, indexes) the store needs.
    Migrate,
    /// Prints the events of one aggregate.
    Show(commands::show::Args),
    /// Reads or moves a bookmark.
    Bookmark(commands::bookmark::Args),
    /// Writes the store (events and bookmarks) as JSON lines to standard output.
    Export(commands::export::Args),
    /// Reads JSON lines written by `evt export` from standard input into the store.
    Import(commands::import::Args),
    /// Prints each bookmark's position and lag, and each stream's aggregates and events.
    Status(commands::status::Args),
    /// Prints events as they are appended.
    Tail(commands::tail::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("evt: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) | Err(Failure::Closed) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("evt: {failure}");
            ExitCode::from(failure.code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let store = cli.target.connect().await?;
    match cli.command {
        Command::Migrate => commands::migrate::run(&store).await,
        Command::Show(args) => commands::show::run(&store, args).await,
        Command::Bookmark(args) => commands::bookmark::run(&store, args).await,
        Command::Export(args) => commands::export::run(&store, args).await,
        Command::Import(args) => commands::import::run(&store, args).await,
        Command::Status(args) => commands::status::run(&store, args).await,
        Command::Tail(args) => commands::tail::run(&store, args).await,
    }
}
