//! Extractors: who is asking ([`Viewer`], [`Member`], [`Admin`]), a form
//! that passed the CSRF check ([`CsrfForm`]) and the client's address
//! ([`ClientAddr`]). A handler that takes `Member` does not run for a
//! visitor, and one that takes `CsrfForm<T>` does not run for a forged
//! form: a new handler cannot forget the checks. The session is read from
//! PostgreSQL once per request, however many extractors ask for it.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use lectern_actors::accounts::{constant_time_eq, is_token_shaped, AccountsError, Role, Session, User};
use lectern_actors::billing::BillingError;
use lectern_actors::cache::ViewerClass;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use super::errors::ErrorPage;
use super::AppState;

pub const SESSION_COOKIE: &str = "lectern_session";
/// The token of forms shown to visitors who are not logged in (double submit).
pub const CSRF_COOKIE: &str = "lectern_csrf";

type Extracting<T> = Pin<Box<dyn Future<Output = Result<T, AccessError>>>>;

/// Why a request cannot reach its handler.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cannot read the session: {0}")]
    Unavailable(#[from] AccountsError),
    #[error("cannot read the viewer's access: {0}")]
    Access(#[from] BillingError),
    #[error("this page needs a login")]
    LoginRequired { next: String },
    #[error("this page is for administrators")]
    AdminsOnly,
    #[error("CSRF check failed: {0}")]
    Forged(&'static str),
    #[error("the form cannot be read: {0}")]
    BadForm(String),
    #[error("not a form: expected application/x-www-form-urlencoded")]
    NotAForm,
    #[error("for this machine, or for a client with the metrics token")]
    OperatorsOnly,
}

impl ResponseError for AccessError {
    fn status_code(&self) -> StatusCode {
        match self {
            AccessError::Unavailable(_) | AccessError::Access(_) => StatusCode::SERVICE_UNAVAILABLE,
            AccessError::LoginRequired { .. } => StatusCode::SEE_OTHER,
            AccessError::AdminsOnly | AccessError::Forged(_) | AccessError::OperatorsOnly => {
                StatusCode::FORBIDDEN
            }
            AccessError::BadForm(_) => StatusCode::BAD_REQUEST,
            AccessError::NotAForm => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            AccessError::Unavailable(_) | AccessError::Access(_) => ErrorPage::unavailable().response(),
            AccessError::LoginRequired { next } => {
                // `next` is a path and query from the request line: only what
                // would end or split a query value needs escaping.
                let next = next
                    .replace('%', "%25")
                    .replace('&', "%26")
                    .replace('+', "%2B")
                    .replace('#', "%23");
                see_other(&format!("/login?next={next}"))
            }
            AccessError::AdminsOnly => {
                ErrorPage::new(StatusCode::FORBIDDEN, "Administrators only", "pages/forbidden").response()
            }
            AccessError::Forged(_) => ErrorPage::new(
                StatusCode::FORBIDDEN,
                "Please try again",
                "pages/account/form_expired",
            )
            .response(),
            AccessError::BadForm(_) | AccessError::NotAForm => plain_text(
                self.status_code(),
                format!("The form could not be read: {self}.\n"),
            ),
            // Asked for by monitoring tools, not people: plain text.
            AccessError::OperatorsOnly => plain_text(self.status_code(), format!("This is {self}.\n")),
        }
    }
}

fn plain_text(status: StatusCode, text: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(text)
}

/// A redirect that is never cached.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .finish()
}

/// The logged-in user of this request, for the access log.
#[derive(Debug, Clone, Copy)]
pub struct UserId(pub i64);

/// The one lookup of this request's session, shared by its extractors.
#[derive(Clone, Default)]
struct SessionLookup(Rc<OnceCell<Option<Session>>>);

fn state_of(req: &HttpRequest) -> web::Data<AppState> {
    // Every app is built with its state (see `startup`); a request without
    // it cannot happen.
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .expect("the application state is registered")
}

/// Whoever is asking: the open session their cookie names, if any.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub session: Option<Session>,
    /// The session cookie's value, whether or not it names an open session.
    pub cookie: Option<String>,
}

