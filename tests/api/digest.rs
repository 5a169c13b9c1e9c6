//! The weekly digest to the operator: queued once a week (not again when
//! the watch looks again, nor from a second node, nor from two at once),
//! with the figures of the seven days before its day.

use std::time::Duration;

use lectern_actors::alerts::digest::{self, Digest};
use lectern_actors::alerts::watch::CheckDigest;
use lectern_actors::events::SlowRoute;
use lectern_actors::mail::EmailAddress;
use lectern_actors::store;
use lectern_actors::supervisor::restarts::ActorReport;
use time::OffsetDateTime;

use crate::helpers::{fresh_database, mime_part, spawn_app_on, wait_for, TestApp};

const OPERATOR: &str = "ops@example.org";

async fn digests(app: &TestApp) -> Vec<i64> {
    app.outbox()
        .await
        .into_iter()
        .filter(|e| e.message == "digest")
        .map(|e| e.id)
        .collect()
}

#[actix_rt::test]
async fn the_weekly_digest_is_queued_once_with_the_figures_of_its_week() {
    let database = fresh_database().await;
    // The week: the seven days before today, as the digest is due today at 00:00 UTC.
    let seed = store::connect_pool(database.clone(), 1).unwrap();
    seed.get()
        .await
        .unwrap()
        .batch_execute(
            "INSERT INTO page_views (day, viewed_at, path, referrer_host, country, viewer, visitor, views) VALUES \
             ((now() AT TIME ZONE 'UTC')::date - 2, now() - interval '2 days', '/episodes', NULL, NULL, 'anonymous', 1, 5), \
             ((now() AT TIME ZONE 'UTC')::date - 2, now() - interval '2 days', '/episodes', NULL, NULL, 'anonymous', 2, 3), \
             ((now() AT TIME ZONE 'UTC')::date - 3, now() - interval '3 days', '/', NULL, NULL, 'anonymous', 1, 4), \
             ((now() AT TIME ZONE 'UTC')::date - 9, now() - interval '9 days', '/before', NULL, NULL, 'anonymous', 9, 100), \
             ((now() AT TIME ZONE 'UTC')::date, now(), '/today', NULL, NULL, 'anonymous', 9, 50); \
             INSERT INTO events (kind, subject, data, occurred_at) VALUES \
             ('account.signed_up', '1', '{}', now() - interval '2 days'), \
             ('account.signed_up', '2', '{}', now() - interval '6 days'), \
             ('account.signed_up', '3', '{}', now() - interval '9 days'), \
             ('alert.raised', 'backup_failed', '{}', now() - interval '1 day'), \
             ('alert.raised', 'backup_failed', '{}', now() - interval '2 days'); \
             INSERT INTO payments (id, user_id, kind, amount, currency, occurred_at) VALUES \
             ('in_1', NULL, 'invoice', 1900, 'usd', now() - interval '3 days'), \
             ('in_2', NULL, 'invoice', 250000, 'usd', now() - interval '1 day'), \
             ('in_before', NULL, 'invoice', 777, 'usd', now() - interval '10 days'), \
             ('in_today', NULL, 'invoice', 300, 'usd', now()); \
             INSERT INTO subscriptions (id, user_id, customer_id, status, price_id, amount, currency, started_at, updated_at) VALUES \
             ('sub_new', NULL, 'cus_1', 'active', 'price_1', 1900, 'usd', now() - interval '2 days', now() - interval '2 days'), \
             ('sub_lost', NULL, 'cus_2', 'canceled', 'price_1', 1900, 'usd', now() - interval '40 days', now() - interval '3 days'); \
             INSERT INTO backups (kind, storage, key, bytes, sha256, row_counts, started_at, finished_at, status, verified_at, verification) VALUES \
             ('daily', 'dir', 'daily/1', 10, repeat('a', 64), '{}', now() - interval '2 days', now() - interval '2 days', \
              'succeeded', now() - interval '2 days', '{\"ok\": true}'); \
             INSERT INTO backups (kind, storage, key, started_at, status, error) VALUES \
             ('daily', 'dir', 'daily/2', now() - interval '1 day', 'failed', 'disk full');",
        )
        .await
        .unwrap();
    let weekday = format!(
        "\"{}\"",
        OffsetDateTime::now_utc().weekday().to_string().to_lowercase()
    );
    let settings = [
        ("alerts.email", "\"ops@example.org\""),
        ("alerts.digest_weekday", weekday.as_str()),
        ("alerts.digest_hour", "0"),
    ];

    // The watch looks when it starts.
    let app = spawn_app_on(database.clone(), &settings).await;
    let queued = wait_for(Duration::from_secs(10), "the digest queued", || async {
        digests(&app).await.first().copied()
    })
    .await;
    for _ in 0..2 {
        let again = app.actors().alert_watch.send(CheckDigest).await.unwrap().unwrap();
        assert_eq!(again, Some(Digest::AlreadySent));
    }
    let second_node = spawn_app_on(database.clone(), &settings).await;
    let there = second_node
        .actors()
        .alert_watch
        .send(CheckDigest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(there, Some(Digest::AlreadySent));
    assert_eq!(digests(&app).await, [queued], "one digest for the week");

    let email = app.last_email_to(OPERATOR).await;
    assert_eq!(email.id, queued);
    let eml = app.eml_of(&email).await;
    let text = mime_part(&eml, "text/plain");
    for line in [
        "Visitors: 3 (each counted once a day), page views: 12",
        "Sign-ups: 2",
        "Subscribers: 1 new, 1 lost; 0 with premium access now",
        "Revenue: 2,519.00 USD",
        "Backups: 1 made, 1 verified, 1 failed",
        "Alerts: backup_failed 2",
        "  /episodes: 8 views\n  /: 4 views\n",
        // Asked for when the node had answered nothing yet.
        "Slowest routes on the node that sent this (since it started, asked for 10 times or more):\n  none yet\n",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    assert!(!text.contains("/before") && !text.contains("/today"), "{text}");
    assert!(eml.contains("weekly digest"), "{eml}");
}

#[actix_rt::test]
async fn two_nodes_looking_at_once_queue_one_digest() {
    let database = fresh_database().await;
    let (one, two) = (
        store::connect_pool(database.clone(), 2).unwrap(),
        store::connect_pool(database.clone(), 2).unwrap(),
    );
    let to = EmailAddress::parse(OPERATOR).unwrap();
    let due = OffsetDateTime::now_utc() - time::Duration::days(3);
    let restarts = [ActorReport {
        name: "renderer",
        alive: true,
        restarts: 2,
        handled: 10,
        backlog: 0,
        last_error: Some("panic while handling Render: boom".into()),
    }];
    let slowest = [SlowRoute {
        route: "/search".into(),
        requests: 1022,
        mean_ms: 41.26,
    }];
    let node = digest::ThisNode {
        actors: &restarts,
        slowest: &slowest,
    };
    let (a, b) = tokio::join!(
        digest::send_digest(&one, &to, due, node),
        digest::send_digest(&two, &to, due, node),
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| matches!(o, Digest::AlreadySent));
    let Digest::Queued(id) = outcomes[0] else {
        panic!("one of them queued it: {outcomes:?}");
    };
    assert_eq!(outcomes[1], Digest::AlreadySent);
    let rows = one
        .get()
        .await
        .unwrap()
        .query("SELECT id, data FROM email_outbox WHERE message = 'digest'", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), id);
    let data: serde_json::Value = rows[0].get(1);
    assert_eq!(data["restarts"][0]["actor"], "Renderer");
    assert_eq!(data["restarts"][0]["restarts"], 2);
    assert_eq!(data["slowest"][0]["route"], "/search");
    assert_eq!(data["slowest"][0]["mean_ms"], "41.3");
    assert_eq!(data["slowest"][0]["requests"], "1,022");
}

#[actix_rt::test]
async fn a_node_times_its_routes_for_the_digests_slowest() {
    let app = spawn_app_on(fresh_database().await, &[]).await;
    for _ in 0..10 {
        assert_eq!(app.get("/healthz").await.status(), 200);
    }
    app.get("/pricing").await;
    let slowest = app.actors().route_times.slowest(5, 10);
    assert_eq!(slowest.len(), 1, "{slowest:?}: /pricing was asked for once only");
    assert_eq!(slowest[0].route, "/healthz");
    assert_eq!(slowest[0].requests, 10);
    assert!(
        slowest[0].mean_ms > 0.0 && slowest[0].mean_ms < 1000.0,
        "{slowest:?}"
    );
}
