//! The account page (`/account`: change the address or the password, delete
//! the account) and `/me`, the personal bits cached pages fill in.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use lectern_actors::accounts::AccountsError;
use lectern_actors::mail::EmailAddress;
use serde::Deserialize;
use serde_json::json;
use slog::info;

use super::{password_limits, Answer};
use lectern_actors::cache::ViewerClass;

use crate::http::extract::{
    removed_session_cookie, see_other, AccessError, ClientAddr, CsrfForm, Member, Viewer,
};
use crate::http::layout::PrivatePage;
use crate::http::limits::{self, Limit};
use crate::http::{get_or_head, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/account", get_or_head().to(account))
        .route("/account/email", web::post().to(change_email))
        .route("/account/password", web::post().to(change_password))
        .route("/account/delete", web::post().to(delete_account))
        .route("/me", get_or_head().to(me));
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NoticeQuery {
    notice: String,
}

const NOTICES: &[(&str, &str)] = &[
    ("confirmed", "Your email address is confirmed. Welcome!"),
    ("email_changed", "Your email address is changed."),
    (
        "email_change_sent",
        "We sent a link to your new address: the change happens when you use it.",
    ),
    (
        "password_changed",
        "Your password is changed. Your other devices are logged out.",
    ),
    (
        "password_reset",
        "Your password is changed, and you are logged in.",
    ),
];

fn account_page(member: &Member, state: &AppState, notice: Option<&str>, errors: Vec<String>) -> PrivatePage {
    PrivatePage::new(
        "Your account",
        "pages/account/account",
        json!({
            "account": member.user(),
            "notice": notice,
            "errors": errors,
            "password": password_limits(state),
        }),
    )
}

async fn account(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    query: web::Query<NoticeQuery>,
) -> HttpResponse {
    let notice = NOTICES
        .iter()
        .find(|(key, _)| *key == query.notice)
        .map(|(_, text)| *text);
    account_page(&member, &state, notice, Vec::new())
        .render(&req, &state, &Viewer::from(member.clone()))
        .await
}

/// The account page again, saying what was wrong with the form sent from it.
async fn account_problem(
    req: &HttpRequest,
    state: &AppState,
    member: Member,
    problem: String,
) -> HttpResponse {
    account_page(&member, state, None, vec![problem])
        .status(StatusCode::UNPROCESSABLE_ENTITY)
        .render(req, state, &Viewer::from(member))
        .await
}

const WRONG_PASSWORD: &str = "your current password is not right";

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChangeEmailForm {
    new_email: String,
    current_password: String,
}

async fn change_email(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    client: ClientAddr,
    CsrfForm(form): CsrfForm<ChangeEmailForm>,
) -> Answer {
    let new_email = match EmailAddress::parse(&form.new_email) {
        Err(e) => return Ok(account_problem(&req, &state, member, e.to_string()).await),
        Ok(new_email) if new_email.as_str() == member.user().email => {
            return Ok(account_problem(&req, &state, member, "that is already your address".into()).await);
        }
        Ok(new_email) => new_email,
    };
    limits::check(&state, &client, Limit::ChangeEmail, None).await?;
    match state
        .accounts
        .request_email_change(member.user(), &form.current_password, &new_email)
        .await
    {
        Ok(()) => Ok(see_other("/account?notice=email_change_sent")),
        Err(AccountsError::WrongPassword) => {
            Ok(account_problem(&req, &state, member, WRONG_PASSWORD.into()).await)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChangePasswordForm {
    current_password: String,
    new_password: String,
}

async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    client: ClientAddr,
    CsrfForm(form): CsrfForm<ChangePasswordForm>,
) -> Answer {
    if let Err(problem) = state.accounts.password_policy().check(&form.new_password) {
        return Ok(account_problem(&req, &state, member, problem.to_string()).await);
    }
    limits::check(&state, &client, Limit::ChangePassword, None).await?;
    let changed = state
        .accounts
        .change_password(
            member.user(),
            &form.current_password,
            &form.new_password,
            &member.cookie,
        )
        .await;
    match changed {
        Ok(()) => {
            info!(state.log, "password changed"; "user_id" => member.user().id);
            Ok(see_other("/account?notice=password_changed"))
        }
        Err(AccountsError::WrongPassword) => {
            Ok(account_problem(&req, &state, member, WRONG_PASSWORD.into()).await)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeleteForm {
    current_password: String,
    confirm_email: String,
}

async fn delete_account(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    client: ClientAddr,
    CsrfForm(form): CsrfForm<DeleteForm>,
) -> Answer {
    let typed = EmailAddress::parse(&form.confirm_email).ok();
    if typed.as_ref().map(EmailAddress::as_str) != Some(member.user().email.as_str()) {
        let problem = "type your email address to confirm that the account should be deleted";
        return Ok(account_problem(&req, &state, member, problem.into()).await);
    }
    limits::check(&state, &client, Limit::DeleteAccount, None).await?;
    match state
        .accounts
        .delete_user(member.user(), &form.current_password)
        .await
    {
        Ok(()) => {
            info!(state.log, "account deleted"; "user_id" => member.user().id);
            let nobody = Viewer {
                session: None,
                cookie: None,
            };
            let mut response = PrivatePage::new("Account deleted", "pages/account/deleted", json!({}))
                .render(&req, &state, &nobody)
                .await;
            let _ = response.add_cookie(&removed_session_cookie(&state));
            Ok(response)
        }
        Err(AccountsError::WrongPassword) => {
            Ok(account_problem(&req, &state, member, WRONG_PASSWORD.into()).await)
        }
        Err(e) => Err(e.into()),
    }
}

/// The personal bits that cached pages fill in with a few lines of script.
async fn me(state: web::Data<AppState>, viewer: Viewer) -> Result<HttpResponse, AccessError> {
    let class = viewer.class(&state).await?;
    let body = match viewer.user() {
        Some(user) => json!({
            "user": {
                "name": user.name,
                "email": user.email,
                "role": user.role,
                "subscriber": class == ViewerClass::Subscriber,
            }
        }),
        None => json!({ "user": null }),
    };
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        ))
        .json(body))
}