impl Viewer {
    async fn of(req: &HttpRequest) -> Result<Viewer, AccessError> {
        let state = state_of(req);
        let cookie = req
            .cookie(SESSION_COOKIE)
            .map(|c| c.value().to_owned())
            .filter(|value| !value.is_empty());
        let lookup = {
            let mut extensions = req.extensions_mut();
            match extensions.get::<SessionLookup>() {
                Some(lookup) => lookup.clone(),
                None => {
                    let lookup = SessionLookup::default();
                    extensions.insert(lookup.clone());
                    lookup
                }
            }
        };
        let session = lookup
            .0
            .get_or_try_init(|| async {
                match &cookie {
                    Some(token) => state.accounts.find_session(token).await,
                    None => Ok(None),
                }
            })
            .await?
            .clone();
        if let Some(session) = &session {
            req.extensions_mut().insert(UserId(session.user.id));
        }
        Ok(Viewer { session, cookie })
    }

    pub fn user(&self) -> Option<&User> {
        self.session.as_ref().map(|s| &s.user)
    }

    /// The class of pages this viewer sees: anonymous without a session,
    /// subscriber with premium access (asked of PostgreSQL on each request,
    /// so that a payment or a cancellation shows on the next one).
    pub async fn class(&self, state: &AppState) -> Result<ViewerClass, AccessError> {
        let Some(session) = &self.session else {
            return Ok(ViewerClass::Anonymous);
        };
        Ok(if state.billing.has_premium_access(session.user.id).await? {
            ViewerClass::Subscriber
        } else {
            ViewerClass::Member
        })
    }
}

impl FromRequest for Viewer {
    type Error = AccessError;
    type Future = Extracting<Viewer>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Viewer::of(&req).await })
    }
}

impl From<Member> for Viewer {
    fn from(member: Member) -> Viewer {
        Viewer {
            session: Some(member.session),
            cookie: Some(member.cookie),
        }
    }
}

/// A logged-in member; anyone else is sent to the login form, to come back here.
#[derive(Debug, Clone)]
pub struct Member {
    pub session: Session,
    /// The session cookie's value.
    pub cookie: String,
}

impl Member {
    pub fn user(&self) -> &User {
        &self.session.user
    }

    async fn of(req: &HttpRequest) -> Result<Member, AccessError> {
        let viewer = Viewer::of(req).await?;
        match (viewer.session, viewer.cookie) {
            (Some(session), Some(cookie)) => Ok(Member { session, cookie }),
            _ => {
                // Back to the page after logging in; a form's target is not a page.
                let next = if req.method() == actix_web::http::Method::GET {
                    req.uri()
                        .path_and_query()
                        .map_or("/account", |p| p.as_str())
                        .to_owned()
                } else {
                    "/account".to_owned()
                };
                Err(AccessError::LoginRequired { next })
            }
        }
    }
}

impl FromRequest for Member {
    type Error = AccessError;
    type Future = Extracting<Member>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Member::of(&req).await })
    }
}

/// A logged-in administrator; a member gets 403, a visitor the login form.
#[derive(Debug, Clone)]
pub struct Admin(pub Member);

impl FromRequest for Admin {
    type Error = AccessError;
    type Future = Extracting<Admin>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let member = Member::of(&req).await?;
            if member.user().role == Role::Admin {
                Ok(Admin(member))
            } else {
                Err(AccessError::AdminsOnly)
            }
        })
    }
}

/// A URL-encoded form that passed the CSRF check: it comes from a page of
/// this site (its `Origin`, or `Referer`, is `server.public_url`) and
/// carries the form token of the visitor's session, or of their CSRF
/// cookie when nobody is logged in. A request with neither `Origin` nor
/// `Referer` is not a browser being tricked into posting; the token decides.
#[derive(Debug)]
pub struct CsrfForm<T>(pub T);

