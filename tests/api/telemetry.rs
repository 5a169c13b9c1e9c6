//! Logs: one JSON line per request in the log file, the configured level,
//! and SIGHUP reopening the file after logrotate moved it.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::helpers::{fresh_database, spawn_app, spawn_app_with, wait_for_log_lines, LecternProcess};

#[actix_rt::test]
async fn each_request_writes_one_access_line_to_the_log_file() {
    let app = spawn_app().await;
    app.client
        .get(app.url("/no-such-page?q=1"))
        .header("X-Request-Id", "access-line-1")
        .send()
        .await
        .unwrap();

    let lines = app.log_lines_for("access-line-1").await;

    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["msg"], "request");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["method"], "GET");
    assert_eq!(
        line["path"], "/no-such-page",
        "no query string: it may carry tokens"
    );
    assert_eq!(line["status"], 404);
    assert!(line["bytes"].as_u64().unwrap() > 500, "{line}");
    assert!(line["latency_us"].as_u64().is_some(), "{line}");
    assert_eq!(line["cache"], "-");
    assert_eq!(line["user_id"], "-");
    assert!(line["ts"].as_str().is_some());
}

#[actix_rt::test]
async fn the_log_level_comes_from_the_configuration() {
    let app = spawn_app_with(&[("log.level", "\"warning\"")]).await;
    app.client
        .get(app.url("/healthz"))
        .header("X-Request-Id", "below-the-level")
        .send()
        .await
        .unwrap();

    // A page that cannot be loaded fails with an error, which is above the level.
    app.cut_off_database().await;
    let failed = app
        .client
        .get(app.url("/episodes/no-database"))
        .header("X-Request-Id", "above-the-level")
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 503);

    let failure = app.log_lines_for("above-the-level").await;
    let below = app.log_lines_for("below-the-level").await;

    assert_eq!(failure.len(), 1, "the error and no access line: {failure:?}");
    assert_eq!(failure[0]["msg"], "request failed");
    assert_eq!(failure[0]["level"], "ERRO");
    assert_eq!(failure[0]["status"], 503);
    assert!(below.is_empty(), "info lines are filtered at warning: {below:?}");
}

#[actix_rt::test]
async fn sighup_reopens_the_log_file_after_it_was_moved() {
    let database = fresh_database().await;
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let lectern = LecternProcess::start(Arc::clone(&data_dir), Some(&database));
    let client = reqwest::Client::new();
    let log_file = data_dir.path().join("log/lectern.log");
    let get = |id: &'static str| {
        client
            .get(lectern.url("/healthz"))
            .header("X-Request-Id", id)
            .send()
    };
    get("before-rotation").await.unwrap();
    assert_eq!(wait_for_log_lines(&log_file, "before-rotation").await.len(), 1);

    let rotated = data_dir.path().join("log/lectern.log.1");
    std::fs::rename(&log_file, &rotated).unwrap();
    lectern.signal(Signal::SIGHUP);

    // The signal is handled asynchronously: ask until a line lands in the new file.
    let started = std::time::Instant::now();
    let mut attempt = 0;
    let landed = loop {
        attempt += 1;
        let id = format!("after-rotation-{attempt}");
        client
            .get(lectern.url("/healthz"))
            .header("X-Request-Id", &id)
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let new_file = std::fs::read_to_string(&log_file).unwrap_or_default();
        if new_file.contains(&id) {
            break id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nothing was written to a new log file"
        );
    };

    assert!(
        wait_for_log_lines(&rotated, &landed).await.is_empty(),
        "not to the moved file"
    );
    assert_eq!(wait_for_log_lines(&rotated, "before-rotation").await.len(), 1);
}

#[actix_rt::test]
async fn the_access_line_of_a_refused_body_is_written_too() {
    let app = spawn_app().await;
    app.client
        .put(app.url("/anything"))
        .header("X-Request-Id", "too-big")
        .body(vec![0u8; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();

    let lines = app.log_lines_for("too-big").await;

    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["status"], 413);
    assert_eq!(lines[0]["method"], "PUT");
}
