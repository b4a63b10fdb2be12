//! `evt bookmark get|set|reset NAME [POSITION]`: reads or moves a bookmark.

use std::io::{BufRead, IsTerminal, Write};

use crate::connection::Store;
use crate::failure::Failure;

/// The options of `evt bookmark`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Prints the bookmark's position.
    Get {
        /// The bookmark.
        name: String,
    },
    /// Moves the bookmark to POSITION; moving it back (handlers will handle events again) asks
    /// first.
    Set {
        /// The bookmark.
        name: String,
        /// The position of the last event handled.
        position: u64,
        /// Moves it back without asking.
        #[arg(long, short)]
        yes: bool,
    },
    /// Moves the bookmark to 0: its handlers will handle every event again. Asks first.
    Reset {
        /// The bookmark.
        name: String,
        /// Resets it without asking.
        #[arg(long, short)]
        yes: bool,
    },
}

/// Reads or moves the bookmark.
pub async fn run(store: &Store, args: Args) -> Result<(), Failure> {
    let provider = store.provider();
    let (name, position, yes) = match args.action {
        Action::Get { name } => {
            return match provider.position(&name).await? {
                Some(position) => {
                    println!("{position}");
                    Ok(())
                }
                None => Err(Failure::Failed(format!("bookmark `{name}` is not set"))),
            };
        }
        Action::Set {
            name,
            position,
            yes,
        } => (name, position, yes),
        Action::Reset { name, yes } => (name, 0, yes),
    };
    let current = provider.position(&name).await?;
    if let Some(current) = current.filter(|current| position < *current) {
        let question = format!(
            "move bookmark `{name}` back from {current} to {position}? Its handlers will handle \
             the events after {position} again."
        );
        if !yes && !confirm(&question)? {
            return Err(Failure::Refused(format!(
                "bookmark `{name}` left at {current}{}",
                if std::io::stdin().is_terminal() {
                    ""
                } else {
                    " (moving it back needs --yes when standard input is not a terminal)"
                }
            )));
        }
    }
    provider.set_position(&name, position).await?;
    println!(
        "bookmark `{name}`: {} -> {position}",
        current.map_or("unset".to_owned(), |c| c.to_string())
    );
    Ok(())
}

/// Asks `question` on the terminal; `false` without one.
fn confirm(question: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr()
        .flush()
        .map_err(|e| Failure::failed("write to standard error", e))?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::failed("read the answer", e))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
