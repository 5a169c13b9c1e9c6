//! Error pages: 404, 503 (database unreachable) and 500, rendered on the
//! Renderer pool with the site's layout, with a plain fallback when the
//! Renderer itself is away. Error pages are never cached.

use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use lectern_actors::render::{RenderError, RenderPage};
use serde_json::{json, Value};
use slog::error;

use super::middleware::RequestId;
use super::pages::{layout_data, Meta};
use super::AppState;

/// What a 503 asks clients to wait before trying again.
pub const RETRY_AFTER_SECS: u32 = 5;

/// The default service: any path no route claims.
pub async fn not_found(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    not_found_page(&req, &state).await
}

pub async fn not_found_page(req: &HttpRequest, state: &AppState) -> HttpResponse {
    let data = json!({ "path": req.path() });
    render_private_page(
        req,
        state,
        StatusCode::NOT_FOUND,
        "Page not found",
        "pages/not_found",
        data,
    )
    .await
}

/// The friendly 503 for when the database cannot be reached, with `Retry-After`.
pub async fn unavailable_page(req: &HttpRequest, state: &AppState) -> HttpResponse {
    let mut response = render_private_page(
        req,
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "Briefly unavailable",
        "pages/unavailable",
        json!({ "retry_after_secs": RETRY_AFTER_SECS }),
    )
    .await;
    response.headers_mut().insert(
        actix_web::http::header::RETRY_AFTER,
        actix_web::http::header::HeaderValue::from(RETRY_AFTER_SECS),
    );
    response
}

/// Renders a page that is never cached (an error, a form, an account page)
/// with `status` and `title`; `data` is the template's own data.
pub async fn render_private_page(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    title: &str,
    template: &'static str,
    data: Value,
) -> HttpResponse {
    let meta = Meta::new(title, title, req.path());
    let data = match data {
        Value::Object(map) => map,
        _ => Default::default(),
    };
    let rendered = state
        .actors
        .renderer
        .send(RenderPage {
            template,
            layout: Some("layouts/base"),
            data: layout_data(state, meta, data),
            status: status.as_u16(),
            content_type: "text/html; charset=utf-8",
            topics: Vec::new(),
            compress: false,
        })
        .await
        .unwrap_or(Err(RenderError::Unavailable));
    let html = match rendered {
        Ok(page) => page.identity.clone(),
        Err(e) => {
            let request_id = req.extensions().get::<RequestId>().map(|id| id.0.clone());
            error!(state.log, "cannot render page"; "template" => template, "error" => %e,
                "request_id" => request_id);
            fallback_page(status).into()
        }
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(html)
}

/// The 500 page: it needs nothing that might itself be failing.
pub fn server_error_page() -> HttpResponse {
    HttpResponse::InternalServerError()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(fallback_page(StatusCode::INTERNAL_SERVER_ERROR))
}

/// A page built without templates, for when rendering is what failed.
fn fallback_page(status: StatusCode) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    let stylesheet = lectern_actors::assets::asset_url("css/lectern.css");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{reason} · Lectern</title><link rel=\"stylesheet\" href=\"{stylesheet}\"></head>\
         <body><main id=\"main\" class=\"page\"><section class=\"notice\"><h1>{reason}</h1>\
         <p>Something went wrong on our side. Please try again in a moment.</p>\
         <p><a href=\"/\">Go to the home page</a></p></section></main></body></html>"
    )
}
