//! What every request passes through: a request id (`X-Request-Id`, kept when
//! the client sent a sane one), the page cache's front door (a visitor's GET
//! for a cached page is answered here, before routing, as a plug reads an
//! ETS table), the rendering and logging of error pages (see `errors`),
//! security headers, `X-Cache` on every response, one access log line,
//! with the tokens of emailed links masked, the request's count and latency
//! for `/metrics` (see `metrics`), the page view it may be (see
//! `page_views`), and, while Lectern drains before it stops,
//! `Connection: close` (see `Draining`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web::BytesMut;
use actix_web::{web, HttpMessage, HttpResponse};
use lectern_actors::cache::PageTable;
use lectern_actors::events::{Event, PageViews};
use serde_json::json;
use slog::{error, info, Logger};

use super::cached::{self, Verdict};
use super::errors::{self, ErrorPage};
use super::extract::UserId;
use super::metrics::{route_label, HttpMetrics, UNMATCHED};
use super::page_views::{Answerer, PageViewRecorder};
use super::AppState;
use crate::config::Settings;
use crate::telemetry::{AccessLine, AccessLog};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// The id of the request being handled, in its extensions: the header
/// value itself, so that the header, the log and the handlers share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Only plain ASCII ids are kept or made (`is_acceptable_request_id`).
        // The access line takes the id's bytes; this is for the log lines
        // of errors and webhooks.
        self.0.to_str().unwrap_or("-")
    }
}

/// Whether Lectern is draining before it stops (SIGTERM, `server.drain_secs`):
/// then every response carries `Connection: close` and its connection is
/// closed once it is sent, so that a client on a keep-alive connection gets
/// its answer and opens a new connection for its next request, rather than
/// sending it on a connection the stop is about to close.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// From now on, every response closes its connection.
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the middleware needs, built once at start.
pub struct RequestContext {
    access: AccessLog,
    log: Logger,
    /// The page table, when the cache is on.
    pages: Option<Arc<PageTable>>,
    /// When `log.page_views` is on.
    page_views: Option<PageViewRecorder>,
    metrics: Arc<HttpMetrics>,
    security_headers: Vec<(HeaderName, HeaderValue)>,
    max_body_bytes: usize,
    id_prefix: String,
    next_id: AtomicU64,
    draining: Draining,
}

/// The Content-Security-Policy; `form-action` names the hosts a form may
/// lead to besides this site (Stripe's Checkout and portal, which a form's
/// answer redirects to: browsers hold redirects after a form to it too).
fn content_security_policy(form_targets: &[String]) -> String {
    format!(
        "default-src 'self'; img-src 'self' data: https:; media-src 'self' https:; script-src 'self'; \
         style-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'{}; frame-ancestors 'none'",
        form_targets.iter().map(|t| format!(" {t}")).collect::<String>()
    )
}

impl RequestContext {
    pub fn new(
        settings: &Settings,
        pages: Arc<PageTable>,
        page_views: Arc<PageViews>,
        metrics: Arc<HttpMetrics>,
        access: AccessLog,
        log: Logger,
        draining: Draining,
    ) -> Arc<RequestContext> {
        let mut security_headers = vec![
            (
                HeaderName::from_static("content-security-policy"),
                HeaderValue::from_str(&content_security_policy(&settings.stripe_page_origins()))
                    .unwrap_or(HeaderValue::from_static("default-src 'self'")),
            ),
            (
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
            (
                HeaderName::from_static("referrer-policy"),
                HeaderValue::from_static("strict-origin-when-cross-origin"),
            ),
            (
                HeaderName::from_static("x-frame-options"),
                HeaderValue::from_static("DENY"),
            ),
            (
                HeaderName::from_static("permissions-policy"),
                HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
            ),
        ];
        if settings.server.hsts_max_age_secs > 0 {
            let value = format!("max-age={}; includeSubDomains", settings.server.hsts_max_age_secs);
            if let Ok(value) = HeaderValue::from_str(&value) {
                security_headers.push((HeaderName::from_static("strict-transport-security"), value));
            }
        }
        // A random prefix per process keeps ids unique across restarts and nodes.
        let id_prefix = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        Arc::new(RequestContext {
            access,
            log,
            pages: settings.cache.enabled.then_some(pages),
            page_views: PageViewRecorder::new(settings, page_views),
            metrics,
            security_headers,
            max_body_bytes: settings.server.max_body_bytes,
            id_prefix,
            next_id: AtomicU64::new(1),
            draining,
        })
    }

    /// A declared body over the limit is refused before any handler runs;
    /// the extractors enforce the same limit on bodies sent in chunks.
    fn body_too_large(&self, req: &ServiceRequest) -> bool {
        req.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > self.max_body_bytes as u64)
    }

