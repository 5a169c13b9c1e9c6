//! What every response carries: request id, security headers, `X-Cache`;
//! the templated 404 page; the request body limit.

use reqwest::StatusCode;

use crate::helpers::{spawn_app, spawn_app_with};

#[actix_rt::test]
async fn every_response_carries_a_request_id_and_security_headers() {
    let app = spawn_app().await;

    for path in ["/healthz", "/no-such-page"] {
        let response = app.get(path).await;
        let headers = response.headers();
        assert!(!headers["x-request-id"].is_empty(), "{path}");
        assert_eq!(headers["x-cache"], "bypass");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "strict-origin-when-cross-origin");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'self'"),
            "{csp}"
        );
        assert!(
            !headers.contains_key("strict-transport-security"),
            "HSTS is off by default"
        );
    }
}

#[actix_rt::test]
async fn a_plain_client_request_id_is_kept_and_an_odd_one_replaced() {
    let app = spawn_app().await;
    let with_id = |id: &str| {
        app.client
            .get(app.url("/healthz"))
            .header("X-Request-Id", id)
            .send()
    };

    let kept = with_id("trace-4f2a.9").await.unwrap();
    let replaced = with_id("<script>alert(1)</script>").await.unwrap();

    assert_eq!(kept.headers()["x-request-id"], "trace-4f2a.9");
    let replacement = replaced.headers()["x-request-id"].to_str().unwrap();
    assert!(
        !replacement.contains('<') && !replacement.is_empty(),
        "{replacement}"
    );
}

#[actix_rt::test]
async fn request_ids_stay_distinct_across_the_workers_blocks_of_ids() {
    let app = spawn_app().await;

    // More requests than one 4 KiB block of ids holds, cache hits among them.
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..600 {
        let path = if i % 2 == 0 { "/healthz" } else { "/" };
        let response = app.get(path).await;
        let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        let (prefix, number) = id.split_once('-').unwrap();
        assert!(prefix.len() == 10 && number.parse::<u64>().is_ok(), "{id}");
        assert!(ids.insert(id.clone()), "{id} given twice");
    }
}

#[actix_rt::test]
async fn hsts_is_sent_when_configured() {
    let app = spawn_app_with(&[("server.hsts_max_age_secs", "31536000")]).await;

    let response = app.get("/healthz").await;

    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
}

#[actix_rt::test]
async fn unknown_paths_get_the_templated_404_page_with_the_path_escaped() {
    let app = spawn_app().await;

    let response = app.get("/tom&jerry's\"page\"").await;

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["content-type"], "text/html; charset=utf-8");
    let page = response.text().await.unwrap();
    assert!(page.contains("<title>Page not found · Lectern</title>"), "{page}");
    assert!(page.contains("Go to the home page"));
    assert!(
        page.contains("<code>/tom&amp;jerry&#x27;s%22page%22</code>"),
        "{page}"
    );
}

#[actix_rt::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let app = spawn_app_with(&[("server.max_body_bytes", "2048")]).await;

    let response = app
        .client
        .post(app.url("/healthz"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(response.headers().contains_key("x-request-id"));
    let body = response.text().await.unwrap();
    assert!(body.contains("2048 bytes"), "{body}");
}
