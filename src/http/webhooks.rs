//! Webhooks from providers: `POST /webhooks/ses` takes the SNS messages that
//! carry Amazon SES bounces and complaints. Webhooks need no CSRF token:
//! each message's signature is checked instead.

use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use lectern_actors::mail::sns::{Action, Rejection, SnsError, SnsMessage};
use slog::{error, info, warn, Logger};

use super::errors::RETRY_AFTER_SECS;
use super::middleware::RequestId;
use super::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhooks/ses", web::post().to(ses));
}

/// SNS posts JSON as `text/plain`, so any content type is read; the body
/// limit is the server's (`server.max_body_bytes`, 413 beyond it).
async fn ses(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let request_id = req.extensions().get::<RequestId>().map(|id| id.0.clone());
    let log = state
        .log
        .new(slog::o!("webhook" => "ses", "request_id" => request_id));
    let message = match SnsMessage::parse(&body) {
        Ok(message) => message,
        Err(malformed) => {
            warn!(log, "SNS message refused"; "status" => 400, "error" => %malformed);
            return plain(StatusCode::BAD_REQUEST, &format!("{malformed}\n"));
        }
    };
    let log = log.new(slog::o!(
        "message_id" => message.message_id.clone(),
        "type" => message.kind.name(),
        "topic" => message.topic_arn.clone(),
    ));
    match state.sns.receive(&state.pool, &message).await {
        Ok(action) => {
            log_action(&log, &action);
            plain(StatusCode::OK, "ok\n")
        }
        Err(SnsError::Rejected(rejection)) => {
            match rejection {
                Rejection::NoTopicAllowed => error!(log, "SNS message refused"; "status" => 403,
                    "error" => %rejection),
                _ => warn!(log, "SNS message refused"; "status" => 403, "error" => %rejection),
            }
            plain(
                StatusCode::FORBIDDEN,
                "refused: the signature, certificate, topic or timestamp is not acceptable\n",
            )
        }
        Err(e) => {
            error!(log, "SNS message not handled, SNS will retry"; "status" => 503, "error" => %e);
            let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, "unavailable, try again later\n");
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(RETRY_AFTER_SECS),
            );
            response
        }
    }
}

fn log_action(log: &Logger, action: &Action) {
    match action {
        Action::Suppressed {
            reason,
            addresses,
            unparseable,
        } => {
            for raw in unparseable {
                warn!(log, "SES reported a recipient that is not an email address; skipped";
                    "recipient" => raw);
            }
            info!(log, "SES notification: addresses suppressed"; "status" => 200,
                "reason" => reason.as_str(), "suppressed" => addresses.len());
        }
        Action::Ignored(why) => {
            info!(log, "SES notification: nothing to do"; "status" => 200, "why" => why, "suppressed" => 0)
        }
        Action::SubscriptionConfirmed => info!(log, "SNS subscription confirmed"; "status" => 200),
        Action::Unsubscribed => info!(log, "SNS subscription ended"; "status" => 200),
    }
}

fn plain(status: StatusCode, text: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(text.to_owned())
}
