//! The embedded default database, through the real binary: first start
//! initialises it, Ctrl-C stops everything within 5 s, the next start reuses
//! the data, and a Lectern killed outright leaves no PostgreSQL behind and
//! does not stop the next start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::helpers::{postgres_processes_for, LecternProcess};

async fn ready(lectern: &LecternProcess) -> Value {
    let response = reqwest::get(lectern.url("/readyz")).await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn wait_until_no_postgres(data_dir: &std::path::Path, within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let left = postgres_processes_for(data_dir);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn started_events(data_dir: &std::path::Path) -> i64 {
    started_events_before(
        data_dir,
        time::OffsetDateTime::now_utc() + time::Duration::days(1),
    )
    .await
}

async fn started_events_before(data_dir: &std::path::Path, before: time::OffsetDateTime) -> i64 {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(data_dir.join("postgres"))
        .user("lectern")
        .dbname("lectern");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .query_one(
            "SELECT count(*) FROM events WHERE kind = 'server.started' AND occurred_at < $1",
            &[&before],
        )
        .await
        .unwrap()
        .get(0)
}

/// A data directory under /tmp, so that the postgres user can reach it
/// when we are root.
fn data_dir_under_tmp() -> Arc<tempfile::TempDir> {
    Arc::new(
        tempfile::Builder::new()
            .prefix("lectern-embedded-")
            .tempdir_in("/tmp")
            .unwrap(),
    )
}

#[actix_rt::test]
async fn the_embedded_database_lives_and_dies_with_lectern() {
    let data_dir = data_dir_under_tmp();
    let root = data_dir.path().to_owned();

    // First start: initdb, start, migrate, serve.
    let mut first = LecternProcess::start(Arc::clone(&data_dir), None);
    assert_eq!(ready(&first).await["status"], "ready");
    assert!(root.join("postgres/PG_VERSION").is_file());
    // A backend that has just forked still shows the postmaster's command
    // line for a moment, so count "some", not "one".
    assert!(
        !postgres_processes_for(&root).is_empty(),
        "PostgreSQL runs on that data dir"
    );

    // The first run's own row, written by its EventLog while it runs (the
    // write at shutdown is tested in events.rs, with nothing else to rescue it).
    wait_for_started_events(&root, 1).await;
    first.signal(Signal::SIGINT);
    assert_eq!(
        first.wait_exit(Duration::from_secs(5)),
        Some(0),
        "Ctrl-C stops Lectern within 5 s"
    );
    assert!(wait_until_no_postgres(&root, Duration::from_millis(500)).is_empty());
    assert_eq!(
        started_events_after_stop(&root).await,
        1,
        "the first run wrote its start event before it stopped"
    );

    // Second start reuses the data: the first run's event is still there
    // beside its own.
    let second_started = time::OffsetDateTime::now_utc();
    let mut second = LecternProcess::start(Arc::clone(&data_dir), None);
    assert_eq!(ready(&second).await["status"], "ready");
    assert_eq!(
        started_events_before(&root, second_started).await,
        1,
        "the first run's data is still there"
    );

    // Killed outright: PostgreSQL follows it.
    second.signal(Signal::SIGKILL);
    second.wait_exit(Duration::from_secs(5));
    assert!(
        wait_until_no_postgres(&root, Duration::from_secs(10)).is_empty(),
        "no orphaned PostgreSQL"
    );

    // A server that died without cleaning up (power loss) leaves its lock
    // file, whose PID may since belong to another process: here, ours.
    std::fs::write(
        root.join("postgres/postmaster.pid"),
        format!("{}\n{}\n", std::process::id(), root.join("postgres").display()),
    )
    .unwrap();

    let third_started = time::OffsetDateTime::now_utc();
    let mut third = LecternProcess::start(Arc::clone(&data_dir), None);
    assert_eq!(ready(&third).await["status"], "ready");
    let earlier = started_events_before(&root, third_started).await;
    wait_for_started_events(&root, earlier + 1).await;
    third.signal(Signal::SIGTERM);
    assert_eq!(third.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(wait_until_no_postgres(&root, Duration::from_millis(500)).is_empty());
    // The runs stopped by SIGINT and SIGTERM had written their start events;
    // the killed one may have lost its last second of them.
    let written = started_events_after_stop(&root).await;
    assert!((2..=3).contains(&written), "{written} start events");
}

/// Waits (up to 30 s) until the running Lectern's database holds `n` start events.
async fn wait_for_started_events(root: &std::path::Path, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while started_events(root).await < n {
        assert!(Instant::now() < deadline, "fewer than {n} start events written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Counts start events with Lectern stopped: starts the server briefly.
async fn started_events_after_stop(root: &std::path::Path) -> i64 {
    let mut server = lectern_actors::store::embedded::EmbeddedPostgres::start(
        &root.join("postgres"),
        &root.join("log/postgres.log"),
    )
    .unwrap();
    let count = started_events(root).await;
    server.stop();
    count
}

/// The embedded PostgreSQL is a supervised child: SIGKILLed, it is started
/// again, the pools reconnect, and pages that need the database come back
/// without Lectern being restarted.
#[actix_rt::test]
async fn a_killed_embedded_database_is_started_again_and_the_site_recovers() {
    let data_dir = data_dir_under_tmp();
    let root = data_dir.path().to_owned();
    let lectern = LecternProcess::start(Arc::clone(&data_dir), None);
    assert_eq!(ready(&lectern).await["status"], "ready");
    let postmaster = |root: &std::path::Path| -> i32 {
        std::fs::read_to_string(root.join("postgres/postmaster.pid"))
            .ok()
            .and_then(|pid_file| pid_file.lines().next()?.trim().parse().ok())
            .unwrap_or(0)
    };
    let first = postmaster(&root);
    assert!(first > 0);

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), Signal::SIGKILL).unwrap();

    // A page that needs the database (a search is never cached) and the
    // readiness check come back, on a new server, with the same process.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let search = reqwest::get(lectern.url("/search?q=actor"))
            .await
            .unwrap()
            .status();
        let readyz = reqwest::get(lectern.url("/readyz")).await.unwrap().status();
        if search == 200 && readyz == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not back within 60 s: search {search}, readyz {readyz}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = postmaster(&root);
    assert!(again > 0 && again != first, "a new server: {first} then {again}");
    // The log file's buffer is written every 100 ms: the last lines may
    // reach it just after the answers.
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = std::fs::read_to_string(root.join("log/lectern.log")).unwrap();
        if log.contains("embedded PostgreSQL started again") || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        log.lines().any(
            |line| line.contains("the embedded PostgreSQL exited: starting it again")
                && line.contains("\"restarts\":1")
        ),
        "{log}"
    );
    assert!(log.contains("embedded PostgreSQL started again"), "{log}");
}
