//! Account routes: sign up, confirm, log in (password or emailed link), log
//! out, password reset, the account page (address, password, deletion) and
//! `/me`. Every page here is personal and never cached; every POST passes
//! the CSRF check; login, sign-up, reset and link requests are rate limited
//! per client address and per email address.

use actix_web::cookie::Cookie;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use lectern_actors::accounts::password::{self, PasswordProblem};
use lectern_actors::accounts::rate_limit::{self, RetryAfter};
use lectern_actors::accounts::{self, AccountsError, Confirmed, LinkProblem, Purpose, Session};
use lectern_actors::mail::EmailAddress;
use serde::Deserialize;
use serde_json::{json, Value};
use slog::{error, info, warn};

use super::errors::{render_private_page, unavailable_page, RETRY_AFTER_SECS};
use super::session::{self, client_ip, csrf_ok, current_session, form_token};
use super::{get_or_head, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/signup", get_or_head().to(signup_form))
        .route("/signup", web::post().to(signup))
        .route("/login", get_or_head().to(login_form))
        .route("/login", web::post().to(login))
        .route("/login/magic", get_or_head().to(login_link_form))
        .route("/login/magic", web::post().to(request_login_link))
        .route("/login/magic/{token}", get_or_head().to(login_link_landing))
        .route("/login/magic/{token}", web::post().to(use_login_link))
        .route("/confirm/{token}", get_or_head().to(confirm_landing))
        .route("/confirm/{token}", web::post().to(confirm))
        .route("/reset", get_or_head().to(reset_request_form))
        .route("/reset", web::post().to(request_reset))
        .route("/reset/{token}", get_or_head().to(reset_form))
        .route("/reset/{token}", web::post().to(reset))
        .route("/logout", get_or_head().to(logout_form))
        .route("/logout", web::post().to(logout))
        .route("/account", get_or_head().to(account))
        .route("/account/email", web::post().to(change_email))
        .route("/account/password", web::post().to(change_password))
        .route("/account/delete", web::post().to(delete_account))
        .route("/me", get_or_head().to(me));
}

/// What went wrong, as the visitor is told it.
enum Refusal {
    /// The form's token or origin did not match (403).
    Forged,
    TooMany(RetryAfter),
    Unavailable(AccountsError),
}

/// A personal page (never cached), with the form token and its cookie.
struct Page {
    status: StatusCode,
    title: &'static str,
    template: &'static str,
    data: Value,
}

impl Page {
    fn new(title: &'static str, template: &'static str, data: Value) -> Page {
        Page {
            status: StatusCode::OK,
            title,
            template,
            data,
        }
    }

    fn status(mut self, status: StatusCode) -> Page {
        self.status = status;
        self
    }

