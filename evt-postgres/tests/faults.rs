//! PostgreSQL under faults, load and hostile input: `migrate` beside live appends, two spellings
//! of one table, names PostgreSQL reserves, secrets in URLs, appends whose connection dies, and
//! many providers on one server.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use evt_core::testing::CutProxy;
use evt_core::{Error, NewEvent, Provider};
use evt_postgres::PostgresProvider;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

fn event(n: u64) -> NewEvent {
    NewEvent::from_value("noted", &json!({"type": "noted", "n": n}))
}

/// `writers` tasks append to their own aggregates until `stop`; returns every error they got.
fn spawn_writers(
    providers: Vec<PostgresProvider>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(u64, Vec<String>)>> {
    providers
        .into_iter()
        .enumerate()
        .map(|(writer, provider)| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut version, mut errors) = (0, Vec::new());
                let id = format!("w{writer}");
                while !stop.load(Ordering::Relaxed) {
                    match provider
                        .append("load", &id, version, &[event(version)], None)
                        .await
                    {
                        Ok(_) => version += 1,
                        Err(error) => errors.push(error.to_string()),
                    }
                }
                (version, errors)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_runs_beside_8_writers_without_errors() {
    let provider = common::fresh(100).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(vec![provider.clone(); 8], stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut migrate_errors = Vec::new();
    for round in 0..6 {
        if round == 3 {
            // A missing index must be made under load too (CREATE INDEX waits for the appends
            // in flight; it used to deadlock with them).
            sqlx::query(&format!(
                "DROP INDEX \"{}_stream_position\"",
                provider.events_table_name()
            ))
            .execute(provider.pool())
            .await
            .unwrap();
        }
        match provider.migrate().await {
            Ok(changes) if round == 3 => assert_eq!(changes.len(), 1, "{changes:?}"),
            Ok(changes) => assert!(changes.is_empty(), "{changes:?}"),
            Err(error) => migrate_errors.push(error.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut appended = 0;
    for writer in writers {
        let (versions, errors) = writer.await.unwrap();
        assert!(errors.is_empty(), "appends failed: {errors:?}");
        appended += versions;
    }
    assert!(migrate_errors.is_empty(), "{migrate_errors:?}");
    assert!(appended > 0);
}

/// Two spellings of one table (`t` and `public.t`) take one lock: a live reader beside writers
/// through both never passes an event that commits later.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_spellings_of_one_table_skip_nothing() {
    let plain = common::fresh(1000).await;
    let qualified = PostgresProvider::new(plain.pool().clone())
        .events_table(&format!("public.{}", plain.events_table_name()))
        .unwrap()
        .limit(1000);
    let mut providers = vec![plain.clone(); 4];
    providers.extend(vec![qualified; 4]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(providers, stop.clone());
    // Set once every writer has returned: an append begun before `stop` may still commit after
    // it, so the reader drains only after the writers are done.
    let written = Arc::new(AtomicBool::new(false));
    let reader = {
        let (plain, written) = (plain.clone(), written.clone());
        tokio::spawn(async move {
            let (mut after, mut seen) = (0, Vec::new());
            loop {
                let done = written.load(Ordering::Acquire);
                let page = plain.events_from(&["load"], after, 1000).await.unwrap();
                if let Some(last) = page.last() {
                    after = last.meta.position;
                }
                seen.extend(page.iter().map(|e| e.meta.position));
                if done && page.is_empty() {
                    return seen;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        let (_, errors) = writer.await.unwrap();
        assert!(errors.is_empty(), "{errors:?}");
    }
    written.store(true, Ordering::Release);
    let seen = reader.await.unwrap();
    let all: Vec<u64> = plain
        .events_from(&["load"], 0, usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.meta.position)
        .collect();
    assert!(all.len() > 100, "only {} appends", all.len());
    let seen_set: BTreeSet<u64> = seen.iter().copied().collect();
    let skipped: Vec<u64> = all
        .iter()
        .filter(|p| !seen_set.contains(p))
        .copied()
        .collect();
    assert!(
        skipped.is_empty(),
        "the live reader skipped {} of {} events",
        skipped.len(),
        all.len()
    );
    assert_eq!(seen, all, "each seen once, in order");
}

#[tokio::test]
async fn names_are_used_as_written_and_system_names_refused() {
    let pool = common::fresh(100).await.pool().clone();
    let suffix = std::process::id();
    sqlx::query(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"evt_Schema_{suffix}\""
    ))
    .execute(&pool)
    .await
    .unwrap();
    for (events, bookmarks) in [
        (format!("order_{suffix}"), format!("user_{suffix}")),
        ("order".to_owned(), "user".to_owned()),
        (
            format!("DeptEvents{suffix}"),
            format!("DeptBookmarks{suffix}"),
        ),
        (
            format!("evt_Schema_{suffix}.Events"),
            format!("evt_Schema_{suffix}.select"),
        ),
    ] {
        let provider = PostgresProvider::new(pool.clone())
            .events_table(&events)
            .unwrap()
            .bookmarks_table(&bookmarks)
            .unwrap();
        provider.migrate().await.unwrap_or_else(|e| panic!("{e}"));
        let stored = provider
            .append("s", &format!("a-{events}-{suffix}"), 0, &[event(1)], None)
            .await
            .unwrap();
        provider.set_position("b", 7).await.unwrap();
        assert_eq!(provider.position("b").await.unwrap(), Some(7));
        let read = provider
            .aggregate_events("s", &format!("a-{events}-{suffix}"), 0, 10)
            .await
            .unwrap();
        assert_eq!(read, stored, "{events}");
    }
    // Case is kept: `DeptEvents…` is not `deptevents…`.
    let folded: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("deptevents{suffix}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(folded, None);

    for bad in [
        "pg_class",
        "pg_stat_activity",
        "pg_catalog.x",
        "information_schema.tables",
        "a\"b",
        "a.b.c",
    ] {
        let error = PostgresProvider::new(pool.clone())
            .events_table(bad)
            .unwrap_err();
        assert!(
            error.to_string().contains("as a table name"),
            "{bad}: {error}"
        );
    }
}

#[tokio::test]
async fn passwords_in_urls_never_reach_messages() {
    for url in [
        "postgres://u@127.0.0.1:1/db?password=WrongSecret_99",
        "postgres://u:WrongSecret_99@127.0.0.1:1/db",
        "postgres://127.0.0.1:1/db?user=u&password=WrongSecret_99&sslmode=disable",
    ] {
        let error = PostgresProvider::connect(url).await.unwrap_err();
        for text in [error.to_string(), format!("{error:?}")] {
            assert!(!text.contains("WrongSecret_99"), "{text}");
            assert!(text.contains("***"), "{text}");
        }
    }
}

/// Whether a PostgreSQL server's bytes hold a whole answer: they end with `ReadyForQuery`.
fn ready_for_query(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while rest.len() >= 5 {
        let length = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if rest.len() < 1 + length {
            return false;
        }
        if rest[0] == b'Z' {
            return true;
        }
        rest = &rest[1 + length..];
    }
    false
}

/// A provider on the same tables as `direct`, connected through a proxy that can break its
/// connection.
async fn through_proxy(
    direct: &PostgresProvider,
    connections: u32,
) -> (PostgresProvider, CutProxy) {
    let options: PgConnectOptions = common::url().parse().unwrap();
    let upstream = tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = CutProxy::start(upstream).await.unwrap();
    // In plain text, so that the proxy can see the statements it cuts at (the server may offer
    // TLS, which the default `sslmode=prefer` would take).
    let options = options
        .host(&proxy.local_addr().ip().to_string())
        .port(proxy.local_addr().port())
        .ssl_mode(PgSslMode::Disable);
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .test_before_acquire(false)
        .connect_lazy_with(options);
    let provider = PostgresProvider::new(pool)
        .events_table(direct.events_table_name())
        .unwrap()
        .bookmarks_table(direct.bookmarks_table_name())
        .unwrap();
    // Warm up, so that the cut hits an append and not a connection's start.
    provider.position("warm-up").await.unwrap();
    (provider, proxy)
}

#[tokio::test]
async fn an_append_whose_answer_is_lost_is_reported_as_stored() {
    let direct = common::fresh(100).await;
    let (provider, proxy) = through_proxy(&direct, 2).await;
    proxy.cut_after_answer(b"lost-answer", ready_for_query);
    let stored = provider
        .append("s", "lost-answer", 0, &[event(1), event(2)], None)
        .await
        .unwrap_or_else(|e| panic!("a stored append must be reported as stored: {e}"));
    assert_eq!(proxy.cuts(), 1, "the connection was cut");
    let read = direct
        .aggregate_events("s", "lost-answer", 0, 10)
        .await
        .unwrap();
    assert_eq!(read, stored, "stored once, as reported");
}

#[tokio::test]
async fn a_lost_answer_after_another_writer_won_is_a_conflict() {
    let direct = common::fresh(100).await;
    direct
        .append("s", "raced", 0, &[event(1)], None)
        .await
        .unwrap();
    let (provider, proxy) = through_proxy(&direct, 2).await;
    proxy.cut_after_answer(b"raced", ready_for_query);
    let error = provider
        .append("s", "raced", 0, &[event(2)], None)
        .await
        .unwrap_err();
    assert_eq!(proxy.cuts(), 1);
    assert!(error.is_version_conflict(), "{error}");
}

#[tokio::test]
async fn an_append_that_never_arrived_is_made_once() {
    let direct = common::fresh(100).await;
    let (provider, proxy) = through_proxy(&direct, 2).await;
    proxy.cut_before_request(b"never-sent");
    let stored = provider
        .append("s", "never-sent", 0, &[event(1)], None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(proxy.cuts(), 1);
    let read = direct
        .aggregate_events("s", "never-sent", 0, 10)
        .await
        .unwrap();
    assert_eq!(read, stored, "stored once");
}

/// Appends that went to the server together, in one statement (group commit: the provider is
/// made with `PostgresProvider::new`, so it groups as when commits wait for the disk), and whose
/// answer was lost: each settles on its own and is reported stored, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_sent_together_whose_answer_is_lost_are_each_reported_as_stored() {
    let direct = common::fresh(100).await;
    let (provider, proxy) = through_proxy(&direct, 2).await;
    // Hold inserts into the table, so that the first append waits on the server while the
    // others queue behind it and then go together.
    let mut held = direct.pool().begin().await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        direct.events_table_name()
    ))
    .execute(&mut *held)
    .await
    .unwrap();
    let first = {
        let provider = provider.clone();
        tokio::spawn(async move { provider.append("s", "first", 0, &[event(0)], None).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.cut_after_answer(b"grouped-2", ready_for_query);
    let grouped: Vec<_> = (1..=3)
        .map(|n| {
            let provider = provider.clone();
            tokio::spawn(async move {
                let id = format!("grouped-{n}");
                let stored = provider
                    .append("s", &id, 0, &[event(n), event(n + 10)], None)
                    .await;
                (id, stored)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    held.commit().await.unwrap();
    first.await.unwrap().unwrap();
    for task in grouped {
        let (id, stored) = task.await.unwrap();
        let stored = stored.unwrap_or_else(|e| panic!("`{id}` was stored: {e}"));
        let read = direct.aggregate_events("s", &id, 0, 10).await.unwrap();
        assert_eq!(read, stored, "`{id}` stored once, as reported");
    }
    assert_eq!(
        proxy.cuts(),
        1,
        "the statement of the three was cut after its answer"
    );
}

#[tokio::test]
async fn an_append_without_a_server_to_settle_it_is_unknown() {
    let direct = common::fresh(100).await;
    // One connection, so that the append goes out on the warm one and the cut hits it.
    let (provider, proxy) = through_proxy(&direct, 1).await;
    let provider = provider.settle_timeout(Duration::from_millis(300));
    proxy.cut_before_request(b"server-gone");
    proxy.refuse_connections(true);
    let error = provider
        .append("s", "server-gone", 0, &[event(1)], None)
        .await
        .unwrap_err();
    assert_eq!(proxy.cuts(), 1);
    assert!(
        matches!(&error, Error::AppendUnknown { stream, aggregate_id, expected: 0, .. }
            if stream == "s" && aggregate_id == "server-gone"),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("outcome unknown"), "{message}");
    assert!(
        message.contains("`s/server-gone` at version 0"),
        "{message}"
    );
    // A later call, with the server back, is a plain transient failure or works.
    proxy.refuse_connections(false);
    assert!(
        direct
            .aggregate_events("s", "server-gone", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// 32 providers (as 32 instances would), each running commands one after another beside a
/// reader, stay within the server's connections; a sequential user holds at most two.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_providers_share_one_server() {
    let first = common::fresh(100).await;
    let mut tasks = Vec::new();
    for instance in 0..32 {
        let provider = PostgresProvider::connect(&common::url())
            .await
            .unwrap()
            .events_table(first.events_table_name())
            .unwrap()
            .bookmarks_table(first.bookmarks_table_name())
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let id = format!("i{instance}");
            for version in 0..30 {
                provider
                    .append("many", &id, version, &[event(version)], None)
                    .await?;
                provider.aggregate_events("many", &id, 0, 100).await?;
            }
            provider.set_position(&id, 1).await?;
            Ok::<u32, Error>(provider.pool().size())
        }));
    }
    for task in tasks {
        let held = task.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert!(held <= 2, "a sequential user holds {held} connections");
    }
}
