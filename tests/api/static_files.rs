//! Static files: content type, ETag and 304, long caching for versioned URLs.

use reqwest::StatusCode;

use crate::helpers::{raw_request, spawn_app};

#[actix_rt::test]
async fn a_versioned_stylesheet_url_may_be_cached_for_a_year() {
    let app = spawn_app().await;
    let page = app.get("/no-such-page").await.text().await.unwrap();
    let href = page
        .split("href=\"")
        .find_map(|s| s.strip_prefix("/static/css/lectern.css?v="))
        .and_then(|s| s.split('"').next())
        .expect("the layout links the stylesheet with its version");

    let response = app.get(&format!("/static/css/lectern.css?v={href}")).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/css");
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(response.headers()["etag"], format!("\"{href}\"").as_str());
    assert!(response.text().await.unwrap().contains(":root"));
}

#[actix_rt::test]
async fn an_unversioned_url_revalidates_and_a_matching_etag_gets_304() {
    let app = spawn_app().await;
    let first = app.get("/static/css/lectern.css").await;
    assert_eq!(first.headers()["cache-control"], "public, no-cache");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();

    // Read off the wire: an HTTP client reads no body after a 304 anyway.
    let second = raw_request(
        &app,
        "GET",
        "/static/css/lectern.css",
        &[("If-None-Match", etag.as_str())],
    )
    .await;

    assert_eq!(second.status, 304);
    assert_eq!(second.header("etag"), Some(etag.as_str()));
    assert!(
        second.body.is_empty(),
        "{} bytes after the headers of a 304",
        second.body.len()
    );
}

#[actix_rt::test]
async fn missing_files_and_escapes_from_the_folder_get_the_404_page() {
    let app = spawn_app().await;

    for path in [
        "/static/css/missing.css",
        "/static/%2e%2e/Cargo.toml",
        "/static/..%2fsql/V1__init.sql",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(response.text().await.unwrap().contains("Page not found"));
    }
}
