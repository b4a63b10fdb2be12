//! evt's benchmark workloads on every provider, one JSON line per (backend, workload):
//! `./scripts/bench` (starts the servers), or `cargo run --release -p evt-bench -- [BACKEND..] [WORKLOAD..] [--quick]`
//! with `EVT_POSTGRES_URL` / `EVT_MONGO_URL` set for those backends.
//!
//! The domain is the same in every peer: aggregate "department" on stream `departments`, events
//! `departmentCreated {tenantId, name}` and `departmentManagerAdded {userPhone}`, state
//! `{name, managers}`; `create` fails if it exists, `add_manager` if it is missing or the phone
//! is already a manager.
//!
//! - W1: 1,000 departments, `create` then 9 `add_manager` each, one after another, each command
//!   loading from the store (and again with the cache on);
//! - W1c: the same from 8 tasks, task `t` owning departments `i % 8 == t` (and again with the
//!   cache on);
//! - W1bound (MongoDB only): W1's commands as bare driver calls, a find and an insert
//!   each, without evt: the server's own rate for two round trips per command;
//! - W2: one department with 10,001 events, loaded 20 times (ms per load), without and with snapshots;
//! - W2u: W2 without snapshots through upcasters: one of another event type (none applies), and
//!   one applying to every event;
//! - W3: 100,000 events (10,000 departments x 10); a handler with a persisted bookmark counts
//!   managers per department from position 0 until caught up (events/s);
//! - W4: with a started handler, from a command returning to the handler having handled its event,
//!   p50 and p99 over 1,000 commands;
//! - W4x: W4 with the handler in another process (this binary, run again), which learns of each
//!   append through the provider's wake-up across processes: p50 and p99 over 200 commands (not
//!   on memory).
//!
//! Every workload checks its result outside the timed part.

mod department;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evt::{Domain, MemoryProvider, Meta, NewEvent, Provider, Upcasters, Versioned, projection};
use serde_json::json;

use department::{AddManager, Create, Department, DepartmentCommands, DepartmentManagerAdded};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Sizes of the workloads; `--quick` divides them by 10 for a smoke run.
#[derive(Clone, Copy)]
struct Scale {
    departments: usize,
    w2_events: usize,
    w3_departments: usize,
    w4_commands: usize,
}

const FULL: Scale = Scale {
    departments: 1_000,
    w2_events: 10_000,
    w3_departments: 10_000,
    w4_commands: 1_000,
};

fn department_id(i: usize) -> String {
    format!("dept-{i:06}")
}

fn phone(department: usize, index: usize) -> String {
    format!("+1555{department:06}{index:04}")
}

fn line(backend: &str, workload: &str, n: usize, seconds: f64, extra: serde_json::Value) {
    let mut line = json!({
        "peer": "evt",
        "backend": backend,
        "workload": workload,
        "n": n,
        "seconds": (seconds * 1e4).round() / 1e4,
        "per_second": (n as f64 / seconds).round(),
    });
    if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
        line.extend(extra.clone());
    }
    println!("{line}");
}

/// A fresh, empty provider of the backend.
async fn fresh(backend: &str) -> Result<Arc<dyn Provider>, Error> {
    Ok(fresh_named(backend).await?.0)
}

/// A fresh store and its name, which [`open`] opens again (in another process).
async fn fresh_named(backend: &str) -> Result<(Arc<dyn Provider>, String), Error> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let unique = format!(
        "evt_bench_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let provider = open(backend, &unique).await?;
    Ok((provider, unique))
}

