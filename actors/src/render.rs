//! The Renderer: Handlebars templates from `templates/`, compiled once per
//! worker at start (re-read from disk on every render in debug builds, for
//! live editing), rendered on a pool of sync threads so that CPU work never
//! runs on the HTTP workers.

use std::sync::Arc;

use actix::prelude::*;
use handlebars::{handlebars_helper, Handlebars};
use rust_embed::RustEmbed;

use crate::assets::asset_url;
use crate::supervision::{guard, ActorStats, Crashed, SupervisedActor};

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
    registry.register_helper("asset_url", Box::new(asset));
    registry
        .register_embed_templates_with_extension::<Templates>(".hbs")
        .map_err(|e| RenderError::Template(Box::new(e)))?;
    Ok(registry)
}

/// One worker of the pool; the compiled templates are shared by all workers.
pub struct Renderer {
    templates: Arc<Handlebars<'static>>,
    stats: Arc<ActorStats>,
}

impl Renderer {
    pub fn new(templates: Arc<Handlebars<'static>>, stats: Arc<ActorStats>) -> Renderer {
        Renderer { templates, stats }
    }

    fn render(&self, template: &str, data: &serde_json::Value) -> Result<String, RenderError> {
        let fresh;
        let registry = if cfg!(debug_assertions) {
            fresh = compile_templates()?;
            &fresh
        } else {
            &*self.templates
        };
        registry.render(template, data).map_err(|e| RenderError::Render {
            template: template.to_owned(),
            source: Box::new(e),
        })
    }
}

impl Actor for Renderer {
    type Context = SyncContext<Self>;
}

impl SupervisedActor for Renderer {
    fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }
}

/// Render `template` with `data` into a string.
#[derive(Message)]
#[rtype(result = "Result<String, RenderError>")]
pub struct Render {
    pub template: &'static str,
    pub data: serde_json::Value,
}

impl Handler<Render> for Renderer {
    type Result = Result<String, RenderError>;

    fn handle(&mut self, msg: Render, ctx: &mut SyncContext<Self>) -> Self::Result {
        guard(self, ctx, "Render", |act, _| act.render(msg.template, &msg.data))?
    }
}
