//! Answering from memory: a [`CachedPage`] (a page, or a static file) is
//! sent in the encoding the client accepts, with a strong ETag per
//! encoding, and as 304 when the client already has it; and the page
//! cache's front door, which answers a visitor's request for a cached page
//! before routing.

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use lectern_actors::cache::{CachedPage, Lookup, PageKeyRef, PageTable, ViewerClass};

use super::extract::SESSION_COOKIE;
use super::middleware::X_CACHE;
use super::page_views;

/// What clients may do with a page: keep it, but ask each time whether it changed.
pub const PAGE_CACHE_CONTROL: HeaderValue = HeaderValue::from_static("public, no-cache");

/// Whether the page cache had the page: the `X-Cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Hit,
    Miss,
    /// The cache was not asked (it is off, or the page is never cached).
    Bypass,
}

impl Verdict {
    /// The header value, made at compile time: a hit checks no header
    /// value's bytes (that took 700 instructions a request).
    pub fn header(self) -> HeaderValue {
        const HIT: HeaderValue = HeaderValue::from_static("hit");
        const MISS: HeaderValue = HeaderValue::from_static("miss");
        const BYPASS: HeaderValue = HeaderValue::from_static("bypass");
        match self {
            Verdict::Hit => HIT,
            Verdict::Miss => MISS,
            Verdict::Bypass => BYPASS,
        }
    }
}

impl From<Lookup> for Verdict {
    fn from(lookup: Lookup) -> Verdict {
        match lookup {
            Lookup::Hit => Verdict::Hit,
            Lookup::Miss => Verdict::Miss,
        }
    }
}

const VARY: HeaderValue = HeaderValue::from_static("Accept-Encoding");
const BROTLI: HeaderValue = HeaderValue::from_static("br");
const GZIP: HeaderValue = HeaderValue::from_static("gzip");

/// The cached page a request asks for, answered without routing: a GET or
/// HEAD with no query string (a handler decides which parameters matter)
/// from a visitor without a session (whose viewer class is anonymous).
/// Cache keys are canonical paths, so a page found under the request's own
/// path is the page its handler would serve. Anything else, hit or miss,
/// goes on to the router. The answer carries every header but the request
/// id, the site's `security` headers among them.
pub fn front_door(
    req: &HttpRequest,
    pages: &PageTable,
    security: &[(HeaderName, HeaderValue)],
) -> Option<FrontDoorHit> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) || !req.query_string().is_empty() {
        return None;
    }
    let has_session = req.headers().get(header::COOKIE).is_some_and(|cookies| {
        cookies
            .as_bytes()
            .windows(SESSION_COOKIE.len())
            .any(|w| w == SESSION_COOKIE.as_bytes())
    });
    if has_session {
        return None;
    }
    let page = pages.get(PageKeyRef {
        path: req.path(),
        viewer: ViewerClass::Anonymous,
    })?;
    let mut response = send(req, &page, Verdict::Hit, PAGE_CACHE_CONTROL);
    let headers = response.headers_mut();
    // Names `send` does not set: appending finds no value to take out.
    for (name, value) in security {
        headers.append(name.clone(), value.clone());
    }
    Some(FrontDoorHit {
        response,
        route: page.route,
        html: page_views::is_html(&page.content_type),
    })
}

/// A page answered at the front door.
pub struct FrontDoorHit {
    pub response: HttpResponse,
    /// The route that made the page, which `/metrics` counts it under.
    pub route: &'static str,
    /// Whether the page is HTML (a page view) rather than a feed or the sitemap.
    pub html: bool,
}

/// A page's body in an encoding (the plain body unpacked when the page
/// keeps only its compressed forms).
fn body_in(page: &CachedPage, encoding: Encoding) -> Bytes {
    match encoding {
        Encoding::Brotli => page.brotli.clone(),
        Encoding::Gzip => page.gzip.clone(),
        Encoding::Identity => page.identity_body(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

/// The best encoding the client accepts that the page has.
fn negotiate(req: &HttpRequest, page: &CachedPage) -> Encoding {
    let Some(accept) = req.headers().get(header::ACCEPT_ENCODING) else {
        return Encoding::Identity;
    };
    // One pass over the codings the client lists, each with its weight.
    let (mut brotli, mut gzip) = (false, false);
    for item in accept.as_bytes().split(|&b| b == b',') {
        let mut parts = item.split(|&b| b == b';');
        let coding = parts.next().unwrap_or_default().trim_ascii();
        let refused = parts.any(|parameter| {
            parameter.trim_ascii().strip_prefix(b"q=").is_some_and(|q| {
                std::str::from_utf8(q)
                    .ok()
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_none_or(|q| q <= 0.0)
            })
        });
        if refused {
            continue;
        }
        if coding.eq_ignore_ascii_case(b"br") {
            brotli = true;
        } else if coding.eq_ignore_ascii_case(b"gzip") {
            gzip = true;
        }
    }
    if brotli && !page.brotli.is_empty() {
        Encoding::Brotli
    } else if gzip && !page.gzip.is_empty() {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// Whether `If-None-Match` names `etag` (quoted, as the `ETag` header has it).
fn client_has(req: &HttpRequest, etag: &HeaderValue) -> bool {
    let etag = etag.as_bytes();
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
/// once, with the page, or at compile time: a hit allocates nothing and
/// checks no header value here.
pub fn send(
    req: &HttpRequest,
    page: &CachedPage,
    verdict: Verdict,
    cache_control: HeaderValue,
) -> HttpResponse {
    let encoding = negotiate(req, page);
    let (etag, coding) = match encoding {
        Encoding::Brotli => (&page.etags.brotli, Some(BROTLI)),
        Encoding::Gzip => (&page.etags.gzip, Some(GZIP)),
        Encoding::Identity => (&page.etags.identity, None),
    };
    let whole = !(page.status == 200 && !etag.is_empty() && client_has(req, etag));
    let mut response = if whole {
        let status = StatusCode::from_u16(page.status).unwrap_or(StatusCode::OK);
        HttpResponse::with_body(status, body_in(page, encoding)).map_into_boxed_body()
    } else {
        HttpResponse::new(StatusCode::NOT_MODIFIED)
    };
    // A new response has no headers: each is appended, not put in place
    // of one (which takes the old one out, to hand it back).
    let headers = response.headers_mut();
    if !etag.is_empty() {
        headers.append(header::ETAG, etag.clone());
    }
    headers.append(header::VARY, VARY);
    headers.append(header::CACHE_CONTROL, cache_control);
    headers.append(X_CACHE, verdict.header());
    if whole {
        if let Some(coding) = coding {
            headers.append(header::CONTENT_ENCODING, coding);
        }
        headers.append(header::CONTENT_TYPE, page.content_type.clone());
    }
    response
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
        let tag = &HeaderValue::from_static("\"abc-gz\"");
        assert!(client_has(&with("\"abc-gz\""), tag));
        assert!(client_has(&with("W/\"x\", \"abc-gz\""), tag));
        assert!(client_has(&with(" W/\"abc-gz\" "), tag));
        assert!(client_has(&with("*"), tag));
        assert!(!client_has(&with("\"abc\""), tag));
        assert!(!client_has(&with("\"abc-gz-more\""), tag));
        assert!(!client_has(&TestRequest::default().to_http_request(), tag));
    }
}
