//! The accounts context: users, roles, sessions that any node can read,
//! and the single-use tokens that emailed links carry (confirmation, login
//! link, password reset, change of address). Every email a change causes is
//! enqueued in the change's own transaction.

pub mod password;
pub mod rate_limit;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use deadpool_postgres::{GenericClient, Pool, Transaction};
use serde_json::json;
use sha2::{Digest, Sha256};
use time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use crate::mail::{self, Email, EmailAddress, MailError, Message};
use crate::store::StoreError;

/// How long each kind of emailed link stays valid.
pub const CONFIRM_TTL: Duration = Duration::hours(48);
pub const CHANGE_EMAIL_TTL: Duration = Duration::hours(24);
pub const RESET_TTL: Duration = Duration::hours(1);
pub const MAGIC_TTL: Duration = Duration::minutes(15);
/// `lectern user create-admin` links: long enough to reach a mailbox or a terminal.
pub const ADMIN_LINK_TTL: Duration = Duration::hours(24);
/// A session's last-seen time is written at most this often.
const TOUCH_EVERY: Duration = Duration::hours(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
}

impl Role {
    fn from_db(role: &str) -> Role {
        if role == "admin" {
            Role::Admin
        } else {
            Role::Member
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub confirmed: bool,
    pub has_password: bool,
}

const USER_COLUMNS: &str =
    "u.id, u.email, u.name, u.role, u.confirmed_at IS NOT NULL, u.password_hash IS NOT NULL";

impl User {
    fn from_row(row: &Row) -> User {
        User::from_columns(row, 0)
    }

    /// The user from `USER_COLUMNS` starting at column `first` of `row`.
    fn from_columns(row: &Row, first: usize) -> User {
        User {
            id: row.get(first),
            email: row.get(first + 1),
            name: row.get(first + 2),
            role: Role::from_db(row.get(first + 3)),
            confirmed: row.get(first + 4),
            has_password: row.get(first + 5),
        }
    }
}

/// A logged-in visitor: the user and the token their forms must carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf_token: String,
}

/// A session just opened: the cookie's value and the forms' token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Confirm,
    ChangeEmail,
    Reset,
    Magic,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Confirm => "confirm",
            Purpose::ChangeEmail => "change_email",
            Purpose::Reset => "reset",
            Purpose::Magic => "magic",
        }
    }
}

/// Why an emailed link cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkProblem {
    #[error("this link is not valid: it may have been mistyped or cut short")]
    Unknown,
    #[error("this link has expired")]
    Expired,
    #[error("this link has already been used")]
    Used,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot enqueue the email: {0}")]
    Mail(#[from] MailError),
    #[error(transparent)]
    Link(#[from] LinkProblem),
    #[error("that address belongs to another account")]
    EmailTaken,
    #[error("cannot hash the password: {0}")]
    Hashing(String),
    #[error("the stored address {0:?} is not a valid email address")]
    StoredAddress(String),
}

impl From<tokio_postgres::Error> for AccountsError {
    fn from(e: tokio_postgres::Error) -> Self {
        AccountsError::Store(StoreError::Query(e))
    }
}

impl From<deadpool_postgres::PoolError> for AccountsError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        AccountsError::Store(StoreError::Checkout(e))
    }
}

/// A new random token (256 bits, URL-safe) and the hash that is stored.
fn new_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    // The OS's generator does not fail on Linux once the system is up; a
    // process that cannot get randomness must not hand out tokens.
    getrandom::fill(&mut bytes).expect("the operating system's random generator works");
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

