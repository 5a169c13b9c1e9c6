//! The Renderer: Handlebars templates from `templates/`, compiled once at
//! start and shared by every worker (re-read from disk on every render in
//! debug builds with `renderer.live_templates`, for live editing), rendered
//! on a pool of sync threads so that CPU work never runs on the HTTP workers.

use std::sync::Arc;

use actix::prelude::*;
use handlebars::{handlebars_helper, Handlebars};
use rust_embed::RustEmbed;

use crate::assets::asset_url;
use crate::cache::{CachedPage, Topic};
use crate::supervisor::restarts::{guard, ActorStats, Crashed, SupervisedActor};

/// The templates; embedded in release builds, read from disk in debug builds.
#[derive(RustEmbed)]
#[folder = "../templates/"]
#[include = "*.hbs"]
struct Templates;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template error: {0}")]
    Template(#[from] Box<handlebars::TemplateError>),
    #[error("cannot render {template}: {source}")]
    Render {
        template: String,
        source: Box<handlebars::RenderError>,
    },
    #[error(transparent)]
    Crashed(#[from] Crashed),
    #[error("the renderer is not running")]
    Unavailable,
}

/// Compiles every template under `templates/`, named by path without `.hbs`
/// (`pages/not_found`, `layouts/base`, `partials/header`).
pub fn compile_templates() -> Result<Handlebars<'static>, RenderError> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    handlebars_helper!(asset: |path: str| asset_url(path));
    handlebars_helper!(date: |rfc3339: str| format_date(rfc3339, LONG_DATE));
    handlebars_helper!(iso_date: |rfc3339: str| format_date(rfc3339, ISO_DATE));
    handlebars_helper!(duration: |secs: i64| format_duration(secs));
    registry.register_helper("asset_url", Box::new(asset));
    registry.register_helper("date", Box::new(date));
    registry.register_helper("iso_date", Box::new(iso_date));
    registry.register_helper("duration", Box::new(duration));
    registry
        .register_embed_templates_with_extension::<Templates>(".hbs")
        .map_err(|e| RenderError::Template(Box::new(e)))?;
    Ok(registry)
}

/// Dates as pages show them (`4 March 2026`) and as feeds and sitemaps
/// want them (`2026-03-04`).
const LONG_DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[day padding:none] [month repr:long] [year]");
const ISO_DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// An RFC 3339 date as `format` shows it; anything else is shown unchanged.
fn format_date(rfc3339: &str, format: &[time::format_description::BorrowedFormatItem<'static>]) -> String {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|date| date.format(format).ok())
        .unwrap_or_else(|| rfc3339.to_owned())
}

/// Seconds as `M:SS`, or `H:MM:SS` from an hour on.
pub fn format_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// One worker of the pool; the compiled templates are shared by all workers.
pub struct Renderer {
    templates: Arc<Handlebars<'static>>,
    stats: Arc<ActorStats>,
    /// Compile the templates again for every render (debug builds only).
    live: bool,
}

impl Renderer {
    pub fn new(templates: Arc<Handlebars<'static>>, stats: Arc<ActorStats>, live: bool) -> Renderer {
        Renderer {
            templates,
            stats,
            live,
        }
    }
}

fn render(
    registry: &Handlebars<'_>,
    template: &str,
    data: &serde_json::Value,
) -> Result<String, RenderError> {
    registry.render(template, data).map_err(|e| RenderError::Render {
        template: template.to_owned(),
        source: Box::new(e),
    })
}

/// The page, then its layout around it. Rendering the layout with only
/// what it needs matters: handlebars copies the whole context into every
/// partial it expands, and a page's context holds its full HTML.
fn render_with_layout(
    registry: &Handlebars<'_>,
    template: &str,
    layout: Option<&str>,
    mut data: serde_json::Value,
) -> Result<String, RenderError> {
    let body = render(registry, template, &data)?;
    let Some(layout) = layout else {
        return Ok(body);
    };
    let mut frame = serde_json::Map::new();
    for key in ["site", "page", "viewer"] {
        frame.insert(key.to_owned(), data[key].take());
    }
    frame.insert("body".to_owned(), serde_json::Value::String(body));
    render(registry, layout, &serde_json::Value::Object(frame))
}

/// What the Renderer does with a [`RenderPage`], on the caller's thread:
/// the page in its layout, compressed when it will be cached (benches
/// measure a miss with it).
pub fn render_page(registry: &Handlebars<'_>, msg: RenderPage) -> Result<CachedPage, RenderError> {
    let body = render_with_layout(registry, msg.template, msg.layout, msg.data)?;
    let mut page = if msg.compress {
        CachedPage::build(msg.status, msg.content_type, body, msg.topics)
    } else {
        CachedPage::uncompressed(msg.status, msg.content_type, body)
    };
    page.route = msg.route;
    Ok(page)
}

impl Actor for Renderer {
    type Context = SyncContext<Self>;
}

impl SupervisedActor for Renderer {
    fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }
}

/// Render a whole response: the template with its data, and (when it will
/// be cached) its gzip and brotli encodings, all on this pool's threads.
#[derive(Message)]
#[rtype(result = "Result<Arc<CachedPage>, RenderError>")]
pub struct RenderPage {
    pub template: &'static str,
    /// The layout that wraps the page (it gets `site`, `page`, `viewer` and
    /// the rendered `body`); `None` for documents that stand alone (XML).
    pub layout: Option<&'static str>,
    pub data: serde_json::Value,
    pub status: u16,
    pub content_type: &'static str,
    /// What the page shows, for invalidation.
    pub topics: Vec<Topic>,
    /// Compress for the cache, or not (a page served once).
    pub compress: bool,
    /// The route that answers with the page (`/episodes/{slug}`), kept on
    /// it for `/metrics`; empty for a page no route caches.
    pub route: &'static str,
}

impl Handler<RenderPage> for Renderer {
    type Result = Result<Arc<CachedPage>, RenderError>;

    fn handle(&mut self, msg: RenderPage, ctx: &mut SyncContext<Self>) -> Self::Result {
        guard(self, ctx, "RenderPage", |act, _| {
            if cfg!(debug_assertions) && act.live {
                render_page(&compile_templates()?, msg).map(Arc::new)
            } else {
                render_page(&act.templates, msg).map(Arc::new)
            }
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations_read_naturally() {
        assert_eq!(format_date("2026-03-04T09:00:00Z", LONG_DATE), "4 March 2026");
        assert_eq!(format_date("2026-03-04T09:00:00Z", ISO_DATE), "2026-03-04");
        assert_eq!(format_date("not a date", ISO_DATE), "not a date");
        assert_eq!(format_duration(754), "12:34");
        assert_eq!(format_duration(3723), "1:02:03");
        assert_eq!(format_duration(-5), "0:00");
    }
}