    fn request_id(&self, req: &ServiceRequest) -> RequestId {
        match req.headers().get(&REQUEST_ID) {
            Some(id) if id.to_str().is_ok_and(is_acceptable_request_id) => RequestId(id.clone()),
            _ => self.new_request_id(),
        }
    }

    /// `{prefix}-{number}`, written into the worker's current block of ids
    /// and handed out as a shared slice of it: a request allocates nothing
    /// for its id, nor for the copies the header and the handlers keep.
    /// A block is freed once the last request with an id in it is done.
    fn new_request_id(&self) -> RequestId {
        const BLOCK: usize = 4096;
        thread_local! {
            static IDS: RefCell<BytesMut> = RefCell::new(BytesMut::new());
        }
        let mut number = itoa::Buffer::new();
        let number = number.format(self.next_id.fetch_add(1, Ordering::Relaxed));
        let id = IDS.with_borrow_mut(|block| {
            let len = self.id_prefix.len() + 1 + number.len();
            if block.capacity() - block.len() < len {
                *block = BytesMut::with_capacity(BLOCK.max(len));
            }
            block.extend_from_slice(self.id_prefix.as_bytes());
            block.extend_from_slice(b"-");
            block.extend_from_slice(number.as_bytes());
            block.split().freeze()
        });
        // Hex digits, a dash and digits: always a valid header value.
        RequestId(HeaderValue::from_maybe_shared(id).unwrap_or(HeaderValue::from_static("-")))
    }
}

/// A client's id is kept if it is short and plain, so that it is safe in logs.
pub fn is_acceptable_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub async fn around_request(
    ctx: Arc<RequestContext>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = ctx.request_id(&req);
    let front_door = ctx
        .pages
        .as_ref()
        .and_then(|pages| cached::front_door(req.request(), pages, &ctx.security_headers));
    if let Some(hit) = front_door {
        let response = req.into_response(hit.response);
        let set_by = Headers::Complete {
            route: hit.route,
            html: hit.html,
        };
        return Ok(finish(&ctx, response, request_id, started, set_by));
    }
    // For the handlers (their log lines name the request); a cache hit at
    // the front door has no handler, and is spared the allocation.
    req.extensions_mut().insert(request_id.clone());
    // Kept for the log line should actix itself answer with an error; the
    // request cannot be kept (routing needs it unshared), nor its path
    // copied on every request for a branch that handlers never take.
    let method = req.method().clone();

    if ctx.body_too_large(&req) {
        let refusal = HttpResponse::PayloadTooLarge()
            .content_type("text/plain; charset=utf-8")
            .body(format!(
                "Request bodies are limited to {} bytes.\n",
                ctx.max_body_bytes
            ));
        let response = req.into_response(refusal);
        return Ok(finish(&ctx, response, request_id, started, Headers::OursOnly));
    }

    // Handlers' and extractors' errors arrive as responses; an `Err` here
    // comes from actix itself, which answers it without our headers. Log it
    // all the same.
    let response = match next.call(req).await {
        Ok(response) => answer_errors(&ctx, response.map_into_boxed_body(), &request_id).await,
        Err(error) => {
            let status = error.as_response_error().status_code().as_u16();
            let latency = started.elapsed();
            let line = AccessLine {
                request_id: request_id.0.as_bytes(),
                method: method.as_str(),
                path: "-",
                status,
                bytes: 0,
                latency_us: micros(latency),
                cache: "-",
                user_id: None,
            };
            ctx.access.record(&line, SystemTime::now());
            ctx.metrics.record(UNMATCHED, status, latency);
            return Err(error);
        }
    };
    Ok(finish(
        &ctx,
        response,
        request_id,
        started,
        Headers::HandlersMaySetThem,
    ))
}

/// Logs a handler's error, and renders the error page it left (see
/// `errors`): the one place where error pages are made.
async fn answer_errors(
    ctx: &RequestContext,
    mut response: ServiceResponse<BoxBody>,
    request_id: &RequestId,
) -> ServiceResponse<BoxBody> {
    let status = response.status();
    if let Some(error) = response.response().error() {
        let path = mask_tokens(response.request().path());
        let request_id = request_id.as_str();
        if status.is_server_error() {
            error!(ctx.log, "request failed"; "request_id" => request_id, "path" => %path,
                "status" => status.as_u16(), "error" => %error);
            if let Some(state) = response.request().app_data::<web::Data<AppState>>() {
                let data = json!({ "path": path, "status": status.as_u16(), "error": error.to_string() });
                state
                    .actors
                    .record(Event::new("request.failed", Some(request_id.to_owned()), data));
            }
        } else if status != actix_web::http::StatusCode::NOT_FOUND {
            info!(ctx.log, "request refused"; "request_id" => request_id, "path" => %path,
                "status" => status.as_u16(), "error" => %error);
        }
    }
    let Some(page) = response.response_mut().extensions_mut().remove::<ErrorPage>() else {
        return response;
    };
    match response.request().app_data::<web::Data<AppState>>().cloned() {
        Some(state) => {
            let req = response.request().clone();
            let rendered = errors::render(&req, &state, &page).await;
            response.into_response(rendered)
        }
        None => response,
    }
}

