//! Static files under `/static/`, with a strong ETag; a URL that carries the
//! file's current version (`?v=`, as templates write it) may be cached for a year.

use actix_web::http::header::{self, ETag, EntityTag};
use actix_web::{web, HttpRequest, HttpResponse};
use lectern_actors::assets::get_asset;
use serde::Deserialize;

use super::errors;
use super::{get_or_head, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/{path:.*}", get_or_head().to(static_file));
}

#[derive(Deserialize)]
struct Version {
    v: Option<String>,
}

async fn static_file(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    // A malformed query string is not an error here: it just carries no version.
    let version = web::Query::<Version>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().v);
    let Some(asset) = get_asset(&path) else {
        return errors::not_found_page(&req, &state).await;
    };
    let etag = EntityTag::new_strong(asset.version.clone());
    let cache_control = if version.as_deref() == Some(asset.version.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "public, no-cache"
    };
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == etag.to_string() || t.trim() == "*")
        });
    let mut response = if matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header(ETag(etag))
        .insert_header((header::CACHE_CONTROL, cache_control));
    if matches {
        return response.finish();
    }
    response
        .content_type(asset.content_type)
        .body(asset.body.into_owned())
}
