//! Answering from memory: a [`CachedPage`] (a page, or a static file) is
//! sent in the encoding the client accepts, with a strong ETag per
//! encoding, and as 304 when the client already has it.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use lectern_actors::cache::CachedPage;

use super::middleware::X_CACHE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

/// The best encoding the client accepts that the page has.
fn negotiate(req: &HttpRequest, page: &CachedPage) -> Encoding {
    let Some(accept) = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
    else {
        return Encoding::Identity;
    };
    let accepts = |name: &str| {
        accept.split(',').any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().map_or(true, |q| q <= 0.0))
            });
            coding.eq_ignore_ascii_case(name) && !refused
        })
    };
    if !page.brotli.is_empty() && accepts("br") {
        Encoding::Brotli
    } else if !page.gzip.is_empty() && accepts("gzip") {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// Whether `If-None-Match` names `etag` (quoted, as the `ETag` header has it).
fn client_has(req: &HttpRequest, etag: &[u8]) -> bool {
    req.headers().get(header::IF_NONE_MATCH).is_some_and(|tags| {
        tags.as_bytes().split(|&b| b == b',').any(|tag| {
            let tag = tag.trim_ascii();
            let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
            tag == b"*" || tag == etag
        })
    })
}

/// Answers with `page`: the negotiated body, its strong ETag, 304 when the
/// client has it already. `verdict` is the `X-Cache` header; `cache_control`
/// what clients and proxies may do with it. Every header value is made
/// once, with the page, or is static: a hit allocates nothing here.
pub fn send(
    req: &HttpRequest,
    page: &CachedPage,
    verdict: &'static str,
    cache_control: &'static str,
) -> HttpResponse {
    let (body, etag, content_encoding) = match negotiate(req, page) {
        Encoding::Brotli => (&page.brotli, &page.etags.brotli, Some("br")),
        Encoding::Gzip => (&page.gzip, &page.etags.gzip, Some("gzip")),
        Encoding::Identity => (&page.identity, &page.etags.identity, None),
    };
    let not_modified = page.status == 200 && !etag.is_empty() && client_has(req, etag);
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::build(StatusCode::from_u16(page.status).unwrap_or(StatusCode::OK))
    };
    if let Ok(etag) = HeaderValue::from_maybe_shared(etag.clone()) {
        if !etag.is_empty() {
            response.insert_header((header::ETAG, etag));
        }
    }
    response
        .insert_header((header::VARY, HeaderValue::from_static("Accept-Encoding")))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static(cache_control)))
        .insert_header((X_CACHE, HeaderValue::from_static(verdict)));
    if not_modified {
        return response.finish();
    }
    if let Some(coding) = content_encoding {
        response.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static(coding)));
    }
    // Content types are Lectern's own constants or mime_guess's table:
    // valid header values, which is all `from_static` asks.
    response
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(page.content_type)))
        .body(body.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn page() -> CachedPage {
        CachedPage::build(
            200,
            "text/html; charset=utf-8",
            "<p>x</p>".repeat(100),
            Vec::new(),
        )
    }

    #[test]
    fn brotli_then_gzip_then_identity() {
        let choose = |accept: &str| {
            negotiate(
                &TestRequest::default()
                    .insert_header(("Accept-Encoding", accept))
                    .to_http_request(),
                &page(),
            )
        };
        assert_eq!(choose("gzip, deflate, br"), Encoding::Brotli);
        assert_eq!(choose("gzip"), Encoding::Gzip);
        assert_eq!(choose("br;q=0, gzip;q=0.5"), Encoding::Gzip);
        assert_eq!(choose("identity"), Encoding::Identity);
        assert_eq!(choose("BR"), Encoding::Brotli);
        assert_eq!(
            negotiate(&TestRequest::default().to_http_request(), &page()),
            Encoding::Identity
        );
    }

    #[test]
    fn if_none_match_names_whole_tags() {
        let with = |value: &str| {
            TestRequest::default()
                .insert_header(("If-None-Match", value))
                .to_http_request()
        };
        let tag = b"\"abc-gz\"";
        assert!(client_has(&with("\"abc-gz\""), tag));
        assert!(client_has(&with("W/\"x\", \"abc-gz\""), tag));
        assert!(client_has(&with(" W/\"abc-gz\" "), tag));
        assert!(client_has(&with("*"), tag));
        assert!(!client_has(&with("\"abc\""), tag));
        assert!(!client_has(&with("\"abc-gz-more\""), tag));
        assert!(!client_has(&TestRequest::default().to_http_request(), tag));
    }
}
