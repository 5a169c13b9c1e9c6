//! Logging in and out: by password (`/login`), by emailed link
//! (`/login/magic`, `/login/magic/{token}`), and `/logout`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use lectern_actors::accounts::{AccountsError, Authenticated, Purpose};
use lectern_actors::mail::EmailAddress;
use serde::Deserialize;
use serde_json::json;
use slog::info;

use super::{
    check_email, landing_page, link_landing, link_request_routes, logged_in, safe_next, Answer, ButtonForm,
    LinkRequest,
};
use crate::http::extract::{removed_session_cookie, see_other, ClientAddr, CsrfForm, Viewer};
use crate::http::layout::PrivatePage;
use crate::http::limits::{self, Limit};
use crate::http::{get_or_head, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", get_or_head().to(login_form))
        .route("/login", web::post().to(login))
        .route("/login/magic/{token}", get_or_head().to(login_link_landing))
        .route("/login/magic/{token}", web::post().to(use_login_link))
        .route("/logout", get_or_head().to(logout_form))
        .route("/logout", web::post().to(logout));
    link_request_routes(cfg, "/login/magic", LinkRequest::Login);
}

fn login_page(email: &str, next: &str, errors: &[&str]) -> PrivatePage {
    PrivatePage::new(
        "Log in",
        "pages/account/login",
        json!({ "email": email, "next": next, "errors": errors }),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NextQuery {
    next: String,
}

async fn login_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    viewer: Viewer,
    query: web::Query<NextQuery>,
) -> HttpResponse {
    let next = safe_next(&state.public_url, &query.next).unwrap_or_default();
    login_page("", &next, &[]).render(&req, &state, &viewer).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginForm {
    email: String,
    password: String,
    next: String,
}

async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    viewer: Viewer,
    client: ClientAddr,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> Answer {
    let next = safe_next(&state.public_url, &form.next);
    let failed = |message: &str, status: StatusCode| {
        login_page(&form.email, next.as_deref().unwrap_or(""), &[message]).status(status)
    };
    let Ok(email) = EmailAddress::parse(&form.email) else {
        return Ok(failed(
            "enter the email address and password of your account",
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .render(&req, &state, &viewer)
        .await);
    };
    limits::check(&state, &client, Limit::Login, Some(&email)).await?;
    match state.accounts.authenticate(&email, &form.password).await {
        Ok(Authenticated::Confirmed(user)) => {
            let session = state.accounts.log_in(user.id, viewer.cookie.as_deref()).await?;
            info!(state.log, "logged in"; "user_id" => user.id, "with" => "password");
            Ok(logged_in(&state, next.as_deref().unwrap_or("/account"), session))
        }
        Ok(Authenticated::Unconfirmed(user)) => Ok(check_email(
            &req,
            &state,
            &viewer,
            &user.email,
            "unconfirmed",
            StatusCode::FORBIDDEN,
        )
        .await),
        Err(AccountsError::WrongPassword) => Ok(failed(
            "that email address and password do not match",
            StatusCode::UNAUTHORIZED,
        )
        .render(&req, &state, &viewer)
        .await),
        Err(e) => Err(e.into()),
    }
}

async fn login_link_landing(
    req: HttpRequest,
    state: web::Data<AppState>,
    viewer: Viewer,
    token: web::Path<String>,
) -> Answer {
    let page = landing_page(
        "Log in to Lectern",
        "Press the button to log in on this device.",
        format!("/login/magic/{token}"),
        "Log in",
    );
    link_landing(&req, &state, &viewer, &token, &[Purpose::Magic], page).await
}

async fn use_login_link(
    state: web::Data<AppState>,
    viewer: Viewer,
    token: web::Path<String>,
    _: CsrfForm<ButtonForm>,
) -> Answer {
    let (user, session) = state
        .accounts
        .use_login_link(&token, viewer.cookie.as_deref())
        .await?;
    info!(state.log, "logged in"; "user_id" => user.id, "with" => "emailed link");
    Ok(logged_in(&state, "/account", session))
}

async fn logout_form(req: HttpRequest, state: web::Data<AppState>, viewer: Viewer) -> HttpResponse {
    if viewer.session.is_none() {
        return see_other("/");
    }
    PrivatePage::new("Log out", "pages/account/logout", json!({}))
        .render(&req, &state, &viewer)
        .await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LogoutForm {
    /// "1": end every session of the user, on every device.
    everywhere: String,
}

async fn logout(state: web::Data<AppState>, viewer: Viewer, CsrfForm(form): CsrfForm<LogoutForm>) -> Answer {
    if let (Some(session), Some(cookie)) = (&viewer.session, &viewer.cookie) {
        let everywhere = form.everywhere == "1";
        if everywhere {
            state.accounts.end_all_sessions(session.user.id).await?;
        } else {
            state.accounts.end_session(cookie).await?;
        }
        info!(state.log, "logged out"; "user_id" => session.user.id, "everywhere" => everywhere);
    }
    let mut response = see_other("/");
    let _ = response.add_cookie(&removed_session_cookie(&state));
    Ok(response)
}
