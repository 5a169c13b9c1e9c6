//! What `/metrics` exposes (the handler is in `ops`), in Prometheus' formats,
//! with the Prometheus project's own client. Two kinds of figures:
//!
//! - counted per request, by the middleware's `finish` (one call per
//!   response, front-door hits included): requests by route and status,
//!   and the latency histogram by route. The route is the matched pattern
//!   (`/episodes/{slug}`), never the path, so that the series stay few;
//!   a request no route matched is `unmatched`. `/metrics` itself is
//!   counted like any route.
//! - read at scrape time ([`Snapshot`]): the actors, the page cache, the
//!   page views' ring, the connection pool and the outbox.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::http::header::{self, HeaderMap};
use actix_web::HttpRequest;
use lectern_actors::alerts::Condition;
use lectern_actors::cache::CacheStats;
use lectern_actors::events::{PageViewStats, RouteTime, RouteTimes};
use lectern_actors::mail::outbox::OutboxDepth;
use lectern_actors::supervisor::restarts::ActorReport;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, text, DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

/// Every metric's name starts with `lectern_`.
const PREFIX: &str = "lectern";

/// The `route` of a request that no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The route pattern that matched `req` (`/episodes/{slug}`), as a label
/// that lives as long as the process: the routes are a fixed set, and each
/// pattern is kept once.
pub fn route_label(req: &HttpRequest) -> &'static str {
    static LABELS: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let Some(pattern) = req.match_pattern() else {
        return UNMATCHED;
    };
    let mut labels = LABELS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(label) = labels.get(pattern.as_str()) {
        return label;
    }
    let label: &'static str = Box::leak(pattern.into_boxed_str());
    labels.insert(label);
    label
}

/// Upper bounds of the latency buckets, in seconds: a cache hit takes tens
/// of microseconds, a render milliseconds, a password hash a second.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Cow<'static, str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Cow<'static, str>,
    status: u16,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The per-request figures, shared by the middleware (which counts) and
/// `/metrics` (which reads them). Counting is an atomic add on a series
/// the worker counted into recently; one it has not looks the series up in
/// the families (their read lock; a route and status seen for the first
/// time takes the write lock).
pub struct HttpMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    /// Each route's time to answer, for the weekly digest's slowest routes.
    times: Arc<RouteTimes>,
    /// Tells this instance's series apart in each worker's [`Recent`].
    id: u64,
}

/// The series a worker counted into last, with their route (by address:
/// labels are interned, see [`route_label`]) and status, so that a hit on
/// a hot page finds its counter and histogram without hashing labels or
/// taking the families' lock. Both are handles on the families' own series.
struct Recent {
    metrics: u64,
    route: &'static str,
    status: u16,
    requests: Counter,
    latency: Histogram,
    time: Arc<RouteTime>,
}

/// How many series each worker keeps at hand.
const RECENT: usize = 8;

thread_local! {
    static RECENTLY_COUNTED: RefCell<Vec<Recent>> = const { RefCell::new(Vec::new()) };
}

