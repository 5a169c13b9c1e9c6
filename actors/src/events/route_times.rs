//! How long each route takes to answer on this node since it started: the
//! HTTP workers add each request's time beside `/metrics`' histograms (two
//! atomic adds on a series they keep at hand), and the weekly digest reads
//! the slowest routes from it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Every route's times, one [`RouteTime`] each.
#[derive(Debug, Default)]
pub struct RouteTimes {
    routes: Mutex<Vec<Arc<RouteTime>>>,
}

/// One route's requests and their total time.
#[derive(Debug)]
pub struct RouteTime {
    route: &'static str,
    requests: AtomicU64,
    total_us: AtomicU64,
}

/// A route as the digest lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowRoute {
    pub route: String,
    pub requests: u64,
    /// The mean time to answer, in milliseconds.
    pub mean_ms: f64,
}

impl RouteTime {
    /// Counts one request that took `latency`.
    pub fn add(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.total_us.fetch_add(micros, Ordering::Relaxed);
    }
}

impl RouteTimes {
    /// The times of `route` (a route pattern such as `/episodes/{slug}`),
    /// made on its first request.
    pub fn route(&self, route: &'static str) -> Arc<RouteTime> {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = routes.iter().find(|r| r.route == route) {
            return Arc::clone(known);
        }
        let time = Arc::new(RouteTime {
            route,
            requests: AtomicU64::new(0),
            total_us: AtomicU64::new(0),
        });
        routes.push(Arc::clone(&time));
        time
    }

    /// The `n` routes slowest on average among those answered at least
    /// `min_requests` times, slowest first.
    pub fn slowest(&self, n: usize, min_requests: u64) -> Vec<SlowRoute> {
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut slow: Vec<SlowRoute> = routes
            .iter()
            .filter_map(|time| {
                let requests = time.requests.load(Ordering::Relaxed);
                let total_us = time.total_us.load(Ordering::Relaxed);
                (requests >= min_requests.max(1)).then(|| SlowRoute {
                    route: time.route.to_owned(),
                    requests,
                    mean_ms: total_us as f64 / requests as f64 / 1000.0,
                })
            })
            .collect();
        slow.sort_by(|a, b| {
            b.mean_ms
                .total_cmp(&a.mean_ms)
                .then_with(|| a.route.cmp(&b.route))
        });
        slow.truncate(n);
        slow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_routes_on_average_come_first_once_often_enough_asked() {
        let times = RouteTimes::default();
        let add = |route: &'static str, ms: &[u64]| {
            for ms in ms {
                times.route(route).add(Duration::from_millis(*ms));
            }
        };
        add("/search", &[30, 50]);
        add("/episodes/{slug}", &[1, 1, 4]);
        add("/admin", &[900]);
        let slow = times.slowest(5, 2);
        let routes: Vec<(&str, u64, f64)> = slow
            .iter()
            .map(|s| (s.route.as_str(), s.requests, s.mean_ms))
            .collect();
        assert_eq!(routes, [("/search", 2, 40.0), ("/episodes/{slug}", 3, 2.0)]);
        assert_eq!(times.slowest(1, 1)[0].route, "/admin");
    }
}
