//! `/healthz`, `/readyz` and `/metrics`.

use std::collections::{BTreeMap, BTreeSet};

use openmetrics_parser::{
    HistogramValue, MetricFamily, MetricsExposition, OpenMetricsType, OpenMetricsValue, PrometheusType,
    PrometheusValue,
};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_with, spawn_demo_app, TestApp};

#[actix_rt::test]
async fn healthz_says_the_process_is_alive() {
    let app = spawn_app().await;

    let response = app.get("/healthz").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.text().await.unwrap(), "ok\n");
}

#[actix_rt::test]
async fn readyz_is_green_when_database_migrations_and_actors_are() {
    let app = spawn_app().await;

    let response = app.get("/readyz").await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    for check in ["database", "migrations", "actors"] {
        assert_eq!(body["checks"][check]["ok"], true, "{check}: {body}");
    }
    let actors: Vec<&str> = body["actors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        actors,
        [
            "event_log",
            "renderer",
            "page_cache",
            "mailer",
            "housekeeper",
            "stripe_worker_1",
            "stripe_worker_2",
            "billing",
            "backup_scheduler",
            "alert_watch",
        ]
    );
}

#[actix_rt::test]
async fn readyz_is_503_with_the_reason_when_the_database_is_unreachable() {
    let app = spawn_app().await;
    app.cut_off_database().await;

    let response = app.get("/readyz").await;

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["database"]["ok"], false);
    assert!(
        body["reason"].as_str().unwrap().starts_with("database: "),
        "{body}"
    );
}

#[actix_rt::test]
async fn readyz_is_503_when_the_database_lacks_a_migration() {
    let app = spawn_app().await;
    let client = app.pool.get().await.unwrap();
    client
        .batch_execute("DELETE FROM refinery_schema_history")
        .await
        .unwrap();

    let response = app.get("/readyz").await;

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("migrations: database at version 0"),
        "{reason}"
    );
}

#[actix_rt::test]
async fn head_is_answered_wherever_get_is() {
    let app = spawn_app().await;

    for path in ["/healthz", "/readyz", "/static/css/lectern.css"] {
        let response = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(response.headers().contains_key("x-request-id"));
    }
}

/// What Prometheus sends (its default scrape protocols, text ones).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

type OpenMetrics = MetricsExposition<OpenMetricsType, OpenMetricsValue>;
type Family = MetricFamily<OpenMetricsType, OpenMetricsValue>;

/// `/metrics` as Prometheus scrapes it, checked by a validating OpenMetrics
/// parser (it refuses, among others, buckets that are not cumulative, a
/// histogram without `+Inf`, a counter without `_total`, a missing `# EOF`).
async fn scrape(app: &TestApp) -> OpenMetrics {
    let response = app
        .client
        .get(app.url("/metrics"))
        .header("accept", PROMETHEUS_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let text = response.text().await.unwrap();
    openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("not OpenMetrics: {e}\n{text}"))
}

fn family<'a>(metrics: &'a OpenMetrics, name: &str) -> &'a Family {
    metrics.families.get(name).unwrap_or_else(|| {
        let names: BTreeSet<&String> = metrics.families.keys().collect();
        panic!("no family {name} in {names:?}")
    })
}

fn label(sample: &openmetrics_parser::Sample<OpenMetricsValue>, name: &str) -> String {
    sample
        .get_labelset()
        .unwrap()
        .get_label_value(name)
        .unwrap_or_else(|| panic!("no label {name}"))
        .to_owned()
}

/// A counter's or gauge's value, for metrics without labels or with the given ones.
fn value(metrics: &OpenMetrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    family(metrics, name)
        .iter_samples()
        .find(|sample| labels.iter().all(|(k, v)| label(sample, k) == *v))
        .map(|sample| match &sample.value {
            OpenMetricsValue::Counter(counter) => counter.value.as_f64(),
            OpenMetricsValue::Gauge(gauge) => gauge.as_f64(),
            other => panic!("{name} is neither a counter nor a gauge: {other:?}"),
        })
}

/// The series of a family by the value of one label.
fn by_label(metrics: &OpenMetrics, name: &str, key: &str) -> BTreeMap<String, f64> {
    family(metrics, name)
        .iter_samples()
        .map(|sample| {
            let value = match &sample.value {
                OpenMetricsValue::Counter(counter) => counter.value.as_f64(),
                OpenMetricsValue::Gauge(gauge) => gauge.as_f64(),
                other => panic!("{name} is neither a counter nor a gauge: {other:?}"),
            };
            (label(sample, key), value)
        })
        .collect()
}