    async fn send(self, req: &HttpRequest, state: &AppState, session: Option<&Session>) -> HttpResponse {
        let (csrf_token, csrf_cookie) = form_token(req, state, session);
        let mut data = match self.data {
            Value::Object(map) => map,
            _ => Default::default(),
        };
        data.insert("csrf_token".into(), Value::String(csrf_token));
        // The templates are strict: what a form may show is always present.
        // (`{{#if}}` treats a missing key as false even in strict mode.)
        for key in ["email", "name", "next"] {
            data.entry(key).or_insert_with(|| json!(""));
        }
        data.insert(
            "user".into(),
            session.map_or(
                Value::Null,
                |s| json!({ "name": s.user.name, "email": s.user.email }),
            ),
        );
        let mut response = render_private_page(
            req,
            state,
            self.status,
            self.title,
            self.template,
            Value::Object(data),
        )
        .await;
        if let Some(cookie) = csrf_cookie {
            let _ = response.add_cookie(&cookie);
        }
        response
    }
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// A redirect that also sets (or removes) the session cookie.
fn see_other_with(location: &str, cookie: Cookie<'static>) -> HttpResponse {
    let mut response = see_other(location);
    let _ = response.add_cookie(&cookie);
    response
}

async fn refuse(req: &HttpRequest, state: &AppState, refusal: Refusal) -> HttpResponse {
    match refusal {
        Refusal::Forged => {
            warn!(state.log, "form refused: CSRF check failed"; "path" => req.path());
            Page::new(
                "Please try again",
                "pages/account/form_expired",
                json!({ "back": req.path() }),
            )
            .status(StatusCode::FORBIDDEN)
            .send(req, state, None)
            .await
        }
        Refusal::TooMany(RetryAfter(secs)) => {
            let minutes = secs.div_ceil(60);
            let mut response = Page::new(
                "Too many attempts",
                "pages/account/too_many",
                json!({ "minutes": minutes }),
            )
            .status(StatusCode::TOO_MANY_REQUESTS)
            .send(req, state, None)
            .await;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
            response
        }
        Refusal::Unavailable(e) => {
            error!(state.log, "account request failed"; "path" => req.path(), "error" => %e);
            unavailable_page(req, state).await
        }
    }
}

/// The response, or the page that says why there is none.
async fn answer(req: &HttpRequest, state: &AppState, outcome: Result<HttpResponse, Refusal>) -> HttpResponse {
    match outcome {
        Ok(response) => response,
        Err(refusal) => refuse(req, state, refusal).await,
    }
}

impl From<AccountsError> for Refusal {
    fn from(e: AccountsError) -> Self {
        Refusal::Unavailable(e)
    }
}

/// Counts an attempt of `action` against the client's address and, when
/// the form named one, the email address.
async fn limit(
    req: &HttpRequest,
    state: &AppState,
    action: &str,
    email: Option<&EmailAddress>,
) -> Result<(), Refusal> {
    let limits = &state.settings.accounts.rate_limit;
    let ip_key = format!("{action}:ip:{}", client_ip(req, state));
    let mut checks = vec![(ip_key, limits.per_ip)];
    if let Some(email) = email {
        checks.push((format!("{action}:email:{email}"), limits.per_email));
    }
    for (key, allowed) in checks {
        match rate_limit::hit(&state.pool, &key, limits.window_secs, allowed).await {
            Ok(Ok(())) => {}
            Ok(Err(retry)) => {
                info!(state.log, "rate limited"; "action" => action, "key" => key);
                return Err(Refusal::TooMany(retry));
            }
            Err(e) => return Err(Refusal::Unavailable(e.into())),
        }
    }
    Ok(())
}

/// The session, or the refusal to show when it cannot be read.
async fn session_of(req: &HttpRequest, state: &AppState) -> Result<Option<Session>, Refusal> {
    current_session(req, state).await.map_err(Refusal::Unavailable)
}

fn site_url(state: &AppState) -> &str {
    &state.settings.server.public_url
}

/// Hashes off the async workers: argon2id takes tens of milliseconds of CPU.
async fn hash_password(password: String) -> Result<String, Refusal> {
    web::block(move || password::hash(&password))
        .await
        .map_err(|e| Refusal::Unavailable(AccountsError::Hashing(e.to_string())))?
        .map_err(|e| Refusal::Unavailable(AccountsError::Hashing(e.to_string())))
}

async fn verify_password(password: String, stored: Option<String>) -> bool {
    web::block(move || match stored {
        Some(stored) => password::verify(&password, &stored),
        None => {
            password::verify_nothing(&password);
            false
        }
    })
    .await
    .unwrap_or(false)
}

fn check_new_password(state: &AppState, password: &str) -> Result<(), PasswordProblem> {
    let accounts = &state.settings.accounts;
    password::check_policy(password, accounts.min_password_chars, accounts.max_password_chars)
}

/// A local path to go to after logging in; anything else is ignored (no open redirects).
fn safe_next(next: &str) -> Option<&str> {
    (next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') && next.len() <= 512)
        .then_some(next)
}

fn password_limits(state: &AppState) -> Value {
    json!({
        "min": state.settings.accounts.min_password_chars,
        "max": state.settings.accounts.max_password_chars,
    })
}

// ---- Sign up -------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
struct SignupForm {
    name: String,
    email: String,
    password: String,
    csrf_token: String,
}

async fn signup_form(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let session = match session_of(&req, &state).await {
        Ok(session) => session,
        Err(refusal) => return refuse(&req, &state, refusal).await,
    };
    Page::new(
        "Sign up",
        "pages/account/signup",
        json!({ "password": password_limits(&state) }),
    )
    .send(&req, &state, session.as_ref())
    .await
}

async fn signup(req: HttpRequest, state: web::Data<AppState>, form: web::Form<SignupForm>) -> HttpResponse {
    answer(&req, &state, do_signup(&req, &state, form.into_inner()).await).await
}

async fn do_signup(req: &HttpRequest, state: &AppState, form: SignupForm) -> Result<HttpResponse, Refusal> {
    let session = session_of(req, state).await?;
    if !csrf_ok(req, state, session.as_ref(), &form.csrf_token) {
        return Err(Refusal::Forged);
    }
    let name = form.name.trim();
    let email = EmailAddress::parse(&form.email);
    let mut errors = Vec::new();
    if let Err(e) = &email {
        errors.push(e.to_string());
    }
    if name.chars().count() > 100 || name.chars().any(char::is_control) {
        errors.push("use at most 100 characters, on one line, for your name".to_owned());
    }
    if let Err(e) = check_new_password(state, &form.password) {
        errors.push(e.to_string());
    }
    let email = match email {
        Ok(email) if errors.is_empty() => email,
        _ => {
            return Ok(Page::new(
                "Sign up",
                "pages/account/signup",
                json!({ "errors": errors, "name": name, "email": form.email, "password": password_limits(state) }),
            )
            .status(StatusCode::UNPROCESSABLE_ENTITY)
            .send(req, state, session.as_ref())
            .await);
        }
    };
    limit(req, state, "signup", Some(&email)).await?;
    let hash = hash_password(form.password).await?;
    let registration = accounts::register(&state.pool, &email, name, &hash, site_url(state)).await?;
    if let accounts::Registration::Created(id) = registration {
        info!(state.log, "account created"; "user_id" => id);
    }
    Ok(check_email(req, state, session.as_ref(), &email, "sign_up").await)
}

/// The same answer whether or not the address has an account.
async fn check_email(
    req: &HttpRequest,
    state: &AppState,
    session: Option<&Session>,
    email: &EmailAddress,
    reason: &'static str,
) -> HttpResponse {
    Page::new(
        "Check your email",
        "pages/account/check_email",
        json!({ "email": email.as_str(), "reason": { reason: true } }),
    )
    .send(req, state, session)
    .await
}

// ---- Log in with a password ----------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginForm {
    email: String,
    password: String,
    next: String,
    csrf_token: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NextQuery {
    next: String,
}

async fn login_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<NextQuery>,
) -> HttpResponse {
    let session = match session_of(&req, &state).await {
        Ok(session) => session,
        Err(refusal) => return refuse(&req, &state, refusal).await,
    };
    let next = safe_next(&query.next).unwrap_or("");
    Page::new("Log in", "pages/account/login", json!({ "next": next }))
        .send(&req, &state, session.as_ref())
        .await
}

async fn login(req: HttpRequest, state: web::Data<AppState>, form: web::Form<LoginForm>) -> HttpResponse {
    answer(&req, &state, do_login(&req, &state, form.into_inner()).await).await
}

async fn do_login(req: &HttpRequest, state: &AppState, form: LoginForm) -> Result<HttpResponse, Refusal> {
    let session = session_of(req, state).await?;
    if !csrf_ok(req, state, session.as_ref(), &form.csrf_token) {
        return Err(Refusal::Forged);
    }
    let next = safe_next(&form.next).unwrap_or("/account").to_owned();
    let failed = |message: &str| {
        Page::new(
            "Log in",
            "pages/account/login",
            json!({ "errors": [message], "email": form.email, "next": form.next }),
        )
    };
    let Ok(email) = EmailAddress::parse(&form.email) else {
        return Ok(failed("enter the email address and password of your account")
            .status(StatusCode::UNPROCESSABLE_ENTITY)
            .send(req, state, session.as_ref())
            .await);
    };
    if form.password.len() > 4 * state.settings.accounts.max_password_chars {
        return Ok(failed("that email address and password do not match")
            .status(StatusCode::UNAUTHORIZED)
            .send(req, state, session.as_ref())
            .await);
    }
    limit(req, state, "login", Some(&email)).await?;
    let found = accounts::find_login(&state.pool, &email).await?;
    let (user, stored) = match found {
        Some((user, stored)) => (Some(user), stored),
        None => (None, None),
    };
    let matches = verify_password(form.password.clone(), stored).await;
    let user = match user {
        Some(user) if matches => user,
        _ => {
            return Ok(failed("that email address and password do not match")
                .status(StatusCode::UNAUTHORIZED)
                .send(req, state, session.as_ref())
                .await);
        }
    };
    if !user.confirmed {
        accounts::resend_confirmation(&state.pool, &user, site_url(state)).await?;
        return Ok(Page::new(
            "Confirm your email address",
            "pages/account/check_email",
            json!({ "email": user.email, "reason": { "unconfirmed": true } }),
        )
        .status(StatusCode::FORBIDDEN)
        .send(req, state, session.as_ref())
        .await);
    }
    let new_session = accounts::log_in(&state.pool, user.id, state.settings.accounts.session_days).await?;
    info!(state.log, "logged in"; "user_id" => user.id, "with" => "password");
    Ok(see_other_with(
        &next,
        session::session_cookie(state, new_session.token),
    ))
}

// ---- Log in with an emailed link -----------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
struct EmailForm {
    email: String,
    csrf_token: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TokenForm {
    csrf_token: String,
}

/// The links asked for with nothing but an address.
#[derive(Clone, Copy)]
enum LinkRequest {
    Login,
    Reset,
}

impl LinkRequest {
    fn form_page(self, data: Value) -> Page {
        match self {
            LinkRequest::Login => Page::new("Email me a login link", "pages/account/login_link", data),
            LinkRequest::Reset => Page::new("Reset your password", "pages/account/reset_request", data),
        }
    }

