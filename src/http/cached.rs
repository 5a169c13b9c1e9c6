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

/// Whether `If-None-Match` names the entity tag `tag` (without quotes).
pub fn client_has(req: &HttpRequest, tag: &str) -> bool {
    req.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',').any(|t| {
                let t = t.trim().trim_start_matches("W/");
                t == "*" || t.strip_prefix('"').and_then(|t| t.strip_suffix('"')) == Some(tag)
            })
        })
}

/// Answers with `page`: the negotiated body, a strong ETag per encoding,
/// 304 when the client has it already. `verdict` is the `X-Cache` header;
/// `cache_control` what clients and proxies may do with it.
pub fn send(
    req: &HttpRequest,
    page: &CachedPage,
    verdict: &'static str,
    cache_control: &'static str,
) -> HttpResponse {
    let encoding = negotiate(req, page);
    let (body, suffix, content_encoding) = match encoding {
        Encoding::Brotli => (&page.brotli, "-br", Some("br")),
        Encoding::Gzip => (&page.gzip, "-gz", Some("gzip")),
        Encoding::Identity => (&page.identity, "", None),
    };
    let etag = (!page.etag.is_empty()).then(|| format!("{}{suffix}", page.etag));
    let not_modified = page.status == 200 && etag.as_deref().is_some_and(|tag| client_has(req, tag));
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::build(StatusCode::from_u16(page.status).unwrap_or(StatusCode::OK))
    };
    if let Some(etag) = etag {
        response.insert_header((header::ETAG, format!("\"{etag}\"")));
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
    response.content_type(page.content_type).body(body.clone())
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
        assert!(client_has(&with("\"abc-gz\""), "abc-gz"));
        assert!(client_has(&with("W/\"x\", \"abc-gz\""), "abc-gz"));
        assert!(client_has(&with("*"), "abc-gz"));
        assert!(!client_has(&with("\"abc\""), "abc-gz"));
        assert!(!client_has(&with("\"abc-gz-more\""), "abc-gz"));
        assert!(!client_has(&TestRequest::default().to_http_request(), "abc"));
    }
}
