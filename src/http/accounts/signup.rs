//! Sign-up and confirmation: `/signup`, and `/confirm/{token}` for the
//! links that confirm an address (a new account's, or a new address).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use lectern_actors::accounts::{Confirmed, Purpose, Registration};
use lectern_actors::mail::EmailAddress;
use serde::Deserialize;
use serde_json::json;
use slog::info;

use super::{check_email, landing_page, link_landing, logged_in, password_limits, Answer, ButtonForm};
use crate::http::extract::{ClientAddr, CsrfForm, Viewer};
use crate::http::layout::PrivatePage;
use crate::http::limits::{self, Limit};
use crate::http::{get_or_head, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/signup", get_or_head().to(signup_form))
        .route("/signup", web::post().to(signup))
        .route("/confirm/{token}", get_or_head().to(confirm_landing))
        .route("/confirm/{token}", web::post().to(confirm));
}

fn signup_page(state: &AppState, name: &str, email: &str, errors: Vec<String>) -> PrivatePage {
    PrivatePage::new(
        "Sign up",
        "pages/account/signup",
        json!({ "name": name, "email": email, "errors": errors, "password": password_limits(state) }),
    )
}

async fn signup_form(req: HttpRequest, state: web::Data<AppState>, viewer: Viewer) -> HttpResponse {
    signup_page(&state, "", "", Vec::new())
        .render(&req, &state, &viewer)
        .await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SignupForm {
    name: String,
    email: String,
    password: String,
}

async fn signup(
    req: HttpRequest,
    state: web::Data<AppState>,
    viewer: Viewer,
    client: ClientAddr,
    CsrfForm(form): CsrfForm<SignupForm>,
) -> Answer {
    let name = form.name.trim();
    let email = EmailAddress::parse(&form.email);
    let mut errors = Vec::new();
    if let Err(e) = &email {
        errors.push(e.to_string());
    }
    if name.chars().count() > 100 || name.chars().any(char::is_control) {
        errors.push("use at most 100 characters, on one line, for your name".to_owned());
    }
    if let Err(e) = state.accounts.password_policy().check(&form.password) {
        errors.push(e.to_string());
    }
    let email = match email {
        Ok(email) if errors.is_empty() => email,
        _ => {
            return Ok(signup_page(&state, name, &form.email, errors)
                .status(StatusCode::UNPROCESSABLE_ENTITY)
                .render(&req, &state, &viewer)
                .await);
        }
    };
    limits::check(&state, &client, Limit::SignUp, Some(&email)).await?;
    match state.accounts.register(&email, name, &form.password).await? {
        Registration::Created(id) => info!(state.log, "account created"; "user_id" => id),
        Registration::Renewed(id) => {
            info!(state.log, "unconfirmed account signed up for again; earlier links void"; "user_id" => id)
        }
        Registration::Existing => {}
    }
    Ok(check_email(&req, &state, &viewer, email.as_str(), "sign_up", StatusCode::OK).await)
}

async fn confirm_landing(
    req: HttpRequest,
    state: web::Data<AppState>,
    viewer: Viewer,
    token: web::Path<String>,
) -> Answer {
    let page = landing_page(
        "Confirm your email address",
        "Press the button to confirm this address and log in.",
        format!("/confirm/{token}"),
        "Confirm my address",
    );
    let purposes = [Purpose::Confirm, Purpose::ChangeEmail];
    link_landing(&req, &state, &viewer, &token, &purposes, page).await
}

async fn confirm(
    state: web::Data<AppState>,
    viewer: Viewer,
    token: web::Path<String>,
    _: CsrfForm<ButtonForm>,
) -> Answer {
    let (confirmed, session) = state
        .accounts
        .confirm_email(&token, viewer.cookie.as_deref())
        .await?;
    let notice = match confirmed {
        Confirmed::Address => "confirmed",
        Confirmed::NewAddress(_) => "email_changed",
    };
    Ok(logged_in(&state, &format!("/account?notice={notice}"), session))
}
