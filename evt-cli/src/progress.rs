//! Progress of a long copy on standard error: a bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::commands::counted;

/// How often the plain lines come.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// A count of events moving towards an optional total.
pub struct Progress {
    verb: &'static str,
    bar: Option<ProgressBar>,
    count: u64,
    started: Instant,
    printed: Instant,
}

impl Progress {
    /// Progress of `verb` ("exported", "imported") over `total` events, if known.
    pub fn new(verb: &'static str, total: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(total) => {
                    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                        .with_style(
                            ProgressStyle::with_template(
                                "{bar:40} {human_pos}/{human_len} events {per_sec} eta {eta}",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                        )
                }
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                    .with_style(
                        ProgressStyle::with_template("{spinner} {human_pos} events {per_sec}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    ),
            };
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Progress {
            verb,
            bar,
            count: 0,
            started: now,
            printed: now,
        }
    }

    /// `n` more events done.
    pub fn add(&mut self, n: u64) {
        self.count += n;
        match &self.bar {
            Some(bar) => bar.inc(n),
            None if self.printed.elapsed() >= PLAIN_EVERY => {
                self.printed = Instant::now();
                eprintln!(
                    "evt: {} {} ({})",
                    self.verb,
                    counted(self.count, "event"),
                    self.rate()
                );
            }
            None => {}
        }
    }

    fn rate(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64();
        if seconds > 0.0 {
            format!("{:.0} events/s", self.count as f64 / seconds)
        } else {
            "-".to_owned()
        }
    }

    /// Done: the final line, with the count and the rate.
    pub fn finish(self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "evt: {} {}{what} in {:.1} s ({})",
            self.verb,
            counted(self.count, "event"),
            self.started.elapsed().as_secs_f64(),
            self.rate()
        );
    }
}
