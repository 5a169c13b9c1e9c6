//! Authors' media under `/media/`: the files a content folder's `media/`
//! held at import, read from PostgreSQL (never from disk, so no path can
//! leave it), with their SHA-256 as a strong ETag and 304 on revalidation.
//! They are not kept in memory: a revalidation reads no bytes.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use lectern_actors::content::media;

use super::pages::PageError;
use super::{get_or_head, AppState};

/// Kept a while, then revalidated: the URL carries no version, and an
/// import may change the file behind it.
pub const MEDIA_CACHE_CONTROL: &str = "public, max-age=300";

/// An SVG opened by itself runs no script and loads nothing.
const SVG_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; sandbox";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/media/{path:.*}", get_or_head().to(media_file));
}

/// The SHA-256 the client says it has, from `If-None-Match`.
fn known_sha256(req: &HttpRequest) -> Option<String> {
    let tags = req.headers().get(header::IF_NONE_MATCH)?.to_str().ok()?;
    tags.split(',').find_map(|tag| {
        let tag = tag.trim();
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        let sha = tag.strip_prefix('"')?.strip_suffix('"')?;
        (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then(|| sha.to_owned())
    })
}

async fn media_file(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let known = known_sha256(&req);
    let Some(file) = media::get(&state.pool, &path, known.as_deref()).await? else {
        return Err(PageError::NotFound);
    };
    let mut response = match file.bytes {
        Some(bytes) => HttpResponse::Ok().body(bytes),
        None => HttpResponse::NotModified().finish(),
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", file.sha256)) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(MEDIA_CACHE_CONTROL),
    );
    if let Ok(content_type) = HeaderValue::from_str(&file.content_type) {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    if file.content_type == "image/svg+xml" {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(SVG_POLICY),
        );
    }
    Ok(response)
}
