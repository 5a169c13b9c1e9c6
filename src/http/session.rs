//! Who is asking: the session cookie and the session it names, the CSRF
//! checks every state-changing form passes (Origin plus a synchronizer
//! token), the client's address, and rate-limit refusals.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest};
use lectern_actors::accounts::{self, constant_time_eq, AccountsError, Session};

use super::AppState;

pub const SESSION_COOKIE: &str = "lectern_session";
/// The token of forms shown to visitors who are not logged in (double submit).
pub const CSRF_COOKIE: &str = "lectern_csrf";

/// The logged-in user of this request, for the access log.
#[derive(Debug, Clone, Copy)]
pub struct UserId(pub i64);

/// The session this request's cookie names, if it is open.
pub async fn current_session(req: &HttpRequest, state: &AppState) -> Result<Option<Session>, AccountsError> {
    let Some(cookie) = req.cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    let session =
        accounts::find_session(&state.pool, cookie.value(), state.settings.accounts.session_days).await?;
    if let Some(session) = &session {
        req.extensions_mut().insert(UserId(session.user.id));
    }
    Ok(session)
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
    let token = accounts::new_form_token();
    let cookie = Cookie::build(CSRF_COOKIE, token.clone())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.settings.accounts.secure_cookies)
        .finish();
    (token, Some(cookie))
}

fn is_token_shaped(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether a state-changing request may proceed: it comes from this site
/// (Origin, or Referer when there is no Origin) and carries the form token
/// of its session, or of its CSRF cookie when nobody is logged in.
pub fn csrf_ok(req: &HttpRequest, state: &AppState, session: Option<&Session>, submitted: &str) -> bool {
    if !same_origin(req, state) {
        return false;
    }
    let expected = match session {
        Some(session) => session.csrf_token.clone(),
        None => match req.cookie(CSRF_COOKIE) {
            Some(cookie) => cookie.value().to_owned(),
            None => return false,
        },
    };
    !expected.is_empty() && constant_time_eq(expected.as_bytes(), submitted.as_bytes())
}

/// The request's Origin (or Referer) names this site: the configured public
/// URL, or the host the request was sent to.
fn same_origin(req: &HttpRequest, state: &AppState) -> bool {
    let claimed = match req.headers().get(header::ORIGIN) {
        Some(origin) => origin.to_str().unwrap_or("null").to_owned(),
        None => match req.headers().get(header::REFERER).and_then(|r| r.to_str().ok()) {
            Some(referer) => origin_of(referer).to_owned(),
            // Browsers send Origin with every cross-site POST; a client that
            // sends neither is not a browser being tricked. The token decides.
            None => return true,
        },
    };
    if claimed == state.settings.server.public_url {
        return true;
    }
    let host = req.connection_info().host().to_owned();
    claimed
        .split_once("://")
        .is_some_and(|(scheme, authority)| matches!(scheme, "http" | "https") && authority == host)
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> &str {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').map_or(url.len(), |i| scheme.len() + 3 + i);
            &url[..end]
        }
        None => url,
    }
}

/// The client's address: from the trusted proxy's header when one is configured.
pub fn client_ip(req: &HttpRequest, state: &AppState) -> String {
    let header_name = &state.settings.server.client_ip_header;
    if !header_name.is_empty() {
        if let Some(value) = req
            .headers()
            .get(header_name.as_str())
            .and_then(|v| v.to_str().ok())
        {
            if let Some(first) = value.split(',').next().map(str::trim).filter(|v| !v.is_empty()) {
                return first.chars().take(64).collect();
            }
        }
    }
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_of_keeps_scheme_host_and_port() {
        assert_eq!(origin_of("https://example.org/path?q=1"), "https://example.org");
        assert_eq!(origin_of("http://127.0.0.1:4000/login"), "http://127.0.0.1:4000");
        assert_eq!(origin_of("http://127.0.0.1:4000"), "http://127.0.0.1:4000");
    }
}
