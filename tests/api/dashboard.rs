//! The operator's dashboard (`/admin/dashboard`) and system view
//! (`/admin/system`): the charts' bars are the database's counts day by
//! day, visitors' text shows escaped, every actor is named, and a failed
//! request shows with its request id.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lectern_actors::events::Flush;

use crate::admin::{admin, member, sql};
use crate::helpers::{demo_database, spawn_app_on, spawn_app_with, TestApp};
use crate::visitor::{Page, Visitor};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

/// The bars of the chart whose id is `id`: label to value, as the SVG's
/// data attributes carry them.
fn bars(page: &Page, id: &str) -> BTreeMap<String, i64> {
    let marker = format!("aria-labelledby=\"{id}-title {id}-desc\"");
    let at = page
        .body
        .find(&marker)
        .unwrap_or_else(|| panic!("no chart {id} in {}", page.body));
    let start = page.body[..at].rfind("<svg").unwrap();
    let end = at + page.body[at..].find("</svg>").unwrap() + "</svg>".len();
    let svg = roxmltree::Document::parse(&page.body[start..end]).expect("the chart is well-formed XML");
    let root = svg.root_element();
    assert_eq!(root.attribute("role"), Some("img"));
    let title = root
        .children()
        .find(|n| n.has_tag_name("title"))
        .and_then(|n| n.text())
        .unwrap_or_default();
    assert!(!title.is_empty(), "{id} has a title");
    assert!(
        root.children().any(|n| n.has_tag_name("desc")),
        "{id} has a description"
    );
    svg.descendants()
        .filter(|n| n.attribute("class") == Some("chart-bar"))
        .map(|n| {
            (
                n.attribute("data-label").unwrap().to_owned(),
                n.attribute("data-value").unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// Label to count, from a query answering (text, bigint) rows.
async fn counted(app: &TestApp, query: &str) -> BTreeMap<String, i64> {
    app.pool
        .get()
        .await
        .unwrap()
        .query(query, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// Every bar is the database's figure for its label (none: zero), and the
/// chart has `expected_bars` bars.
fn assert_bars_are(
    chart: &BTreeMap<String, i64>,
    database: &BTreeMap<String, i64>,
    expected_bars: usize,
    what: &str,
) {
    assert_eq!(chart.len(), expected_bars, "{what}: {chart:?}");
    for (label, value) in chart {
        assert_eq!(
            *value,
            database.get(label).copied().unwrap_or(0),
            "{what} on {label}: chart {chart:?}, database {database:?}"
        );
    }
    let charted: i64 = chart.values().sum();
    let counted: i64 = database.values().sum();
    assert_eq!(charted, counted, "{what}: everything counted is charted");
}

/// A browser's view of `path` from `address`.
async fn view(app: &TestApp, path: &str, address: &str, extra: &[(&str, &str)]) {
    let mut request = app
        .client
        .get(app.url(path))
        .header("User-Agent", FIREFOX)
        .header("X-Forwarded-For", address);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    assert_eq!(request.send().await.unwrap().status(), 200, "{path}");
}

/// UTC today in SQL, whatever the session's time zone.
const TODAY: &str = "(now() AT TIME ZONE 'UTC')::date";

#[actix_rt::test]
async fn the_dashboard_charts_each_day_as_the_database_counts_it() {
    let app = spawn_app_on(
        demo_database().await,
        &[
            ("server.client_ip_header", "\"X-Forwarded-For\""),
            // Only the explicit flush writes.
            ("log.events_flush_secs", "3600"),
        ],
    )
    .await;
    let mut root = Visitor::new(&app);
    admin(&app, &mut root, "root@example.org").await;
    let mut signed_up = Vec::new();
    for email in ["ada@example.org", "grace@example.org", "linus@example.org"] {
        signed_up.push(member(&app, &mut Visitor::new(&app), email).await);
    }

    // Today's traffic: four visitors, some referred, some with a country.
    let referred = [
        ("Referer", "https://news.example.com/item?id=1"),
        ("CF-IPCountry", "DE"),
    ];
    for n in 1..=4 {
        let address = format!("198.51.100.{n}");
        view(&app, "/", &address, &[]).await;
        view(&app, "/episodes", &address, &referred[..n % 3]).await;
    }
    view(&app, "/articles", "198.51.100.1", &[("CF-IPCountry", "FR")]).await;
    app.actors().event_log.send(Flush).await.unwrap().unwrap();

    // Earlier days, and one too old to chart; a hostile referrer and path
    // (the recorder keeps no such host, but the page must not trust that).
    sql(
        &app,
        &format!(
            "INSERT INTO page_views (day, viewed_at, path, referrer_host, country, viewer, visitor, views) VALUES \
             ({TODAY} - 3, now() - interval '3 days', '/episodes', 'old.example', 'JP', 'anonymous', 1, 5), \
             ({TODAY} - 3, now() - interval '3 days', '/', NULL, NULL, 'member', 2, 2), \
             ({TODAY} - 12, now() - interval '12 days', '/<img src=x onerror=alert(1)>', \
              '<script>alert(\"referrer\")</script>', NULL, 'anonymous', 3, 1), \
             ({TODAY} - 29, now() - interval '29 days', '/series', NULL, NULL, 'anonymous', 4, 7), \
             ({TODAY} - 30, now() - interval '30 days', '/too-old', NULL, NULL, 'anonymous', 5, 9); \
             INSERT INTO events (kind, subject, data, occurred_at) VALUES \
             ('account.signed_up', '990', '{{}}', now() - interval '5 days'), \
             ('account.signed_up', '991', '{{}}', now() - interval '45 days'); \
             INSERT INTO payments (id, user_id, kind, amount, currency, occurred_at) VALUES \
             ('in_today', NULL, 'invoice', 1900, 'usd', now()), \
             ('refund:ch_today', NULL, 'refund', -500, 'usd', now()), \
             ('in_earlier', NULL, 'invoice', 250000, 'usd', now() - interval '2 days'), \
             ('in_months_ago', NULL, 'invoice', 4900, 'usd', now() - interval '70 days');"
        ),
    )
    .await;
    let subscriber = signed_up[0];
    sql(
        &app,
        &format!(
            "INSERT INTO subscriptions (id, user_id, customer_id, status, price_id, amount, currency, started_at, \
                                        updated_at) VALUES \
             ('sub_1', {subscriber}, 'cus_1', 'active', 'price_1', 1900, 'usd', now(), now()), \
             ('sub_lost', NULL, 'cus_2', 'canceled', 'price_1', 1900, 'usd', now() - interval '10 days', \
              now() - interval '4 days')"
        ),
    )
    .await;

    let window = format!("BETWEEN {TODAY} - 29 AND {TODAY}");
    let views = counted(
        &app,
        &format!("SELECT day::text, sum(views)::bigint FROM page_views WHERE day {window} GROUP BY day"),
    )
    .await;
    let visitors = counted(
        &app,
        &format!("SELECT day::text, count(DISTINCT visitor) FROM page_views WHERE day {window} GROUP BY day"),
    )
    .await;
    let signups = counted(
        &app,
        &format!(
            "SELECT (occurred_at AT TIME ZONE 'UTC')::date::text AS day, count(*) FROM events \
             WHERE kind = 'account.signed_up' AND (occurred_at AT TIME ZONE 'UTC')::date {window} GROUP BY day"
        ),
    )
    .await;
    let revenue = counted(
        &app,
        &format!(
            "SELECT (occurred_at AT TIME ZONE 'UTC')::date::text AS day, sum(amount)::bigint FROM payments \
             WHERE (occurred_at AT TIME ZONE 'UTC')::date {window} GROUP BY day"
        ),
    )
    .await;
    let monthly = counted(
        &app,
        "SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, sum(amount)::bigint FROM payments \
         GROUP BY month",
    )
    .await;
    let today = counted(&app, &format!("SELECT {TODAY}::text, 0::bigint"))
        .await
        .into_keys()
        .next()
        .unwrap();
    assert!(
        views[&today] >= 9,
        "what the test viewed today is in the database"
    );
    assert_eq!(signups[&today], 3, "the three members, not the administrator");

    let page = root.get("/admin/dashboard").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.headers["cache-control"], "private, no-store");
    assert_bars_are(&bars(&page, "views"), &views, 30, "page views");
    assert_bars_are(&bars(&page, "visitors"), &visitors, 30, "visitors");
    assert_bars_are(&bars(&page, "signups"), &signups, 30, "sign-ups");
    assert_bars_are(&bars(&page, "revenue-daily"), &revenue, 30, "revenue a day");
    assert_bars_are(&bars(&page, "revenue-monthly"), &monthly, 12, "revenue a month");
    assert_eq!(bars(&page, "subscriptions-started")[&today], 1);
    // Giving access: the lost one from its start until the day before it
    // ended, the new one today.
    let giving_access = counted(
        &app,
        &format!(
            "SELECT day::date::text, CASE WHEN day::date = {TODAY} THEN 1 \
                    WHEN day::date BETWEEN {TODAY} - 10 AND {TODAY} - 5 THEN 1 ELSE 0 END::bigint \
             FROM generate_series({TODAY} - 29, {TODAY}, interval '1 day') AS day"
        ),
    )
    .await;
    assert_bars_are(
        &bars(&page, "subscriptions"),
        &giving_access,
        30,
        "subscriptions a day",
    );
    assert!(
        page.body.contains("(a subscription or a grant): 1."),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("2,514.00 USD"),
        "revenue reads with thousands separators"
    );

    // The top lists: news.example.com referred two visitors' views, and
    // the hostile texts show as text.
    assert!(
        page.body
            .contains("<td>news.example.com</td><td>3</td><td>3</td>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<td>DE</td>"));
    assert!(!page.body.contains("<script>alert("), "{}", page.body);
    assert!(page.body.contains("&lt;script&gt;alert("), "{}", page.body);
    assert!(!page.body.contains("<img src=x"));
    assert!(page.body.contains("&lt;img src"));
    assert!(
        !page.body.contains("/too-old"),
        "a day before the window is not counted"
    );
}

/// The cells of the system view's row for `actor`.
fn actor_row(page: &Page, actor: &str) -> Vec<String> {
    let start = page
        .body
        .find(&format!("<td>{actor}</td>"))
        .unwrap_or_else(|| panic!("no row for {actor}: {}", page.body));
    let row = &page.body[start..start + page.body[start..].find("</tr>").unwrap()];
    row.split("<td>")
        .skip(1)
        .map(|cell| cell.split("</td>").next().unwrap().trim().to_owned())
        .collect()
}

#[actix_rt::test]
async fn the_system_view_names_every_actor_and_shows_a_failure_with_its_request_id() {
    let app = spawn_app_with(&[("database.pool_size", "3")]).await;
    let mut root = Visitor::new(&app);
    admin(&app, &mut root, "root@example.org").await;
    // A miss and a hit in the page cache.
    assert_eq!(app.get("/").await.status(), 200);
    assert_eq!(app.get("/").await.status(), 200);
    // A crash: the Renderer restarts (and the log warns of it).
    let crashed = app
        .client
        .post(app.url("/debug/panic/renderer"))
        .send()
        .await
        .unwrap();
    assert_eq!(crashed.status(), 200);
    // A request that fails: its error is logged with its request id.
    app.cut_off_database().await;
    let failed = app
        .client
        .get(app.url("/episodes/while-the-database-is-away"))
        .header("X-Request-Id", "dashboard-test-failure")
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 503);
    assert!(!app.log_lines_for("dashboard-test-failure").await.is_empty());
    app.restore_database().await;

    // The first connections after the cut may still be the dead ones.
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = root.get("/admin/system").await;
        let restarted = page.status == 200 && actor_row(&page, "Renderer")[2] == "1";
        if restarted || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.headers["cache-control"], "private, no-store");
    for actor in [
        "EventLog",
        "Renderer",
        "PageCache",
        "Mailer",
        "Housekeeper",
        "BillingSupervisor",
        "BackupScheduler",
        "AlertWatch",
    ] {
        let row = actor_row(&page, actor);
        assert_eq!(row[1], "yes", "{actor} is alive: {row:?}");
        assert_eq!(
            row.len(),
            6,
            "{actor}: alive, restarts, backlog, handled, last error: {row:?}"
        );
    }
    let renderer = actor_row(&page, "Renderer");
    assert_eq!(renderer[2], "1", "restarted once: {renderer:?}");
    assert_ne!(renderer[5], "none", "its last error: {renderer:?}");

    let cache = app.actors().pages.stats();
    assert!(cache.hits >= 1 && cache.misses >= 1);
    assert!(page.body.contains("<tr><th>Hit rate</th><td>"), "{}", page.body);
    assert!(page.body.contains("<tr><th>Evictions</th><td>0</td></tr>"));
    assert!(page
        .body
        .contains(&format!("<tr><th>Entries</th><td>{}</td></tr>", cache.entries)));
    assert!(
        page.body.contains("of at most 3</td></tr>"),
        "the pool's size: {}",
        page.body
    );
    assert!(page
        .body
        .contains("<tr><th>Waiting for a connection</th><td>0</td></tr>"));

    let failure = page
        .body
        .find("<code>dashboard-test-failure</code>")
        .unwrap_or_else(|| panic!("the failure's request id: {}", page.body));
    let row = &page.body[page.body[..failure].rfind("<tr>").unwrap()..failure];
    assert!(row.contains("<td>ERRO</td>"), "{row}");
    assert!(row.contains("request failed"), "{row}");
    assert!(
        page.body.contains("<td>actor restarted</td>") && page.body.contains("actor: renderer"),
        "the restart's warning: {}",
        page.body
    );
}
