//! Account routes, one module per flow: sign-up and confirmation
//! ([`signup`]), logins by password and by emailed link ([`login`]),
//! password resets ([`reset`]), and the account page with `/me`
//! ([`account`]). Every page here is personal and never cached. Handlers
//! take their checks as extractors (`Viewer`, `Member`, `CsrfForm`), count
//! attempts with `limits::check`, call the accounts context, and return
//! `Result<_, AccountError>`; this module maps each error to its page.

mod account;
mod login;
mod reset;
mod signup;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use lectern_actors::accounts::{AccountsError, LinkProblem, Links, NewSession, Purpose, RetryAfter};
use lectern_actors::mail::EmailAddress;
use serde::Deserialize;
use serde_json::{json, Value};

use super::errors::ErrorPage;
use super::extract::{see_other, session_cookie, ClientAddr, CsrfForm, Viewer};
use super::layout::PrivatePage;
use super::limits::{self, Limit, LimitError};
use super::{get_or_head, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    signup::routes(cfg);
    login::routes(cfg);
    reset::routes(cfg);
    account::routes(cfg);
}

/// The URLs of emailed links, for the accounts context.
pub struct SiteLinks {
    pub public_url: String,
}

impl Links for SiteLinks {
    fn url(&self, purpose: Purpose, token: &str) -> String {
        let path = match purpose {
            Purpose::Confirm | Purpose::ChangeEmail => "/confirm",
            Purpose::Magic => "/login/magic",
            Purpose::Reset => "/reset",
        };
        format!("{}{path}/{token}", self.public_url)
    }
}

/// What can go wrong in an account request, as the visitor is told it.
/// Mistakes in a form (a wrong password, a short one) are not errors: the
/// form is shown again with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Limited(#[from] LimitError),
    #[error("link refused: {0}")]
    Link(LinkProblem),
    #[error("that address now belongs to another account")]
    EmailTaken,
    #[error("too many failed logins for this address; retry in {} s", .0 .0)]
    Throttled(RetryAfter),
    #[error("password checks are queued too long")]
    Busy,
    #[error("the account is disabled")]
    Disabled,
    #[error("account request failed: {0}")]
    Failed(AccountsError),
}

impl From<AccountsError> for AccountError {
    fn from(e: AccountsError) -> AccountError {
        match e {
            AccountsError::Link(problem) => AccountError::Link(problem),
            AccountsError::EmailTaken => AccountError::EmailTaken,
            AccountsError::Throttled(retry) => AccountError::Throttled(retry),
            AccountsError::Busy => AccountError::Busy,
            AccountsError::Disabled => AccountError::Disabled,
            other => AccountError::Failed(other),
        }
    }
}

impl AccountError {
    fn page(&self) -> ErrorPage {
        let link_problem = |status, problem: String| {
            ErrorPage::new(status, "This link cannot be used", "pages/account/link_problem")
                .with(json!({ "problem": problem }))
        };
        match self {
            AccountError::Limited(limited) => limited.page(),
            AccountError::Link(problem) => link_problem(StatusCode::GONE, problem.to_string()),
            AccountError::EmailTaken => link_problem(
                StatusCode::CONFLICT,
                "that address now belongs to another account".into(),
            ),
            AccountError::Throttled(retry) => limits::too_many(*retry),
            AccountError::Busy => ErrorPage::unavailable(),
            AccountError::Disabled => ErrorPage::new(
                StatusCode::FORBIDDEN,
                "This account is disabled",
                "pages/account/disabled",
            ),
            AccountError::Failed(AccountsError::Store(_) | AccountsError::Mail(_)) => {
                ErrorPage::unavailable()
            }
            AccountError::Failed(_) => ErrorPage::server_error(),
        }
    }
}

impl ResponseError for AccountError {
    fn status_code(&self) -> StatusCode {
        self.page().status()
    }

    fn error_response(&self) -> HttpResponse {
        self.page().response()
    }
}

type Answer = Result<HttpResponse, AccountError>;

fn password_limits(state: &AppState) -> Value {
    let policy = state.accounts.password_policy();
    json!({ "min": policy.min_chars, "max": policy.max_chars })
}

/// Where to go after logging in: a path on this site, or nothing. Only a
/// path that resolves against `public_url` to the same origin, with no
/// control characters (a tab or newline would be dropped by browsers, or
/// break the header), is accepted.
fn safe_next(public_url: &str, next: &str) -> Option<String> {
    let plausible = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 512
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    if !plausible {
        return None;
    }
    let base = url::Url::parse(public_url).ok()?;
    let target = base.join(next).ok()?;
    (target.origin() == base.origin()).then(|| target[url::Position::BeforePath..].to_owned())
}

/// Logged in: the session cookie, and on to `location`.
fn logged_in(state: &AppState, location: &str, session: NewSession) -> HttpResponse {
    let mut response = see_other(location);
    let _ = response.add_cookie(&session_cookie(state, session.token));
    response
}

/// The same answer whether or not the address has an account.
async fn check_email(
    req: &HttpRequest,
    state: &AppState,
    viewer: &Viewer,
    email: &str,
    reason: &'static str,
    status: StatusCode,
) -> HttpResponse {
    PrivatePage::new(
        "Check your email",
        "pages/account/check_email",
        json!({ "email": email, "reason": { reason: true } }),
    )
    .status(status)
    .render(req, state, viewer)
    .await
}

