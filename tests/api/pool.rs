//! Pool exhaustion: far more concurrent requests that need the database
//! than the pool has connections queue for it and are all answered (or
//! refused with 503 and `Retry-After` once the pool's wait runs out), none
//! hangs, and the site serves as before once they end.

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
