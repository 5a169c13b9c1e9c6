//! The operator's admin area under `/admin`: the index, the content and
//! its editor ([`content`]), the outbox and the suppression list
//! ([`mail`]), the members ([`members`]), the dashboard's charts
//! ([`dashboard`]) and the running node ([`system`]). Every
//! handler takes [`Admin`] (a member gets 403, a visitor the login form)
//! and every POST a `CsrfForm`; every action is an audit event with the
//! administrator's id, written by the context in the transaction of its
//! change. Admin pages are never cached, by anyone.

mod charts;
mod content;
mod dashboard;
mod mail;
mod members;
mod system;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use lectern_actors::accounts::AccountsError;
use lectern_actors::billing::BillingError;
use lectern_actors::content::editor::EditError;
use lectern_actors::mail::MailAdminError;
use lectern_actors::store::StoreError;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::errors::ErrorPage;
use super::extract::{Admin, Viewer};
use super::layout::PrivatePage;
use super::pages::PageError;
use super::{get_or_head, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin", get_or_head().to(index));
    content::routes(cfg);
    mail::routes(cfg);
    members::routes(cfg);
    dashboard::routes(cfg);
    system::routes(cfg);
}

/// What can go wrong in the admin area, as the administrator is told it.
/// Mistakes in a form (months out of range, say) are not errors: the page
/// is shown again with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("there is no {what} {id:?}")]
    NoSuch { what: &'static str, id: String },
    #[error("{0}")]
    BadQuery(&'static str),
    #[error(transparent)]
    Accounts(AccountsError),
    #[error(transparent)]
    Billing(BillingError),
    #[error(transparent)]
    Mail(MailAdminError),
    #[error(transparent)]
    Content(EditError),
    #[error(transparent)]
    Page(#[from] PageError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<EditError> for AdminError {
    fn from(e: EditError) -> AdminError {
        match e {
            EditError::Store(e) => AdminError::Store(e),
            other => AdminError::Content(other),
        }
    }
}

impl From<AccountsError> for AdminError {
    fn from(e: AccountsError) -> AdminError {
        match e {
            AccountsError::NoSuchAccount(id) => AdminError::NoSuch {
                what: "member",
                id: id.to_string(),
            },
            other => AdminError::Accounts(other),
        }
    }
}

impl From<BillingError> for AdminError {
    fn from(e: BillingError) -> AdminError {
        match e {
            BillingError::NoAccount(email) => AdminError::NoSuch {
                what: "member",
                id: email,
            },
            other => AdminError::Billing(other),
        }
    }
}

impl From<MailAdminError> for AdminError {
    fn from(e: MailAdminError) -> AdminError {
        match e {
            MailAdminError::NoSuchEmail(id) => AdminError::NoSuch {
                what: "email",
                id: id.to_string(),
            },
            other => AdminError::Mail(other),
        }
    }
}

impl AdminError {
    fn page(&self) -> ErrorPage {
        let problem = |status, title, back: &str| {
            ErrorPage::new(status, title, "pages/admin/problem")
                .with(json!({ "problem": self.to_string(), "back": back }))
        };
        match self {
            AdminError::NoSuch { what: "email", .. } => {
                problem(StatusCode::NOT_FOUND, "No such email", "/admin/mail")
            }
            AdminError::NoSuch { what: "member", .. } => {
                problem(StatusCode::NOT_FOUND, "No such member", "/admin/members")
            }
            AdminError::NoSuch { .. } => problem(StatusCode::NOT_FOUND, "No such item", "/admin/content"),
            AdminError::BadQuery(_) => problem(StatusCode::BAD_REQUEST, "Cannot show that", "/admin"),
            AdminError::Mail(MailAdminError::NotDeadLetter { .. }) => {
                problem(StatusCode::CONFLICT, "Not a dead letter", "/admin/mail")
            }
            AdminError::Mail(MailAdminError::RecipientSuppressed(_)) => {
                problem(StatusCode::CONFLICT, "The address is suppressed", "/admin/mail")
            }
            AdminError::Mail(MailAdminError::LinkRemoved(_)) => problem(
                StatusCode::CONFLICT,
                "This email cannot be sent again",
                "/admin/mail",
            ),
            AdminError::Mail(MailAdminError::NotSuppressed(_)) => problem(
                StatusCode::NOT_FOUND,
                "Not on the suppression list",
                "/admin/mail",
            ),
            AdminError::Accounts(AccountsError::Store(_) | AccountsError::Mail(_))
            | AdminError::Billing(BillingError::Store(_) | BillingError::Mail(_))
            | AdminError::Mail(MailAdminError::Store(StoreError::Checkout(_) | StoreError::Query(_))) => {
                ErrorPage::unavailable()
            }
            AdminError::Store(_) => ErrorPage::unavailable(),
            AdminError::Page(e) => e.page(),
            AdminError::Accounts(_)
            | AdminError::Billing(_)
            | AdminError::Mail(_)
            | AdminError::Content(_) => ErrorPage::server_error(),
        }
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        self.page().status()
    }

    fn error_response(&self) -> HttpResponse {
        self.page().response()
    }
}

type Answer = Result<HttpResponse, AdminError>;

/// A form that is only its token (a button).
#[derive(Deserialize, Default)]
struct ButtonForm {}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NoticeQuery {
    notice: String,
}

/// The text of `key` among `notices`, for a page reached after an action.
fn notice(notices: &[(&'static str, &'static str)], key: &str) -> Option<&'static str> {
    notices.iter().find(|(k, _)| *k == key).map(|(_, text)| *text)
}

/// An admin page for `admin`: personal (it carries their form token), so
/// never stored by a browser or a proxy.
async fn render(req: &HttpRequest, state: &AppState, admin: &Admin, page: PrivatePage) -> HttpResponse {
    let mut response = page.render(req, state, &Viewer::from(admin.0.clone())).await;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}

/// A moment as the admin pages show it: `2026-03-04 17:05 UTC`.
fn when(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_default()
}

/// An id from a path, or the page that says there is no such thing.
fn parse_id(what: &'static str, raw: &str) -> Result<i64, AdminError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AdminError::NoSuch {
            what,
            id: raw.chars().take(40).collect(),
        })
}

async fn index(req: HttpRequest, state: web::Data<AppState>, admin: Admin) -> HttpResponse {
    let page = PrivatePage::new("Administration", "pages/admin/index", json!({}));
    render(&req, &state, &admin, page).await
}