impl<T> CsrfForm<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for CsrfForm<T> {
    type Error = AccessError;
    type Future = Extracting<CsrfForm<T>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        // The body limit is the server's (`server.max_body_bytes`).
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let is_form = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            if !is_form {
                return Err(AccessError::NotAForm);
            }
            let body = body.await.map_err(|e| AccessError::BadForm(e.to_string()))?;
            let viewer = Viewer::of(&req).await?;
            let state = state_of(&req);
            check_origin(&req, &state.public_url)?;
            let submitted = form_urlencoded::parse(&body)
                .find(|(key, _)| key == "csrf_token")
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default();
            let expected = match &viewer.session {
                Some(session) => Some(session.csrf_token.clone()),
                None => req.cookie(CSRF_COOKIE).map(|c| c.value().to_owned()),
            };
            match expected {
                Some(expected)
                    if !expected.is_empty()
                        && constant_time_eq(expected.as_bytes(), submitted.as_bytes()) => {}
                Some(_) => return Err(AccessError::Forged("the form token does not match")),
                None => return Err(AccessError::Forged("no form token cookie")),
            }
            serde_urlencoded::from_bytes(&body)
                .map(CsrfForm)
                .map_err(|e| AccessError::BadForm(e.to_string()))
        })
    }
}

/// The request's `Origin` (or `Referer`, when there is no `Origin`) must be
/// the site's public URL: headers a proxy or client can rewrite, such as
/// `Host`, `X-Forwarded-Host` or `Forwarded`, play no part.
fn check_origin(req: &HttpRequest, public_url: &str) -> Result<(), AccessError> {
    let claimed = match req.headers().get(header::ORIGIN) {
        Some(origin) => origin.to_str().unwrap_or("null").to_owned(),
        None => match req.headers().get(header::REFERER).and_then(|r| r.to_str().ok()) {
            Some(referer) => origin_of(referer).to_owned(),
            None => return Ok(()),
        },
    };
    if claimed.eq_ignore_ascii_case(public_url) {
        Ok(())
    } else {
        Err(AccessError::Forged("the form was sent from another origin"))
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> &str {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest
                .find(['/', '?', '#'])
                .map_or(url.len(), |i| scheme.len() + 3 + i);
            &url[..end]
        }
        None => url,
    }
}

/// The token a form must carry, and the cookie to set when a visitor who
/// is not logged in has none yet.
pub fn form_token(
    req: &HttpRequest,
    state: &AppState,
    session: Option<&Session>,
) -> (String, Option<Cookie<'static>>) {
    if let Some(session) = session {
        return (session.csrf_token.clone(), None);
    }
    if let Some(cookie) = req.cookie(CSRF_COOKIE).filter(|c| is_token_shaped(c.value())) {
        return (cookie.value().to_owned(), None);
    }
    let token = lectern_actors::accounts::tokens::new_form_token();
    let cookie = Cookie::build(CSRF_COOKIE, token.clone())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.settings.accounts.secure_cookies)
        .finish();
    (token, Some(cookie))
}

/// The session cookie for a new login: HttpOnly, SameSite=Lax, Secure when configured.
pub fn session_cookie(state: &AppState, token: String) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, token)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.settings.accounts.secure_cookies)
        .max_age(actix_web::cookie::time::Duration::days(i64::from(
            state.settings.accounts.session_days,
        )))
        .finish()
}

/// A cookie that removes the session cookie.
pub fn removed_session_cookie(state: &AppState) -> Cookie<'static> {
    let mut cookie = session_cookie(state, String::new());
    cookie.make_removal();
    cookie
}

/// The client's address, as rate limits count it: from the trusted proxy's
/// header when one is configured, else the peer's. An IPv6 address stands
/// for its /64, which one subscriber usually has whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr {
    /// The address, or the /64 of an IPv6 one, as text.
    pub key: String,
    pub ip: Option<IpAddr>,
}

/// Where the client's address comes from: the trusted proxy's header (its
/// first entry) when one is configured and sent, else the peer.
enum ClientSource<'a> {
    Address(IpAddr),
    /// The proxy's header, when it is not an address.
    Unparsed(&'a str),
    Unknown,
}

fn client_source<'a>(req: &'a HttpRequest, trusted_header: Option<&HeaderName>) -> ClientSource<'a> {
    let from_header = trusted_header
        .and_then(|name| req.headers().get(name))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    match from_header {
        Some(raw) => match raw.parse::<IpAddr>() {
            Ok(ip) => ClientSource::Address(ip),
            Err(_) => ClientSource::Unparsed(raw),
        },
        None => match req.peer_addr() {
            Some(peer) => ClientSource::Address(peer.ip()),
            None => ClientSource::Unknown,
        },
    }
}