impl HttpMetrics {
    /// Figures that also add each route's times to `times`.
    pub fn new(times: Arc<RouteTimes>) -> HttpMetrics {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = LatencyFamily::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register(
            "http_requests",
            "HTTP requests answered, by matched route pattern and status",
            requests.clone(),
        );
        // The unit is in the name, without a `# UNIT` line: OpenMetrics
        // allows one on a histogram, but openmetrics-parser (the tests'
        // validating parser) refuses it, and Prometheus does not need it.
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response, by matched route pattern",
            latency.clone(),
        );
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        HttpMetrics {
            registry,
            requests,
            latency,
            times,
            id: INSTANCES.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Counts one answered request.
    pub fn record(&self, route: &'static str, status: u16, latency: Duration) {
        let seconds = latency.as_secs_f64();
        RECENTLY_COUNTED.with_borrow_mut(|recent| {
            let known = recent
                .iter()
                .position(|r| r.metrics == self.id && std::ptr::eq(r.route, route) && r.status == status);
            let at = match known {
                Some(at) => at,
                None => {
                    if recent.len() == RECENT {
                        recent.pop();
                    }
                    let labels = RouteLabels {
                        route: Cow::Borrowed(route),
                    };
                    let latency = self.latency.get_or_create(&labels).clone();
                    let requests = self
                        .requests
                        .get_or_create(&RequestLabels {
                            route: labels.route,
                            status,
                        })
                        .clone();
                    recent.insert(
                        0,
                        Recent {
                            metrics: self.id,
                            route,
                            status,
                            requests,
                            latency,
                            time: self.times.route(route),
                        },
                    );
                    0
                }
            };
            recent[at].latency.observe(seconds);
            recent[at].requests.inc();
            recent[at].time.add(latency);
        });
    }

    /// The whole exposition: the per-request figures, then `snapshot`'s.
    pub fn encode(&self, snapshot: Snapshot, format: Format) -> Result<String, std::fmt::Error> {
        let mut now = Registry::with_prefix(PREFIX);
        now.register_collector(Box::new(snapshot));
        let mut body = String::with_capacity(32 * 1024);
        match format {
            Format::OpenMetrics => {
                text::encode_registry(&mut body, &self.registry)?;
                text::encode_registry(&mut body, &now)?;
                text::encode_eof(&mut body)?;
            }
            Format::Prometheus => {
                prometheus_text::encode(&mut body, &self.registry)?;
                prometheus_text::encode(&mut body, &now)?;
            }
        }
        Ok(body)
    }
}

/// The exposition format: OpenMetrics for a client that asks for it (as
/// Prometheus does), else Prometheus' classic text format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Prometheus,
}

impl Format {
    pub fn accepted_by(headers: &HeaderMap) -> Format {
        let asks_for_openmetrics = headers
            .get_all(header::ACCEPT)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|item| {
                let mut parts = item.split(';').map(str::trim);
                parts
                    .next()
                    .is_some_and(|t| t.eq_ignore_ascii_case("application/openmetrics-text"))
                    && !parts.any(|p| p == "q=0" || p == "q=0.0")
            });
        match asks_for_openmetrics {
            true => Format::OpenMetrics,
            false => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_text::CONTENT_TYPE,
        }
    }
}

/// The connection pool's use (deadpool's `Status`).
#[derive(Debug, Clone, Copy)]
pub struct PoolUse {
    pub max_size: usize,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
}

/// What is read at scrape time.
#[derive(Debug)]
pub struct Snapshot {
    pub actors: Vec<ActorReport>,
    pub cache: CacheStats,
    pub page_views: PageViewStats,
    pub pool: PoolUse,
    /// `None` when the database did not answer in time.
    pub outbox: Option<OutboxDepth>,
    /// Alerts this process raised, by condition.
    pub alerts: Vec<(Condition, u64)>,
}

/// One metric without labels.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let metric_encoder = encoder.encode_descriptor(name, help, unit, metric.metric_type())?;
    metric.encode(metric_encoder)
}

/// One metric with an `actor` label, one series per actor.
fn per_actor<M: EncodeMetric + TypedMetric>(
    encoder: &mut DescriptorEncoder,
    actors: &[ActorReport],
    name: &str,
    help: &str,
    value: impl Fn(&ActorReport) -> M,
) -> Result<(), std::fmt::Error> {
    let mut metric_encoder = encoder.encode_descriptor(name, help, None, M::TYPE)?;
    for actor in actors {
        let labels = [("actor", actor.name)];
        value(actor).encode(metric_encoder.encode_family(&labels)?)?;
    }
    Ok(())
}

fn count(n: usize) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
}

fn total(n: u64) -> ConstCounter<u64> {
    ConstCounter::new(n)
}