/// The store `unique` of `backend`, made or completed by `migrate`.
async fn open(backend: &str, unique: &str) -> Result<Arc<dyn Provider>, Error> {
    Ok(match backend {
        "memory" => Arc::new(MemoryProvider::new()),
        "sqlite" => {
            let path = std::env::temp_dir().join(format!("{unique}.db"));
            let provider = evt_sqlite::SqliteProvider::open(&path).await?;
            provider.migrate().await?;
            Arc::new(provider)
        }
        "postgres" => {
            let url = std::env::var("EVT_POSTGRES_URL")
                .map_err(|_| "EVT_POSTGRES_URL is not set (./scripts/bench sets it)")?;
            // Ten connections, as the peers' pools and evt's earlier default: W1c runs 8 tasks.
            let pool = evt_postgres::sqlx::postgres::PgPoolOptions::new().max_connections(10);
            let provider = evt_postgres::PostgresProvider::connect_with(&url, pool)
                .await?
                .events_table(&format!("{unique}_events"))?
                .bookmarks_table(&format!("{unique}_bookmarks"))?;
            provider.migrate().await?;
            Arc::new(provider)
        }
        "mongo" => {
            let url = std::env::var("EVT_MONGO_URL")
                .map_err(|_| "EVT_MONGO_URL is not set (./scripts/bench sets it)")?;
            let client = evt_mongo::mongodb::Client::with_uri_str(&url).await?;
            let provider = evt_mongo::MongoProvider::new(&client.database(unique));
            provider.migrate().await?;
            Arc::new(provider)
        }
        other => {
            return Err(format!(
                "unknown backend `{other}`; expected memory, sqlite, postgres or mongo"
            )
            .into());
        }
    })
}

/// After a fill, PostgreSQL gets its table statistics, as autovacuum gives them to a live store
/// within a minute; without them it plans the first reads of a freshly filled table as a sort of
/// every later row. Other backends need nothing.
async fn analyze(backend: &str) -> Result<(), Error> {
    if backend == "postgres" {
        let url = std::env::var("EVT_POSTGRES_URL")?;
        let pool = evt_postgres::sqlx::PgPool::connect(&url).await?;
        let tables: Vec<String> = evt_postgres::sqlx::query_scalar(
            "SELECT relname::text FROM pg_class WHERE relkind = 'r' AND relname LIKE $1",
        )
        .bind(format!("evt_bench_{}_%", std::process::id()))
        .fetch_all(&pool)
        .await?;
        for table in tables {
            evt_postgres::sqlx::query(&format!("ANALYZE {table}"))
                .execute(&pool)
                .await?;
        }
        pool.close().await;
    }
    Ok(())
}

/// The commands of department `i`: `create`, then 9 `add_manager`.
async fn run_department(commands: &DepartmentCommands, i: usize) -> Result<(), Error> {
    let id = department_id(i);
    commands
        .create(
            &id,
            Create {
                tenant_id: "tenant-1".into(),
                name: format!("Department {i}"),
            },
        )
        .await?;
    for index in 0..9 {
        commands
            .add_manager(
                &id,
                AddManager {
                    user_phone: phone(i, index),
                },
            )
            .await?;
    }
    Ok(())
}

