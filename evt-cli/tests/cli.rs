//! The `evt` binary run as an operator runs it: on SQLite files, and across SQLite, PostgreSQL
//! and MongoDB for the export → import round trips.
//!
//! The PostgreSQL and MongoDB tests read `EVT_POSTGRES_URL` and `EVT_MONGO_URL` and fail, saying
//! how to start the server, when they are not set.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use evt_core::{Metadata, NewEvent, Provider};
use evt_mongo::MongoProvider;
use evt_postgres::PostgresProvider;
use evt_sqlite::SqliteProvider;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Runs `evt` with `args` (and no `EVT_*` variable), feeding it `input`.
fn evt(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_evt"))
        .args(args)
        .env_remove("EVT_MONGO_URL")
        .env_remove("EVT_POSTGRES_URL")
        .env_remove("EVT_SQLITE_PATH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the evt binary");
    let mut stdin = child.stdin.take().expect("a piped stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        // The command may stop reading early (a refusal): a broken pipe is its answer.
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().expect("wait for evt");
    writer.join().expect("the stdin writer");
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `evt` and checks it succeeded; returns its standard output.
fn ok(args: &[&str], input: &[u8]) -> String {
    let output = evt(args, input);
    assert!(
        output.status.success(),
        "evt {args:?} failed ({}): {}",
        output.status,
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros()
            % 1_000_000_000
    )
}

/// A fresh SQLite file in a temporary directory (kept alive by the returned guard).
fn sqlite_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("events.db");
    (dir, path)
}

fn url_of(path: &Path) -> String {
    format!("sqlite:{}", path.display())
}

async fn sqlite(path: &Path) -> SqliteProvider {
    let provider = SqliteProvider::open(path)
        .await
        .expect("open the SQLite file");
    provider.migrate().await.expect("migrate SQLite");
    provider
}

/// Events on two streams, some with metadata, and two bookmarks: what every round trip copies.
async fn seed(provider: &dyn Provider) {
    let event = |value: Value| {
        let name = value["type"].as_str().expect("a type").to_owned();
        NewEvent::from_value(Box::leak(name.into_boxed_str()), &value)
    };
    let with = |mut new: NewEvent, metadata: Metadata| {
        new.metadata = Arc::new(metadata);
        new
    };
    let appends = [
        (
            "departments",
            "d1",
            vec![
                event(json!({"type": "departmentCreated", "name": "Sales", "tags": ["a", "é"]})),
                with(
                    event(json!({"type": "managerAdded", "managerId": "m1", "nested": {"n": 1.5}})),
                    Metadata::new()
                        .user("alice")
                        .correlation_id("req-1")
                        .with("tenant", "acme"),
                ),
            ],
        ),
        (
            "users",
            "u1",
            vec![event(
                json!({"type": "userCreated", "email": "u1@example.com"}),
            )],
        ),
        (
            "departments",
            "d2",
            vec![event(
                json!({"type": "departmentCreated", "name": "R&D \"quoted\""}),
            )],
        ),
        (
            "departments",
            "d1",
            vec![with(
                event(json!({"type": "departmentRenamed", "name": "Sales EU", "none": null})),
                Metadata::new().causation_id("evt-9"),
            )],
        ),
        (
            "users",
            "u1",
            vec![event(json!({"type": "userRenamed", "name": "Ü"}))],
        ),
    ];
    let mut positions = Vec::new();
    for (stream, id, events) in appends {
        let last = provider
            .aggregate_stream(stream, id, 0)
            .fold(
                0,
                |_, event| async move { event.map_or(0, |e| e.meta.version) },
            )
            .await;
        let stored = provider
            .append(stream, id, last, &events, None)
            .await
            .unwrap_or_else(|e| panic!("seed `{stream}/{id}`: {e}"));
        positions.extend(stored.iter().map(|event| event.meta.position));
    }
    // `projection-a` has handled the first three events; `projection-b` all of them.
    provider
        .set_position("projection-a", positions[2])
        .await
        .unwrap();
    provider
        .set_position("projection-b", positions[5])
        .await
        .unwrap();
}

/// What a store holds, independent of its positions: every event by position (stream, id,
/// version, type, document, metadata), and each bookmark with the number of events at or
/// before its position.
async fn contents(provider: &dyn Provider) -> (Vec<Value>, Vec<(String, u64)>) {
    let streams = provider.streams().await.unwrap();
    let streams: Vec<&str> = streams.iter().map(String::as_str).collect();
    let mut events = Vec::new();
    let mut positions = Vec::new();
    let mut after = 0;
    loop {
        let page = provider.events_from(&streams, after, 100).await.unwrap();
        for event in &page {
            let meta = &event.meta;
            positions.push(meta.position);
            events.push(json!({
                "stream": meta.stream,
                "id": meta.aggregate_id,
                "version": meta.version,
                "type": event.event_type,
                "event": event.value(),
                "metadata": serde_json::to_value(&*meta.metadata).unwrap(),
            }));
        }
        match page.last() {
            Some(last) if page.len() == 100 => after = last.meta.position,
            _ => break,
        }
    }
    let bookmarks = provider
        .bookmarks()
        .await
        .unwrap()
        .into_iter()
        .map(|(name, position)| {
            let handled = positions.iter().filter(|p| **p <= position).count() as u64;
            (name, handled)
        })
        .collect();
    (events, bookmarks)
}

#[tokio::test]
async fn migrate_creates_the_tables_then_is_up_to_date() {
    let (_dir, path) = sqlite_file();
    let url = url_of(&path);
    let first = ok(&["--url", &url, "migrate"], b"");
    assert!(first.contains("created the table `events`"), "{first}");
    assert_eq!(ok(&["--url", &url, "migrate"], b""), "up to date\n");
    let custom = ok(
        &[
            "--url",
            &url,
            "--events-table",
            "ledger",
            "--bookmarks-table",
            "marks",
            "migrate",
        ],
        b"",
    );
    assert!(
        custom.contains("`ledger`") && custom.contains("`marks`"),
        "{custom}"
    );
}

#[tokio::test]
async fn show_prints_the_events_of_an_aggregate() {
    let (_dir, path) = sqlite_file();
    seed(&sqlite(&path).await).await;
    let url = url_of(&path);
    let shown = ok(&["--url", &url, "show", "departments", "d1"], b"");
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3, "{shown}");
    assert!(
        lines[0].starts_with("1  departmentCreated  position 1  "),
        "{shown}"
    );
    assert!(!lines[0].contains("metadata"), "{shown}");
    assert!(
        lines[1].contains(
            r#"metadata {"correlationId":"req-1","user":"alice","custom":{"tenant":"acme"}}"#
        ),
        "{shown}"
    );
    assert!(
        lines[2].starts_with("3  departmentRenamed  position 5  "),
        "{shown}"
    );
    assert!(
        lines[2].contains(r#"metadata {"causationId":"evt-9"}"#),
        "{shown}"
    );
    assert!(lines[2].contains(r#""name":"Sales EU""#), "{shown}");

    let upto = ok(
        &["--url", &url, "show", "departments", "d1", "--version", "2"],
        b"",
    );
    assert_eq!(upto.lines().count(), 2, "{upto}");

    let json = ok(&["--url", &url, "show", "departments", "d1", "--json"], b"");
    let first: Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["kind"], "event");
    assert_eq!(first["aggregateId"], "d1");
    assert_eq!(first["version"], 1);
    assert_eq!(first["event"]["tags"], json!(["a", "é"]));

    let missing = evt(&["--url", &url, "show", "departments", "nope"], b"");
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no events for `departments/nope`"));
}

#[tokio::test]
async fn bookmark_get_set_and_reset() {
    let (_dir, path) = sqlite_file();
    sqlite(&path).await;
    let url = url_of(&path);
    let unset = evt(&["--url", &url, "bookmark", "get", "b"], b"");
    assert_eq!(unset.status.code(), Some(1));
    assert!(text(&unset.stderr).contains("bookmark `b` is not set"));

    ok(&["--url", &url, "bookmark", "set", "b", "7"], b"");
    ok(&["--url", &url, "bookmark", "set", "b", "9"], b"");
    assert_eq!(ok(&["--url", &url, "bookmark", "get", "b"], b""), "9\n");

    // Back without --yes, and no terminal to ask on: refused, left alone.
    let back = evt(&["--url", &url, "bookmark", "set", "b", "3"], b"y\n");
    assert_eq!(back.status.code(), Some(2), "{}", text(&back.stderr));
    assert!(
        text(&back.stderr).contains("needs --yes"),
        "{}",
        text(&back.stderr)
    );
    assert_eq!(ok(&["--url", &url, "bookmark", "get", "b"], b""), "9\n");
    let reset = evt(&["--url", &url, "bookmark", "reset", "b"], b"");
    assert_eq!(reset.status.code(), Some(2));

    ok(&["--url", &url, "bookmark", "set", "b", "3", "--yes"], b"");
    assert_eq!(ok(&["--url", &url, "bookmark", "get", "b"], b""), "3\n");
    ok(&["--url", &url, "bookmark", "reset", "b", "--yes"], b"");
    assert_eq!(ok(&["--url", &url, "bookmark", "get", "b"], b""), "0\n");
}

/// Runs `evt args` on a terminal (util-linux `script` gives it one), typing `typed`.
fn on_terminal(args: &[&str], typed: &[u8]) -> Output {
    let command = std::iter::once(env!("CARGO_BIN_EXE_evt"))
        .chain(args.iter().copied())
        .map(|arg| format!("'{}'", arg.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run `script` (util-linux) to give evt a terminal");
    let mut stdin = child.stdin.take().expect("a piped stdin");
    // Type once the question is on the screen.
    std::thread::sleep(std::time::Duration::from_millis(500));
    stdin.write_all(typed).expect("type the answer");
    let output = child.wait_with_output().expect("wait for script");
    drop(stdin);
    output
}

#[tokio::test]
async fn moving_a_bookmark_back_asks_on_a_terminal() {
    let (_dir, path) = sqlite_file();
    sqlite(&path).await;
    let url = url_of(&path);
    ok(&["--url", &url, "bookmark", "set", "b", "9"], b"");

    let no = on_terminal(&["--url", &url, "bookmark", "set", "b", "3"], b"n\n");
    let screen = text(&no.stdout);
    assert!(
        screen.contains("move bookmark `b` back from 9 to 3?"),
        "{screen}"
    );
    assert_eq!(no.status.code(), Some(2), "{screen}");
    assert!(screen.contains("bookmark `b` left at 9"), "{screen}");
    assert_eq!(ok(&["--url", &url, "bookmark", "get", "b"], b""), "9\n");

    let yes = on_terminal(&["--url", &url, "bookmark", "reset", "b"], b"y\n");
    assert!(yes.status.success(), "{}", text(&yes.stdout));
    assert_eq!(ok(&["--url", &url, "bookmark", "get", "b"], b""), "0\n");
}

#[tokio::test]
async fn export_and_import_draw_a_progress_bar_on_a_terminal() {
    let (_dir, path) = sqlite_file();
    seed(&sqlite(&path).await).await;
    let (_copy_dir, copy) = sqlite_file();
    ok(&["--url", &url_of(&copy), "migrate"], b"");
    let pipeline = format!(
        "{evt} --url '{}' export | {evt} --url '{}' import",
        path.display(),
        copy.display(),
        evt = env!("CARGO_BIN_EXE_evt")
    );
    let output = Command::new("script")
        .args(["-qec", &pipeline, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run `script` (util-linux) to give evt a terminal");
    let screen = text(&output.stdout);
    assert!(output.status.success(), "{screen}");
    assert!(
        screen.contains("exported 6 events of 2 streams and 2 bookmarks"),
        "{screen}"
    );
    assert!(
        screen.contains("imported 6 events and 2 bookmarks"),
        "{screen}"
    );
    assert_eq!(
        contents(&sqlite(&copy).await).await,
        contents(&sqlite(&path).await).await
    );
}

#[tokio::test]
async fn no_store_is_a_usage_error() {
    let output = evt(&["status"], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("EVT_SQLITE_PATH"));
    let output = evt(&["--url", "redis://localhost", "status"], b"");
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn the_environment_names_the_store() {
    let (_dir, path) = sqlite_file();
    seed(&sqlite(&path).await).await;
    let output = Command::new(env!("CARGO_BIN_EXE_evt"))
        .args(["bookmark", "get", "projection-a"])
        .env_remove("EVT_MONGO_URL")
        .env_remove("EVT_POSTGRES_URL")
        .env("EVT_SQLITE_PATH", &path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "3\n");
}

#[tokio::test]
async fn export_writes_bookmarks_then_events_by_position() {
    let (_dir, path) = sqlite_file();
    seed(&sqlite(&path).await).await;
    let url = url_of(&path);
    let exported = ok(&["--url", &url, "export"], b"");
    let lines: Vec<Value> = exported
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2 + 6, "{exported}");
    assert_eq!(
        lines[0],
        json!({"kind": "bookmark", "bookmark": "projection-a", "position": 3})
    );
    assert_eq!(lines[1]["bookmark"], "projection-b");
    let positions: Vec<u64> = lines[2..]
        .iter()
        .map(|line| line["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2, 3, 4, 5, 6]);
    assert_eq!(lines[3]["metadata"]["user"], "alice");
    assert!(lines[2].get("metadata").is_none());

    let users = ok(&["--url", &url, "export", "--streams", "users"], b"");
    assert_eq!(
        users
            .lines()
            .filter(|l| l.contains(r#""kind":"event""#))
            .count(),
        2
    );
}

#[tokio::test]
async fn export_import_round_trip_on_sqlite() {
    let (_source_dir, source) = sqlite_file();
    seed(&sqlite(&source).await).await;
    let exported = ok(&["--url", &url_of(&source), "export"], b"");

    let (_target_dir, target) = sqlite_file();
    let target_url = url_of(&target);
    ok(&["--url", &target_url, "migrate"], b"");
    let output = evt(&["--url", &target_url, "import"], exported.as_bytes());
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("imported 6 events and 2 bookmarks"));
    let (source, target) = (sqlite(&source).await, sqlite(&target).await);
    assert_eq!(contents(&target).await, contents(&source).await);

    // Once more into the same store: refused, nothing changed.
    let again = evt(&["--url", &target_url, "import"], exported.as_bytes());
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("the store is not empty (2 streams, 2 bookmarks)"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(contents(&target).await, contents(&source).await);

    // With --append, the same aggregates at the same versions conflict, and the error says where.
    let conflict = evt(
        &["--url", &target_url, "import", "--append"],
        exported.as_bytes(),
    );
    assert_eq!(conflict.status.code(), Some(1));
    assert!(
        text(&conflict.stderr).contains("append versions 1..=2 of `departments/d1`"),
        "{}",
        text(&conflict.stderr)
    );
}

#[tokio::test]
async fn export_import_between_tables_of_other_names() {
    let (_dir, path) = sqlite_file();
    let url = url_of(&path);
    let custom = ["--events-table", "ledger", "--bookmarks-table", "marks"];
    let with = |args: &[&'static str]| [&["--url", url.as_str()], &custom[..], args].concat();
    seed(&sqlite(&path).await).await;
    let exported = ok(&["--url", &url, "export"], b"");
    ok(&with(&["migrate"]), b"");
    ok(&with(&["import"]), exported.as_bytes());
    let without_times = |export: &str| {
        export
            .lines()
            .map(|line| {
                let mut line: Value = serde_json::from_str(line).unwrap();
                line.as_object_mut().unwrap().remove("timestamp");
                line
            })
            .collect::<Vec<_>>()
    };
    let copied = ok(&with(&["export"]), b"");
    assert_eq!(without_times(&copied), without_times(&exported));
    // The default tables of the same file are left as they were.
    assert_eq!(ok(&["--url", &url, "export"], b""), exported);
}

#[tokio::test]
async fn import_append_adds_to_a_store() {
    let (_dir, path) = sqlite_file();
    seed(&sqlite(&path).await).await;
    let url = url_of(&path);
    let lines = concat!(
        r#"{"kind":"event","stream":"orders","aggregateId":"o1","version":1,"position":1,"event":{"type":"placed"}}"#,
        "\n",
        r#"{"kind":"event","stream":"departments","aggregateId":"d2","version":2,"position":2,"type":"departmentDeleted","event":{"type":"departmentDeleted"}}"#,
        "\n"
    );
    ok(&["--url", &url, "import", "--append"], lines.as_bytes());
    assert!(ok(&["--url", &url, "show", "orders", "o1"], b"").starts_with("1  placed  "));
    let shown = ok(&["--url", &url, "show", "departments", "d2"], b"");
    assert!(
        shown
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("2  departmentDeleted"),
        "{shown}"
    );

    let broken = evt(
        &["--url", &url, "import", "--append"],
        b"{\"kind\":\"event\"}\n",
    );
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        text(&broken.stderr).contains("line 1"),
        "{}",
        text(&broken.stderr)
    );
}

#[tokio::test]
async fn status_reports_bookmarks_and_streams() {
    let (_dir, path) = sqlite_file();
    seed(&sqlite(&path).await).await;
    let url = url_of(&path);
    let status: Value =
        serde_json::from_str(&ok(&["--url", &url, "status", "--json"], b"")).unwrap();
    assert_eq!(
        status,
        json!({
            "head": 6,
            "bookmarks": [
                {"bookmark": "projection-a", "position": 3, "lag": 3},
                {"bookmark": "projection-b", "position": 6, "lag": 0},
            ],
            "streams": [
                {"stream": "departments", "aggregates": 2, "events": 4},
                {"stream": "users", "aggregates": 1, "events": 2},
            ],
        })
    );
    let provider = sqlite(&path).await;
    let lease = evt_core::Lease::default().granted_to("host-a/412");
    assert!(
        provider
            .swap_lease("projection-b", &evt_core::Lease::default(), &lease)
            .await
            .unwrap()
    );
    let human = ok(&["--url", &url, "status"], b"");
    assert!(
        human.contains("projection-a  position 3  lag 3 events\n"),
        "{human}"
    );
    assert!(
        human.contains("projection-b  position 6  lag 0 events  leased by host-a/412"),
        "{human}"
    );
    assert!(
        human.contains("departments  2 aggregates  4 events"),
        "{human}"
    );
}

#[tokio::test]
async fn tail_prints_events_as_they_come() {
    let (_dir, path) = sqlite_file();
    let provider = sqlite(&path).await;
    seed(&provider).await;
    let url = url_of(&path);
    let from_start = ok(
        &[
            "--url", &url, "tail", "users", "--after", "0", "--count", "2",
        ],
        b"",
    );
    assert_eq!(from_start.lines().count(), 2, "{from_start}");
    assert!(
        from_start.starts_with("users/u1  1  userCreated"),
        "{from_start}"
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_evt"))
        .args(["--url", &url, "tail", "--json", "--count", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Append once it says where it starts.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut started = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut started).unwrap();
    assert_eq!(started, "evt: tailing every stream after position 6\n");
    provider
        .append(
            "departments",
            "d3",
            0,
            &[NewEvent::from_value(
                "departmentCreated",
                &json!({"type": "departmentCreated"}),
            )],
            None,
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("evt tail did not print the new event within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let line: Value = serde_json::from_str(text(&output.stdout).trim()).unwrap();
    assert_eq!(line["aggregateId"], "d3");
}

// ---------------------------------------------------------------------------------------------
// Across providers.

fn postgres_server() -> String {
    std::env::var("EVT_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "EVT_POSTGRES_URL is not set. Run `./scripts/test`, or start PostgreSQL with \
             `scripts/postgres-server start` and set \
             EVT_POSTGRES_URL=$(scripts/postgres-server url)"
        )
    })
}

fn mongo_server() -> String {
    std::env::var("EVT_MONGO_URL").unwrap_or_else(|_| {
        panic!(
            "EVT_MONGO_URL is not set. Run `./scripts/test`, or start a MongoDB-compatible server \
             with `scripts/mongo-server start` and set EVT_MONGO_URL=$(scripts/mongo-server url)"
        )
    })
}

/// A fresh PostgreSQL database on the test server; dropped by [`PostgresDatabase::drop`].
struct PostgresDatabase {
    server: String,
    name: String,
    url: String,
}

impl PostgresDatabase {
    async fn create() -> PostgresDatabase {
        use evt_postgres::sqlx::{Connection, PgConnection};
        let server = postgres_server();
        let name = unique("evt_cli");
        let mut connection = PgConnection::connect(&server).await.unwrap_or_else(|e| {
            panic!("{e}; is PostgreSQL running? `scripts/postgres-server start`")
        });
        evt_postgres::sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await
            .unwrap();
        let base = server
            .rsplit_once('/')
            .map_or(server.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        PostgresDatabase { server, name, url }
    }

    async fn drop(self) {
        use evt_postgres::sqlx::{Connection, PgConnection};
        let mut connection = PgConnection::connect(&self.server).await.unwrap();
        evt_postgres::sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut connection)
        .await
        .unwrap();
    }
}

/// The URL of a fresh database on the MongoDB test server.
fn mongo_database() -> String {
    let server = mongo_server();
    let name = unique("evt_cli");
    match server.split_once('?') {
        Some((base, query)) => format!("{}/{name}?{query}", base.trim_end_matches('/')),
        None => format!("{}/{name}", server.trim_end_matches('/')),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_sqlite_to_postgres_to_mongo_to_sqlite() {
    let (_dir, path) = sqlite_file();
    let source = sqlite(&path).await;
    seed(&source).await;
    let expected = contents(&source).await;

    let postgres = PostgresDatabase::create().await;
    let mongo_url = mongo_database();
    let result = async {
        let exported = ok(&["--url", &url_of(&path), "export"], b"");
        ok(&["--url", &postgres.url, "migrate"], b"");
        ok(&["--url", &postgres.url, "import"], exported.as_bytes());
        let target = PostgresProvider::connect(&postgres.url).await.unwrap();
        assert_eq!(contents(&target).await, expected, "SQLite → PostgreSQL");

        let exported = ok(&["--url", &postgres.url, "export"], b"");
        ok(&["--url", &mongo_url, "migrate"], b"");
        ok(&["--url", &mongo_url, "import"], exported.as_bytes());
        let target = MongoProvider::connect(&mongo_url).await.unwrap();
        let found = contents(&target).await;
        let exported = ok(&["--url", &mongo_url, "export"], b"");
        target.database().drop().await.unwrap();
        assert_eq!(found, expected, "PostgreSQL → MongoDB");

        let (_dir, back) = sqlite_file();
        ok(&["--url", &url_of(&back), "migrate"], b"");
        ok(&["--url", &url_of(&back), "import"], exported.as_bytes());
        assert_eq!(
            contents(&sqlite(&back).await).await,
            expected,
            "MongoDB → SQLite"
        );
    };
    // Drop the PostgreSQL database whether the checks passed or not.
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(result)).await;
    postgres.drop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

// ---------------------------------------------------------------------------------------------
// Size.

/// The peak resident set size of a running process so far (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `evt args`, feeding standard input from `feed` and discarding standard output; returns
/// the exit status, the seconds taken and the child's peak RSS (KiB, sampled every 20 ms).
fn measured(
    args: &[&str],
    feed: impl FnOnce(&mut dyn Write) + Send + 'static,
) -> (std::process::ExitStatus, f64, u64, String) {
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_evt"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the evt binary");
    let mut stdin = child.stdin.take().expect("a piped stdin");
    let writer = std::thread::spawn(move || {
        let mut buffered = std::io::BufWriter::new(&mut stdin);
        feed(&mut buffered);
        let _ = buffered.flush();
    });
    let mut stderr = child.stderr.take().expect("a piped stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let (pid, mut peak) = (child.id(), 0);
    let status = loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait for evt") {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    writer.join().expect("the stdin writer");
    let stderr = reader.join().expect("the stderr reader");
    (status, started.elapsed().as_secs_f64(), peak, stderr)
}

/// Imports then exports `EVT_CLI_EVENTS` events (1,000,000 by default; aggregates of 10 events
/// on 3 streams, a bookmark halfway) on SQLite, printing the rates and the peak RSS of each:
/// memory must not grow with the store. Ignored: it takes minutes in a debug build
/// (`cargo test -p evt-cli --release -- --ignored --nocapture import_export_a_million_events`).
#[tokio::test]
#[ignore = "minutes long; run with --ignored --nocapture"]
async fn import_export_a_million_events() {
    let events: u64 = std::env::var("EVT_CLI_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let (_dir, path) = sqlite_file();
    let url = url_of(&path);
    ok(&["--url", &url, "migrate"], b"");
    let (status, seconds, import_peak, stderr) = measured(&["--url", &url, "import"], move |out| {
        writeln!(
            out,
            r#"{{"kind":"bookmark","bookmark":"half","position":{}}}"#,
            events / 2
        )
        .unwrap();
        for position in 1..=events {
            let (aggregate, version) = ((position - 1) / 10, (position - 1) % 10 + 1);
            writeln!(
                out,
                r#"{{"kind":"event","stream":"s{}","aggregateId":"a{aggregate}","version":{version},"position":{position},"type":"counted","event":{{"type":"counted","n":{position},"text":"a payload of some length"}}}}"#,
                aggregate % 3
            )
            .unwrap();
        }
    });
    assert!(status.success(), "import failed: {stderr}");
    println!(
        "import: {events} events in {seconds:.1} s = {:.0} events/s, peak RSS {:.1} MiB",
        events as f64 / seconds,
        import_peak as f64 / 1024.0
    );
    let (status, seconds, export_peak, stderr) = measured(&["--url", &url, "export"], |_| {});
    assert!(status.success(), "export failed: {stderr}");
    println!(
        "export: {events} events in {seconds:.1} s = {:.0} events/s, peak RSS {:.1} MiB",
        events as f64 / seconds,
        export_peak as f64 / 1024.0
    );
    let status: Value =
        serde_json::from_str(&ok(&["--url", &url, "status", "--json"], b"")).unwrap();
    assert_eq!(status["head"], events);
    assert_eq!(status["bookmarks"][0]["lag"], events - events / 2);
    // Constant memory: far below what holding the store would take (~150 bytes an event).
    assert!(import_peak < 64 * 1024, "import peak RSS {import_peak} KiB");
    assert!(export_peak < 64 * 1024, "export peak RSS {export_peak} KiB");
}
