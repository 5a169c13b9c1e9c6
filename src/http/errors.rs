//! Errors as visitors see them. Each area's error type (thiserror) maps its
//! variants to an [`ErrorPage`] in its `ResponseError` impl, the one place
//! that decides status and page; the middleware then renders that page with
//! the site's layout (or as JSON for JSON clients) and logs the error.
//! Handlers return `Result<_, AreaError>` and never build error pages.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{json, Value};

use lectern_actors::cache::ViewerClass;

use super::layout::{fallback_page, render_uncached, Meta};
use super::AppState;

/// What a 503 asks clients to wait before trying again.
pub const RETRY_AFTER_SECS: u32 = 5;

/// The page an error is shown as: rendered by the middleware, never cached.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    status: StatusCode,
    title: &'static str,
    /// `None`: the plain page that needs no template (for when rendering
    /// itself may be what failed).
    template: Option<&'static str>,
    data: Value,
    retry_after: Option<u32>,
}

impl ErrorPage {
    pub fn new(status: StatusCode, title: &'static str, template: &'static str) -> ErrorPage {
        ErrorPage {
            status,
            title,
            template: Some(template),
            data: json!({}),
            retry_after: None,
        }
    }

    /// The template's own data.
    pub fn with(mut self, data: Value) -> ErrorPage {
        self.data = data;
        self
    }

    /// Sends `Retry-After`.
    pub fn retry_after(mut self, secs: u32) -> ErrorPage {
        self.retry_after = Some(secs);
        self
    }

    pub fn not_found() -> ErrorPage {
        ErrorPage::new(StatusCode::NOT_FOUND, "Page not found", "pages/not_found")
    }

    /// The friendly 503 for when the database cannot be reached.
    pub fn unavailable() -> ErrorPage {
        ErrorPage::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Briefly unavailable",
            "pages/unavailable",
        )
        .with(json!({ "retry_after_secs": RETRY_AFTER_SECS }))
        .retry_after(RETRY_AFTER_SECS)
    }

    pub fn server_error() -> ErrorPage {
        ErrorPage {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            title: "Something went wrong",
            template: None,
            data: json!({}),
            retry_after: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response an area error gives actix: status and headers now; the
    /// middleware renders the body from the page it carries.
    pub fn response(self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status)
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .finish();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// The default service: any path no route claims.
pub async fn no_route() -> HttpResponse {
    ErrorPage::not_found().response()
}

/// Whether the client wants JSON rather than a page.
fn wants_json(req: &HttpRequest) -> bool {
    req.path() == "/me"
        || req.path().starts_with("/api/")
        || req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("application/json") && !accept.contains("text/html"))
}

/// The body of an error page, for the middleware: the page with the
/// site's layout, or `{"error": title}` for JSON clients.
pub async fn render(req: &HttpRequest, state: &AppState, page: &ErrorPage) -> HttpResponse {
    let mut response = if wants_json(req) {
        HttpResponse::build(page.status).json(json!({ "error": page.title }))
    } else if let Some(template) = page.template {
        let meta = Meta::new(page.title, page.title, req.path());
        // Every error page may name the path it answers (to reopen a form, say).
        let mut data = page.data.clone();
        if let Some(map) = data.as_object_mut() {
            map.insert("path".into(), json!(req.path()));
        }
        render_uncached(state, page.status, meta, ViewerClass::Anonymous, template, data).await
    } else {
        HttpResponse::build(page.status)
            .content_type("text/html; charset=utf-8")
            .body(fallback_page(page.status))
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(secs) = page.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