/// W1 and W1c: 10 commands per department, from `tasks` tasks.
async fn w1(backend: &str, scale: Scale, tasks: usize, cache: bool) -> Result<(), Error> {
    let mut domain = Domain::from_arc(fresh(backend).await?);
    if cache {
        domain = domain.with_cache(scale.departments);
    }
    let commands = DepartmentCommands::new(&domain);
    let start = Instant::now();
    let mut handles = Vec::new();
    for task in 0..tasks {
        let commands = commands.clone();
        let departments = scale.departments;
        handles.push(tokio::spawn(async move {
            for i in (task..departments).step_by(tasks) {
                run_department(&commands, i).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    let seconds = start.elapsed().as_secs_f64();
    // Checks, untimed.
    let check = DepartmentCommands::new(&Domain::from_arc(domain.provider().clone()));
    let duplicate = check
        .create(
            &department_id(0),
            Create {
                tenant_id: "t".into(),
                name: "again".into(),
            },
        )
        .await;
    assert!(
        duplicate.is_err_and(|e| e.rejection().is_some()),
        "a duplicate create is rejected"
    );
    for i in [0, scale.departments / 2, scale.departments - 1] {
        let department: Versioned<Department> = domain.load(&department_id(i)).await?;
        assert_eq!((department.version, department.managers.len()), (10, 9));
    }
    let workload = if tasks > 1 { "W1c" } else { "W1" };
    let mut extra = json!({"cache": cache});
    if tasks > 1 {
        extra["tasks"] = json!(tasks);
    }
    line(backend, workload, scale.departments * 10, seconds, extra);
    Ok(())
}

/// W2: one department with `w2_events + 1` events, loaded 20 times.
async fn w2(backend: &str, scale: Scale, snapshots: bool) -> Result<(), Error> {
    w2_through(backend, scale, snapshots, None).await
}

/// W2u: W2 without snapshots, through upcasters: one of another event type (none applies to
/// the loaded events), and one that applies to every event (a field rename that finds nothing
/// to rename: the document parsed, checked and written again).
async fn w2u(backend: &str, scale: Scale) -> Result<(), Error> {
    let none_apply = Upcasters::new().add("departments", "departmentRenamed", Ok);
    let every_event = Upcasters::new().add(
        "departments",
        "departmentManagerAdded",
        |mut event: serde_json::Value| {
            if let Some(phone) = event.as_object_mut().and_then(|e| e.remove("phone")) {
                event["userPhone"] = phone;
            }
            Ok(event)
        },
    );
    w2_through(backend, scale, false, Some(("none apply", none_apply))).await?;
    w2_through(backend, scale, false, Some(("every event", every_event))).await
}

async fn w2_through(
    backend: &str,
    scale: Scale,
    snapshots: bool,
    upcasters: Option<(&str, Upcasters)>,
) -> Result<(), Error> {
    let label = upcasters.as_ref().map(|(label, _)| *label);
    let mut domain = Domain::from_arc(fresh(backend).await?);
    if let Some((_, upcasters)) = upcasters {
        domain = domain.with_upcasters(upcasters);
    }
    const LOADS: usize = 20;
    let id = department_id(0);
    let managers = (0..scale.w2_events).map(|index| phone(0, index));
    let events = if snapshots {
        department::fill::<department::SnapshotDepartment>(&domain, &id, managers).await?
    } else {
        department::fill::<Department>(&domain, &id, managers).await?
    };
    assert_eq!(events, scale.w2_events as u64 + 1);
    analyze(backend).await?;
    let start = Instant::now();
    let mut last = 0;
    for _ in 0..LOADS {
        last = if snapshots {
            let department: Versioned<department::SnapshotDepartment> = domain.load(&id).await?;
            department.managers.len()
        } else {
            let department: Versioned<Department> = domain.load(&id).await?;
            department.managers.len()
        };
    }
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(last, scale.w2_events);
    let ms_per_hydration = seconds * 1e3 / LOADS as f64;
    let mut extra = json!({
        "snapshots": snapshots,
        "events_per_load": events,
        "ms_per_hydration": (ms_per_hydration * 1e3).round() / 1e3,
    });
    let workload = match label {
        Some(label) => {
            extra["upcasters"] = json!(label);
            "W2u"
        }
        None => "W2",
    };
    line(backend, workload, LOADS, seconds, extra);
    Ok(())
}

/// W3's handler: managers per department.
#[derive(Default)]
struct ManagerCounts {
    counts: Mutex<HashMap<String, usize>>,
}

#[projection(bookmark = "w3-manager-counts", streams = ["departments"])]
impl ManagerCounts {
    fn manager_added(&self, id: &str, _: &DepartmentManagerAdded, _: &Meta) {
        *self
            .counts
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default() += 1;
    }
}

/// W3: a handler with a persisted bookmark reads 100,000 events from position 0.
async fn w3(backend: &str, scale: Scale) -> Result<(), Error> {
    let provider = fresh(backend).await?;
    let domain = Domain::from_arc(provider.clone());
    for i in 0..scale.w3_departments {
        let id = department_id(i);
        let mut events = vec![NewEvent::from_value(
            "departmentCreated",
            &json!({"type": "departmentCreated", "tenantId": "tenant-1", "name": id}),
        )];
        events.extend((0..9).map(|index| {
            NewEvent::from_value(
                "departmentManagerAdded",
                &json!({"type": "departmentManagerAdded", "userPhone": phone(i, index)}),
            )
        }));
        provider
            .append_only("departments", &id, 0, &events, None)
            .await?;
    }
    let total = scale.w3_departments * 10;
    analyze(backend).await?;
    let handler = domain.handler(ManagerCounts::default());
    let start = Instant::now();
    let mut handled = 0;
    loop {
        let n = handler.run_once().await?;
        handled += n;
        if n == 0 {
            break;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(handled, total);
    let counts = handler.projection().counts.lock().unwrap().clone();
    assert_eq!(counts.len(), scale.w3_departments);
    assert!(counts.values().all(|&count| count == 9));
    let bookmark = provider.position("w3-manager-counts").await?;
    assert_eq!(
        bookmark,
        Some(provider.last_position(&["departments"]).await?)
    );
    line(
        backend,
        "W3",
        total,
        seconds,
        json!({"bookmark": "persisted", "page": provider.page_size()}),
    );
    Ok(())
}

/// W4's handler: when each department's creation was handled.
#[derive(Default)]
struct Arrivals {
    seen: Mutex<HashMap<String, Instant>>,
}

#[projection(bookmark = "w4-arrivals", streams = ["departments"])]
impl Arrivals {
    fn created(&self, id: &str, _: &department::DepartmentCreated, _: &Meta) {
        self.seen
            .lock()
            .unwrap()
            .insert(id.to_owned(), Instant::now());
    }
}

/// W4: latency from a command returning to a started handler having handled its event.
async fn w4(backend: &str, scale: Scale) -> Result<(), Error> {
    let domain = Domain::from_arc(fresh(backend).await?);
    let commands = DepartmentCommands::new(&domain);
    let handler = domain.handler(Arrivals::default());
    handler.start();
    let mut latencies = Vec::with_capacity(scale.w4_commands);
    let start = Instant::now();
    for i in 0..scale.w4_commands {
        let id = department_id(i);
        commands
            .create(
                &id,
                Create {
                    tenant_id: "tenant-1".into(),
                    name: id.clone(),
                },
            )
            .await?;
        let returned = Instant::now();
        let deadline = returned + Duration::from_secs(30);
        let arrived = loop {
            if let Some(&at) = handler.projection().seen.lock().unwrap().get(&id) {
                break at;
            }
            assert!(
                Instant::now() < deadline,
                "the handler never handled `{id}`"
            );
            tokio::task::yield_now().await;
        };
        latencies.push(arrived.saturating_duration_since(returned));
    }
    let seconds = start.elapsed().as_secs_f64();
    handler.stop().await;
    let ms = percentiles(latencies);
    line(
        backend,
        "W4",
        scale.w4_commands,
        seconds,
        json!({"p50_ms": ms(0.5), "p99_ms": ms(0.99)}),
    );
    Ok(())
}

/// The quantiles of `latencies` in milliseconds (µs precision).
fn percentiles(mut latencies: Vec<Duration>) -> impl Fn(f64) -> f64 {
    latencies.sort();
    move |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        (latencies[index].as_secs_f64() * 1e6).round() / 1e3
    }
}

/// W4x's child process: a started handler that prints, for each department it handles, its id
/// and the time (µs since the epoch), until killed.
async fn w4x_child(backend: &str, unique: &str) -> Result<(), Error> {
    struct Printer;
    #[projection(bookmark = "w4x-arrivals", streams = ["departments"])]
    impl Printer {
        fn created(&self, id: &str, _: &department::DepartmentCreated, _: &Meta) {
            println!("{id} {}", micros_now());
        }
    }
    let domain = Domain::from_arc(open(backend, unique).await?);
    let handler = domain.handler(Printer);
    handler.start();
    // A first run has read the (empty) history.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("ready");
    std::future::pending::<()>().await;
    Ok(())
}

fn micros_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

/// W4x: W4 with the handler in another process: from a command returning here to the handler
/// there having handled its event (both times from the machine's clock). It learns of the
/// append through the provider's wake-up across processes; its poll interval is the default.
async fn w4x(backend: &str, scale: Scale) -> Result<(), Error> {
    use std::io::BufRead;
    let (provider, unique) = fresh_named(backend).await?;
    let domain = Domain::from_arc(provider);
    let commands = DepartmentCommands::new(&domain);
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["--w4x-child", backend, &unique])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("the child's output")?;
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let next = || lines.recv_timeout(Duration::from_secs(30));
    let outcome = async {
        if next()? != "ready" {
            return Err(Error::from("the W4x child did not start"));
        }
        let count = scale.w4_commands / 5;
        let mut latencies = Vec::with_capacity(count);
        let start = Instant::now();
        for i in 0..count {
            let id = department_id(i);
            commands
                .create(
                    &id,
                    Create {
                        tenant_id: "tenant-1".into(),
                        name: id.clone(),
                    },
                )
                .await?;
            let returned = micros_now();
            let line = tokio::task::block_in_place(next)?;
            let (handled_id, at) = line.split_once(' ').ok_or("a W4x line")?;
            assert_eq!(handled_id, id, "the child handles departments in order");
            let at: u128 = at.parse()?;
            latencies.push(Duration::from_micros(
                u64::try_from(at.saturating_sub(returned)).unwrap_or(0),
            ));
        }
        Ok::<_, Error>((count, start.elapsed().as_secs_f64(), latencies))
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let (count, seconds, latencies) = outcome?;
    let ms = percentiles(latencies);
    line(
        backend,
        "W4x",
        count,
        seconds,
        json!({"p50_ms": ms(0.5), "p99_ms": ms(0.99), "handler": "another process"}),
    );
    Ok(())
}

/// W1's bound on MongoDB: the same 10 commands per department as bare driver calls, without
/// evt: find the department's events (sorted by version, as a load does), then insert one event
/// document with evt's write concern. What the server allows two round trips per command.
async fn w1_bound(scale: Scale) -> Result<(), Error> {
    use evt_mongo::mongodb::bson::{Document, Timestamp, doc};
    use futures_util::TryStreamExt;

    let url = std::env::var("EVT_MONGO_URL")?;
    let client = evt_mongo::mongodb::Client::with_uri_str(&url).await?;
    let database = client.database(&format!("evt_bench_{}_bound", std::process::id()));
    let provider = evt_mongo::MongoProvider::new(&database);
    provider.migrate().await?;
    let events = database.collection::<Document>("events");
    let start = Instant::now();
    for i in 0..scale.departments {
        let id = department_id(i);
        for version in 1..=10_i64 {
            let found: Vec<Document> = events
                .find(doc! {"stream": "departments", "aggregateId": &id, "version": {"$gt": 0}})
                .sort(doc! {"version": 1})
                .await?
                .try_collect()
                .await?;
            assert_eq!(found.len() as i64, version - 1);
            events
                .insert_one(doc! {
                    "stream": "departments", "aggregateId": &id, "version": version,
                    "position": Timestamp { time: 0, increment: 0 },
                    "timestamp": evt_mongo::mongodb::bson::DateTime::now(),
                    "event": {"type": "departmentManagerAdded", "userPhone": phone(i, version as usize)},
                })
                .write_concern(evt_mongo::durable_write_concern())
                .await?;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    line(
        "mongo",
        "W1bound",
        scale.departments * 10,
        seconds,
        json!({"variant": "bare driver: find + insert_one per command, no evt"}),
    );
    database.drop().await?;
    Ok(())
}

async fn run(backend: &str, scale: Scale, only: &[String]) -> Result<(), Error> {
    let on = |workload: &str| only.is_empty() || only.iter().any(|w| w == workload);
    if on("W1") {
        w1(backend, scale, 1, false).await?;
        w1(backend, scale, 1, true).await?;
    }
    if on("W1c") {
        w1(backend, scale, 8, false).await?;
        w1(backend, scale, 8, true).await?;
    }
    if on("W1bound") && backend == "mongo" {
        w1_bound(scale).await?;
    }
    if on("W2") {
        w2(backend, scale, false).await?;
        w2(backend, scale, true).await?;
    }
    if on("W2u") {
        w2u(backend, scale).await?;
    }
    if on("W3") {
        w3(backend, scale).await?;
    }
    if on("W4") {
        w4(backend, scale).await?;
    }
    if on("W4x") && backend != "memory" {
        w4x(backend, scale).await?;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, backend, unique] = args.as_slice()
        && flag == "--w4x-child"
    {
        return w4x_child(backend, unique).await;
    }
    let mut scale = FULL;
    let mut backends = Vec::new();
    let mut only = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            workload if workload.starts_with('W') => only.push(workload.to_owned()),
            "--quick" => {
                scale = Scale {
                    departments: FULL.departments / 10,
                    w2_events: FULL.w2_events / 10,
                    w3_departments: FULL.w3_departments / 10,
                    w4_commands: FULL.w4_commands / 10,
                }
            }
            backend => backends.push(backend.to_owned()),
        }
    }
    if backends.is_empty() {
        backends = ["memory", "sqlite", "postgres", "mongo"]
            .map(String::from)
            .to_vec();
    }
    for backend in &backends {
        run(backend, scale, &only)
            .await
            .map_err(|e| format!("backend `{backend}`: {e}"))?;
    }
    Ok(())
}
