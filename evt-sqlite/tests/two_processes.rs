//! Two processes append to one file while a handler in a third reads it: every event is seen
//! exactly once, in position order.
//!
//! The writers are this test binary run again, with `EVT_SQLITE_CHILD` naming the file and
//! `EVT_SQLITE_WRITER` the writer; so it has its own `main` (`harness = false`) rather than a
//! test that would pass by doing nothing when run on its own.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evt_core::testing::Recorder;
use evt_core::{Domain, NewEvent, Provider};
use evt_sqlite::SqliteProvider;
use serde_json::json;

/// Events per writer.
const EACH: u64 = 200;

/// Aggregates the writers share, so that they also race on versions.
const AGGREGATES: u64 = 4;

/// The bound on every wait: for liveness, not speed.
const PATIENCE: Duration = Duration::from_secs(120);

/// The file that tells the writers to start, so that they run at the same time.
fn start_signal(database: &Path) -> std::path::PathBuf {
    database.with_extension("start")
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match std::env::var("EVT_SQLITE_CHILD") {
        Ok(path) => runtime.block_on(child_writer(path)),
        Err(_) => {
            let name = "two_processes_append_while_a_handler_reads";
            runtime.block_on(two_processes_append_while_a_handler_reads());
            println!("test {name} ... ok");
            println!("1 passed, 0 failed");
        }
    }
}

/// A writer process: appends `EACH` events over `AGGREGATES` aggregates shared with the other
/// writer, with expected versions, retrying on version conflicts.
async fn child_writer(path: String) {
    let writer = std::env::var("EVT_SQLITE_WRITER").expect("EVT_SQLITE_WRITER");
    let provider = SqliteProvider::open(&path).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !start_signal(Path::new(&path)).exists() {
        assert!(
            Instant::now() < deadline,
            "writer {writer}: no start signal"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut conflicts = 0;
    for n in 0..EACH {
        let id = format!("a{}", n % AGGREGATES);
        let event = NewEvent::from_value(
            "incremented",
            &json!({"type": "incremented", "by": n, "writer": writer}),
        );
        loop {
            let last = evt_core::testing::last_event(&provider, "examples", &id).await;
            let version = last.map_or(0, |e| e.meta.version);
            let batch = std::slice::from_ref(&event);
            match provider.append("examples", &id, version, batch, None).await {
                Ok(stored) => {
                    assert_eq!(stored[0].meta.version, version + 1);
                    break;
                }
                Err(error) if error.is_version_conflict() => conflicts += 1,
                Err(error) => panic!("writer {writer}: {error}"),
            }
            assert!(Instant::now() < deadline, "writer {writer}: still retrying");
        }
    }
    println!("[writer {writer}] {EACH} events, {conflicts} version conflicts");
}

/// A writer process, its output captured.
fn spawn_writer(path: &Path, writer: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env("EVT_SQLITE_CHILD", path)
        .env("EVT_SQLITE_WRITER", writer)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a writer process")
}

async fn two_processes_append_while_a_handler_reads() {
    let path = common::fresh_path();
    let provider = SqliteProvider::open(&path).await.unwrap().limit(25);
    provider.migrate().await.unwrap();
    let provider: Arc<dyn Provider> = Arc::new(provider);
    let handler = Domain::from_arc(provider.clone()).handler(Recorder::default());

    let mut children = [spawn_writer(&path, "1"), spawn_writer(&path, "2")];
    std::fs::write(start_signal(&path), b"").unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut runs = 0;
    loop {
        handler.run_once().await.unwrap();
        runs += 1;
        let done = children
            .iter_mut()
            .all(|child| child.try_wait().unwrap().is_some());
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the writer processes did not finish in {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for child in children {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "a writer process failed:\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains(&format!("{EACH} events")),
            "the writer did not run:\n{stdout}"
        );
        if let Some(summary) = stdout.find("[writer ").map(|at| &stdout[at..]) {
            println!("{}", summary.lines().next().unwrap_or_default());
        }
    }
    handler.run_once().await.unwrap();
    let _ = std::fs::remove_file(start_signal(&path));

    // Every event, once, in position order, as stored.
    let seen: Vec<u64> = handler
        .projection()
        .seen()
        .iter()
        .map(|meta| meta.position)
        .collect();
    assert_eq!(seen.len() as u64, 2 * EACH, "each event exactly once");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "in strictly increasing position order"
    );
    println!("the handler ran {runs} times while the writers appended");
    let stored = provider
        .events_from(&["examples"], 0, 10_000)
        .await
        .unwrap();
    let stored_positions: Vec<u64> = stored.iter().map(|e| e.meta.position).collect();
    assert_eq!(seen, stored_positions);

    // Each writer's events are all there, once; each aggregate's versions have no hole.
    let written: BTreeSet<(String, u64)> = stored
        .iter()
        .map(|e| {
            let data = e.value();
            let writer = data["writer"].as_str().unwrap().to_owned();
            (writer, data["by"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(written.len() as u64, 2 * EACH);
    let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for event in &stored {
        versions
            .entry(&event.meta.aggregate_id)
            .or_default()
            .push(event.meta.version);
    }
    assert_eq!(versions.len() as u64, AGGREGATES);
    for (id, versions) in versions {
        let expected: Vec<u64> = (1..=2 * EACH / AGGREGATES).collect();
        assert_eq!(versions, expected, "versions of `{id}`");
    }
}
