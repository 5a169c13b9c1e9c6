//! Static files under `/static/`, served from memory like cached pages
//! (compressed, with a strong ETag and 304); a URL that carries the file's
//! current version (`?v=`, as templates write it) may be cached for a year.

use actix_web::{web, HttpRequest, HttpResponse};
use lectern_actors::assets::get_served_asset;
use serde::Deserialize;

use super::cached;
use super::errors::ErrorPage;
use super::get_or_head;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/{path:.*}", get_or_head().to(static_file));
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
        "public, max-age=31536000, immutable"
    } else {
        "public, no-cache"
    };
    cached::send(&req, &asset, "hit", cache_control)
}