#[actix_rt::test]
async fn metrics_count_requests_by_route_with_latency_cache_actors_pool_and_outbox() {
    let app = spawn_demo_app().await;
    let client = app.pool.get().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO email_outbox (message, recipient, due_at) \
                VALUES ('welcome', 'later@example.org', now() + interval '1 day'); \
             INSERT INTO email_outbox (message, recipient, status, attempts, last_error) \
                VALUES ('welcome', 'gone@example.org', 'dead', 5, 'mailbox unavailable')",
        )
        .await
        .unwrap();

    let miss = app.get("/episodes/ownership-and-borrowing").await;
    let hit = app.get("/episodes/ownership-and-borrowing").await;
    assert_eq!(
        (
            miss.headers()["x-cache"].to_str().unwrap(),
            hit.headers()["x-cache"].to_str().unwrap()
        ),
        ("miss", "hit")
    );
    assert_eq!(app.get("/no/such/page").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/episodes/no-such-episode").await.status(),
        StatusCode::NOT_FOUND
    );
    let readyz: Value = app.get("/readyz").await.json().await.unwrap();

    let metrics = scrape(&app).await;

    let requests = |route: &str, status: &str| {
        value(
            &metrics,
            "lectern_http_requests",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(
        requests("/episodes/{slug}", "200"),
        Some(2.0),
        "the miss and the front-door hit"
    );
    assert_eq!(requests("/episodes/{slug}", "404"), Some(1.0));
    assert_eq!(requests("unmatched", "404"), Some(1.0), "a path no route matches");
    assert_eq!(requests("/readyz", "200"), Some(1.0));
    let routes: BTreeSet<String> = by_label(&metrics, "lectern_http_requests", "route")
        .into_keys()
        .collect();
    assert!(
        routes.iter().all(|r| r == "unmatched" || r.starts_with('/')),
        "routes are patterns, never paths: {routes:?}"
    );
    assert!(!routes.iter().any(|r| r.contains("ownership")), "{routes:?}");
    let requests_counted: f64 = family(&metrics, "lectern_http_requests")
        .iter_samples()
        .map(|s| match &s.value {
            OpenMetricsValue::Counter(c) => c.value.as_f64(),
            other => panic!("{other:?}"),
        })
        .sum();
    assert_eq!(requests_counted, 5.0, "2 episode pages, 2 not found, /readyz");

    let latency = family(&metrics, "lectern_http_request_duration_seconds");
    assert_eq!(latency.family_type, OpenMetricsType::Histogram);
    let mut observed = 0;
    for sample in latency.iter_samples() {
        let OpenMetricsValue::Histogram(HistogramValue {
            buckets, count, sum, ..
        }) = &sample.value
        else {
            panic!("not a histogram: {:?}", sample.value);
        };
        let counts: Vec<f64> = buckets.iter().map(|b| b.count.as_f64()).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "cumulative: {counts:?}");
        let last = buckets.last().unwrap();
        assert_eq!(last.upper_bound, f64::INFINITY);
        let count = count.unwrap();
        assert_eq!(last.count.as_f64(), count as f64, "+Inf holds every request");
        assert!(sum.unwrap().as_f64() > 0.0);
        observed += count;
    }
    assert_eq!(observed as f64, requests_counted, "one observation per request");

    assert!(value(&metrics, "lectern_page_cache_hits", &[]).unwrap() >= 1.0);
    let cache = &readyz["cache"];
    for (name, field) in [
        ("lectern_page_cache_hits", "hits"),
        ("lectern_page_cache_misses", "misses"),
        ("lectern_page_cache_evictions", "evictions"),
        ("lectern_page_cache_invalidations", "invalidations"),
        ("lectern_page_cache_entries", "entries"),
        ("lectern_page_cache_size_bytes", "bytes"),
        ("lectern_page_cache_capacity_bytes", "capacity_bytes"),
    ] {
        assert_eq!(
            value(&metrics, name, &[]),
            cache[field].as_f64(),
            "{name} is /readyz's {field}"
        );
    }

    let restarts = by_label(&metrics, "lectern_actor_restarts", "actor");
    let up = by_label(&metrics, "lectern_actor_up", "actor");
    let handled = by_label(&metrics, "lectern_actor_messages_handled", "actor");
    let backlog = by_label(&metrics, "lectern_actor_backlog", "actor");
    let actors = readyz["actors"].as_array().unwrap();
    assert_eq!(restarts.len(), actors.len(), "{restarts:?}");
    for actor in actors {
        let name = actor["name"].as_str().unwrap();
        assert_eq!(restarts.get(name).copied(), actor["restarts"].as_f64(), "{name}");
        assert_eq!(up.get(name).copied(), Some(1.0), "{name}");
        assert!(handled.contains_key(name) && backlog.contains_key(name), "{name}");
    }
    assert!(handled["renderer"] >= 1.0, "the miss was rendered");

    let max = value(&metrics, "lectern_database_pool_max_connections", &[]).unwrap();
    let open = value(&metrics, "lectern_database_pool_connections", &[]).unwrap();
    let idle = value(&metrics, "lectern_database_pool_idle_connections", &[]).unwrap();
    assert!(
        max >= 1.0 && open >= 1.0 && open <= max && idle <= open,
        "{max} {open} {idle}"
    );
    assert_eq!(value(&metrics, "lectern_database_pool_waiting", &[]), Some(0.0));

    assert_eq!(value(&metrics, "lectern_database_up", &[]), Some(1.0));
    assert_eq!(value(&metrics, "lectern_mail_outbox_pending", &[]), Some(1.0));
    assert_eq!(value(&metrics, "lectern_mail_outbox_dead", &[]), Some(1.0));
}

