//! The EventLog writes events and page views in batches, and everything it
//! holds at shutdown is written before the process stops; page views keep
//! no address, and a flood drops the oldest and counts them.

use std::time::{Duration, Instant};

use lectern_actors::events::{count_events, daily_visits, DailyVisits, Flush};

use crate::helpers::{demo_database, spawn_app_on, spawn_app_with, TestApp};

#[actix_rt::test]
async fn the_start_is_recorded_and_written_at_the_latest_at_shutdown() {
    // An hour between periodic writes: only the write at shutdown can
    // bring the event to the table within this test.
    let app = spawn_app_with(&[("log.events_flush_secs", "3600")]).await;
    assert_eq!(
        count_events(&app.pool, "server.started").await.unwrap(),
        0,
        "held in memory while the app runs"
    );

    app.stopper.stop(true).await;

    // The app shuts its actors down after the server stopped, on its own task.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let written = count_events(&app.pool, "server.started").await.unwrap();
        if written == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server.started was not written at shutdown ({written} rows)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A browser's request for `path`, from `address`, with `agent`.
async fn view(
    app: &TestApp,
    path: &str,
    address: &str,
    agent: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app
        .client
        .get(app.url(path))
        .header("User-Agent", agent)
        .header("X-Forwarded-For", address);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response
}

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36";
const EPISODE: &str = "/episodes/building-an-actor-with-tokio";

/// Writes what the EventLog holds now.
async fn flush(app: &TestApp) {
    app.actors().event_log.send(Flush).await.unwrap().unwrap();
}

/// A page view row: path, referrer host, country, viewer, visitor, the
/// views it counts, the whole row as JSON.
type ViewRow = (String, Option<String>, Option<String>, String, i64, i32, String);

/// Every page view row, oldest first.
async fn page_view_rows(app: &TestApp) -> Vec<ViewRow> {
    let client = app.pool.get().await.unwrap();
    client
        .query(
            "SELECT path, referrer_host, country, viewer, visitor, views, row_to_json(v)::text \
             FROM page_views v ORDER BY viewed_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect()
}

async fn demo_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let mut all = vec![
        ("server.client_ip_header", "\"X-Forwarded-For\""),
        // Only the explicit flushes write.
        ("log.events_flush_secs", "3600"),
    ];
    all.extend_from_slice(overrides);
    spawn_app_on(demo_database().await, &all).await
}

#[actix_rt::test]
async fn page_views_of_cached_and_uncached_pages_are_rows_with_a_daily_visitor_hash_and_no_address() {
    let app = demo_app_with(&[]).await;
    let referred = [
        ("Referer", "https://news.example.com/item?id=42&token=secret"),
        ("CF-IPCountry", "de"),
    ];
    let miss = view(&app, EPISODE, "198.51.100.7", FIREFOX, &referred).await;
    assert_eq!(miss.headers()["x-cache"], "miss");
    // Written apart: alike views in one batch would be one row.
    flush(&app).await;
    let hit = view(&app, EPISODE, "198.51.100.7", FIREFOX, &referred).await;
    assert_eq!(hit.headers()["x-cache"], "hit", "answered at the front door");
    view(&app, "/articles", "198.51.100.7", CHROME, &[]).await;
    view(&app, "/articles", "203.0.113.9", FIREFOX, &[]).await;
    // Not page views: a bot, a feed, a static file, a request without a
    // User-Agent, a HEAD, a 404.
    view(
        &app,
        EPISODE,
        "198.51.100.8",
        "Mozilla/5.0 (compatible; Googlebot/2.1)",
        &[],
    )
    .await;
    view(&app, "/feed.xml", "198.51.100.7", FIREFOX, &[]).await;
    view(&app, "/static/css/lectern.css", "198.51.100.7", FIREFOX, &[]).await;
    assert_eq!(app.get(EPISODE).await.status(), 200);
    let head = app
        .client
        .head(app.url(EPISODE))
        .header("User-Agent", FIREFOX)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let missing = app
        .client
        .get(app.url("/episodes/no-such-episode"))
        .header("User-Agent", FIREFOX)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    flush(&app).await;
    let rows = page_view_rows(&app).await;
    // Path, referrer host, country, viewer, views.
    type Summary<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a str, i32);
    let summary: Vec<Summary> = rows
        .iter()
        .map(|(path, host, country, viewer, _, views, _)| {
            (
                path.as_str(),
                host.as_deref(),
                country.as_deref(),
                viewer.as_str(),
                *views,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (EPISODE, Some("news.example.com"), Some("DE"), "anonymous", 1),
            (EPISODE, Some("news.example.com"), Some("DE"), "anonymous", 1),
            ("/articles", None, None, "anonymous", 1),
            ("/articles", None, None, "anonymous", 1),
        ]
    );
    let visitors: Vec<i64> = rows.iter().map(|row| row.4).collect();
    assert_eq!(
        visitors[0], visitors[1],
        "the same visitor twice a day is one hash"
    );
    assert_ne!(visitors[0], visitors[2], "another browser is another visitor");
    assert_ne!(visitors[0], visitors[3], "another address is another visitor");
    assert_ne!(visitors[2], visitors[3]);
    for (.., json) in &rows {
        for secret in [
            "198.51.100.7",
            "203.0.113.9",
            "token",
            "item",
            "Firefox",
            "Mozilla",
        ] {
            assert!(!json.contains(secret), "{secret} stored in {json}");
        }
    }

    let today = time::OffsetDateTime::now_utc().date();
    let daily = daily_visits(&app.pool, today.previous_day().unwrap(), today)
        .await
        .unwrap();
    assert_eq!(
        daily,
        [DailyVisits {
            day: today,
            views: 4,
            visitors: 3
        }]
    );

    // A burst of alike views is one row that counts them; another page
    // by the same visitor is a row of its own.
    for _ in 0..5 {
        view(&app, EPISODE, "203.0.113.9", FIREFOX, &[]).await;
    }
    view(&app, "/articles", "203.0.113.9", FIREFOX, &[]).await;
    flush(&app).await;
    let rows = page_view_rows(&app).await;
    let burst: Vec<(&str, i32)> = rows[4..].iter().map(|row| (row.0.as_str(), row.5)).collect();
    assert_eq!(burst, [(EPISODE, 5), ("/articles", 1)]);
    assert_eq!(rows[5].4, visitors[3], "the same visitor as before");
    let daily = daily_visits(&app.pool, today, today).await.unwrap();
    assert_eq!((daily[0].views, daily[0].visitors), (10, 3));
}

#[actix_rt::test]
async fn turning_page_views_off_records_nothing() {
    let app = demo_app_with(&[("log.page_views", "false")]).await;
    for _ in 0..2 {
        view(&app, EPISODE, "198.51.100.7", FIREFOX, &[]).await;
    }
    flush(&app).await;
    assert!(page_view_rows(&app).await.is_empty());
}

#[actix_rt::test]
async fn a_restart_of_the_event_log_loses_nothing_in_the_ring() {
    let app = demo_app_with(&[]).await;
    for _ in 0..3 {
        view(&app, EPISODE, "198.51.100.7", FIREFOX, &[]).await;
    }
    let crash = app.actors().inject_panic("event_log").await;
    let crash = crash.unwrap_or_default();
    assert!(
        crash.contains("crashed while handling Panic"),
        "the EventLog did not crash: {crash}"
    );
    // Supervised: it comes back on its own arbiter; the flush waits for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.actors().event_log.stats().restarts() == 0 {
        assert!(Instant::now() < deadline, "the EventLog was not restarted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    flush(&app).await;
    assert_eq!(views_in(&page_view_rows(&app).await), 3);
}

/// The views the rows count.
fn views_in(rows: &[ViewRow]) -> u64 {
    rows.iter().map(|row| u64::try_from(row.5).unwrap()).sum()
}

/// `lectern_page_views_dropped_total` as `/metrics` shows it.
async fn dropped_on_metrics(app: &TestApp) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("lectern_page_views_dropped_total "))
        .unwrap_or_else(|| panic!("no page view drops on /metrics:\n{text}"))
        .parse()
        .unwrap()
}

