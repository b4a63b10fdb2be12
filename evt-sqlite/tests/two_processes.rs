//! Two processes append to one file while a handler in a third reads it: every event is seen
//! exactly once, in position order.
//!
//! The writers are this test binary run again, with `EVT_SQLITE_CHILD` naming the file.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evt_core::testing::Recorder;
use evt_core::{Domain, NewEvent, Provider};
use evt_sqlite::SqliteProvider;
use serde_json::json;

const EACH: u32 = 150;

/// A writer process: appends `EACH` events over four aggregates shared with the other writer,
/// retrying on version conflicts. Spawned with `EVT_SQLITE_CHILD` naming the file; run on its
/// own, it writes to a fresh file and checks what it wrote.
#[tokio::test]
async fn child_writer() {
    let alone = std::env::var("EVT_SQLITE_CHILD").is_err();
    let path = std::env::var("EVT_SQLITE_CHILD")
        .unwrap_or_else(|_| common::fresh_path().to_string_lossy().into_owned());
    let writer = std::env::var("EVT_SQLITE_WRITER").unwrap_or_else(|_| "alone".into());
    let provider = SqliteProvider::open(&path).await.unwrap();
    if alone {
        provider.migrate().await.unwrap();
    }
    for n in 0..EACH {
        let id = format!("a{}", n % 4);
        let event = NewEvent {
            event_type: "incremented",
            data: json!({"type": "incremented", "by": n, "writer": writer}),
        };
        loop {
            let last = provider.get_last_event_for("examples", &id).await.unwrap();
            let version = last.map_or(0, |e| e.meta.version);
            let batch = std::slice::from_ref(&event);
            match provider.append("examples", &id, version, batch, None).await {
                Ok(_) => break,
                Err(error) if error.is_version_conflict() => continue,
                Err(error) => panic!("writer {writer}: {error}"),
            }
        }
    }
    if alone {
        let all = provider
            .get_events_from(&["examples"], 0, 10_000)
            .await
            .unwrap();
        assert_eq!(all.len() as u32, EACH);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_append_while_a_handler_reads() {
    let path = common::fresh_path();
    let provider = SqliteProvider::open(&path).await.unwrap().limit(25);
    provider.migrate().await.unwrap();
    let provider: Arc<dyn Provider> = Arc::new(provider);
    let handler = Domain::from_arc(provider.clone()).handler(Recorder::default());

    let children: Vec<_> = ["1", "2"]
        .into_iter()
        .map(|writer| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
                .env("EVT_SQLITE_CHILD", &path)
                .env("EVT_SQLITE_WRITER", writer)
                .spawn()
                .expect("spawn a writer process")
        })
        .collect();
    let mut children = children;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        handler.run_once().await.unwrap();
        let done = children
            .iter_mut()
            .all(|child| child.try_wait().unwrap().is_some());
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the writer processes did not finish in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a writer process failed");
    }
    handler.run_once().await.unwrap();

    let seen = handler.projection().seen();
    assert_eq!(seen.len() as u32, 2 * EACH, "each event exactly once");
    assert!(
        seen.windows(2).all(|w| w[0].position < w[1].position),
        "in position order"
    );
    let stored = provider
        .get_events_from(&["examples"], 0, 10_000)
        .await
        .unwrap();
    let stored: Vec<_> = stored.iter().map(|e| e.meta.position).collect();
    let seen: Vec<_> = seen.iter().map(|m| m.position).collect();
    assert_eq!(seen, stored);
}
