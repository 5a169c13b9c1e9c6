//! HTTP: the shared state, the middleware every request passes through, and
//! one module of routes per area.

pub mod accounts;
pub mod assets;
pub mod errors;
pub mod middleware;
pub mod ops;
pub mod pages;
pub mod session;
pub mod webhooks;

use std::sync::Arc;

use actix_web::guard;
use actix_web::web::{self, ServiceConfig};
use actix_web::Route;
use lectern_actors::mail::sns::SnsReceiver;
use lectern_actors::store::DbPool;
use lectern_actors::supervisor::RootSupervisor;
use slog::Logger;

use crate::config::Settings;

/// What every handler can reach.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub pool: DbPool,
    pub actors: Arc<RootSupervisor>,
    /// Checks and applies SES bounce and complaint notifications.
    pub sns: SnsReceiver,
    pub log: Logger,
}

/// A route for GET and HEAD: every page answers HEAD as it answers GET
/// (actix sends the headers and no body).
pub fn get_or_head() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// Every route, area by area; unknown paths get the 404 page.
pub fn routes(cfg: &mut ServiceConfig) {
    // The router tries routes in order: the pages, which most requests
    // want, come first.
    pages::routes(cfg);
    accounts::routes(cfg);
    ops::routes(cfg);
    webhooks::routes(cfg);
    assets::routes(cfg);
    cfg.default_service(web::to(errors::not_found));
}