#[actix_rt::test]
async fn metrics_in_the_classic_text_format_for_clients_that_do_not_ask_for_openmetrics() {
    let app = spawn_app().await;
    app.get("/healthz").await;

    let response = app.get("/metrics").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let metrics = openmetrics_parser::prometheus::parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("not the Prometheus text format: {e}\n{text}"));
    let requests = metrics
        .families
        .get("lectern_http_requests_total")
        .unwrap_or_else(|| panic!("no lectern_http_requests_total in {text}"));
    assert_eq!(requests.family_type, PrometheusType::Counter);
    let healthz = requests
        .iter_samples()
        .find(|s| s.get_labelset().unwrap().get_label_value("route") == Some("/healthz"))
        .unwrap();
    let PrometheusValue::Counter(counter) = &healthz.value else {
        panic!("{:?}", healthz.value)
    };
    assert_eq!(counter.value.as_f64(), 1.0);
    assert_eq!(
        metrics.families["lectern_http_request_duration_seconds"].family_type,
        PrometheusType::Histogram
    );
    assert!(
        metrics.families.contains_key("lectern_actor_restarts_total"),
        "{text}"
    );
}

#[actix_rt::test]
async fn metrics_are_refused_to_a_client_elsewhere_without_the_token() {
    let app = spawn_app_with(&[
        ("server.client_ip_header", "\"X-Real-IP\""),
        ("server.metrics_token", "\"s3cret-token\""),
    ])
    .await;
    let forbidden = StatusCode::FORBIDDEN;

    let refusal = metrics_from(&app, "203.0.113.9", None).await;
    assert_eq!(refusal.status(), forbidden);
    assert_eq!(refusal.headers()["cache-control"], "no-store");
    let body = refusal.text().await.unwrap();
    assert!(!body.contains("lectern_"), "{body}");
    assert_eq!(
        metrics_from(&app, "203.0.113.9", Some("wrong")).await.status(),
        forbidden
    );
    assert_eq!(
        metrics_from(&app, "203.0.113.9", Some("")).await.status(),
        forbidden
    );

    let with_token = metrics_from(&app, "203.0.113.9", Some("s3cret-token")).await;
    assert_eq!(with_token.status(), StatusCode::OK);
    let body = with_token.text().await.unwrap();
    assert!(
        openmetrics_parser::openmetrics::parse_openmetrics(&body).is_ok(),
        "{body}"
    );
    let local = metrics_from(&app, "127.0.0.1", None).await;
    assert_eq!(local.status(), StatusCode::OK, "this machine needs no token");
}

#[actix_rt::test]
async fn metrics_without_a_configured_token_are_for_this_machine_only() {
    let app = spawn_app_with(&[("server.client_ip_header", "\"X-Real-IP\"")]).await;

    let status = |response: reqwest::Response| response.status();
    assert_eq!(
        status(metrics_from(&app, "203.0.113.9", None).await),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(metrics_from(&app, "203.0.113.9", Some("")).await),
        StatusCode::FORBIDDEN
    );
    assert_eq!(status(metrics_from(&app, "::1", None).await), StatusCode::OK);
}

/// `/metrics` asked by a client at `ip` behind the proxy (X-Real-IP), with
/// `Authorization: Bearer token` when there is a token.
async fn metrics_from(app: &TestApp, ip: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .get(app.url("/metrics"))
        .header("x-real-ip", ip)
        .header("accept", PROMETHEUS_ACCEPT);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.send().await.unwrap()
}

#[actix_rt::test]
async fn metrics_answer_without_the_database_and_say_it_is_down() {
    let app = spawn_app().await;
    app.cut_off_database().await;

    let metrics = scrape(&app).await;

    assert_eq!(value(&metrics, "lectern_database_up", &[]), Some(0.0));
    assert!(
        !metrics.families.contains_key("lectern_mail_outbox_pending"),
        "no outbox figures without the database"
    );
    assert!(!by_label(&metrics, "lectern_actor_up", "actor").is_empty());
    assert!(value(&metrics, "lectern_database_pool_max_connections", &[]).is_some());
    app.restore_database().await;
}
