//! Overload from outside: far more concurrent requests that need the
//! database than the pool has connections queue for it and are all answered
//! (or refused with 503 and `Retry-After` once the pool's wait runs out),
//! none hangs, and the site serves as before once they end; thousands of
//! distinct URLs leave the cache within its capacity.

use std::time::{Duration, Instant};

use crate::helpers::{demo_database, spawn_app_on};

const CONNECTIONS: usize = 2;
const REQUESTS: usize = 300;

#[actix_rt::test]
async fn more_concurrent_uncached_requests_than_connections_are_all_answered() {
    let app = spawn_app_on(
        demo_database().await,
        &[
            ("database.pool_size", &CONNECTIONS.to_string()),
            ("content.searches_per_minute", "1000000"),
        ],
    )
    .await;
    let started = Instant::now();
    // Each a different search: never cached, each a query.
    let requests = (0..REQUESTS).map(|n| {
        let (client, url) = (app.client.clone(), app.url(&format!("/search?q=actor+{n}")));
        async move {
            let answer = client
                .get(url)
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .expect("every request is answered");
            (
                answer.status().as_u16(),
                answer.headers().contains_key("retry-after"),
            )
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    let took = started.elapsed();

    let served = answers.iter().filter(|(status, _)| *status == 200).count();
    let refused: Vec<_> = answers.iter().filter(|(status, _)| *status != 200).collect();
    assert!(
        refused.iter().all(|(status, retry)| *status == 503 && *retry),
        "only 200, or 503 with Retry-After: {refused:?}"
    );
    assert!(served > 0, "{REQUESTS} requests, none served");
    println!(
        "{REQUESTS} concurrent searches on {CONNECTIONS} connections: {served} served, {} refused, in {took:?}",
        refused.len()
    );

    // Nothing is left holding a connection: the site answers at once.
    let after = app.get("/search?q=actor").await;
    assert_eq!(after.status(), 200);
    let home = app.get("/").await;
    assert_eq!(home.status(), 200);
}

/// Unbounded input: thousands of distinct URLs (unknown slugs, random query
/// strings, page numbers, long paths) never grow the cache past its byte
/// capacity, and leave nothing cached for URLs that name no page.
#[actix_rt::test]
async fn thousands_of_distinct_urls_leave_the_cache_within_its_capacity() {
    let app = spawn_app_on(demo_database().await, &[("cache.capacity_mb", "1")]).await;
    let long = "x".repeat(2000);
    let urls: Vec<String> = (0..2000)
        .map(|n| match n % 5 {
            0 => format!("/episodes/no-such-episode-{n}"),
            1 => format!("/?utm_source=s{n}&ref={n}"),
            2 => format!("/episodes?page={n}"),
            3 => format!("/tags/{long}{n}"),
            _ => format!("/articles/{n}/{long}"),
        })
        .collect();
    for chunk in urls.chunks(50) {
        let answers = futures_util::future::join_all(chunk.iter().map(|url| {
            let (client, url) = (app.client.clone(), app.url(url));
            async move { client.get(url).send().await.expect("answered").status().as_u16() }
        }))
        .await;
        assert!(
            answers.iter().all(|status| [200, 404].contains(status)),
            "{answers:?}"
        );
    }
    let readiness: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    let cache = &readiness["cache"];
    let (bytes, capacity, entries) = (
        cache["bytes"].as_u64().unwrap(),
        cache["capacity_bytes"].as_u64().unwrap(),
        cache["entries"].as_u64().unwrap(),
    );
    println!(
        "{} distinct URLs: {entries} pages cached, {bytes} of {capacity} bytes",
        urls.len()
    );
    assert!(bytes <= capacity, "{cache}");
    // What can be cached is the real pages: the home page and the listing
    // pages that exist (the demo has three pages of episodes at most).
    assert!(
        entries <= 5,
        "{entries} pages cached for {} URLs: {cache}",
        urls.len()
    );
}
