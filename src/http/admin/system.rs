//! `/admin/system`: how the running node is doing. Each actor of the
//! supervision tree (alive, restarts, backlog, messages handled, last
//! error), the page cache (hit rate, size, evictions), the database
//! connection pool, and the newest warnings and errors in the log file
//! with their request ids. The same figures `/metrics` exports, for a
//! person.

use actix_web::{web, HttpRequest};
use lectern_actors::events::figures::grouped;
use lectern_actors::supervisor::actor_title;
use lectern_actors::supervisor::restarts::ActorReport;
use serde_json::{json, Value};

use super::{render, Answer};
use crate::http::extract::Admin;
use crate::http::layout::PrivatePage;
use crate::http::{get_or_head, AppState};
use crate::telemetry::problems::{newest_problems, Problem};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/system", get_or_head().to(system));
}

/// How much of the log file's end is read for its warnings and errors.
const LOG_TAIL_BYTES: u64 = 256 * 1024;
/// Warnings and errors shown at most.
const PROBLEMS_SHOWN: usize = 50;

fn actor_row(actor: &ActorReport) -> Value {
    json!({
        "name": actor_title(actor.name),
        "alive": actor.alive,
        "restarts": count(actor.restarts),
        "backlog": count(actor.backlog),
        "handled": count(actor.handled),
        "last_error": actor.last_error,
    })
}

fn problem_row(problem: &Problem) -> Value {
    json!({
        "at": problem.at,
        "level": problem.level,
        "message": problem.message,
        "detail": problem.detail,
        "request_id": problem.request_id,
    })
}

/// A counter as a reader reads it: `12,345`.
fn count(n: u64) -> String {
    grouped(i64::try_from(n).unwrap_or(i64::MAX))
}

/// `1536` as `1.5 KiB`: one decimal, binary units.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let (mut tenths, mut unit) = (u128::from(n) * 10, 0);
    while tenths >= 10 * 1024 && unit + 1 < UNITS.len() {
        tenths /= 1024;
        unit += 1;
    }
    match unit {
        0 => format!("{} bytes", count(n)),
        _ => format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit]),
    }
}

async fn system(req: HttpRequest, state: web::Data<AppState>, admin: Admin) -> Answer {
    let actors: Vec<Value> = state.actors.report().iter().map(actor_row).collect();
    let cache = state.actors.pages.stats();
    let lookups = cache.hits + cache.misses;
    let hit_rate = match lookups {
        0 => "no lookups yet".to_owned(),
        _ => format!("{:.1}%", cache.hits as f64 * 100.0 / lookups as f64),
    };
    let pool = state.pool.status();
    let log_file = state.settings.log_file();
    let path = log_file.clone();
    // File reading blocks: it runs on the blocking pool, not the worker.
    let read = web::block(move || {
        (
            path.exists(),
            newest_problems(&path, LOG_TAIL_BYTES, PROBLEMS_SHOWN),
        )
    })
    .await;
    let (log_exists, problems, log_error) = match read {
        Ok((exists, Ok(problems))) => (exists, problems.iter().map(problem_row).collect(), None),
        Ok((exists, Err(e))) => (exists, Vec::new(), Some(e.to_string())),
        Err(e) => (false, Vec::new(), Some(e.to_string())),
    };
    let page = PrivatePage::new(
        "System",
        "pages/admin/system",
        json!({
            "actors": actors,
            "cache": {
                "hit_rate": hit_rate,
                "hits": count(cache.hits),
                "misses": count(cache.misses),
                "entries": count(cache.entries),
                "bytes": bytes(cache.bytes),
                "capacity": bytes(cache.capacity_bytes),
                "evictions": count(cache.evictions),
                "invalidations": count(cache.invalidations),
            },
            "pool": {
                "max_size": pool.max_size,
                "size": pool.size,
                "available": pool.available,
                "in_use": pool.size.saturating_sub(pool.available),
                "waiting": pool.waiting,
            },
            "log_file": log_file.display().to_string(),
            "log_exists": log_exists,
            "log_error": log_error,
            "log_tail_kib": LOG_TAIL_BYTES / 1024,
            "problems": problems,
            "problems_shown": PROBLEMS_SHOWN,
        }),
    );
    Ok(render(&req, &state, &admin, page).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(bytes(0), "0 bytes");
        assert_eq!(bytes(1023), "1,023 bytes");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(64 * 1024 * 1024), "64.0 MiB");
    }
}
