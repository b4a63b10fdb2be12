//! The real evtstore (12.0.1, from npm) for the interop tests: installed once per version of
//! `tests/evtstore` into the target directory, run as `node STORE.js COMMAND TARGET ARGS...`
//! (`tests/evtstore/department.js` says what each command does).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// The files of `tests/evtstore` that an install holds.
const FILES: [&str; 6] = [
    "package.json",
    "package-lock.json",
    "department.js",
    "mongo.js",
    "postgres.js",
    "sqlite.js",
];

/// The folder where evtstore is installed: one per content of `tests/evtstore`, so a changed
/// script or lock file gets a fresh install; tests in other processes wait for it.
pub fn dir() -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/evtstore");
    let mut hasher = DefaultHasher::new();
    for file in FILES {
        let content = std::fs::read(source.join(file))
            .unwrap_or_else(|e| panic!("tests/evtstore/{file}: {e}"));
        content.hash(&mut hasher);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("evtstore-node-{:016x}", hasher.finish()));
    let done = dir.join("installed");
    let lock = dir.with_extension("lock");
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        if done.exists() {
            return dir;
        }
        if std::fs::create_dir(&lock).is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "another test has been installing evtstore for 10 minutes; if none runs, remove {}",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let install = || -> Result<(), String> {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for file in FILES {
            std::fs::copy(source.join(file), dir.join(file)).map_err(|e| format!("{file}: {e}"))?;
        }
        let mut npm = Command::new("npm");
        npm.args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir);
        // `sqlite3` builds its native module with node-gyp when no prebuilt one can be
        // downloaded: point it at this Node's own headers rather than nodejs.org.
        if let Some(prefix) = node_prefix() {
            npm.env("npm_config_nodedir", prefix);
        }
        let status = npm
            .status()
            .map_err(|e| format!("npm: {e} (Node 20 and npm are needed)"))?;
        if !status.success() {
            return Err(format!("npm ci in {} failed: {status}", dir.display()));
        }
        std::fs::write(&done, "").map_err(|e| e.to_string())
    };
    let installed = install();
    let _ = std::fs::remove_dir(&lock);
    installed.unwrap_or_else(|e| panic!("installing evtstore: {e}"));
    dir
}

/// The installation prefix of `node` if it holds Node's C headers (`include/node/node.h`).
fn node_prefix() -> Option<PathBuf> {
    let output = Command::new("node")
        .args(["-p", "process.execPath"])
        .output()
        .ok()?;
    let exec = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    let prefix = std::fs::canonicalize(exec)
        .ok()?
        .parent()?
        .parent()?
        .to_path_buf();
    prefix
        .join("include/node/node.h")
        .exists()
        .then_some(prefix)
}

/// Runs `node STORE.js COMMAND TARGET ARGS...` and returns the JSON line it printed.
pub fn run(store: &str, command: &str, target: &Value, args: &[&str]) -> Value {
    let dir = dir();
    let output = Command::new("node")
        .arg(format!("{store}.js"))
        .arg(command)
        .arg(target.to_string())
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("node (Node 20 is needed)");
    assert!(
        output.status.success(),
        "evtstore {command} on {target} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "evtstore {command} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// [`run`] on a blocking thread, for tests that run evtstore beside evt.
pub async fn run_async(
    store: &'static str,
    command: &'static str,
    target: Value,
    args: Vec<String>,
) -> Value {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(store, command, &target, &args)
    })
    .await
    .unwrap()
}

/// Every department event a handler saw, as `id/version`.
#[derive(Default)]
pub struct Recorder {
    seen: std::sync::Mutex<Vec<String>>,
}

impl Recorder {
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    fn record(&self, id: &str, meta: &evt::Meta) {
        self.seen
            .lock()
            .unwrap()
            .push(format!("{id}/{}", meta.version));
    }
}

#[evt::projection(bookmark = "recorder", streams = ["departments"])]
impl Recorder {
    fn created(&self, id: &str, _: &crate::department::DepartmentCreated, meta: &evt::Meta) {
        self.record(id, meta);
    }

    fn manager_added(
        &self,
        id: &str,
        _: &crate::department::DepartmentManagerAdded,
        meta: &evt::Meta,
    ) {
        self.record(id, meta);
    }
}