#[actix_rt::test]
async fn a_flood_bigger_than_the_ring_drops_the_oldest_and_counts_every_drop() {
    const RING: u64 = 4;
    let app = demo_app_with(&[("log.page_view_buffer", "4")]).await;
    // Cached first (a bot is no visitor), so that pages are served while
    // the database is away and nothing can be written.
    view(&app, EPISODE, "198.51.100.1", "monitoring bot", &[]).await;
    view(&app, "/articles", "198.51.100.1", "monitoring bot", &[]).await;
    app.cut_off_database().await;
    let sent = 40;
    for n in 0..sent {
        let path = if n == sent - 1 { "/articles" } else { EPISODE };
        view(&app, path, &format!("198.51.100.{}", n + 10), FIREFOX, &[]).await;
    }
    let dropped = dropped_on_metrics(&app).await;
    app.restore_database().await;
    flush(&app).await;
    let rows = page_view_rows(&app).await;
    // Each of the two workers holds its latest view until the next one or
    // a write takes it. A half-full ring asks for a write, which the
    // database's absence keeps back with at most a ring's worth of the
    // oldest views and the workers' latest then; the ring keeps the newest,
    // the workers their latest; every other view is dropped, and counted.
    assert_eq!(
        views_in(&rows) + dropped,
        sent,
        "{} written, {dropped} dropped",
        views_in(&rows)
    );
    assert!(dropped >= sent - 2 * (RING + 2), "{dropped} dropped");
    assert_eq!(rows.last().unwrap().0, "/articles", "the newest view is kept");
    assert_eq!(dropped_on_metrics(&app).await, dropped);
}