/// A random token for forms shown to visitors who are not logged in.
pub fn new_form_token() -> String {
    new_token().0
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Whether `a` equals `b`, in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn create_token(
    txn: &Transaction<'_>,
    user_id: i64,
    purpose: Purpose,
    sent_to: &str,
    ttl: Duration,
) -> Result<String, AccountsError> {
    let (token, hash) = new_token();
    let insert = txn
        .prepare_cached(
            "INSERT INTO user_tokens (token_hash, user_id, purpose, sent_to, expires_at) \
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::float8))",
        )
        .await?;
    txn.execute(
        &insert,
        &[
            &hash,
            &user_id,
            &purpose.as_str(),
            &sent_to,
            &ttl.as_seconds_f64(),
        ],
    )
    .await?;
    Ok(token)
}

/// What an unused, unexpired token is for.
#[derive(Debug, Clone)]
pub struct LinkTarget {
    pub user: User,
    pub purpose: Purpose,
    pub sent_to: String,
}

/// Looks at a token without using it (the landing page of an emailed link,
/// which an email scanner may open before its owner does).
pub async fn check_link(pool: &Pool, token: &str, purposes: &[Purpose]) -> Result<LinkTarget, AccountsError> {
    let client = pool.get().await?;
    find_link(&client, token, purposes, false).await
}

/// Uses up a token in `txn`: it works once.
async fn use_link(
    txn: &Transaction<'_>,
    token: &str,
    purposes: &[Purpose],
) -> Result<LinkTarget, AccountsError> {
    let target = find_link(txn, token, purposes, true).await?;
    let spend = txn
        .prepare_cached("UPDATE user_tokens SET used_at = now() WHERE token_hash = $1")
        .await?;
    txn.execute(&spend, &[&token_hash(token)]).await?;
    Ok(target)
}

async fn find_link<C: GenericClient>(
    client: &C,
    token: &str,
    purposes: &[Purpose],
    lock: bool,
) -> Result<LinkTarget, AccountsError> {
    if token.len() > 64 {
        return Err(LinkProblem::Unknown.into());
    }
    let query = format!(
        "SELECT t.purpose, t.sent_to, t.used_at IS NOT NULL, t.expires_at <= now(), {USER_COLUMNS} \
         FROM user_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1{}",
        if lock { " FOR UPDATE OF t" } else { "" }
    );
    let statement = client.prepare_cached(&query).await?;
    let row = client
        .query_opt(&statement, &[&token_hash(token)])
        .await?
        .ok_or(LinkProblem::Unknown)?;
    let purpose_name: &str = row.get(0);
    let purpose = purposes
        .iter()
        .copied()
        .find(|p| p.as_str() == purpose_name)
        .ok_or(LinkProblem::Unknown)?;
    if row.get::<_, bool>(2) {
        return Err(LinkProblem::Used.into());
    }
    if row.get::<_, bool>(3) {
        return Err(LinkProblem::Expired.into());
    }
    Ok(LinkTarget {
        user: User::from_columns(&row, 4),
        purpose,
        sent_to: row.get(1),
    })
}

fn link(site_url: &str, path: &str, token: &str) -> String {
    format!("{site_url}{path}/{token}")
}

async fn find_user_by_email<C: GenericClient>(
    client: &C,
    email: &EmailAddress,
) -> Result<Option<User>, AccountsError> {
    let statement = client
        .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.email = $1"))
        .await?;
    Ok(client
        .query_opt(&statement, &[&email.as_str()])
        .await?
        .map(|row| User::from_row(&row)))
}

/// What a sign-up did. The visitor is told the same in both cases, so that
/// the page does not reveal which addresses have accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// A new account; a confirmation link is on its way.
    Created(i64),
    /// The address already had an account; its owner gets a login link.
    Existing,
}

/// Creates an account with an unconfirmed address and enqueues the
/// confirmation email, or, for an address that has an account, a login link.
pub async fn register(
    pool: &Pool,
    email: &EmailAddress,
    name: &str,
    password_hash: &str,
    site_url: &str,
) -> Result<Registration, AccountsError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    let insert = txn
        .prepare_cached(
            "INSERT INTO users (email, name, password_hash) VALUES ($1, $2, $3) \
             ON CONFLICT (email) DO NOTHING RETURNING id",
        )
        .await?;
    let created = txn
        .query_opt(&insert, &[&email.as_str(), &name, &password_hash])
        .await?;
    let registration = match created {
        Some(row) => {
            let id: i64 = row.get(0);
            let token = create_token(&txn, id, Purpose::Confirm, email.as_str(), CONFIRM_TTL).await?;
            mail::enqueue(
                &txn,
                Email {
                    to: email.clone(),
                    message: Message::ConfirmEmail,
                    data: json!({ "name": name, "link": link(site_url, "/confirm", &token), "change": false }),
                },
            )
            .await?;
            Registration::Created(id)
        }
        None => {
            if let Some(user) = find_user_by_email(&txn, email).await? {
                enqueue_magic_link(&txn, &user, site_url, true).await?;
            }
            Registration::Existing
        }
    };
    txn.commit().await?;
    Ok(registration)
}

