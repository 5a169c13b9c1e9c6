//! `/admin/mail`: the outbox, newest first, by status, with a retry for
//! dead letters that can be sent again; and the suppression list, with a
//! way to take an address off it. Never shows an email's data: a login or
//! reset link may be in it until the email is sent.

use actix_web::{web, HttpRequest};
use lectern_actors::mail::{
    self, EmailAddress, MailAdminError, OutboxEntry, OutboxFilter, OutboxStatus, Suppression,
};
use serde::Deserialize;
use serde_json::{json, Value};
use slog::info;

use super::{notice, parse_id, render, when, AdminError, Answer, ButtonForm};
use crate::http::extract::{see_other, Admin, CsrfForm};
use crate::http::layout::PrivatePage;
use crate::http::{get_or_head, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/mail", get_or_head().to(outbox))
        .route("/admin/mail/{id}/retry", web::post().to(retry))
        .route(
            "/admin/mail/suppressions/remove",
            web::post().to(remove_suppression),
        );
}

/// Emails on one page of the outbox.
const OUTBOX_PAGE: i64 = 50;
/// Suppressed addresses shown, newest first.
const SUPPRESSIONS_SHOWN: i64 = 200;

const NOTICES: &[(&str, &str)] = &[
    (
        "retried",
        "The email is queued again: the Mailer sends it in a moment.",
    ),
    (
        "unsuppressed",
        "The address is off the suppression list: emails to it are sent again.",
    ),
];

#[derive(Deserialize, Default)]
#[serde(default)]
struct OutboxQuery {
    status: String,
    before: String,
    notice: String,
}

/// How the page names a status.
fn status_label(status: OutboxStatus) -> &'static str {
    match status {
        OutboxStatus::Pending => "queued",
        OutboxStatus::Sent => "sent",
        OutboxStatus::Dead => "dead letter",
    }
}

/// An email as the pages list it: never its data.
pub(super) fn email_row(email: &OutboxEntry) -> Value {
    json!({
        "id": email.id,
        "message": email.message,
        "recipient": email.recipient,
        "status": email.status.as_str(),
        "status_label": status_label(email.status),
        "attempts": email.attempts,
        "last_error": email.last_error,
        "created": when(email.created_at),
        "sent": email.sent_at.map(when),
        "retryable": email.retryable(),
    })
}

fn suppression_row(suppression: &Suppression) -> Value {
    json!({
        "email": suppression.email,
        "reason": suppression.reason,
        "detail": suppression.detail,
        "since": when(suppression.created_at),
    })
}

async fn outbox(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: Admin,
    query: web::Query<OutboxQuery>,
) -> Answer {
    let status = match query.status.as_str() {
        "" => None,
        raw => Some(
            OutboxStatus::parse(raw).ok_or(AdminError::BadQuery("the status is pending, sent or dead"))?,
        ),
    };
    let before = match query.before.as_str() {
        "" => None,
        raw => Some(
            raw.parse::<i64>()
                .map_err(|_| AdminError::BadQuery("`before` is an email's number"))?,
        ),
    };
    let filter = OutboxFilter {
        status,
        recipient: None,
        before,
    };
    let emails = mail::list_outbox(&state.pool, &filter, OUTBOX_PAGE).await?;
    let suppressions = mail::list_suppressions(&state.pool, SUPPRESSIONS_SHOWN).await?;
    // A full page may have older emails after it.
    let older = (emails.len() as i64 == OUTBOX_PAGE)
        .then(|| emails.last())
        .flatten()
        .map(|last| format!("/admin/mail?status={}&before={}", query.status, last.id));
    let filters: Vec<Value> = [
        ("", "all"),
        ("pending", "queued"),
        ("sent", "sent"),
        ("dead", "dead letters"),
    ]
    .iter()
    .map(|(value, label)| json!({ "value": value, "label": label, "current": *value == query.status }))
    .collect();
    let page = PrivatePage::new(
        "Mail",
        "pages/admin/mail",
        json!({
            "notice": notice(NOTICES, &query.notice),
            "filters": filters,
            "emails": emails.iter().map(email_row).collect::<Vec<_>>(),
            "older": older,
            "suppressions": suppressions.iter().map(suppression_row).collect::<Vec<_>>(),
            "suppressions_limit": SUPPRESSIONS_SHOWN,
        }),
    );
    Ok(render(&req, &state, &admin, page).await)
}

/// Puts a dead letter back in the queue.
async fn retry(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    _: CsrfForm<ButtonForm>,
) -> Answer {
    let id = parse_id("email", &id)?;
    let admin_id = admin.0.user().id;
    mail::retry_dead_letter(&state.pool, id, admin_id).await?;
    info!(state.log, "dead letter queued again"; "outbox_id" => id, "user_id" => admin_id);
    Ok(see_other("/admin/mail?notice=retried"))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SuppressionForm {
    email: String,
}

/// Takes an address off the suppression list.
async fn remove_suppression(
    state: web::Data<AppState>,
    admin: Admin,
    CsrfForm(form): CsrfForm<SuppressionForm>,
) -> Answer {
    // Only parsed addresses are ever suppressed.
    let address = EmailAddress::parse(&form.email)
        .map_err(|_| MailAdminError::NotSuppressed(form.email.chars().take(254).collect()))?;
    let admin_id = admin.0.user().id;
    mail::remove_suppression(&state.pool, &address, admin_id).await?;
    info!(state.log, "address taken off the suppression list"; "user_id" => admin_id);
    Ok(see_other("/admin/mail?notice=unsuppressed"))
}
