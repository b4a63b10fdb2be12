//! Tests with real processes on one store: the test re-runs its own binary as children
//! (`--exact <test>`), each opening the same store as the parent described it.
//!
//! - [`wake_parent`]: an append in this process wakes a started handler in a child that polls
//!   once an hour; prints the delays.
//! - [`failover_parent`]: three children start one projection (one holds the lease), two more
//!   append; the holder is killed with SIGKILL mid-run; checks what the issue of leases promises.
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn an_append_in_one_process_wakes_a_handler_in_another() {
//!     if let Some(store) = evt_core::testing::child_store() {
//!         return evt_core::testing::child(open(&store).await).await;
//!     }
//!     let provider = fresh().await;
//!     let store = describe(&provider); // what a child needs to open the same store
//!     evt_core::testing::wake_parent("an_append_in_one_process_wakes_a_handler_in_another", provider, &store).await;
//! }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::Recorder;
use crate::error::BoxError;
use crate::{Domain, NewEvent, Projection, Provider, StoredEvent};

/// The environment variable that makes the test binary a child, naming the store to open.
const STORE_ENV: &str = "EVT_TEST_CHILD";
/// The child's role: `wake`, `projection` or `writer <name>`.
const ROLE_ENV: &str = "EVT_TEST_CHILD_ROLE";
/// What the children's lines start with (libtest may print on the same line before them).
const CHILD: &str = "evt-child:";
/// How many appends the wake-up parent makes.
const WAKE_EVENTS: usize = 20;
/// The failover test's lease time.
const LEASE_TIME: Duration = Duration::from_secs(2);
/// How many events each of the failover test's two writers appends.
const WRITER_EVENTS: usize = 200;

fn micros_now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

/// In a child: the store it must open (as the parent described it); `None` in the parent.
pub fn child_store() -> Option<String> {
    std::env::var(STORE_ENV).ok()
}

/// A child's work, as its parent asked: open `provider` on [`child_store`] and call this. The
/// store should read small pages (e.g. 10 events), so that the failover test's kill falls
/// between pages.
pub async fn child(provider: Arc<dyn Provider>) {
    let role = std::env::var(ROLE_ENV).unwrap_or_default();
    match role
        .split_once(' ')
        .map_or((role.as_str(), ""), |split| split)
    {
        ("wake", _) => wake_child(provider).await,
        ("projection", _) => projection_child(provider).await,
        ("writer", name) => writer_child(provider, name).await,
        (other, _) => panic!("unknown child role `{other}`"),
    }
}

/// A started handler that polls once an hour, printing when it handles each event.
async fn wake_child(provider: Arc<dyn Provider>) {
    let domain = Domain::from_arc(provider);
    let handler = domain
        .handler(Recorder::default())
        .poll_interval(Duration::from_secs(3600));
    handler.start();
    // Started and listening: a first run has read the (empty) history.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("\n{CHILD} ready");
    let mut reported = 0;
    while reported < WAKE_EVENTS {
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

/// The failover test's projection: prints each event it handles, with its process and the time.
struct Printer;

impl Projection for Printer {
    const BOOKMARK: &'static str = "failover";
    const STREAMS: &'static [&'static str] = &["examples"];

    async fn handle(&self, event: &StoredEvent) -> Result<(), BoxError> {
        println!(
            "{CHILD} handled {} {} {}",
            std::process::id(),
            event.meta.position,
            micros_now()
        );
        Ok(())
    }
}

/// A started [`Printer`] under a lease, until the parent kills the process.
async fn projection_child(provider: Arc<dyn Provider>) {
    let handler = Domain::from_arc(provider)
        .handler(Printer)
        .lease_time(LEASE_TIME);
    handler.start();
    println!("\n{CHILD} ready");
    let mut held = false;
    loop {
        if handler.holds_lease() != held {
            held = !held;
            println!("{CHILD} lease {} {held}", std::process::id());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Appends [`WRITER_EVENTS`] one-event aggregates `<name>-<n>`, a few milliseconds apart.
async fn writer_child(provider: Arc<dyn Provider>, name: &str) {
    println!("\n{CHILD} ready");
    for n in 0..WRITER_EVENTS {
        let event = NewEvent::from_value("noted", &json!({"type": "noted", "noteText": name}));
        provider
            .append("examples", &format!("{name}-{n}"), 0, &[event], None)
            .await
            .unwrap_or_else(|e| panic!("writer {name}: append {n}: {e}"));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    println!("{CHILD} written");
}

/// A child process, killed if the test ends before it.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Children's lines: (the child's index, what follows [`CHILD`]).
type Lines = UnboundedReceiver<(usize, String)>;

/// Starts children of the test `test` on `store`, one per role, and the channel of their lines.
fn spawn_children(test: &str, store: &str, roles: &[String]) -> (Vec<Child>, Lines) {
    let (lines_tx, lines) = unbounded_channel();
    let children = roles
        .iter()
        .enumerate()
        .map(|(index, role)| {
            let mut child = Command::new(std::env::current_exe().expect("the test binary"))
                .args(["--exact", test, "--nocapture", "--test-threads=1"])
                .env(STORE_ENV, store)
                .env(ROLE_ENV, role)
                .stdout(Stdio::piped())
                .spawn()
                .expect("a child process");
            let stdout = child.stdout.take().expect("the child's output");
            let lines_tx = lines_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(at) = line.find(CHILD) {
                        let _ = lines_tx.send((index, line[at + CHILD.len()..].trim().to_owned()));
                    }
                }
            });
            Child(child)
        })
        .collect();
    (children, lines)
}

/// The next line of a child, within `wait`.
async fn next_line(lines: &mut Lines, wait: Duration, what: &str) -> (usize, String) {
    tokio::time::timeout(wait, lines.recv())
        .await
        .unwrap_or_else(|_| panic!("no child said anything for {wait:?}, waiting for {what}"))
        .expect("the children are running")
}

/// Starts a child on `store` (the test `test`, run again), appends 20 events with `provider`,
/// checks that the child's handler sees each within 30 s (its poll interval is an hour), and
/// prints the delays.
pub async fn wake_parent(test: &str, provider: Arc<dyn Provider>, store: &str) {
    let (mut children, mut lines) = spawn_children(test, store, &["wake".to_owned()]);
    let wait = Duration::from_secs(30);
    assert_eq!(next_line(&mut lines, wait, "ready").await.1, "ready");
    let mut delays = Vec::new();
    for n in 0..WAKE_EVENTS {
        let sent = micros_now();
        let event = NewEvent::from_value("noted", &json!({"type": "noted", "noteText": "wake"}));
        provider
            .append("examples", &format!("w{n}"), 0, &[event], None)
            .await
            .expect("append");
        let (_, line) = next_line(
            &mut lines,
            wait,
            "the child's handler (it polls once an hour)",
        )
        .await;
        let received: u128 = line["event ".len()..].parse().expect("a time");
        delays.push(received.saturating_sub(sent));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = children[0].0.wait();
    delays.sort_unstable();
    eprintln!(
        "append → handler in another process: p50 {} µs, max {} µs ({WAKE_EVENTS} appends, append time included)",
        delays[WAKE_EVENTS / 2],
        delays[WAKE_EVENTS - 1]
    );
}

/// One event handled by a child: (time in µs, process id, position).
type Handled = (u128, u32, u64);

/// What the failover test's projection children said.
#[derive(Default)]
struct Said {
    handled: Vec<Handled>,
    /// Child index → process id.
    pids: HashMap<usize, u32>,
    /// When (µs) a child said it holds the lease or no longer does.
    leases: BTreeMap<u128, (u32, bool)>,
}

impl Said {
    fn record(&mut self, (index, line): (usize, String)) {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["handled", pid, position, at] => {
                let pid: u32 = pid.parse().expect("a pid");
                self.pids.insert(index, pid);
                let position = position.parse().expect("a position");
                self.handled
                    .push((at.parse().expect("a time"), pid, position));
            }
            ["lease", pid, held] => {
                let pid: u32 = pid.parse().expect("a pid");
                self.pids.insert(index, pid);
                self.leases.insert(micros_now(), (pid, *held == "true"));
            }
            _ => {}
        }
    }
}

/// The failover test: three children start one projection under a lease (two seconds), two
/// more append 200 events each; once about a third of the events are handled, the lease holder
/// is killed with SIGKILL. Checks that:
///
/// - one child at a time handles events: by time, the handling process changes once (at the
///   takeover), and no two processes hold the lease at once outside that takeover;
/// - the read model ends complete: every stored event is handled;
/// - events are handled twice only within the page in flight at the kill (the killed holder's
///   last events, at most one page);
/// - the stored bookmark never goes backward (sampled every few milliseconds) and ends at the
///   last event;
/// - a standby takes over within twice the lease time; returns that takeover time (kill to
///   the new holder's first event).
///
/// `provider` opens the same store as the children; `store` says how (see [`child_store`]).
pub async fn failover_parent(test: &str, provider: Arc<dyn Provider>, store: &str) -> Duration {
    let roles: Vec<String> = [
        "projection",
        "projection",
        "projection",
        "writer a",
        "writer b",
    ]
    .map(str::to_owned)
    .to_vec();
    let (mut children, mut lines) = spawn_children(test, store, &roles[..3]);
    let wait = Duration::from_secs(30);
    let mut said = Said::default();
    let mut ready = 0;
    while ready < 3 {
        let line = next_line(&mut lines, wait, "the projections to start").await;
        if line.1 == "ready" {
            ready += 1;
        } else {
            said.record(line);
        }
    }
    // The writers, as children of their own: their lines go to another channel.
    let (writers, mut written) = spawn_children(test, store, &roles[3..]);

    // The bookmark, sampled until the end.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let provider = provider.clone();
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(Some(position)) = provider.position(Printer::BOOKMARK).await {
                    samples.push(position);
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            samples
        })
    };

    // Kill the holder once a third of the events are handled.
    let total = 2 * WRITER_EVENTS;
    while said.handled.len() < total / 3 {
        let line = next_line(&mut lines, wait, "events to be handled").await;
        said.record(line);
    }
    let killed_pid = said.handled.last().expect("handled events").1;
    let killed = said
        .pids
        .iter()
        .find(|(_, pid)| **pid == killed_pid)
        .map(|(index, _)| *index)
        .expect("the holder is a child");
    children[killed].0.kill().expect("SIGKILL the holder");
    let killed_at = micros_now();
    let _ = children[killed].0.wait();
    eprintln!(
        "killed the lease holder (pid {killed_pid}) after {} events",
        said.handled.len()
    );

    // Wait for the writers, then until every stored event is handled.
    let mut finished = 0;
    while finished < 2 {
        let (_, line) = tokio::time::timeout(Duration::from_secs(60), written.recv())
            .await
            .expect("the writers finish within 60 s")
            .expect("the writers are running");
        finished += usize::from(line == "written");
    }
    drop(writers);
    let stored = all_positions(&*provider).await;
    assert_eq!(stored.len(), total, "every writer's events are stored");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen: std::collections::HashSet<u64> = said.handled.iter().map(|h| h.2).collect();
        if stored.iter().all(|position| seen.contains(position)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the read model is incomplete after 60 s: {} of {total} events handled",
            seen.len()
        );
        if let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(200), lines.recv()).await
        {
            said.record(line);
        }
    }
    // Let a wrongly running second handler show itself, then stop everything.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(line) = lines.try_recv() {
        said.record(line);
    }
    let Said {
        mut handled,
        leases,
        ..
    } = said;
    drop(children);
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let samples = sampler.await.expect("the sampler");

    // One process at a time, changing once: at the takeover.
    handled.sort_by_key(|h| h.0);
    let mut runs: Vec<(u32, usize)> = Vec::new();
    for (_, pid, _) in &handled {
        match runs.last_mut() {
            Some((last, count)) if last == pid => *count += 1,
            _ => runs.push((*pid, 1)),
        }
    }
    assert_eq!(
        runs.len(),
        2,
        "one process handles events until the kill, one after it: runs (pid, events) {runs:?}"
    );
    assert_eq!(runs[0].0, killed_pid);
    let (new_holder, takeover_at) = handled
        .iter()
        .find(|h| h.1 != killed_pid)
        .map(|h| (h.1, h.0))
        .expect("a standby took over");
    let takeover =
        Duration::from_micros(u64::try_from(takeover_at.saturating_sub(killed_at)).unwrap_or(0));
    assert!(
        takeover < 2 * LEASE_TIME,
        "a standby takes over within the lease time and a poll: took {takeover:?} (lease {LEASE_TIME:?})"
    );

    // No two processes said they held the lease at once (the killed one held it until the kill).
    let mut holders: Vec<u32> = Vec::new();
    let mut killed_done = false;
    for (at, (pid, held)) in &leases {
        if !killed_done && *at >= killed_at {
            holders.retain(|holder| *holder != killed_pid);
            killed_done = true;
        }
        if *held {
            holders.push(*pid);
        } else {
            holders.retain(|holder| holder != pid);
        }
        assert!(
            holders.len() <= 1,
            "two processes held the lease at once: {holders:?} ({leases:?})"
        );
    }

    // Handled twice: only the killed holder's last page, handled again by the new holder.
    let mut times: HashMap<u64, Vec<u32>> = HashMap::new();
    for (_, pid, position) in &handled {
        times.entry(*position).or_default().push(*pid);
    }
    let mut twice: Vec<u64> = times
        .iter()
        .filter(|(_, pids)| pids.len() > 1)
        .map(|(position, _)| *position)
        .collect();
    twice.sort_unstable();
    for position in &twice {
        assert_eq!(
            times[position],
            [killed_pid, new_holder],
            "position {position} handled more than once other than across the takeover"
        );
    }
    let killed_tail: Vec<u64> = handled
        .iter()
        .filter(|h| h.1 == killed_pid)
        .map(|h| h.2)
        .rev()
        .take(twice.len())
        .collect();
    let mut killed_tail = killed_tail;
    killed_tail.sort_unstable();
    assert_eq!(
        twice, killed_tail,
        "the events handled twice are the killed holder's last ones"
    );
    let page = provider.page_size();
    assert!(
        twice.len() <= page,
        "{} events handled twice, more than one page ({page})",
        twice.len()
    );

    // The bookmark never went back, and ends at the last event.
    for pair in samples.windows(2) {
        assert!(
            pair[0] <= pair[1],
            "the bookmark went back from {} to {}",
            pair[0],
            pair[1]
        );
    }
    let last = *stored.iter().max().expect("events");
    let bookmark = provider
        .position(Printer::BOOKMARK)
        .await
        .expect("the bookmark");
    assert_eq!(bookmark, Some(last), "the bookmark ends at the last event");
    eprintln!(
        "failover: {} events handled by pid {killed_pid}, then {} by pid {new_holder}; {} handled twice; \
         takeover {} ms after SIGKILL (lease {} ms); {} bookmark samples, never backward; lease changes seen (µs → pid, held): {leases:?}",
        runs[0].1,
        runs[1].1,
        twice.len(),
        takeover.as_millis(),
        LEASE_TIME.as_millis(),
        samples.len()
    );
    takeover
}

/// The positions of every stored event of `examples`.
async fn all_positions(provider: &dyn Provider) -> Vec<u64> {
    let mut positions = Vec::new();
    let mut after = 0;
    loop {
        let page = provider
            .events_from(&["examples"], after, 1000)
            .await
            .expect("read the stored events");
        let Some(last) = page.last() else {
            return positions;
        };
        after = last.meta.position;
        positions.extend(page.iter().map(|event| event.meta.position));
    }
}