async fn enqueue_magic_link(
    txn: &Transaction<'_>,
    user: &User,
    site_url: &str,
    signup_attempt: bool,
) -> Result<(), AccountsError> {
    let token = create_token(txn, user.id, Purpose::Magic, &user.email, MAGIC_TTL).await?;
    mail::enqueue(
        txn,
        Email {
            to: stored_address(&user.email)?,
            message: Message::MagicLink,
            data: json!({
                "name": user.name,
                "link": link(site_url, "/login/magic", &token),
                "minutes": MAGIC_TTL.whole_minutes(),
                "signup_attempt": signup_attempt,
            }),
        },
    )
    .await?;
    Ok(())
}

/// An address read back from the users table, where only parsed addresses go.
fn stored_address(email: &str) -> Result<EmailAddress, AccountsError> {
    EmailAddress::parse(email).map_err(|_| AccountsError::StoredAddress(email.to_owned()))
}

/// The account and password hash for a login attempt, if the address has one.
pub async fn find_login(
    pool: &Pool,
    email: &EmailAddress,
) -> Result<Option<(User, Option<String>)>, AccountsError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE u.email = $1"
        ))
        .await?;
    Ok(client
        .query_opt(&statement, &[&email.as_str()])
        .await?
        .map(|row| (User::from_row(&row), row.get(6))))
}

/// Emails a login link if the address has an account; silently nothing otherwise.
pub async fn request_login_link(
    pool: &Pool,
    email: &EmailAddress,
    site_url: &str,
) -> Result<(), AccountsError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    if let Some(user) = find_user_by_email(&txn, email).await? {
        enqueue_magic_link(&txn, &user, site_url, false).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Emails a password-reset link if the address has an account.
pub async fn request_password_reset(
    pool: &Pool,
    email: &EmailAddress,
    site_url: &str,
) -> Result<(), AccountsError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    if let Some(user) = find_user_by_email(&txn, email).await? {
        let token = create_token(&txn, user.id, Purpose::Reset, &user.email, RESET_TTL).await?;
        mail::enqueue(
            &txn,
            Email {
                to: email.clone(),
                message: Message::PasswordReset,
                data: json!({
                    "name": user.name,
                    "link": link(site_url, "/reset", &token),
                    "minutes": RESET_TTL.whole_minutes(),
                }),
            },
        )
        .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Sends a fresh confirmation link to an account whose address is unconfirmed.
pub async fn resend_confirmation(pool: &Pool, user: &User, site_url: &str) -> Result<(), AccountsError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    let token = create_token(&txn, user.id, Purpose::Confirm, &user.email, CONFIRM_TTL).await?;
    mail::enqueue(
        &txn,
        Email {
            to: stored_address(&user.email)?,
            message: Message::ConfirmEmail,
            data: json!({ "name": user.name, "link": link(site_url, "/confirm", &token), "change": false }),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

async fn open_session<C: GenericClient>(
    txn: &C,
    user_id: i64,
    days: u32,
) -> Result<NewSession, AccountsError> {
    let (token, hash) = new_token();
    let (csrf_token, _) = new_token();
    let insert = txn
        .prepare_cached(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at) \
             VALUES ($1, $2, $3, now() + make_interval(days => $4))",
        )
        .await?;
    txn.execute(
        &insert,
        &[
            &hash,
            &user_id,
            &csrf_token,
            &i32::try_from(days).unwrap_or(i32::MAX),
        ],
    )
    .await?;
    Ok(NewSession { token, csrf_token })
}

/// Opens a session for a user who proved who they are (password checked).
pub async fn log_in(pool: &Pool, user_id: i64, days: u32) -> Result<NewSession, AccountsError> {
    let client = pool.get().await?;
    open_session(&client, user_id, days).await
}

/// The session a cookie names, if it is still open; keeps it alive.
pub async fn find_session(pool: &Pool, token: &str, days: u32) -> Result<Option<Session>, AccountsError> {
    if token.is_empty() || token.len() > 64 {
        return Ok(None);
    }
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS}, s.csrf_token, s.last_seen_at < now() - make_interval(secs => $2::float8) \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > now()"
        ))
        .await?;
    let hash = token_hash(token);
    let Some(row) = client
        .query_opt(&statement, &[&hash, &TOUCH_EVERY.as_seconds_f64()])
        .await?
    else {
        return Ok(None);
    };
    if row.get::<_, bool>(7) {
        let touch = client
            .prepare_cached(
                "UPDATE sessions SET last_seen_at = now(), expires_at = now() + make_interval(days => $2) \
                 WHERE token_hash = $1",
            )
            .await?;
        client
            .execute(&touch, &[&hash, &i32::try_from(days).unwrap_or(i32::MAX)])
            .await?;
    }
    Ok(Some(Session {
        user: User::from_row(&row),
        csrf_token: row.get(6),
    }))
}