/// The path as the log records it: the token of an emailed link is a
/// password for as long as it works, so it is masked.
pub fn mask_tokens(path: &str) -> Cow<'_, str> {
    for prefix in ["/login/magic/", "/confirm/", "/reset/"] {
        if let Some(token) = path.strip_prefix(prefix) {
            if !token.is_empty() {
                return Cow::Owned(format!("{prefix}{{token}}"));
            }
        }
    }
    Cow::Borrowed(path)
}

/// What a response's headers hold before `finish`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Headers {
    /// Everything but the request id (a page at the cache's front door,
    /// made by `route`, HTML or not).
    Complete { route: &'static str, html: bool },
    /// Nothing of the security headers.
    OursOnly,
    /// What the handler set: a security header of its own stays.
    HandlersMaySetThem,
}

/// Adds the headers every response carries (and, while draining, closes the
/// connection after it), writes the access log line, counts the request
/// for `/metrics` and records it if it is a page view.
fn finish(
    ctx: &RequestContext,
    mut response: ServiceResponse<BoxBody>,
    request_id: RequestId,
    started: Instant,
    set_by: Headers,
) -> ServiceResponse<BoxBody> {
    let headers = response.headers_mut();
    let at_front_door = matches!(set_by, Headers::Complete { .. });
    if !at_front_door {
        for (name, value) in &ctx.security_headers {
            // Appended where there is none: nothing to take out.
            if set_by == Headers::OursOnly || !headers.contains_key(name) {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    if ctx.draining.is_on() {
        // actix-http writes `Connection: close` and closes the connection
        // once the response is sent.
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    let headers = response.headers_mut();
    let cache = if at_front_door {
        "hit"
    } else {
        match headers.get(&X_CACHE).map(HeaderValue::as_bytes) {
            Some(b"hit") => "hit",
            Some(b"miss") => "miss",
            Some(b"bypass") => "bypass",
            Some(_) => "other",
            None => {
                headers.append(X_CACHE, Verdict::Bypass.header());
                "-"
            }
        }
    };
    let bytes = match response.response().body().size() {
        actix_web::body::BodySize::Sized(n) => n,
        _ => 0,
    };
    let request = response.request();
    let user_id = request.extensions().get::<UserId>().map(|id| id.0);
    let status = response.status().as_u16();
    let latency = started.elapsed();
    // One reading of the clock for the log line and the page view.
    let now = SystemTime::now();
    let line = AccessLine {
        request_id: request_id.0.as_bytes(),
        method: request.method().as_str(),
        path: &mask_tokens(request.path()),
        status,
        bytes,
        latency_us: micros(latency),
        cache,
        user_id,
    };
    ctx.access.record(&line, now);
    let route = match set_by {
        Headers::Complete { route, .. } => route,
        _ => route_label(request),
    };
    ctx.metrics.record(route, status, latency);
    if let Some(page_views) = &ctx.page_views {
        let by = match set_by {
            Headers::Complete { html, .. } => Answerer::FrontDoor { html },
            _ => Answerer::Handler(response.headers()),
        };
        page_views.record(request, response.status(), by, now);
    }
    // Last, so that the id moves in rather than being copied; appended to
    // a page from the front door, which has none.
    let headers = response.headers_mut();
    if at_front_door {
        headers.append(REQUEST_ID, request_id.0);
    } else {
        headers.insert(REQUEST_ID, request_id.0);
    }
    response
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_short_ids_are_kept() {
        assert!(is_acceptable_request_id("abc-123_X.9"));
        assert!(is_acceptable_request_id(&"a".repeat(64)));
    }

    #[test]
    fn link_tokens_never_reach_the_log() {
        assert_eq!(mask_tokens("/login/magic/abcDEF123"), "/login/magic/{token}");
        assert_eq!(mask_tokens("/confirm/abc/extra"), "/confirm/{token}");
        assert_eq!(mask_tokens("/reset/x"), "/reset/{token}");
        assert_eq!(mask_tokens("/reset"), "/reset");
        assert_eq!(mask_tokens("/login/magic"), "/login/magic");
        assert_eq!(mask_tokens("/episodes/ownership"), "/episodes/ownership");
    }

    #[test]
    fn odd_or_long_ids_are_replaced() {
        for id in ["", "has space", "new\nline", "<script>", &"a".repeat(65), "ü"] {
            assert!(!is_acceptable_request_id(id), "{id:?}");
        }
    }
}
