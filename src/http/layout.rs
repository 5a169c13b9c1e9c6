//! What every HTML page carries around its own content: the page's metadata
//! (title, description, canonical path, OpenGraph) and the layout's data
//! (site, viewer); the rendering of pages that are never cached, among them
//! the personal pages that carry a form token; and the plain page for when
//! rendering itself fails.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use lectern_actors::cache::ViewerClass;
use lectern_actors::render::{RenderError, RenderPage};
use serde::Serialize;
use serde_json::{json, Map, Value};
use slog::error;

use super::extract::{form_token, Viewer};
use super::AppState;

/// What the layout shows about a page: title, description, canonical path,
/// OpenGraph type and image.
#[derive(Serialize)]
pub struct Meta {
    title: String,
    description: String,
    path: String,
    og_type: &'static str,
    og_image: Option<String>,
}

impl Meta {
    pub fn new(title: impl Into<String>, description: impl Into<String>, path: impl Into<String>) -> Meta {
        Meta {
            title: title.into(),
            description: description.into(),
            path: path.into(),
            og_type: "website",
            og_image: None,
        }
    }

    /// The OpenGraph type (`video.episode`, `article`) and image.
    pub fn open_graph(mut self, og_type: &'static str, og_image: Option<String>) -> Meta {
        self.og_type = og_type;
        self.og_image = og_image;
        self
    }
}

/// A page's own data with what the layout needs: site, page and viewer.
pub fn layout_data(state: &AppState, meta: Meta, viewer: ViewerClass, mut data: Map<String, Value>) -> Value {
    data.insert(
        "site".into(),
        json!({ "name": "Lectern", "public_url": state.public_url }),
    );
    data.insert("page".into(), serde_json::to_value(&meta).unwrap_or(Value::Null));
    data.insert(
        "viewer".into(),
        json!({ "class": viewer, "subscriber": viewer == ViewerClass::Subscriber }),
    );
    // Personal pages name their user; cached pages never do (`/me` fills it in).
    data.entry("user").or_insert(Value::Null);
    Value::Object(data)
}

/// Renders a page that is never cached (an error, a form, an account page)
/// with the site's layout; the plain page if the Renderer fails.
pub async fn render_uncached(
    state: &AppState,
    status: StatusCode,
    meta: Meta,
    viewer: ViewerClass,
    template: &'static str,
    data: Value,
) -> HttpResponse {
    let data = match data {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let rendered = state
        .actors
        .renderer
        .send(RenderPage {
            template,
            layout: Some("layouts/base"),
            data: layout_data(state, meta, viewer, data),
            status: status.as_u16(),
            content_type: "text/html; charset=utf-8",
            topics: Vec::new(),
            compress: false,
            route: "",
        })
        .await
        .unwrap_or(Err(RenderError::Unavailable));
    let (status, html) = match rendered {
        Ok(page) => (status, page.identity.clone()),
        Err(e) => {
            error!(state.log, "cannot render page"; "template" => template, "error" => %e);
            let status = StatusCode::INTERNAL_SERVER_ERROR;
            (status, fallback_page(status).into())
        }
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(html)
}

/// A page built without templates, for when rendering is what failed.
pub fn fallback_page(status: StatusCode) -> String {
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

/// A page for one visitor (a form, an account page), never cached: it
/// carries the token its forms must send back and names its user.
pub struct PrivatePage {
    status: StatusCode,
    title: &'static str,
    template: &'static str,
    data: Value,
    /// The viewer's class when the handler knows it (a subscriber); else
    /// member or anonymous, by the session.
    viewer: Option<ViewerClass>,
}

impl PrivatePage {
    pub fn new(title: &'static str, template: &'static str, data: Value) -> PrivatePage {
        PrivatePage {
            status: StatusCode::OK,
            title,
            template,
            data,
            viewer: None,
        }
    }

    pub fn viewer(mut self, class: ViewerClass) -> PrivatePage {
        self.viewer = Some(class);
        self
    }

    pub fn status(mut self, status: StatusCode) -> PrivatePage {
        self.status = status;
        self
    }

    pub async fn render(self, req: &HttpRequest, state: &AppState, viewer: &Viewer) -> HttpResponse {
        let session = viewer.session.as_ref();
        let (csrf_token, csrf_cookie) = form_token(req, state, session);
        let mut data = match self.data {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        data.insert("csrf_token".into(), Value::String(csrf_token));
        data.insert(
            "user".into(),
            session.map_or(
                Value::Null,
                |s| json!({ "name": s.user.name, "email": s.user.email }),
            ),
        );
        let meta = Meta::new(self.title, self.title, req.path());
        let class = self.viewer.unwrap_or(if session.is_some() {
            ViewerClass::Member
        } else {
            ViewerClass::Anonymous
        });
        let mut response = render_uncached(
            state,
            self.status,
            meta,
            class,
            self.template,
            Value::Object(data),
        )
        .await;
        if let Some(cookie) = csrf_cookie {
            let _ = response.add_cookie(&cookie);
        }
        response
    }
}
