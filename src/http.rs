//! HTTP: the shared state, the middleware every request passes through, and
//! one module of routes per area.
//!
//! Where things go:
//! - a new route: in its area's module (`pages`, `accounts`, `webhooks`,
//!   `ops`, `assets`, `media`; billing and admin get their own), registered by the
//!   area's `routes`;
//! - a new error: a variant of the area's error type (`PageError`,
//!   `AccountError`, `WebhookError`, ...), mapped to its status and page in
//!   that type's `ResponseError` impl; handlers return `Result<_, AreaError>`
//!   and never build error pages (`errors` renders them);
//! - a new check that every handler of a kind needs (who is asking, CSRF):
//!   an extractor in `extract`; a rate limit: a `Limit` in `limits`;
//! - work on data: a function of a context in `lectern-actors`, never SQL here.

pub mod accounts;
pub mod admin;
pub mod assets;
pub mod billing;
pub mod cached;
pub mod connection;
pub mod errors;
pub mod extract;
pub mod layout;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod middleware;
pub mod ops;
pub mod page_views;
pub mod pages;
pub mod webhooks;

use std::sync::Arc;

use actix_web::guard;
use actix_web::web::{self, ServiceConfig};
use actix_web::Route;
use lectern_actors::accounts::Accounts;
use lectern_actors::billing::Billing;
use lectern_actors::mail::sns::SnsReceiver;
use lectern_actors::store::DbPool;
use lectern_actors::supervisor::RootSupervisor;
use slog::Logger;

use crate::config::Settings;
use metrics::HttpMetrics;

/// What every handler can reach.
pub struct AppState {
    pub settings: Arc<Settings>,
    /// `server.public_url`, or the one derived from the bound address.
    pub public_url: String,
    pub pool: DbPool,
    pub accounts: Accounts,
    pub billing: Arc<Billing>,
    pub actors: Arc<RootSupervisor>,
    /// Checks and applies SES bounce and complaint notifications.
    pub sns: SnsReceiver,
    /// Requests by route and status, and their latency: the middleware
    /// counts, `/metrics` reads.
    pub metrics: Arc<HttpMetrics>,
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
    billing::routes(cfg);
    admin::routes(cfg);
    ops::routes(cfg);
    webhooks::routes(cfg);
    assets::routes(cfg);
    media::routes(cfg);
    cfg.default_service(web::to(errors::no_route));
}