/// Ends the session a cookie names (log out).
pub async fn end_session(pool: &Pool, token: &str) -> Result<(), AccountsError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached("DELETE FROM sessions WHERE token_hash = $1")
        .await?;
    client.execute(&statement, &[&token_hash(token)]).await?;
    Ok(())
}

/// Ends every session of `user_id` (log out everywhere).
pub async fn end_all_sessions(pool: &Pool, user_id: i64) -> Result<(), AccountsError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached("DELETE FROM sessions WHERE user_id = $1")
        .await?;
    client.execute(&statement, &[&user_id]).await?;
    Ok(())
}

/// Ends every session of `user_id` but the one `keep` names.
async fn end_other_sessions(
    txn: &Transaction<'_>,
    user_id: i64,
    keep: Option<&str>,
) -> Result<(), AccountsError> {
    let statement = txn
        .prepare_cached("DELETE FROM sessions WHERE user_id = $1 AND token_hash IS DISTINCT FROM $2")
        .await?;
    let keep = keep.map(token_hash);
    txn.execute(&statement, &[&user_id, &keep]).await?;
    Ok(())
}

/// Uses a login link: the address is proven, so it counts as confirmed.
pub async fn use_login_link(
    pool: &Pool,
    token: &str,
    days: u32,
) -> Result<(User, NewSession), AccountsError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    let target = use_link(&txn, token, &[Purpose::Magic]).await?;
    let confirm = txn
        .prepare_cached("UPDATE users SET confirmed_at = coalesce(confirmed_at, now()) WHERE id = $1")
        .await?;
    txn.execute(&confirm, &[&target.user.id]).await?;
    let session = open_session(&txn, target.user.id, days).await?;
    txn.commit().await?;
    Ok((target.user, session))
}

/// What a confirmation link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// The account's address is confirmed (a welcome email is on its way the first time).
    Address,
    /// The account now has the new address; the old one was told.
    NewAddress(String),
}

/// Uses a confirmation link (sign-up, or change of address) and logs the user in.
pub async fn confirm_email(
    pool: &Pool,
    token: &str,
    days: u32,
    site_url: &str,
) -> Result<(Confirmed, NewSession), AccountsError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    let target = use_link(&txn, token, &[Purpose::Confirm, Purpose::ChangeEmail]).await?;
    let user = &target.user;
    let confirmed = match target.purpose {
        Purpose::ChangeEmail => {
            let change = txn
                .prepare_cached(
                    "UPDATE users SET email = $2, confirmed_at = now(), updated_at = now() WHERE id = $1",
                )
                .await?;
            if let Err(e) = txn.execute(&change, &[&user.id, &target.sent_to]).await {
                return Err(if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                    AccountsError::EmailTaken
                } else {
                    e.into()
                });
            }
            mail::enqueue(
                &txn,
                Email {
                    to: stored_address(&user.email)?,
                    message: Message::EmailChanged,
                    data: json!({ "name": user.name, "old_email": user.email, "new_email": target.sent_to }),
                },
            )
            .await?;
            Confirmed::NewAddress(target.sent_to.clone())
        }
        _ => {
            if target.sent_to != user.email {
                // The account has moved to another address since this link was sent.
                return Err(LinkProblem::Expired.into());
            }
            if !user.confirmed {
                let confirm = txn
                    .prepare_cached("UPDATE users SET confirmed_at = now(), updated_at = now() WHERE id = $1")
                    .await?;
                txn.execute(&confirm, &[&user.id]).await?;
                mail::enqueue(
                    &txn,
                    Email {
                        to: stored_address(&user.email)?,
                        message: Message::Welcome,
                        data: json!({ "name": user.name, "site_url": site_url }),
                    },
                )
                .await?;
            }
            Confirmed::Address
        }
    };
    let session = open_session(&txn, user.id, days).await?;
    txn.commit().await?;
    Ok((confirmed, session))
}

