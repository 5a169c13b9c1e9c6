//! The page cache as visitors meet it: misses then hits, every encoding,
//! 304s, one render for a crowd of concurrent misses, every node dropping
//! its copies as soon as it hears of a change, and cached pages served while
//! the database is down.

use std::io::Read;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{demo_database, raw_request, spawn_app_on, spawn_demo_app, TestApp};

fn renders(report: &serde_json::Value) -> u64 {
    report["actors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "renderer")
        .unwrap()["handled"]
        .as_u64()
        .unwrap()
}

async fn readyz(app: &TestApp) -> serde_json::Value {
    app.get("/readyz").await.json().await.unwrap()
}

#[actix_rt::test]
async fn the_first_visit_renders_and_the_next_ones_come_from_memory() {
    let app = spawn_demo_app().await;

    let first = app.get("/episodes/ownership-and-borrowing").await;
    let second = app.get("/episodes/ownership-and-borrowing").await;
    let with_tracking_query = app.get("/episodes/ownership-and-borrowing?utm_source=feed").await;

    assert_eq!(first.headers()["x-cache"], "miss");
    assert_eq!(second.headers()["x-cache"], "hit");
    assert_eq!(
        with_tracking_query.headers()["x-cache"],
        "hit",
        "unknown parameters share the entry"
    );
    assert_eq!(second.headers()["cache-control"], "public, no-cache");
    assert_eq!(second.headers()["vary"], "Accept-Encoding");
    let body = first.text().await.unwrap();
    assert_eq!(body, second.text().await.unwrap());
    let cache = &readyz(&app).await["cache"];
    assert_eq!(
        (cache["hits"].as_u64(), cache["misses"].as_u64()),
        (Some(2), Some(1)),
        "{cache}"
    );
    assert_eq!(cache["entries"], 1);
    // The entry keeps the gzip and brotli forms, not the plain body: a
    // client without either gets it unpacked, whole.
    let bytes = cache["bytes"].as_u64().unwrap();
    assert!(
        bytes > 1000 && bytes < body.len() as u64,
        "the compressed forms are kept and counted: {cache}"
    );
}

#[actix_rt::test]
async fn each_encoding_is_served_precompressed_with_its_own_etag() {
    let app = spawn_demo_app().await;
    let fetch = |encoding: &'static str| {
        app.client
            .get(app.url("/articles/why-we-built-lectern-in-rust"))
            .header("Accept-Encoding", encoding)
            .send()
    };
    let plain = fetch("identity").await.unwrap();
    let plain_etag = plain.headers()["etag"].to_str().unwrap().to_owned();
    let plain = plain.text().await.unwrap();

    let gzip = fetch("gzip, deflate").await.unwrap();
    assert_eq!(gzip.headers()["content-encoding"], "gzip");
    let gzip_etag = gzip.headers()["etag"].to_str().unwrap().to_owned();
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&gzip.bytes().await.unwrap()[..])
        .read_to_string(&mut unzipped)
        .unwrap();

    let brotli = fetch("gzip, deflate, br").await.unwrap();
    assert_eq!(brotli.headers()["content-encoding"], "br");
    let mut unbrotlied = Vec::new();
    brotli::BrotliDecompress(&mut &brotli.bytes().await.unwrap()[..], &mut unbrotlied).unwrap();

    assert_eq!(unzipped, plain);
    assert_eq!(String::from_utf8(unbrotlied).unwrap(), plain);
    assert_ne!(plain_etag, gzip_etag, "a strong ETag names one representation");

    // Read off the wire: an HTTP client reads no body after a 304 anyway.
    let revalidated = raw_request(
        &app,
        "GET",
        "/articles/why-we-built-lectern-in-rust",
        &[("Accept-Encoding", "gzip"), ("If-None-Match", gzip_etag.as_str())],
    )
    .await;
    assert_eq!(revalidated.status, 304);
    assert_eq!(revalidated.header("etag"), Some(gzip_etag.as_str()));
    assert!(
        revalidated.body.is_empty(),
        "{} bytes after the headers of a 304",
        revalidated.body.len()
    );
    let other_encoding = raw_request(
        &app,
        "GET",
        "/articles/why-we-built-lectern-in-rust",
        &[("Accept-Encoding", "br"), ("If-None-Match", gzip_etag.as_str())],
    )
    .await;
    assert_eq!(
        other_encoding.status, 200,
        "the gzip ETag does not stand for the brotli body"
    );
    assert!(!other_encoding.body.is_empty());
}