    /// The rate limit's action name.
    fn action(self) -> &'static str {
        match self {
            LinkRequest::Login => "magic",
            LinkRequest::Reset => "reset",
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

async fn link_request_form(req: &HttpRequest, state: &AppState, request: LinkRequest) -> HttpResponse {
    match session_of(req, state).await {
        Ok(session) => {
            request
                .form_page(json!({}))
                .send(req, state, session.as_ref())
                .await
        }
        Err(refusal) => refuse(req, state, refusal).await,
    }
}

async fn login_link_form(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    link_request_form(&req, &state, LinkRequest::Login).await
}

async fn request_login_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<EmailForm>,
) -> HttpResponse {
    let outcome = request_by_email(&req, &state, form.into_inner(), LinkRequest::Login).await;
    answer(&req, &state, outcome).await
}

/// The requests that take only an address (login link, password reset):
/// checked, limited, and answered alike whether or not it has an account.
async fn request_by_email(
    req: &HttpRequest,
    state: &AppState,
    form: EmailForm,
    request: LinkRequest,
) -> Result<HttpResponse, Refusal> {
    let session = session_of(req, state).await?;
    if !csrf_ok(req, state, session.as_ref(), &form.csrf_token) {
        return Err(Refusal::Forged);
    }
    let email = match EmailAddress::parse(&form.email) {
        Ok(email) => email,
        Err(e) => {
            return Ok(request
                .form_page(json!({ "errors": [e.to_string()], "email": form.email }))
                .status(StatusCode::UNPROCESSABLE_ENTITY)
                .send(req, state, session.as_ref())
                .await);
        }
    };
    limit(req, state, request.action(), Some(&email)).await?;
    match request {
        LinkRequest::Login => accounts::request_login_link(&state.pool, &email, site_url(state)).await?,
        LinkRequest::Reset => accounts::request_password_reset(&state.pool, &email, site_url(state)).await?,
    }
    Ok(check_email(req, state, session.as_ref(), &email, request.sent()).await)
}

/// An emailed link's landing page: it shows a button and uses nothing, so
/// that a mail scanner opening the link does not spend it.
async fn link_landing(
    req: &HttpRequest,
    state: &AppState,
    token: &str,
    purposes: &[Purpose],
    page: Page,
) -> HttpResponse {
    let session = match session_of(req, state).await {
        Ok(session) => session,
        Err(refusal) => return refuse(req, state, refusal).await,
    };
    match accounts::check_link(&state.pool, token, purposes).await {
        Ok(_) => page.send(req, state, session.as_ref()).await,
        Err(AccountsError::Link(problem)) => link_problem(req, state, session.as_ref(), problem).await,
        Err(e) => refuse(req, state, Refusal::Unavailable(e)).await,
    }
}

async fn link_problem(
    req: &HttpRequest,
    state: &AppState,
    session: Option<&Session>,
    problem: LinkProblem,
) -> HttpResponse {
    Page::new(
        "This link cannot be used",
        "pages/account/link_problem",
        json!({ "problem": problem.to_string() }),
    )
    .status(StatusCode::GONE)
    .send(req, state, session)
    .await
}

async fn login_link_landing(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> HttpResponse {
    let page = Page::new(
        "Log in",
        "pages/account/link_landing",
        json!({
            "heading": "Log in to Lectern",
            "explanation": "Press the button to log in on this device.",
            "action": format!("/login/magic/{token}"),
            "button": "Log in",
        }),
    );
    link_landing(&req, &state, &token, &[Purpose::Magic], page).await
}

async fn use_login_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
    form: web::Form<TokenForm>,
) -> HttpResponse {
    let session = match session_of(&req, &state).await {
        Ok(session) => session,
        Err(refusal) => return refuse(&req, &state, refusal).await,
    };
    if !csrf_ok(&req, &state, session.as_ref(), &form.csrf_token) {
        return refuse(&req, &state, Refusal::Forged).await;
    }
    match accounts::use_login_link(&state.pool, &token, state.settings.accounts.session_days).await {
        Ok((user, new_session)) => {
            info!(state.log, "logged in"; "user_id" => user.id, "with" => "emailed link");
            see_other_with("/account", session::session_cookie(&state, new_session.token))
        }
        Err(AccountsError::Link(problem)) => link_problem(&req, &state, session.as_ref(), problem).await,
        Err(e) => refuse(&req, &state, Refusal::Unavailable(e)).await,
    }
}

// ---- Confirm an address ----------------------------------------------------

async fn confirm_landing(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> HttpResponse {
    let page = Page::new(
        "Confirm your email address",
        "pages/account/link_landing",
        json!({
            "heading": "Confirm your email address",
            "explanation": "Press the button to confirm this address and log in.",
            "action": format!("/confirm/{token}"),
            "button": "Confirm my address",
        }),
    );
    link_landing(
        &req,
        &state,
        &token,
        &[Purpose::Confirm, Purpose::ChangeEmail],
        page,
    )
    .await
}

async fn confirm(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
    form: web::Form<TokenForm>,
) -> HttpResponse {
    let session = match session_of(&req, &state).await {
        Ok(session) => session,
        Err(refusal) => return refuse(&req, &state, refusal).await,
    };
    if !csrf_ok(&req, &state, session.as_ref(), &form.csrf_token) {
        return refuse(&req, &state, Refusal::Forged).await;
    }
    let days = state.settings.accounts.session_days;
    match accounts::confirm_email(&state.pool, &token, days, site_url(&state)).await {
        Ok((confirmed, new_session)) => {
            let notice = match confirmed {
                Confirmed::Address => "confirmed",
                Confirmed::NewAddress(_) => "email_changed",
            };
            see_other_with(
                &format!("/account?notice={notice}"),
                session::session_cookie(&state, new_session.token),
            )
        }
        Err(AccountsError::Link(problem)) => link_problem(&req, &state, session.as_ref(), problem).await,
        Err(AccountsError::EmailTaken) => {
            Page::new(
                "This link cannot be used",
                "pages/account/link_problem",
                json!({ "problem": "that address now belongs to another account" }),
            )
            .status(StatusCode::CONFLICT)
            .send(&req, &state, session.as_ref())
            .await
        }
        Err(e) => refuse(&req, &state, Refusal::Unavailable(e)).await,
    }
}

// ---- Reset a forgotten password ------------------------------------------

async fn reset_request_form(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    link_request_form(&req, &state, LinkRequest::Reset).await
}

async fn request_reset(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<EmailForm>,
) -> HttpResponse {
    let outcome = request_by_email(&req, &state, form.into_inner(), LinkRequest::Reset).await;
    answer(&req, &state, outcome).await
}

fn reset_page(state: &AppState, token: &str, errors: Vec<String>) -> Page {
    Page::new(
        "Choose a new password",
        "pages/account/reset_form",
        json!({ "action": format!("/reset/{token}"), "errors": errors, "password": password_limits(state) }),
    )
}

async fn reset_form(req: HttpRequest, state: web::Data<AppState>, token: web::Path<String>) -> HttpResponse {
    let page = reset_page(&state, &token, Vec::new());
    link_landing(&req, &state, &token, &[Purpose::Reset], page).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NewPasswordForm {
    password: String,
    csrf_token: String,
}

async fn reset(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
    form: web::Form<NewPasswordForm>,
) -> HttpResponse {
    answer(
        &req,
        &state,
        do_reset(&req, &state, &token, form.into_inner()).await,
    )
    .await
}

async fn do_reset(
    req: &HttpRequest,
    state: &AppState,
    token: &str,
    form: NewPasswordForm,
) -> Result<HttpResponse, Refusal> {
    let session = session_of(req, state).await?;
    if !csrf_ok(req, state, session.as_ref(), &form.csrf_token) {
        return Err(Refusal::Forged);
    }
    if let Err(problem) = check_new_password(state, &form.password) {
        return Ok(reset_page(state, token, vec![problem.to_string()])
            .status(StatusCode::UNPROCESSABLE_ENTITY)
            .send(req, state, session.as_ref())
            .await);
    }
    let hash = hash_password(form.password).await?;
    match accounts::reset_password(&state.pool, token, &hash, state.settings.accounts.session_days).await {
        Ok((user, new_session)) => {
            info!(state.log, "password reset"; "user_id" => user.id);
            Ok(see_other_with(
                "/account?notice=password_reset",
                session::session_cookie(state, new_session.token),
            ))
        }
        Err(AccountsError::Link(problem)) => Ok(link_problem(req, state, session.as_ref(), problem).await),
        Err(e) => Err(Refusal::Unavailable(e)),
    }
}

// ---- Log out ---------------------------------------------------------------

async fn logout_form(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let session = match session_of(&req, &state).await {
        Ok(Some(session)) => session,
        Ok(None) => return see_other("/"),
        Err(refusal) => return refuse(&req, &state, refusal).await,
    };
    Page::new("Log out", "pages/account/logout", json!({}))
        .send(&req, &state, Some(&session))
        .await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LogoutForm {
    /// "1": end every session of the user, on every device.
    everywhere: String,
    csrf_token: String,
}

async fn logout(req: HttpRequest, state: web::Data<AppState>, form: web::Form<LogoutForm>) -> HttpResponse {
    let session = match session_of(&req, &state).await {
        Ok(session) => session,
        Err(refusal) => return refuse(&req, &state, refusal).await,
    };
    let Some(session) = session else {
        return see_other_with("/", session::removed_session_cookie(&state));
    };
    if !csrf_ok(&req, &state, Some(&session), &form.csrf_token) {
        return refuse(&req, &state, Refusal::Forged).await;
    }
    let everywhere = form.everywhere == "1";
    let ended = match req.cookie(session::SESSION_COOKIE) {
        _ if everywhere => accounts::end_all_sessions(&state.pool, session.user.id).await,
        Some(cookie) => accounts::end_session(&state.pool, cookie.value()).await,
        None => Ok(()),
    };
    if let Err(e) = ended {
        return refuse(&req, &state, Refusal::Unavailable(e)).await;
    }
    info!(state.log, "logged out"; "user_id" => session.user.id, "everywhere" => everywhere);
    see_other_with("/", session::removed_session_cookie(&state))
}

// ---- The account page --------------------------------------------------------

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

async fn account(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<NoticeQuery>,
) -> HttpResponse {
    let session = match session_of(&req, &state).await {
        Ok(Some(session)) => session,
        Ok(None) => return see_other("/login?next=/account"),
        Err(refusal) => return refuse(&req, &state, refusal).await,
    };
    let notice = NOTICES
        .iter()
        .find(|(key, _)| *key == query.notice)
        .map(|(_, text)| *text);
    account_page(&session, &state, notice, Vec::new())
        .send(&req, &state, Some(&session))
        .await
}

fn account_page(session: &Session, state: &AppState, notice: Option<&str>, errors: Vec<String>) -> Page {
    Page::new(
        "Your account",
        "pages/account/account",
        json!({
            "account": session.user,
            "notice": notice,
            "errors": errors,
            "password": password_limits(state),
        }),
    )
}

/// The account page again, saying what was wrong with the form sent from it.
async fn account_problem(
    req: &HttpRequest,
    state: &AppState,
    session: &Session,
    problem: Option<String>,
) -> HttpResponse {
    account_page(session, state, None, problem.into_iter().collect())
        .status(StatusCode::UNPROCESSABLE_ENTITY)
        .send(req, state, Some(session))
        .await
}

/// The logged-in session of a POST to the account page, CSRF checked.
async fn account_session(
    req: &HttpRequest,
    state: &AppState,
    submitted: &str,
) -> Result<Option<Session>, Refusal> {
    let Some(session) = session_of(req, state).await? else {
        return Ok(None);
    };
    if !csrf_ok(req, state, Some(&session), submitted) {
        return Err(Refusal::Forged);
    }
    Ok(Some(session))
}

/// Checks the current password when the account has one.
async fn current_password_ok(state: &AppState, session: &Session, password: &str) -> Result<bool, Refusal> {
    if !session.user.has_password {
        return Ok(true);
    }
    let stored = accounts::password_hash(&state.pool, session.user.id).await?;
    Ok(verify_password(password.to_owned(), stored).await)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChangeEmailForm {
    new_email: String,
    current_password: String,
    csrf_token: String,
}

async fn change_email(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<ChangeEmailForm>,
) -> HttpResponse {
    answer(
        &req,
        &state,
        do_change_email(&req, &state, form.into_inner()).await,
    )
    .await
}

async fn do_change_email(
    req: &HttpRequest,
    state: &AppState,
    form: ChangeEmailForm,
) -> Result<HttpResponse, Refusal> {
    let Some(session) = account_session(req, state, &form.csrf_token).await? else {
        return Ok(see_other("/login?next=/account"));
    };
    let problem = match EmailAddress::parse(&form.new_email) {
        Err(e) => Some(e.to_string()),
        Ok(new_email) if new_email.as_str() == session.user.email => {
            Some("that is already your address".to_owned())
        }
        Ok(new_email) => {
            limit(req, state, "change_email", None).await?;
            if current_password_ok(state, &session, &form.current_password).await? {
                accounts::request_email_change(&state.pool, &session.user, &new_email, site_url(state))
                    .await?;
                return Ok(see_other("/account?notice=email_change_sent"));
            }
            Some("your current password is not right".to_owned())
        }
    };
    Ok(account_problem(req, state, &session, problem).await)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChangePasswordForm {
    current_password: String,
    new_password: String,
    csrf_token: String,
}

async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<ChangePasswordForm>,
) -> HttpResponse {
    answer(
        &req,
        &state,
        do_change_password(&req, &state, form.into_inner()).await,
    )
    .await
}

async fn do_change_password(
    req: &HttpRequest,
    state: &AppState,
    form: ChangePasswordForm,
) -> Result<HttpResponse, Refusal> {
    let Some(session) = account_session(req, state, &form.csrf_token).await? else {
        return Ok(see_other("/login?next=/account"));
    };
    let problem = if let Err(problem) = check_new_password(state, &form.new_password) {
        Some(problem.to_string())
    } else {
        limit(req, state, "change_password", None).await?;
        if current_password_ok(state, &session, &form.current_password).await? {
            let hash = hash_password(form.new_password).await?;
            let current = req
                .cookie(session::SESSION_COOKIE)
                .map(|c| c.value().to_owned())
                .unwrap_or_default();
            accounts::change_password(&state.pool, session.user.id, &hash, &current).await?;
            info!(state.log, "password changed"; "user_id" => session.user.id);
            return Ok(see_other("/account?notice=password_changed"));
        }
        Some("your current password is not right".to_owned())
    };
    Ok(account_problem(req, state, &session, problem).await)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeleteForm {
    current_password: String,
    confirm_email: String,
    csrf_token: String,
}

async fn delete_account(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<DeleteForm>,
) -> HttpResponse {
    answer(
        &req,
        &state,
        do_delete_account(&req, &state, form.into_inner()).await,
    )
    .await
}

async fn do_delete_account(
    req: &HttpRequest,
    state: &AppState,
    form: DeleteForm,
) -> Result<HttpResponse, Refusal> {
    let Some(session) = account_session(req, state, &form.csrf_token).await? else {
        return Ok(see_other("/login?next=/account"));
    };
    let typed = EmailAddress::parse(&form.confirm_email).ok();
    let problem = if typed.as_ref().map(EmailAddress::as_str) != Some(session.user.email.as_str()) {
        Some("type your email address to confirm that the account should be deleted".to_owned())
    } else {
        limit(req, state, "delete", None).await?;
        if current_password_ok(state, &session, &form.current_password).await? {
            accounts::delete_user(&state.pool, session.user.id).await?;
            info!(state.log, "account deleted"; "user_id" => session.user.id);
            let mut response = Page::new("Account deleted", "pages/account/deleted", json!({}))
                .send(req, state, None)
                .await;
            let _ = response.add_cookie(&session::removed_session_cookie(state));
            return Ok(response);
        }
        Some("your current password is not right".to_owned())
    };
    Ok(account_problem(req, state, &session, problem).await)
}

// ---- /me -------------------------------------------------------------------

/// The personal bits that cached pages fill in with a few lines of script.
async fn me(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let body = match current_session(&req, &state).await {
        Ok(Some(session)) => json!({
            "user": {
                "name": session.user.name,
                "email": session.user.email,
                "role": session.user.role,
                "subscriber": false,
            }
        }),
        Ok(None) => json!({ "user": null }),
        Err(e) => {
            error!(state.log, "/me failed"; "error" => %e);
            return HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(json!({ "error": "briefly unavailable" }));
        }
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .json(body)
}