/// A form with nothing in it but its token (a link's button).
#[derive(Deserialize, Default)]
struct ButtonForm {}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EmailForm {
    email: String,
}

/// The links asked for with nothing but an address.
#[derive(Clone, Copy)]
enum LinkRequest {
    Login,
    Reset,
}

impl LinkRequest {
    fn form_page(self, email: &str, errors: Vec<String>) -> PrivatePage {
        let data = json!({ "email": email, "errors": errors });
        match self {
            LinkRequest::Login => PrivatePage::new("Email me a login link", "pages/account/login_link", data),
            LinkRequest::Reset => {
                PrivatePage::new("Reset your password", "pages/account/reset_request", data)
            }
        }
    }

    fn limit(self) -> Limit {
        match self {
            LinkRequest::Login => Limit::LoginLink,
            LinkRequest::Reset => Limit::Reset,
        }
    }

    /// Which wording of the "check your email" page.
    fn sent(self) -> &'static str {
        match self {
            LinkRequest::Login => "login_link",
            LinkRequest::Reset => "reset",
        }
    }
}

/// A login-link or reset request: checked, limited, and answered alike
/// whether or not the address has an account.
async fn request_link(
    req: &HttpRequest,
    state: &AppState,
    viewer: &Viewer,
    client: &ClientAddr,
    CsrfForm(form): CsrfForm<EmailForm>,
    request: LinkRequest,
) -> Answer {
    let email = match EmailAddress::parse(&form.email) {
        Ok(email) => email,
        Err(e) => {
            return Ok(request
                .form_page(&form.email, vec![e.to_string()])
                .status(StatusCode::UNPROCESSABLE_ENTITY)
                .render(req, state, viewer)
                .await);
        }
    };
    limits::check(state, client, request.limit(), Some(&email)).await?;
    match request {
        LinkRequest::Login => state.accounts.request_login_link(&email).await?,
        LinkRequest::Reset => state.accounts.request_password_reset(&email).await?,
    }
    Ok(check_email(req, state, viewer, email.as_str(), request.sent(), StatusCode::OK).await)
}

/// The form at `path` that asks for a link by email, and its POST.
fn link_request_routes(cfg: &mut web::ServiceConfig, path: &str, request: LinkRequest) {
    cfg.route(
        path,
        get_or_head().to(
            move |req: HttpRequest, state: web::Data<AppState>, viewer: Viewer| async move {
                request
                    .form_page("", Vec::new())
                    .render(&req, &state, &viewer)
                    .await
            },
        ),
    )
    .route(
        path,
        web::post().to(
            move |req: HttpRequest,
                  state: web::Data<AppState>,
                  viewer: Viewer,
                  client: ClientAddr,
                  form: CsrfForm<EmailForm>| async move {
                request_link(&req, &state, &viewer, &client, form, request).await
            },
        ),
    );
}

/// The landing page of an emailed link that acts when its button is pressed.
fn landing_page(title: &'static str, explanation: &str, action: String, button: &str) -> PrivatePage {
    PrivatePage::new(
        title,
        "pages/account/link_landing",
        json!({ "heading": title, "explanation": explanation, "action": action, "button": button }),
    )
}

/// An emailed link's landing page: a button, and nothing spent, so that a
/// mail scanner opening the link does not use it up.
async fn link_landing(
    req: &HttpRequest,
    state: &AppState,
    viewer: &Viewer,
    token: &str,
    purposes: &[Purpose],
    page: PrivatePage,
) -> Answer {
    state.accounts.check_link(token, purposes).await?;
    Ok(page.render(req, state, viewer).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_a_path_on_this_site_or_nothing() {
        let site = "https://lectern.example";
        let next = |raw: &str| safe_next(site, raw);
        assert_eq!(next("/account").as_deref(), Some("/account"));
        assert_eq!(next("/episodes?page=2").as_deref(), Some("/episodes?page=2"));
        assert_eq!(next("/a/../account").as_deref(), Some("/account"));
        for hostile in [
            "",
            "account",
            "//evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\nSet-Cookie: x=1",
            "/\\evil.example",
            "https://evil.example/",
            "/%2F%2Fevil.example",
            &format!("/{}", "a".repeat(600)),
        ] {
            let got = next(hostile);
            assert!(
                got.as_deref()
                    .is_none_or(|path| path.starts_with('/') && !path.starts_with("//")),
                "{hostile:?} gave {got:?}"
            );
        }
        assert_eq!(next("/\t/evil.example"), None);
        assert_eq!(next("/\r\nSet-Cookie: x=1"), None);
    }

    #[test]
    fn links_point_at_their_routes_on_the_public_url() {
        let links = SiteLinks {
            public_url: "https://lectern.example".into(),
        };
        assert_eq!(
            links.url(Purpose::Magic, "t"),
            "https://lectern.example/login/magic/t"
        );
        assert_eq!(
            links.url(Purpose::Confirm, "t"),
            "https://lectern.example/confirm/t"
        );
        assert_eq!(
            links.url(Purpose::ChangeEmail, "t"),
            "https://lectern.example/confirm/t"
        );
        assert_eq!(links.url(Purpose::Reset, "t"), "https://lectern.example/reset/t");
    }
}
