//! Error pages: the templated 404, and a helper that renders any error page
//! on the Renderer pool, with a plain fallback when the Renderer is away.

use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use lectern_actors::render::{Render, RenderError};
use serde_json::json;
use slog::error;

use super::middleware::RequestId;
use super::AppState;

/// The default service: any path no route claims.
pub async fn not_found(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    not_found_page(&req, &state).await
}

pub async fn not_found_page(req: &HttpRequest, state: &AppState) -> HttpResponse {
    let data = json!({ "path": req.path() });
    render_page(req, state, StatusCode::NOT_FOUND, "pages/not_found", data).await
}

/// Renders `template` as a whole page with `status`.
pub async fn render_page(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    template: &'static str,
    data: serde_json::Value,
) -> HttpResponse {
    let rendered = state
        .actors
        .renderer
        .send(Render { template, data })
        .await
        .unwrap_or(Err(RenderError::Unavailable));
    let html = match rendered {
        Ok(html) => html,
        Err(e) => {
            let request_id = req.extensions().get::<RequestId>().map(|id| id.0.clone());
            error!(state.log, "cannot render page"; "template" => template, "error" => %e,
                "request_id" => request_id);
            fallback_page(status)
        }
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(html)
}

/// A page that needs nothing but this function.
fn fallback_page(status: StatusCode) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>{reason}</title>\
         <h1>{reason}</h1><p><a href=\"/\">Lectern home</a></p></html>"
    )
}
