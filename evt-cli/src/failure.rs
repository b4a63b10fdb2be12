//! Why a command stopped, and the exit code that says so.

use std::fmt;

/// A command that did not complete: failed (exit code 1) or refused (exit code 2).
#[derive(Debug)]
pub enum Failure {
    /// Something failed: the store, the input, the output.
    Failed(String),
    /// The command was refused: it needs a confirmation or an option it was not given.
    Refused(String),
    /// Standard output was closed by its reader (`evt export | head`): nothing to report.
    Closed,
}

impl Failure {
    /// The process's exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Failed(_) => 1,
            Failure::Refused(_) => 2,
            Failure::Closed => 0,
        }
    }

    /// A failure to write to standard output: [`Failure::Closed`] when its reader went away.
    pub fn output(error: std::io::Error) -> Failure {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            Failure::Closed
        } else {
            Failure::failed("write to standard output", error)
        }
    }

    /// A failure of what `doing` describes.
    pub fn failed(doing: impl fmt::Display, error: impl fmt::Display) -> Failure {
        Failure::Failed(format!("{doing}: {error}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Failed(message) | Failure::Refused(message) => f.write_str(message),
            Failure::Closed => f.write_str("standard output closed"),
        }
    }
}

impl From<evt_core::Error> for Failure {
    fn from(error: evt_core::Error) -> Failure {
        Failure::Failed(error.to_string())
    }
}