/// The client's address alone, as [`ClientAddr`] finds it, with no text
/// made: what a page view keeps until it is hashed. `trusted_header`:
/// `server.client_ip_header`, parsed once (`None` when empty).
pub fn client_ip(req: &HttpRequest, trusted_header: Option<&HeaderName>) -> Option<IpAddr> {
    match client_source(req, trusted_header) {
        ClientSource::Address(ip) => Some(ip),
        ClientSource::Unparsed(_) | ClientSource::Unknown => None,
    }
}

impl ClientAddr {
    pub fn of(req: &HttpRequest, trusted_header: &str) -> ClientAddr {
        let trusted_header = HeaderName::try_from(trusted_header).ok();
        match client_source(req, trusted_header.as_ref()) {
            ClientSource::Address(ip) => ClientAddr::from_ip(ip),
            // Not an address: still one client, but never a loopback one.
            ClientSource::Unparsed(raw) => ClientAddr {
                key: raw.chars().take(64).collect(),
                ip: None,
            },
            ClientSource::Unknown => ClientAddr {
                key: "unknown".into(),
                ip: None,
            },
        }
    }

    fn from_ip(ip: IpAddr) -> ClientAddr {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let key = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        };
        ClientAddr { key, ip: Some(ip) }
    }

    /// A client on this machine.
    pub fn is_loopback(&self) -> bool {
        self.ip.is_some_and(|ip| ip.is_loopback())
    }
}

/// A client that may read what is for the operator (`/readyz`'s detail,
/// `/metrics`): one on this machine, or one that sent `Authorization:
/// Bearer` with `server.metrics_token`. Refused with `OperatorsOnly` (403).
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl Operator {
    /// Whether `req` comes from an operator.
    pub fn is(req: &HttpRequest) -> bool {
        let state = state_of(req);
        if ClientAddr::of(req, &state.settings.server.client_ip_header).is_loopback() {
            return true;
        }
        let Some(token) = &state.settings.server.metrics_token else {
            return false;
        };
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|sent| constant_time_eq(sent.trim().as_bytes(), token.expose().as_bytes()))
    }
}

impl FromRequest for Operator {
    type Error = AccessError;
    type Future = std::future::Ready<Result<Operator, AccessError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(match Operator::is(req) {
            true => Ok(Operator),
            false => Err(AccessError::OperatorsOnly),
        })
    }
}

impl FromRequest for ClientAddr {
    type Error = AccessError;
    type Future = std::future::Ready<Result<ClientAddr, AccessError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = state_of(req);
        std::future::ready(Ok(ClientAddr::of(req, &state.settings.server.client_ip_header)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn origin_of_keeps_scheme_host_and_port() {
        assert_eq!(origin_of("https://example.org/path?q=1"), "https://example.org");
        assert_eq!(origin_of("http://127.0.0.1:4000/login"), "http://127.0.0.1:4000");
        assert_eq!(origin_of("http://127.0.0.1:4000"), "http://127.0.0.1:4000");
        assert_eq!(origin_of("https://example.org?x"), "https://example.org");
    }

    #[test]
    fn only_the_public_url_is_a_valid_origin() {
        let public = "https://lectern.example";
        let with = |name: &str, value: &str| {
            TestRequest::default()
                .insert_header((name, value))
                .insert_header(("host", "evil.example"))
                .insert_header(("x-forwarded-host", "evil.example"))
                .to_http_request()
        };
        assert!(check_origin(&with("origin", "https://lectern.example"), public).is_ok());
        assert!(check_origin(&with("referer", "https://lectern.example/login"), public).is_ok());
        assert!(check_origin(&with("origin", "https://evil.example"), public).is_err());
        assert!(check_origin(&with("origin", "null"), public).is_err());
        assert!(check_origin(&with("referer", "https://lectern.example.evil.example/"), public).is_err());
        assert!(check_origin(&TestRequest::default().to_http_request(), public).is_ok());
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let key = |ip: &str| ClientAddr::from_ip(ip.parse().unwrap()).key;
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert!(ClientAddr::from_ip("::1".parse().unwrap()).is_loopback());
    }
}
