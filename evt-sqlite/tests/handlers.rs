//! Handlers on SQLite across processes: an append in one process wakes a started handler in
//! another through its check of `PRAGMA data_version`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use evt_core::testing::Recorder;
use evt_core::{Domain, NewEvent, Provider};
use evt_sqlite::SqliteProvider;
use serde_json::json;

/// What the child's lines start with (libtest may print on the same line before them).
const CHILD: &str = "evt-wake-child:";

fn micros_now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

/// The child of `an_append_in_one_process_wakes_a_handler_in_another`: a started handler that
/// polls once an hour, printing the time it handles each event.
async fn wake_child(path: &str, count: usize) {
    let provider = SqliteProvider::open(path).await.unwrap();
    let domain = Domain::new(provider);
    let handler = domain
        .handler(Recorder::default())
        .poll_interval(Duration::from_secs(3600));
    handler.start();
    // Started and listening: a first run has read the (empty) history.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("\n{CHILD} ready");
    let mut reported = 0;
    while reported < count {
        let seen = handler.projection().seen();
        for _ in reported..seen.len() {
            println!("{CHILD} event {}", micros_now());
        }
        reported = seen.len();
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_in_one_process_wakes_a_handler_in_another() {
    const EVENTS: usize = 20;
    if let Ok(path) = std::env::var("EVT_WAKE_CHILD") {
        return wake_child(&path, EVENTS).await;
    }
    let path = common::fresh_path();
    let provider = SqliteProvider::open(&path).await.unwrap();
    provider.migrate().await.unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_append_in_one_process_wakes_a_handler_in_another",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("EVT_WAKE_CHILD", &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.0.stdout.take().unwrap();
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
        let event = NewEvent::from_value("noted", &json!({"type": "noted", "n": n}));
        provider
            .append("examples", &format!("w{n}"), 0, &[event], None)
            .await
            .unwrap();
        let line = next_line(&mut lines).await;
        let received: u128 = line["event ".len()..].parse().unwrap();
        delays.push(received.saturating_sub(sent));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.0.wait().unwrap();
    delays.sort_unstable();
    eprintln!(
        "append → handler in another process: p50 {} µs, max {} µs ({EVENTS} appends, append time included)",
        delays[EVENTS / 2],
        delays[EVENTS - 1]
    );
}