#[actix_rt::test]
async fn a_crowd_arriving_at_a_cold_page_causes_one_render() {
    let app = spawn_demo_app().await;
    let before = renders(&readyz(&app).await);
    // Hold the episodes table, so that every request arrives while the
    // first one is still waiting for its data.
    let mut client = app.pool.get().await.unwrap();
    let lock = client.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE episodes IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let crowd: Vec<_> = (0..25)
        .map(|_| app.client.get(app.url("/episodes/traits-and-generics")).send())
        .collect();
    let crowd = futures_util::future::join_all(crowd);
    // Released once all 25 are in the page table, waiting for the one render
    // (however long they take to get there), and its query is waiting for
    // the lock.
    let release = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let waiting = app.actors().pages.misses_in_flight();
            if waiting == 25 && query_waits_for_lock(&app).await {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{waiting} of 25 requests waiting for the render"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lock.rollback().await.unwrap();
    };
    let (responses, ()) = tokio::join!(crowd, release);

    for response in responses {
        let response = response.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-cache"], "miss");
    }
    assert_eq!(
        renders(&readyz(&app).await) - before,
        1,
        "one render for 25 concurrent misses"
    );
}

/// Whether a query of the app's is waiting for a lock on `episodes`.
async fn query_waits_for_lock(app: &TestApp) -> bool {
    let (client, connection) = app.database.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'episodes'::regclass AND NOT granted)",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// How many invalidations `app`'s page table has carried out.
fn invalidations(app: &TestApp) -> u64 {
    app.actors().pages.stats().invalidations
}

/// Waits for `app`'s invalidation count to pass `before` (10 s at most),
/// then expects its very next requests to show the change.
async fn sees_change_once_invalidated(node: &str, app: &TestApp, before: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while invalidations(app) == before {
        assert!(
            Instant::now() < deadline,
            "{node}: the invalidation never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for path in ["/episodes/traits-and-generics", "/series/rust-from-scratch"] {
        let body = app.get(path).await.text().await.unwrap();
        assert!(
            body.contains("Renamed: "),
            "{node}: {path} is stale after the invalidation"
        );
    }
}

#[actix_rt::test]
async fn a_change_reaches_every_node_on_its_next_request() {
    let database = demo_database().await;
    let first = spawn_app_on(database.clone(), &[]).await;
    let second = spawn_app_on(database, &[]).await;
    for node in [&first, &second] {
        node.get("/episodes/traits-and-generics").await;
        node.get("/series/rust-from-scratch").await;
        assert_eq!(
            node.get("/episodes/traits-and-generics").await.headers()["x-cache"],
            "hit"
        );
    }
    let delivered_before = [invalidations(&first), invalidations(&second)];

    // The operator renames the episode in the content folder and imports it.
    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir(folder.path().join("episodes")).unwrap();
    let source = include_str!("../../actors/demo/episodes/traits-and-generics.md").replacen(
        "title = \"",
        "title = \"Renamed: ",
        1,
    );
    std::fs::write(folder.path().join("episodes/traits-and-generics.md"), source).unwrap();
    let report = lectern_actors::content::import::import_dir(
        &first.pool,
        folder.path(),
        lectern_actors::content::markdown::MarkdownOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.changed, ["episodes/traits-and-generics"]);

    // Both nodes watched at once: each shows the change on its first
    // request after its invalidation arrived (however long that took).
    tokio::join!(
        sees_change_once_invalidated("first", &first, delivered_before[0]),
        sees_change_once_invalidated("second", &second, delivered_before[1]),
    );
}

#[actix_rt::test]
async fn while_the_database_is_down_cached_pages_are_served_and_misses_get_503() {
    let app = spawn_demo_app().await;
    app.get("/episodes/ownership-and-borrowing").await;
    app.cut_off_database().await;

    let cached = app.get("/episodes/ownership-and-borrowing").await;
    let missed = app.get("/episodes/lifetimes-demystified").await;

    assert_eq!(cached.status(), StatusCode::OK);
    assert_eq!(cached.headers()["x-cache"], "hit");
    assert_eq!(missed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(missed.headers()["retry-after"], "5");
    assert!(missed.text().await.unwrap().contains("briefly unavailable"));

    // The database comes back; so does every page, by itself.
    app.restore_database().await;
    let started = Instant::now();
    loop {
        let response = app.get("/episodes/lifetimes-demystified").await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "service did not come back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