/// Waits up to 30 s for the handler to have seen as many events as are `stored` (each
/// `id/version`), then checks that it saw each exactly once.
pub async fn assert_each_seen_once(handler: &evt::Handler<Recorder>, stored: &[String]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while handler.projection().seen().len() < stored.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the handler saw {} of {} events",
            handler.projection().seen().len(),
            stored.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = handler.projection().seen();
    let mut counts: std::collections::BTreeMap<&String, usize> = Default::default();
    for event in &seen {
        *counts.entry(event).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "seen more than once: {twice:?}");
    let missed: Vec<_> = stored.iter().filter(|e| !counts.contains_key(e)).collect();
    assert!(missed.is_empty(), "missed: {missed:?}");
    let distinct: std::collections::HashSet<&String> = stored.iter().collect();
    assert_eq!(distinct.len(), stored.len(), "no duplicate versions");
}

/// How many writers of each library race, and for how long.
pub struct Race {
    pub seconds: u64,
    pub evt_writers: usize,
    /// One Node process of evtstore writers per target (store script, target).
    pub evtstore: Vec<(&'static str, Value)>,
    /// Writers in each Node process.
    pub evtstore_writers: usize,
}

impl Race {
    /// Creates the departments `ids`, then runs evt's and evtstore's writers on them at once,
    /// with an evt handler started 2 s in. Checks with `stored` (every stored department event,
    /// `id/version`) that every acknowledged command was stored once, without duplicate
    /// versions, that both libraries wrote and saw conflicts, and that the handler saw every
    /// event exactly once.
    pub async fn run<F, Fut>(self, domain: &evt::Domain, ids: [&'static str; 3], stored: F)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Vec<String>>,
    {
        use crate::department::{Department, DepartmentCommands, DepartmentEvent};

        let commands = DepartmentCommands::new(domain);
        for id in ids {
            commands
                .create(id, crate::common::create(id))
                .await
                .unwrap();
        }
        let mut node = Vec::new();
        for (store, target) in self.evtstore {
            let mut args = vec![self.seconds.to_string(), self.evtstore_writers.to_string()];
            args.extend(ids.iter().map(|id| (*id).to_owned()));
            node.push(tokio::spawn(run_async(store, "race", target, args)));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.seconds);
        let mut writers = Vec::new();
        for writer in 0..self.evt_writers {
            let domain = domain.clone();
            writers.push(tokio::spawn(async move {
                let (mut ok, mut conflicts) = (0_u64, 0_u64);
                let mut n = 0;
                while tokio::time::Instant::now() < deadline {
                    let id = ids[(writer + n) % ids.len()];
                    n += 1;
                    let department = domain.load::<Department>(id).await.unwrap();
                    let event = DepartmentEvent::from(crate::department::DepartmentManagerAdded {
                        user_phone: format!("+1888-{writer}-{n}"),
                        performed_by: None,
                    });
                    match domain.append(department, vec![event]).await {
                        Ok(_) => ok += 1,
                        Err(error) if error.is_version_conflict() => conflicts += 1,
                        Err(error) => panic!("evt writer {writer}: {error}"),
                    }
                }
                (ok, conflicts)
            }));
        }
        // The handler starts during the run.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let handler = domain.handler(Recorder::default());
        handler.start();

        let (mut evt_ok, mut evt_conflicts) = (0, 0);
        for writer in writers {
            let (ok, conflicts) = writer.await.unwrap();
            evt_ok += ok;
            evt_conflicts += conflicts;
        }
        let (mut evtstore_ok, mut evtstore_conflicts) = (0, 0);
        for process in node {
            let counts = process.await.unwrap();
            assert_eq!(counts["failed"], 0, "{counts}");
            evtstore_ok += counts["ok"].as_u64().unwrap();
            evtstore_conflicts += counts["conflicts"].as_u64().unwrap();
        }
        let stored = stored().await;
        assert_eq!(
            stored.len() as u64,
            ids.len() as u64 + evt_ok + evtstore_ok,
            "every acknowledged command stored once"
        );
        assert!(
            evt_ok > 0 && evtstore_ok > 0,
            "both wrote: evt {evt_ok}, evtstore {evtstore_ok}"
        );
        assert!(
            evt_conflicts > 0 && evtstore_conflicts > 0,
            "conflicts on both sides: evt {evt_conflicts}, evtstore {evtstore_conflicts}"
        );
        assert_each_seen_once(&handler, &stored).await;
        handler.stop().await;
        eprintln!(
            "evt: {evt_ok} appended, {evt_conflicts} conflicts; evtstore: {evtstore_ok} appended, \
             {evtstore_conflicts} conflicts; the handler saw each of {} events once",
            stored.len()
        );
    }
}

/// evtstore on a store evt made: evt's commands write 3 departments with 2 managers each (an evt
/// handler sees 9 events), then evtstore (`store` on `target`) runs its migrate, handler, loads
/// and commands on them, and evt reads what evtstore added.
pub async fn evtstore_continues_what_evt_wrote(
    domain: &evt::Domain,
    store: &'static str,
    target: Value,
) {
    use crate::common::{create, manager};
    use crate::department::{Department, DepartmentCommands};

    let commands = DepartmentCommands::new(domain);
    for d in 0..3 {
        let id = format!("dept-{d}");
        commands
            .create(&id, create(&format!("Department {d}")))
            .await
            .unwrap();
        for m in 0..2 {
            commands
                .add_manager(&id, manager(&format!("+1{d}{m}")))
                .await
                .unwrap();
        }
    }
    let recorder = domain.handler(Recorder::default());
    assert_eq!(recorder.run_once().await.unwrap(), 9);

    // evtstore's migrate leaves evt's store alone; its handler, loads and commands work on it.
    let args = ["dept-0", "dept-2"].map(String::from).to_vec();
    let read = run_async(store, "read", target, args).await;
    assert_eq!(read["handled"], 9, "{read}");
    assert_eq!(read["aggregates"]["dept-0"]["version"], 3, "{read}");
    assert_eq!(
        read["aggregates"]["dept-0"]["managers"],
        serde_json::json!(["+100", "+101"])
    );
    assert_eq!(read["after"]["dept-2"], 4, "{read}");

    // And evt reads what evtstore added.
    assert_eq!(
        domain.load::<Department>("dept-2").await.unwrap().version,
        4
    );
    assert_eq!(recorder.run_once().await.unwrap(), 2);
}

/// A projection that goes on from where evtstore's handler (`write` in `department.js`) stopped:
/// the bookmark it stored.
#[derive(Default)]
pub struct AfterEvtstore {
    pub seen: std::sync::Mutex<Vec<String>>,
}

#[evt::projection(bookmark = "evtstore-model", streams = ["departments"])]
impl AfterEvtstore {
    fn created(&self, id: &str, _: &crate::department::DepartmentCreated, meta: &evt::Meta) {
        self.seen
            .lock()
            .unwrap()
            .push(format!("{id}/{}", meta.version));
    }

    fn manager_added(
        &self,
        id: &str,
        _: &crate::department::DepartmentManagerAdded,
        meta: &evt::Meta,
    ) {
        self.seen
            .lock()
            .unwrap()
            .push(format!("{id}/{}", meta.version));
    }
}

/// evt on a store evtstore made with `write 5 3` (5 departments, 3 managers each): loads and
/// commands, a new projection that sees everything, one that resumes from evtstore's bookmark,
/// then evtstore (`store` on `target`) again on what evt added.
pub async fn evt_continues_what_evtstore_wrote(
    domain: &evt::Domain,
    store: &'static str,
    target: Value,
) {
    use crate::common::manager;
    use crate::department::{Department, DepartmentCommands};
    use crate::projection::DepartmentsModel;
    use crate::read_model::ReadModel;

    let commands = DepartmentCommands::new(domain);
    let loaded = domain.load::<Department>("dept-0").await.unwrap();
    assert_eq!((loaded.version, loaded.managers.len()), (4, 3));
    assert_eq!(
        loaded.description, "",
        "evtstore's missing or null description reads as None"
    );
    let added = commands
        .add_manager("dept-0", manager("+1000"))
        .await
        .unwrap();
    assert_eq!(added.version, 5);

    // A new evt projection sees every event evtstore wrote, and evt's; one resuming from
    // evtstore's own bookmark sees only evt's.
    let model = domain.handler(DepartmentsModel::new(ReadModel::memory()));
    assert_eq!(model.run_once().await.unwrap(), 21);
    let departments = model.projection().get_by_tenant("tenant-1").await.unwrap();
    assert_eq!(departments.len(), 5);
    let first = model.projection().get_by_id("dept-0").await.unwrap();
    assert_eq!(first.unwrap().managers.len(), 4);
    let resumed = domain.handler(AfterEvtstore::default());
    assert_eq!(resumed.run_once().await.unwrap(), 1);
    assert_eq!(*resumed.projection().seen.lock().unwrap(), ["dept-0/5"]);

    // evtstore, again: its handler, loads and commands on what evt added.
    let args = ["dept-0", "dept-1"].map(String::from).to_vec();
    let read = run_async(store, "read", target, args).await;
    assert_eq!(read["handled"], 21, "{read}");
    assert_eq!(read["aggregates"]["dept-0"]["version"], 5, "{read}");
    assert_eq!(read["after"]["dept-0"], 6, "{read}");
    let loaded = domain.load::<Department>("dept-0").await.unwrap();
    assert_eq!(loaded.version, 6);
    assert_eq!(model.run_once().await.unwrap(), 2);
}
