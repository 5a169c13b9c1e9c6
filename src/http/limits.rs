//! Rate limits, one call with the limit's name:
//! `limits::check(&state, &client, Limit::Login, Some(&email)).await?`.
//! Counted in PostgreSQL, so every node shares them; past a limit the
//! answer is 429 with `Retry-After`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use lectern_actors::accounts::rate_limit::{self, Rate, RetryAfter};
use lectern_actors::mail::EmailAddress;
use lectern_actors::store::StoreError;
use serde_json::json;
use slog::info;

use super::errors::ErrorPage;
use super::extract::ClientAddr;
use super::AppState;

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    SignUp,
    Login,
    LoginLink,
    Reset,
    ChangeEmail,
    ChangePassword,
    DeleteAccount,
    Search,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::SignUp => "signup",
            Limit::Login => "login",
            Limit::LoginLink => "magic",
            Limit::Reset => "reset",
            Limit::ChangeEmail => "change_email",
            Limit::ChangePassword => "change_password",
            Limit::DeleteAccount => "delete",
            Limit::Search => "search",
        }
    }

    fn per_client(self, state: &AppState) -> Rate {
        let accounts = &state.settings.accounts.rate_limit;
        match self {
            Limit::Search => Rate {
                limit: state.settings.content.searches_per_minute,
                window_secs: 60,
            },
            _ => Rate {
                limit: accounts.per_ip,
                window_secs: accounts.window_secs,
            },
        }
    }

    /// The limit per email address, for requests that mail it. Failed
    /// password logins are slowed per address by the accounts context
    /// instead (growing delays, which a stranger cannot turn into a lockout).
    fn per_address(self, state: &AppState) -> Option<Rate> {
        let accounts = &state.settings.accounts.rate_limit;
        matches!(self, Limit::SignUp | Limit::LoginLink | Limit::Reset).then_some(Rate {
            limit: accounts.per_email,
            window_secs: accounts.window_secs,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("rate limited: {limit}; retry in {} s", .retry.0)]
    TooMany { limit: &'static str, retry: RetryAfter },
    #[error("cannot count the attempt: {0}")]
    Unavailable(#[from] StoreError),
}

impl LimitError {
    pub fn page(&self) -> ErrorPage {
        match self {
            LimitError::TooMany { retry, .. } => too_many(*retry),
            LimitError::Unavailable(_) => ErrorPage::unavailable(),
        }
    }
}

/// The 429 page, saying how long to wait.
pub fn too_many(RetryAfter(secs): RetryAfter) -> ErrorPage {
    let wait = if secs < 60 {
        format!("{secs} {}", if secs == 1 { "second" } else { "seconds" })
    } else {
        let minutes = secs.div_ceil(60);
        format!("{minutes} {}", if minutes == 1 { "minute" } else { "minutes" })
    };
    ErrorPage::new(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        "pages/account/too_many",
    )
    .with(json!({ "wait": wait }))
    .retry_after(secs)
}

impl ResponseError for LimitError {
    fn status_code(&self) -> StatusCode {
        self.page().status()
    }

    fn error_response(&self) -> HttpResponse {
        self.page().response()
    }
}

/// Counts an attempt at `limit` against the client's address and, for
/// requests that mail it, against the email address.
pub async fn check(
    state: &AppState,
    client: &ClientAddr,
    limit: Limit,
    email: Option<&EmailAddress>,
) -> Result<(), LimitError> {
    let name = limit.name();
    let mut checks = vec![(format!("{name}:ip:{}", client.key), limit.per_client(state))];
    if let (Some(email), Some(rate)) = (email, limit.per_address(state)) {
        checks.push((format!("{name}:email:{email}"), rate));
    }
    for (key, rate) in checks {
        if let Err(retry) = rate_limit::hit(&state.pool, &key, rate).await? {
            info!(state.log, "rate limited"; "limit" => name, "key" => key, "retry_after" => retry.0);
            return Err(LimitError::TooMany { limit: name, retry });
        }
    }
    Ok(())
}
