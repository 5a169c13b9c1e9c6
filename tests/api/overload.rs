//! Overload from outside: far more concurrent requests that need the
//! database than the pool has connections queue for it and are all answered
//! (or refused with 503 and `Retry-After` once the pool's wait runs out),
//! none hangs, and the site serves as before once they end; thousands of
//! distinct URLs leave the cache within its capacity; hundreds of clients
//! sending their headers a byte a second neither stop others being served
//! nor are held past the client request timeout.

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

/// Slow clients: each opens a connection and sends a request's headers a
/// byte a second; half of them first send a whole request and read its
/// answer, so that the trickled head is the connection's second. Meanwhile
/// other visitors are served as usual, and each slow client is answered 408
/// and cut off once server.request_head_timeout_secs (5 s) has passed, not
/// held for as long as it keeps sending.
#[actix_rt::test]
async fn clients_sending_headers_a_byte_a_second_are_cut_off_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SLOW: usize = 500;
    let app = spawn_app_on(demo_database().await, &[]).await;
    let authority = app
        .address
        .strip_prefix("http://")
        .expect("an http address")
        .to_owned();
    let slow_clients: Vec<_> = (0..SLOW)
        .map(|client| {
            let authority = authority.clone();
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(authority).await.expect("connect");
                if client % 2 == 1 {
                    stream
                        .write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n\r\n")
                        .await
                        .expect("first request sent");
                    let mut first = Vec::new();
                    while !String::from_utf8_lossy(&first).contains("\r\n\r\n") {
                        let mut buffer = [0u8; 1024];
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return "no answer to the first request".to_owned(),
                            Ok(n) => first.extend_from_slice(&buffer[..n]),
                        }
                    }
                    if !first.starts_with(b"HTTP/1.1 200") {
                        return format!("first request: {}", String::from_utf8_lossy(&first));
                    }
                    // Its body is a few bytes, read with the 408 below.
                }
                let request = b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
                let mut answer = Vec::new();
                for byte in request {
                    if stream.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    let mut buffer = [0u8; 256];
                    match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buffer)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
                        Err(_) => {}
                    }
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut answer)).await;
                String::from_utf8_lossy(&answer).into_owned()
            })
        })
        .collect();

    // Others meanwhile: a cached page and one that needs the database.
    let mut served = 0;
    for _ in 0..20 {
        for path in ["/", "/episodes/building-an-actor-with-tokio", "/search?q=actor"] {
            let answer = app
                .client
                .get(app.url(path))
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .expect("served during the attack");
            assert_eq!(answer.status(), 200, "{path}");
            served += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let answers = futures_util::future::join_all(slow_clients).await;
    let cut_off = |answer: &String| answer.contains("HTTP/1.1 408 Request Timeout");
    let first_cut = answers
        .iter()
        .step_by(2)
        .filter(|answer| answer.as_ref().is_ok_and(|a| a.starts_with("HTTP/1.1 408")))
        .count();
    let second_cut = answers
        .iter()
        .skip(1)
        .step_by(2)
        .filter(|answer| answer.as_ref().is_ok_and(cut_off))
        .count();
    println!(
        "{served} requests served during the attack; slow clients answered 408: \
         {first_cut} of {} on a first request, {second_cut} of {} on a second",
        SLOW / 2,
        SLOW / 2
    );
    // The request above is 60 bytes: a client held to the end would have sent it all.
    assert_eq!(
        (first_cut, second_cut),
        (SLOW / 2, SLOW / 2),
        "{:?}",
        answers.iter().find(|a| !a.as_ref().is_ok_and(cut_off))
    );
}
