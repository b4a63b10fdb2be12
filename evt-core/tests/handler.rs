//! A started handler's life: stopping between pages, concurrent stops, panicking handler methods,
//! and ending when every `Handler` value is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use evt_core::testing::{Create, ExampleCommands};
use evt_core::{Domain, MemoryProvider, Meta, projection};

/// Waits (bounded) until `done` holds; the bound is for liveness, not speed.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("gave up after 30 s waiting until {what}");
}

async fn created(domain: &Domain, count: usize) {
    let commands = ExampleCommands::new(domain);
    for n in 0..count {
        let id = format!("e{n}");
        commands
            .create(&id, Create { name: id.clone() })
            .await
            .unwrap();
    }
}

/// Counts creations, slowly, and panics once if told to.
#[derive(Default)]
struct Slow {
    seen: AtomicUsize,
    panic_once: AtomicBool,
    token: Arc<()>,
}

#[projection(bookmark = "slow", streams = ["examples"])]
impl Slow {
    async fn created(&self, _: &str, _: &evt_core::testing::Created, _: &Meta) {
        if self.panic_once.swap(false, Ordering::SeqCst) {
            panic!("a handler method panicked on purpose");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.seen.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_after_the_page_it_is_handling() {
    let domain = Domain::new(MemoryProvider::with_limit(10));
    created(&domain, 300).await;
    let handler = domain.handler(Slow::default());
    handler.start();
    eventually("the handler started", || {
        handler.projection().seen.load(Ordering::SeqCst) > 0
    })
    .await;
    handler.stop().await;
    assert!(!handler.is_running());
    let seen = handler.projection().seen.load(Ordering::SeqCst);
    assert!(
        seen < 300,
        "stopped after a page, not after the whole backlog ({seen} handled)"
    );
    let bookmark = domain.provider().get_position("slow").await.unwrap();
    assert_eq!(
        bookmark.map(|p| p as usize),
        Some(seen),
        "the bookmark is where it stopped"
    );
    assert_eq!(handler.run_once().await.unwrap(), 300 - seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stops_both_wait_for_the_task() {
    let domain = Domain::new(MemoryProvider::with_limit(10));
    created(&domain, 100).await;
    let handler = domain.handler(Slow::default());
    handler.start();
    let (a, b) = (handler.clone(), handler.clone());
    tokio::join!(a.stop(), b.stop());
    assert!(!a.is_running() && !b.is_running());
    let seen = handler.projection().seen.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        handler.projection().seen.load(Ordering::SeqCst),
        seen,
        "nothing runs after stop"
    );
    handler.start();
    assert!(handler.is_running(), "a stopped handler starts again");
    handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_method_is_tried_again() {
    let domain = Domain::new(MemoryProvider::new());
    created(&domain, 3).await;
    let handler = domain
        .handler(Slow {
            panic_once: AtomicBool::new(true),
            ..Slow::default()
        })
        .poll_interval(Duration::from_millis(10));
    handler.start();
    eventually("the events after the panic were handled", || {
        handler.projection().seen.load(Ordering::SeqCst) == 3
    })
    .await;
    assert!(handler.is_running(), "the task survived the panic");
    handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handler_ends_its_task() {
    let domain = Domain::new(MemoryProvider::new());
    let slow = Slow::default();
    let token = slow.token.clone();
    let handler = domain
        .handler(slow)
        .poll_interval(Duration::from_millis(10));
    handler.start();
    created(&domain, 1).await;
    eventually("the event was handled", || {
        handler.projection().seen.load(Ordering::SeqCst) == 1
    })
    .await;
    drop(handler);
    eventually("the task let go of the projection", || {
        Arc::strong_count(&token) == 1
    })
    .await;
}
