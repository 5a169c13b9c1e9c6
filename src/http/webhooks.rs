//! Webhooks from providers: `POST /webhooks/ses` takes the SNS messages that
//! carry Amazon SES bounces and complaints, `POST /webhooks/stripe` Stripe's
//! events. Webhooks need no CSRF token: each message's signature is checked
//! instead, on the raw body. Their answers are plain text for machines,
//! mapped from `WebhookError` in one place.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use lectern_actors::billing::webhook::{self, MalformedEvent, SignatureError};
use lectern_actors::billing::{BillingError, StripeEvent};
use lectern_actors::mail::sns::{Action, Malformed, Rejection, SnsError, SnsMessage};
use slog::{error, info, warn, Logger};

use super::errors::RETRY_AFTER_SECS;
use super::middleware::RequestId;
use super::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhooks/ses", web::post().to(ses))
        .route("/webhooks/stripe", web::post().to(stripe));
}

/// Why a webhook was not taken; the sender retries on 5xx only.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("not an SNS message: {0}")]
    Malformed(#[from] Malformed),
    #[error("SNS message refused: {0}")]
    Rejected(Rejection),
    #[error("SNS message not handled, SNS will retry: {0}")]
    Unavailable(SnsError),
    #[error("Stripe event refused: {0}")]
    BadSignature(#[from] SignatureError),
    #[error(transparent)]
    NotAnEvent(#[from] MalformedEvent),
    #[error("Stripe event not recorded, Stripe will retry: {0}")]
    Unrecorded(#[from] BillingError),
}

impl ResponseError for WebhookError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebhookError::Malformed(_) | WebhookError::BadSignature(_) | WebhookError::NotAnEvent(_) => {
                StatusCode::BAD_REQUEST
            }
            WebhookError::Rejected(_) => StatusCode::FORBIDDEN,
            WebhookError::Unavailable(_) | WebhookError::Unrecorded(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let text = match self {
            WebhookError::Malformed(malformed) => format!("{malformed}\n"),
            WebhookError::Rejected(_) => {
                "refused: the signature, certificate, topic or timestamp is not acceptable\n".into()
            }
            WebhookError::Unavailable(_) | WebhookError::Unrecorded(_) => {
                "unavailable, try again later\n".into()
            }
            WebhookError::BadSignature(e) => format!("{e}\n"),
            WebhookError::NotAnEvent(e) => format!("{e}\n"),
        };
        let mut response = plain(self.status_code(), text);
        if let WebhookError::Unavailable(_) | WebhookError::Unrecorded(_) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

/// SNS posts JSON as `text/plain`, so any content type is read; the body
/// limit is the server's (`server.max_body_bytes`, 413 beyond it).
async fn ses(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebhookError> {
    let message = SnsMessage::parse(&body)?;
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|id| id.as_str().to_owned());
    let log = state.log.new(slog::o!(
        "webhook" => "ses",
        "request_id" => request_id,
        "message_id" => message.message_id.clone(),
        "type" => message.kind.name(),
        "topic" => message.topic_arn.clone(),
    ));
    match state.sns.receive(&state.pool, &message).await {
        Ok(action) => {
            log_action(&log, &action);
            Ok(plain(StatusCode::OK, "ok\n".into()))
        }
        Err(SnsError::Rejected(rejection)) => {
            if let Rejection::NoTopicAllowed = rejection {
                // The operator's to fix: every message is refused until then.
                error!(log, "SNS message refused"; "error" => %rejection);
            }
            Err(WebhookError::Rejected(rejection))
        }
        Err(e) => Err(WebhookError::Unavailable(e)),
    }
}

/// A Stripe event: its signature checked on the raw body, then recorded
/// once (a duplicate changes nothing) and answered at once; the
/// BillingSupervisor acts on it, re-reading what it names from Stripe.
async fn stripe(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebhookError> {
    let signature = req
        .headers()
        .get("Stripe-Signature")
        .and_then(|v| v.to_str().ok());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if let Err(e) = webhook::verify(signature, &body, &state.settings.webhook_secrets(), now) {
        if e == SignatureError::NoSecret {
            // The operator's to fix: every event is refused until then.
            error!(state.log, "Stripe event refused: stripe.webhook_secret is unset");
        }
        return Err(e.into());
    }
    let event = StripeEvent::parse(&body)?;
    let new = state.billing.record_event(&event).await?;
    info!(state.log, "Stripe event received"; "event" => &event.id, "type" => &event.kind, "duplicate" => !new);
    Ok(plain(StatusCode::OK, "ok\n".into()))
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

fn plain(status: StatusCode, text: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(text)
}