fn level(n: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let actors = &self.actors;
        per_actor(
            e,
            actors,
            "actor_up",
            "Whether the actor is running (1) or not (0).",
            |a| ConstGauge::new(i64::from(a.alive)),
        )?;
        per_actor(
            e,
            actors,
            "actor_restarts",
            "Times the supervisor restarted the actor.",
            |a| total(a.restarts),
        )?;
        per_actor(
            e,
            actors,
            "actor_messages_handled",
            "Messages the actor handled.",
            |a| total(a.handled),
        )?;
        per_actor(
            e,
            actors,
            "actor_backlog",
            "Messages sent to the actor and not yet handled.",
            |a| level(a.backlog),
        )?;

        let cache = &self.cache;
        single(
            e,
            "page_cache_hits",
            "Pages served from the page cache.",
            None,
            total(cache.hits),
        )?;
        single(
            e,
            "page_cache_misses",
            "Cacheable pages that had to be rendered.",
            None,
            total(cache.misses),
        )?;
        single(
            e,
            "page_cache_evictions",
            "Pages dropped from the page cache to make room.",
            None,
            total(cache.evictions),
        )?;
        single(
            e,
            "page_cache_invalidations",
            "Invalidations the page cache applied.",
            None,
            total(cache.invalidations),
        )?;
        single(
            e,
            "page_cache_entries",
            "Pages in the page cache.",
            None,
            level(cache.entries),
        )?;
        single(
            e,
            "page_cache_size",
            "Bytes the page cache holds.",
            Some(&Unit::Bytes),
            level(cache.bytes),
        )?;
        single(
            e,
            "page_cache_capacity",
            "Bytes the page cache may hold (cache.capacity_mb).",
            Some(&Unit::Bytes),
            level(cache.capacity_bytes),
        )?;

        let views = &self.page_views;
        single(
            e,
            "page_views_written",
            "Page views the EventLog wrote to the database.",
            None,
            total(views.written),
        )?;
        single(
            e,
            "page_views_dropped",
            "Page views dropped, oldest first, because the ring was full (log.page_view_buffer).",
            None,
            total(views.dropped),
        )?;
        single(
            e,
            "page_views_buffered",
            "Tallies of page views in the ring (each one view or more alike ones), waiting to be written.",
            None,
            count(views.buffered),
        )?;

        let pool = &self.pool;
        single(
            e,
            "database_pool_connections",
            "Connections the pool holds, in use or idle.",
            None,
            count(pool.size),
        )?;
        single(
            e,
            "database_pool_idle_connections",
            "Connections idle in the pool.",
            None,
            count(pool.available),
        )?;
        single(
            e,
            "database_pool_max_connections",
            "Connections the pool may open (database.pool_size).",
            None,
            count(pool.max_size),
        )?;
        single(
            e,
            "database_pool_waiting",
            "Requests waiting for a connection.",
            None,
            count(pool.waiting),
        )?;

        single(
            e,
            "database_up",
            "Whether the database answered the outbox count within a second.",
            None,
            ConstGauge::new(i64::from(self.outbox.is_some())),
        )?;
        if let Some(outbox) = self.outbox {
            single(
                e,
                "mail_outbox_pending",
                "Emails waiting in the outbox to be sent or retried.",
                None,
                level(outbox.pending),
            )?;
            single(
                e,
                "mail_outbox_dead",
                "Emails given up (dead letters) still in the outbox.",
                None,
                level(outbox.dead),
            )?;
        }

        let mut alerts = e.encode_descriptor(
            "alerts_raised",
            "Alerts this process raised since it started, emailed or counted as repeats within the hour.",
            None,
            MetricType::Counter,
        )?;
        for (condition, raised) in &self.alerts {
            let labels = [("condition", condition.key())];
            total(*raised).encode(alerts.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn accept(value: &str) -> Format {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        Format::accepted_by(&headers)
    }

    #[test]
    fn openmetrics_only_for_clients_that_ask_for_it() {
        assert_eq!(
            accept("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            Format::OpenMetrics
        );
        assert_eq!(accept("text/plain"), Format::Prometheus);
        assert_eq!(accept("*/*"), Format::Prometheus);
        assert_eq!(
            accept("application/openmetrics-text; q=0, text/plain"),
            Format::Prometheus
        );
        assert_eq!(Format::accepted_by(&HeaderMap::new()), Format::Prometheus);
    }

    /// The count of one series in OpenMetrics text.
    fn requests_of(metrics: &HttpMetrics, route: &str, status: u16) -> String {
        let mut body = String::new();
        text::encode_registry(&mut body, &metrics.registry).unwrap();
        let series = format!("lectern_http_requests_total{{route=\"{route}\",status=\"{status}\"}} ");
        body.lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .unwrap_or("none")
            .to_owned()
    }

    #[test]
    fn each_instance_counts_its_own_requests_however_many_series_a_worker_meets() {
        let (first, second) = (HttpMetrics::new(Arc::default()), HttpMetrics::new(Arc::default()));
        let routes: Vec<&'static str> = (0..2 * RECENT)
            .map(|n| &*Box::leak(format!("/r{n}").into_boxed_str()))
            .collect();
        for round in 0..3 {
            for (n, route) in routes.iter().enumerate() {
                first.record(route, 200, Duration::from_micros(10));
                if n % 2 == 0 {
                    second.record(route, 200, Duration::from_micros(10));
                }
                if round == 0 {
                    first.record(route, 404, Duration::from_micros(10));
                }
            }
        }
        for (n, route) in routes.iter().enumerate() {
            assert_eq!(requests_of(&first, route, 200), "3", "{route}");
            assert_eq!(requests_of(&first, route, 404), "1", "{route}");
            let expected = if n % 2 == 0 { "3" } else { "none" };
            assert_eq!(requests_of(&second, route, 200), expected, "{route}");
        }
    }

    #[test]
    fn routes_and_statuses_are_labels_and_latency_a_histogram() {
        let metrics = HttpMetrics::new(Arc::default());
        metrics.record("/episodes/{slug}", 200, Duration::from_micros(50));
        metrics.record("/episodes/{slug}", 200, Duration::from_millis(3));
        metrics.record(UNMATCHED, 404, Duration::from_millis(1));
        let snapshot = Snapshot {
            actors: Vec::new(),
            cache: CacheStats {
                entries: 0,
                bytes: 0,
                capacity_bytes: 0,
                hits: 0,
                misses: 0,
                evictions: 0,
                invalidations: 0,
            },
            page_views: PageViewStats {
                buffered: 1,
                dropped: 3,
                written: 5,
            },
            pool: PoolUse {
                max_size: 4,
                size: 1,
                available: 1,
                waiting: 0,
            },
            outbox: None,
            alerts: vec![(Condition::BackupFailed, 2), (Condition::DeadLetters, 0)],
        };
        let text = metrics.encode(snapshot, Format::OpenMetrics).unwrap();
        assert!(
            text.contains("lectern_alerts_raised_total{condition=\"backup_failed\"} 2\n")
                && text.contains("lectern_alerts_raised_total{condition=\"dead_letters\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("lectern_http_requests_total{route=\"/episodes/{slug}\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("lectern_http_requests_total{route=\"unmatched\",status=\"404\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "lectern_http_request_duration_seconds_bucket{le=\"0.0001\",route=\"/episodes/{slug}\"} 1\n"
            ) || text.contains(
                "lectern_http_request_duration_seconds_bucket{route=\"/episodes/{slug}\",le=\"0.0001\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("lectern_page_views_dropped_total 3\n"), "{text}");
        assert!(text.contains("lectern_database_up 0\n"), "{text}");
        assert!(
            !text.contains("mail_outbox"),
            "no outbox figures without the database: {text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
