//! An append in one process waking a started handler in another: the test re-runs its own binary
//! as the child (`--exact <test>`), which starts a [`Recorder`] polling once an hour and prints
//! the time it handles each event; the parent appends and measures.
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn an_append_in_one_process_wakes_a_handler_in_another() {
//!     if let Some(store) = evt_core::testing::wake_child_store() {
//!         return evt_core::testing::wake_child(open(&store).await).await;
//!     }
//!     let provider = fresh().await;
//!     let store = describe(&provider); // what the child needs to open the same store
//!     evt_core::testing::wake_parent("an_append_in_one_process_wakes_a_handler_in_another", provider, &store).await;
//! }
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::Recorder;
use crate::{Domain, NewEvent, Provider};

/// The environment variable that makes the test binary the child, naming the store to open.
const CHILD_ENV: &str = "EVT_WAKE_CHILD";
/// What the child's lines start with (libtest may print on the same line before them).
const CHILD: &str = "evt-wake-child:";
/// How many appends the parent makes.
const EVENTS: usize = 20;

fn micros_now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

/// In the child: the store it must open (as the parent described it); `None` in the parent.
pub fn wake_child_store() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// The child: a started handler that polls once an hour, printing when it handles each event.
pub async fn wake_child(provider: Arc<dyn Provider>) {
    let domain = Domain::from_arc(provider);
    let handler = domain
        .handler(Recorder::default())
        .poll_interval(Duration::from_secs(3600));
    handler.start();
    // Started and listening: a first run has read the (empty) history.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("\n{CHILD} ready");
    let mut reported = 0;
    while reported < EVENTS {
        let seen = handler.projection().seen().len();
        for _ in reported..seen {
            println!("{CHILD} event {}", micros_now());
        }
        reported = seen;
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    // Stopped before the runtime ends, so that no driver task is left mid-request.
    handler.stop().await;
}

/// The child process, killed if the test fails before it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The parent: starts the child on `store` (the test `test`, run again), appends 20 events with
/// `provider`, checks that the child's handler sees each within 30 s (its poll interval is an
/// hour), and prints the delays.
pub async fn wake_parent(test: &str, provider: Arc<dyn Provider>, store: &str) {
    let child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, store)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the child process");
    let mut child = KillOnDrop(child);
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.0.stdout.take().expect("the child's output");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let next_line = async |lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>| loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.recv())
            .await
            .expect("the child answers within 30 s (its poll interval is an hour)")
            .expect("the child is running");
        if let Some(at) = line.find(CHILD) {
            return line[at + CHILD.len()..].trim().to_owned();
        }
    };
    assert_eq!(next_line(&mut lines).await, "ready");
    let mut delays = Vec::new();
    for n in 0..EVENTS {
        let sent = micros_now();
        let event = NewEvent::from_value("noted", &json!({"type": "noted", "noteText": "wake"}));
        provider
            .append("examples", &format!("w{n}"), 0, &[event], None)
            .await
            .expect("append");
        let line = next_line(&mut lines).await;
        let received: u128 = line["event ".len()..].parse().expect("a time");
        delays.push(received.saturating_sub(sent));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.0.wait();
    delays.sort_unstable();
    eprintln!(
        "append → handler in another process: p50 {} µs, max {} µs ({EVENTS} appends, append time included)",
        delays[EVENTS / 2],
        delays[EVENTS - 1]
    );
}
