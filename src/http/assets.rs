//! Static files under `/static/`, served from memory like cached pages
//! (compressed, with a strong ETag and 304); a URL that carries the file's
//! current version (`?v=`, as templates write it) may be cached for a year.
//! Also the two files every site is asked for at its root: `/favicon.ico`
//! and `/robots.txt`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use lectern_actors::assets::get_served_asset;
use serde::Deserialize;

use super::cached::{self, Verdict, PAGE_CACHE_CONTROL};
use super::errors::ErrorPage;
use super::{get_or_head, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/{path:.*}", get_or_head().to(static_file))
        .route("/favicon.ico", get_or_head().to(favicon))
        .route("/robots.txt", get_or_head().to(robots));
}

/// What clients may do with the favicon and robots.txt: keep them a day.
const A_DAY: HeaderValue = HeaderValue::from_static("public, max-age=86400");
/// What clients may do with a static file whose URL names its version.
const FOR_A_YEAR: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");

async fn favicon(req: HttpRequest) -> HttpResponse {
    match get_served_asset("favicon.ico") {
        Some(icon) => cached::send(&req, &icon, Verdict::Hit, A_DAY),
        None => ErrorPage::not_found().response(),
    }
}

/// Crawlers may read every public page; the sitemap lists them. Pages
/// that are a member's own, or that only act, are left out.
async fn robots(state: web::Data<AppState>) -> HttpResponse {
    let mut text = String::from("User-agent: *\n");
    for path in [
        "/account",
        "/me",
        "/checkout",
        "/login/",
        "/confirm/",
        "/reset/",
        "/webhooks/",
    ] {
        text.push_str("Disallow: ");
        text.push_str(path);
        text.push('\n');
    }
    text.push_str(&format!("\nSitemap: {}/sitemap.xml\n", state.public_url));
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, A_DAY))
        .body(text)
}

#[derive(Deserialize)]
struct Version {
    v: Option<String>,
}

async fn static_file(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let Some(asset) = get_served_asset(&path) else {
        return ErrorPage::not_found().response();
    };
    // A malformed query string is not an error here: it just carries no version.
    let version = web::Query::<Version>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().v);
    let cache_control = if version.as_deref() == Some(asset.etag.as_str()) {
        FOR_A_YEAR
    } else {
        PAGE_CACHE_CONTROL
    };
    cached::send(&req, &asset, Verdict::Hit, cache_control)
}