/// Uses a reset link: sets the password, ends every session (whoever had
/// the old password is out) and opens a new one for the user.
pub async fn reset_password(
    pool: &Pool,
    token: &str,
    new_hash: &str,
    days: u32,
) -> Result<(User, NewSession), AccountsError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    let target = use_link(&txn, token, &[Purpose::Reset]).await?;
    let update = txn
        .prepare_cached(
            "UPDATE users SET password_hash = $2, confirmed_at = coalesce(confirmed_at, now()), \
             updated_at = now() WHERE id = $1",
        )
        .await?;
    txn.execute(&update, &[&target.user.id, &new_hash]).await?;
    // Other reset and login links sent before are void too.
    let void = txn
        .prepare_cached(
            "UPDATE user_tokens SET used_at = now() \
             WHERE user_id = $1 AND purpose IN ('reset', 'magic') AND used_at IS NULL",
        )
        .await?;
    txn.execute(&void, &[&target.user.id]).await?;
    end_other_sessions(&txn, target.user.id, None).await?;
    let session = open_session(&txn, target.user.id, days).await?;
    txn.commit().await?;
    Ok((target.user, session))
}

/// Sets a new password from the account page; ends the user's other sessions.
pub async fn change_password(
    pool: &Pool,
    user_id: i64,
    new_hash: &str,
    current_session: &str,
) -> Result<(), AccountsError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    let update = txn
        .prepare_cached("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1")
        .await?;
    txn.execute(&update, &[&user_id, &new_hash]).await?;
    end_other_sessions(&txn, user_id, Some(current_session)).await?;
    txn.commit().await?;
    Ok(())
}

/// The stored password hash of an account (for checks on the account page).
pub async fn password_hash(pool: &Pool, user_id: i64) -> Result<Option<String>, AccountsError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached("SELECT password_hash FROM users WHERE id = $1")
        .await?;
    Ok(client
        .query_opt(&statement, &[&user_id])
        .await?
        .and_then(|row| row.get(0)))
}

/// Emails a confirmation link to `new_email`; the address changes when it is used.
pub async fn request_email_change(
    pool: &Pool,
    user: &User,
    new_email: &EmailAddress,
    site_url: &str,
) -> Result<(), AccountsError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    let token = create_token(
        &txn,
        user.id,
        Purpose::ChangeEmail,
        new_email.as_str(),
        CHANGE_EMAIL_TTL,
    )
    .await?;
    mail::enqueue(
        &txn,
        Email {
            to: new_email.clone(),
            message: Message::ConfirmEmail,
            data: json!({ "name": user.name, "link": link(site_url, "/confirm", &token), "change": true }),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Deletes an account with its sessions and links.
pub async fn delete_user(pool: &Pool, user_id: i64) -> Result<(), AccountsError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached("DELETE FROM users WHERE id = $1").await?;
    client.execute(&statement, &[&user_id]).await?;
    Ok(())
}

/// Makes `email` an admin (creating a confirmed account if there is none)
/// and returns a one-time login link for it.
pub async fn create_admin(
    pool: &Pool,
    email: &EmailAddress,
    site_url: &str,
) -> Result<String, AccountsError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    let upsert = txn
        .prepare_cached(
            "INSERT INTO users (email, role, confirmed_at) VALUES ($1, 'admin', now()) \
             ON CONFLICT (email) DO UPDATE SET role = 'admin', updated_at = now() RETURNING id",
        )
        .await?;
    let id: i64 = txn.query_one(&upsert, &[&email.as_str()]).await?.get(0);
    let token = create_token(&txn, id, Purpose::Magic, email.as_str(), ADMIN_LINK_TTL).await?;
    txn.commit().await?;
    Ok(link(site_url, "/login/magic", &token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_stored_only_as_hashes() {
        let (a, hash_a) = new_token();
        let (b, _) = new_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(hash_a, token_hash(&a));
        assert!(!hash_a.windows(a.len()).any(|w| w == a.as_bytes()));
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
