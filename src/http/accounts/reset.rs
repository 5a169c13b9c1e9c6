//! Resetting a forgotten password: `/reset` asks for a link, `/reset/{token}`
//! chooses the new password.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use lectern_actors::accounts::{AccountsError, Purpose};
use serde::Deserialize;
use serde_json::json;
use slog::info;

use super::{link_landing, link_request_routes, logged_in, password_limits, Answer, LinkRequest};
use crate::http::extract::{CsrfForm, Viewer};
use crate::http::layout::PrivatePage;
use crate::http::{get_or_head, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    link_request_routes(cfg, "/reset", LinkRequest::Reset);
    cfg.route("/reset/{token}", get_or_head().to(reset_form))
        .route("/reset/{token}", web::post().to(reset));
}

fn reset_page(state: &AppState, token: &str, errors: Vec<String>) -> PrivatePage {
    PrivatePage::new(
        "Choose a new password",
        "pages/account/reset_form",
        json!({ "action": format!("/reset/{token}"), "errors": errors, "password": password_limits(state) }),
    )
}

async fn reset_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    viewer: Viewer,
    token: web::Path<String>,
) -> Answer {
    let page = reset_page(&state, &token, Vec::new());
    link_landing(&req, &state, &viewer, &token, &[Purpose::Reset], page).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NewPasswordForm {
    password: String,
}

async fn reset(
    req: HttpRequest,
    state: web::Data<AppState>,
    viewer: Viewer,
    token: web::Path<String>,
    CsrfForm(form): CsrfForm<NewPasswordForm>,
) -> Answer {
    match state
        .accounts
        .reset_password(&token, &form.password, viewer.cookie.as_deref())
        .await
    {
        Ok((user, session)) => {
            info!(state.log, "password reset"; "user_id" => user.id);
            Ok(logged_in(&state, "/account?notice=password_reset", session))
        }
        Err(AccountsError::Password(problem)) => Ok(reset_page(&state, &token, vec![problem.to_string()])
            .status(StatusCode::UNPROCESSABLE_ENTITY)
            .render(&req, &state, &viewer)
            .await),
        Err(e) => Err(e.into()),
    }
}
