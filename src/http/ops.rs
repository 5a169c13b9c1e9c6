//! Operations endpoints: `/healthz` (the process is alive), `/readyz`
//! (it can serve: database reachable, migrations current, actors alive)
//! and `/metrics` (Prometheus; see `metrics`). Anyone may read the status;
//! the detail (errors, counters) and the metrics are for this machine and
//! for clients with `server.metrics_token`.

use std::time::Duration;

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, Responder, ResponseError};
use lectern_actors::mail::outbox;
use lectern_actors::store;
use serde::Serialize;

use super::errors::ErrorPage;
#[cfg(debug_assertions)]
use super::extract::ClientAddr;
use super::extract::Operator;
use super::metrics::{Format, PoolUse, Snapshot};
use super::{get_or_head, AppState};

const DATABASE_DEADLINE: Duration = Duration::from_secs(1);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", get_or_head().to(healthz))
        .route("/readyz", get_or_head().to(readyz))
        .route("/metrics", get_or_head().to(metrics));
    // Debug builds only: release builds have no such route.
    #[cfg(debug_assertions)]
    cfg.route("/debug/panic/{actor}", web::post().to(inject_panic));
}

/// Test hook, debug builds only: `POST /debug/panic/renderer` from this
/// machine makes the Renderer panic inside a handler and answers once it
/// has crashed (its restart follows). Anyone else, or an unknown actor, gets 404.
#[cfg(debug_assertions)]
async fn inject_panic(
    actor: web::Path<String>,
    client: ClientAddr,
    state: web::Data<AppState>,
) -> Result<HttpResponse, super::pages::PageError> {
    let crashed = match client.is_loopback() {
        true => state.actors.inject_panic(&actor).await,
        false => None,
    };
    let crashed = crashed.ok_or(super::pages::PageError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(format!("{crashed}\n")))
}

async fn healthz() -> impl Responder {
    HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .content_type("text/plain; charset=utf-8")
        .body("ok\n")
}

#[derive(Serialize)]
struct Check {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl Check {
    fn pass(detail: impl Into<Option<String>>) -> Check {
        Check {
            ok: true,
            detail: detail.into(),
        }
    }

    fn fail(detail: String) -> Check {
        Check {
            ok: false,
            detail: Some(detail),
        }
    }
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    checks: Checks,
    actors: Vec<lectern_actors::supervisor::restarts::ActorReport>,
    cache: lectern_actors::cache::CacheStats,
}

#[derive(Serialize)]
struct Checks {
    database: Check,
    migrations: Check,
    actors: Check,
}

/// What anyone may know: whether Lectern can serve.
#[derive(Serialize)]
struct Status {
    status: &'static str,
}

async fn readyz(req: HttpRequest, state: web::Data<AppState>) -> impl Responder {
    let database = match store::ping(&state.pool, DATABASE_DEADLINE).await {
        Ok(()) => Check::pass(None),
        Err(e) => Check::fail(e.to_string()),
    };
    let expected = store::expected_version();
    let migrations = if !database.ok {
        Check::fail("unknown: the database is unreachable".into())
    } else {
        match store::applied_version(&state.pool).await {
            Ok(applied) if applied == expected => Check::pass(format!("version {applied}")),
            Ok(applied) => Check::fail(format!(
                "database at version {applied}, this binary expects {expected}"
            )),
            Err(e) => Check::fail(e.to_string()),
        }
    };
    let actors = state.actors.report();
    let dead: Vec<&str> = actors.iter().filter(|a| !a.alive).map(|a| a.name).collect();
    let actors_check = if dead.is_empty() {
        Check::pass(format!("{} running", actors.len()))
    } else {
        Check::fail(format!("not running: {}", dead.join(", ")))
    };

    let reason = [
        ("database", &database),
        ("migrations", &migrations),
        ("actors", &actors_check),
    ]
    .iter()
    .find(|(_, check)| !check.ok)
    .map(|(name, check)| format!("{name}: {}", check.detail.as_deref().unwrap_or("failed")));
    let body = Readiness {
        status: if reason.is_none() { "ready" } else { "unavailable" },
        reason,
        checks: Checks {
            database,
            migrations,
            actors: actors_check,
        },
        actors,
        cache: state.actors.pages.stats(),
    };
    let mut response = if body.reason.is_none() {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response.insert_header(CacheControl(vec![CacheDirective::NoStore]));
    if Operator::is(&req) {
        response.json(body)
    } else {
        response.json(Status { status: body.status })
    }
}

/// Why `/metrics` cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("cannot encode the metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}

impl ResponseError for OpsError {
    fn status_code(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> HttpResponse {
        ErrorPage::server_error().response()
    }
}

/// Prometheus metrics, for operators (anyone else gets 403 from the
/// extractor). The outbox is counted with one query bounded like
/// `/readyz`'s ping: with the database away, the rest is still answered,
/// with `lectern_database_up 0`.
async fn metrics(
    _: Operator,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OpsError> {
    let outbox = outbox::depth(&state.pool, DATABASE_DEADLINE).await.ok();
    let pool = state.pool.status();
    let snapshot = Snapshot {
        actors: state.actors.report(),
        cache: state.actors.pages.stats(),
        page_views: state.actors.page_views.stats(),
        pool: PoolUse {
            max_size: pool.max_size,
            size: pool.size,
            available: pool.available,
            waiting: pool.waiting,
        },
        outbox,
        alerts: state.actors.alerts.raised_counts(),
    };
    let format = Format::accepted_by(req.headers());
    let body = state.metrics.encode(snapshot, format)?;
    Ok(HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .content_type(format.content_type())
        .body(body))
}
