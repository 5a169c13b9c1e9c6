//! The accounts context: users and roles, passwords, sessions that any node
//! can read, and the single-use links that emails carry (confirmation, login
//! link, password reset, change of address). Every email a change causes is
//! enqueued in the change's own transaction; the web layer hands in the
//! builder of the links' URLs, so this context knows no routes.

mod members;
pub mod password;
pub mod rate_limit;
pub mod tokens;

use std::sync::Arc;

use deadpool_postgres::{GenericClient, Pool, Transaction};
use serde_json::json;
use slog::{warn, Logger};
use time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

pub use members::{EmailFragment, FragmentProblem, MemberAccount};
pub use password::{PasswordPolicy, PasswordProblem, Passwords};
pub use rate_limit::RetryAfter;
pub use tokens::{constant_time_eq, is_token_shaped, LinkTarget};

use crate::events::{self, Event};
use crate::mail::{self, Email, EmailAddress, EmailKind, MailError};
use crate::store::StoreError;
use tokens::{create_link, new_token, token_hash, use_link, void_links};

/// How long each kind of emailed link stays valid.
pub const CONFIRM_TTL: Duration = Duration::hours(48);
pub const CHANGE_EMAIL_TTL: Duration = Duration::hours(24);
pub const RESET_TTL: Duration = Duration::hours(1);
pub const MAGIC_TTL: Duration = Duration::minutes(15);
/// `lectern user create-admin` links: long enough to reach a mailbox or a terminal.
pub const ADMIN_LINK_TTL: Duration = Duration::hours(24);
/// An account whose address nobody confirmed is deleted this long after
/// its last sign-up: as long as its confirmation link lives.
pub const UNCONFIRMED_KEPT: Duration = CONFIRM_TTL;
/// A session's last-seen time is written at most this often.
const TOUCH_EVERY: Duration = Duration::hours(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
}

impl TryFrom<&str> for Role {
    type Error = AccountsError;

    fn try_from(role: &str) -> Result<Role, AccountsError> {
        match role {
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            other => Err(AccountsError::StoredValue(format!("unknown role {other:?}"))),
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
    /// Disabled by an administrator: no session, no login.
    pub disabled: bool,
}

const USER_COLUMNS: &str = "u.id, u.email, u.name, u.role, u.confirmed_at IS NOT NULL, \
     u.password_hash IS NOT NULL, u.disabled_at IS NOT NULL";
/// How many columns `USER_COLUMNS` is: the first column after them.
const USER_COLUMN_COUNT: usize = 7;

impl User {
    /// The user from `USER_COLUMNS` starting at column `first` of `row`.
    fn from_columns(row: &Row, first: usize) -> Result<User, AccountsError> {
        Ok(User {
            id: row.get(first),
            email: row.get(first + 1),
            name: row.get(first + 2),
            role: Role::try_from(row.get::<_, &str>(first + 3))?,
            confirmed: row.get(first + 4),
            has_password: row.get(first + 5),
            disabled: row.get(first + 6),
        })
    }

    /// The account's address, read back from where only parsed addresses go.
    fn address(&self) -> Result<EmailAddress, AccountsError> {
        EmailAddress::parse(&self.email).map_err(|_| AccountsError::StoredValue(self.email.clone()))
    }

    /// The name to greet in an email: only the owner of a confirmed address
    /// chose it. Whoever signs up may type anything as a name, and it must
    /// not reach a stranger's mailbox.
    fn greeting_name(&self) -> &str {
        if self.confirmed {
            &self.name
        } else {
            ""
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

/// What an emailed link is for.
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

/// Builds the URL an emailed link carries. The web layer owns the routes
/// and hands its builder to [`Accounts::new`].
pub trait Links: Send + Sync {
    fn url(&self, purpose: Purpose, token: &str) -> String;
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
    #[error("this link is no longer valid: a newer one was sent, or the account changed since")]
    Void,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot enqueue the email: {0}")]
    Mail(#[from] MailError),
    #[error(transparent)]
    Link(#[from] LinkProblem),
    #[error(transparent)]
    Password(#[from] PasswordProblem),
    #[error("that email address and password do not match")]
    WrongPassword,
    #[error("too many failed logins for this address; retry in {} s", .0 .0)]
    Throttled(RetryAfter),
    #[error("that address belongs to another account")]
    EmailTaken,
    #[error("too many password checks at once; the server is busy")]
    Busy,
    #[error("cannot hash the password: {0}")]
    Hashing(String),
    #[error("unexpected value in the users table: {0}")]
    StoredValue(String),
    #[error("this account is disabled")]
    Disabled,
    #[error("there is no account {0}")]
    NoSuchAccount(i64),
    #[error("the address is already confirmed")]
    AlreadyConfirmed,
    #[error("the address had its share of emails today")]
    EmailsCapped,
    #[error("administrators cannot disable their own account")]
    OwnAccount,
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

/// What a sign-up did. The visitor is told the same in every case, so that
/// the page does not reveal which addresses have accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// A new account; a confirmation link is on its way.
    Created(i64),
    /// An account nobody confirmed yet: it now has this sign-up's password
    /// and name, every earlier link is void, and a new confirmation link
    /// is on its way. Whoever signed up before is left with nothing.
    Renewed(i64),
    /// A confirmed account; its owner gets a login link.
    Existing,
}

/// The outcome of a correct password.
#[derive(Debug, Clone)]
pub enum Authenticated {
    /// The account may log in.
    Confirmed(User),
    /// The address is not confirmed yet; a new confirmation link was sent.
    Unconfirmed(User),
}

/// What a confirmation link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// The account's address is confirmed (a welcome email is on its way the first time).
    Address,
    /// The account now has the new address; the old one was told.
    NewAddress(String),
}

/// What the accounts context needs to be told.
#[derive(Debug, Clone, Copy)]
pub struct AccountsConfig {
    /// How long an unused session lasts.
    pub session_days: u32,
    pub password: PasswordPolicy,
    /// Password hashes and verifications running at once.
    pub concurrent_hashes: usize,
    /// Emails one address may be sent a day by account requests.
    pub emails_per_address_per_day: u32,
}

/// The accounts context, with its pool, its settings and the web layer's links.
#[derive(Clone)]
pub struct Accounts {
    pool: Pool,
    passwords: Passwords,
    links: Arc<dyn Links>,
    session_days: u32,
    emails_per_address_per_day: u32,
    log: Logger,
}

impl Accounts {
    pub fn new(pool: Pool, config: AccountsConfig, links: Arc<dyn Links>, log: Logger) -> Accounts {
        Accounts {
            pool,
            passwords: Passwords::new(config.password, config.concurrent_hashes),
            links,
            session_days: config.session_days,
            emails_per_address_per_day: config.emails_per_address_per_day,
            log,
        }
    }

    pub fn password_policy(&self) -> PasswordPolicy {
        self.passwords.policy()
    }

    /// Enqueues `email` unless its recipient already got the day's share
    /// (sign-ups, login links and resets could otherwise flood a mailbox);
    /// whether it was enqueued.
    async fn mail(&self, txn: &Transaction<'_>, email: Email) -> Result<bool, AccountsError> {
        let count = txn
            .prepare_cached(
                "SELECT count(*) FROM email_outbox \
                 WHERE recipient = $1 AND created_at > now() - interval '1 day'",
            )
            .await?;
        let sent: i64 = txn.query_one(&count, &[&email.to.as_str()]).await?.get(0);
        if sent >= i64::from(self.emails_per_address_per_day) {
            warn!(self.log, "email not sent: the address had its share of emails today";
                "email" => email.kind.name(), "recipient" => email.to.as_str(), "sent_today" => sent);
            return Ok(false);
        }
        mail::enqueue(txn, email).await?;
        Ok(true)
    }

    async fn mail_link(
        &self,
        txn: &Transaction<'_>,
        user_id: i64,
        to: &EmailAddress,
        purpose: Purpose,
        kind: EmailKind,
        data: serde_json::Value,
    ) -> Result<bool, AccountsError> {
        let ttl = match purpose {
            Purpose::Confirm => CONFIRM_TTL,
            Purpose::ChangeEmail => CHANGE_EMAIL_TTL,
            Purpose::Reset => RESET_TTL,
            Purpose::Magic => MAGIC_TTL,
        };
        let token = create_link(txn, user_id, purpose, to.as_str(), ttl).await?;
        let mut data = data;
        if let Some(map) = data.as_object_mut() {
            map.insert("link".into(), json!(self.links.url(purpose, &token)));
            map.insert("minutes".into(), json!(ttl.whole_minutes()));
        }
        self.mail(
            txn,
            Email {
                to: to.clone(),
                kind,
                data,
            },
        )
        .await
    }

    /// Creates an account with an unconfirmed address and enqueues the
    /// confirmation email; for an address that has an account, see
    /// [`Registration`].
    pub async fn register(
        &self,
        email: &EmailAddress,
        name: &str,
        password: &str,
    ) -> Result<Registration, AccountsError> {
        let hash = self.passwords.hash(password).await?;
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let insert = txn
            .prepare_cached(
                "INSERT INTO users (email, name, password_hash) VALUES ($1, $2, $3) \
                 ON CONFLICT (email) DO NOTHING RETURNING id",
            )
            .await?;
        let created = txn.query_opt(&insert, &[&email.as_str(), &name, &hash]).await?;
        let registration = match created {
            Some(row) => Registration::Created(row.get(0)),
            None => {
                let user = find_user_by_email(&txn, email, true)
                    .await?
                    // The row that conflicted is locked now; it is there.
                    .ok_or_else(|| AccountsError::StoredValue(format!("{email} vanished")))?;
                if user.disabled {
                    // Its owner could not use a login link: nothing to send.
                    Registration::Existing
                } else if user.confirmed {
                    let data = json!({ "name": user.name, "signup_attempt": true });
                    self.mail_link(&txn, user.id, email, Purpose::Magic, EmailKind::MagicLink, data)
                        .await?;
                    Registration::Existing
                } else {
                    let renew = txn
                        .prepare_cached(
                            "UPDATE users SET password_hash = $2, name = $3, updated_at = now() WHERE id = $1",
                        )
                        .await?;
                    txn.execute(&renew, &[&user.id, &hash, &name]).await?;
                    void_links(&txn, user.id).await?;
                    end_sessions(&txn, user.id, None).await?;
                    Registration::Renewed(user.id)
                }
            }
        };
        if let Registration::Created(id) = registration {
            events::record_in(
                &txn,
                &Event::new("account.signed_up", Some(id.to_string()), json!({})),
            )
            .await?;
        }
        if let Registration::Created(id) | Registration::Renewed(id) = registration {
            // The address is not proven: the name typed with it stays out of the email.
            let data = json!({ "name": "", "change": false });
            self.mail_link(&txn, id, email, Purpose::Confirm, EmailKind::ConfirmEmail, data)
                .await?;
        }
        txn.commit().await?;
        Ok(registration)
    }

    /// Checks a password login: the address's failed attempts make it wait
    /// (growing delays, never a lockout); a wrong password and an unknown
    /// address cost the same and answer the same.
    pub async fn authenticate(
        &self,
        email: &EmailAddress,
        password: &str,
    ) -> Result<Authenticated, AccountsError> {
        if let Err(retry) = rate_limit::login_wait(&self.pool, email.as_str()).await? {
            return Err(AccountsError::Throttled(retry));
        }
        let found = {
            let client = self.pool.get().await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE u.email = $1"
                ))
                .await?;
            match client.query_opt(&statement, &[&email.as_str()]).await? {
                Some(row) => Some((
                    User::from_columns(&row, 0)?,
                    row.get::<_, Option<String>>(USER_COLUMN_COUNT),
                )),
                None => None,
            }
        };
        let (user, stored) = match found {
            Some((user, stored)) => (Some(user), stored),
            None => (None, None),
        };
        let matches = self.passwords.verify(password, stored).await?;
        let Some(user) = user.filter(|_| matches) else {
            rate_limit::record_login_failure(&self.pool, email.as_str()).await?;
            return Err(AccountsError::WrongPassword);
        };
        rate_limit::clear_login_failures(&self.pool, email.as_str()).await?;
        // Told only to whoever knows the password: the owner.
        if user.disabled {
            return Err(AccountsError::Disabled);
        }
        if user.confirmed {
            return Ok(Authenticated::Confirmed(user));
        }
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let data = json!({ "name": "", "change": false });
        self.mail_link(
            &txn,
            user.id,
            email,
            Purpose::Confirm,
            EmailKind::ConfirmEmail,
            data,
        )
        .await?;
        txn.commit().await?;
        Ok(Authenticated::Unconfirmed(user))
    }

    /// Opens a session for a user who proved who they are; the session the
    /// request came with (someone else's, perhaps) is ended.
    pub async fn log_in(&self, user_id: i64, replacing: Option<&str>) -> Result<NewSession, AccountsError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let session = self.open_session(&txn, user_id, replacing).await?;
        txn.commit().await?;
        Ok(session)
    }

    async fn open_session(
        &self,
        txn: &Transaction<'_>,
        user_id: i64,
        replacing: Option<&str>,
    ) -> Result<NewSession, AccountsError> {
        if let Some(old) = replacing {
            let end = txn
                .prepare_cached("DELETE FROM sessions WHERE token_hash = $1")
                .await?;
            txn.execute(&end, &[&token_hash(old)]).await?;
        }
        let (token, hash) = new_token();
        let (csrf_token, _) = new_token();
        let insert = txn
            .prepare_cached(
                "INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at) \
                 VALUES ($1, $2, $3, now() + make_interval(days => $4))",
            )
            .await?;
        txn.execute(&insert, &[&hash, &user_id, &csrf_token, &self.session_days_i32()])
            .await?;
        Ok(NewSession { token, csrf_token })
    }

    fn session_days_i32(&self) -> i32 {
        i32::try_from(self.session_days).unwrap_or(i32::MAX)
    }

    /// The session a cookie names, if it is still open; keeps it alive.
    pub async fn find_session(&self, token: &str) -> Result<Option<Session>, AccountsError> {
        if !is_token_shaped(token) {
            return Ok(None);
        }
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS}, s.csrf_token, s.last_seen_at < now() - make_interval(secs => $2::float8) \
                 FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.token_hash = $1 AND s.expires_at > now() AND u.disabled_at IS NULL"
            ))
            .await?;
        let hash = token_hash(token);
        let Some(row) = client
            .query_opt(&statement, &[&hash, &TOUCH_EVERY.as_seconds_f64()])
            .await?
        else {
            return Ok(None);
        };
        if row.get::<_, bool>(USER_COLUMN_COUNT + 1) {
            let touch = client
                .prepare_cached(
                    "UPDATE sessions SET last_seen_at = now(), expires_at = now() + make_interval(days => $2) \
                     WHERE token_hash = $1",
                )
                .await?;
            client.execute(&touch, &[&hash, &self.session_days_i32()]).await?;
        }
        Ok(Some(Session {
            user: User::from_columns(&row, 0)?,
            csrf_token: row.get(USER_COLUMN_COUNT),
        }))
    }

    /// Ends the session a cookie names (log out).
    pub async fn end_session(&self, token: &str) -> Result<(), AccountsError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached("DELETE FROM sessions WHERE token_hash = $1")
            .await?;
        client.execute(&statement, &[&token_hash(token)]).await?;
        Ok(())
    }

    /// Ends every session of `user_id` (log out everywhere).
    pub async fn end_all_sessions(&self, user_id: i64) -> Result<(), AccountsError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        end_sessions(&txn, user_id, None).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Emails a login link if the address has an account; nothing otherwise.
    pub async fn request_login_link(&self, email: &EmailAddress) -> Result<(), AccountsError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        if let Some(user) = find_user_by_email(&txn, email, false)
            .await?
            .filter(|u| !u.disabled)
        {
            let data = json!({ "name": user.greeting_name(), "signup_attempt": false });
            self.mail_link(&txn, user.id, email, Purpose::Magic, EmailKind::MagicLink, data)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Emails a password-reset link if the address has an account.
    pub async fn request_password_reset(&self, email: &EmailAddress) -> Result<(), AccountsError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        if let Some(user) = find_user_by_email(&txn, email, false)
            .await?
            .filter(|u| !u.disabled)
        {
            let data = json!({ "name": user.greeting_name() });
            self.mail_link(
                &txn,
                user.id,
                email,
                Purpose::Reset,
                EmailKind::PasswordReset,
                data,
            )
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Looks at a link without using it (the landing page of an emailed
    /// link, which a mail scanner may open before its owner does).
    pub async fn check_link(&self, token: &str, purposes: &[Purpose]) -> Result<LinkTarget, AccountsError> {
        let client = self.pool.get().await?;
        tokens::find_link(&client, token, purposes, false).await
    }

    /// The mailbox's owner proved themselves on an account nobody had
    /// confirmed: confirm it, and leave nothing they did not set (whoever
    /// signed up with their address before them gets nothing). `own_sign_up`:
    /// the proof is the link their own sign-up sent, so its password and
    /// name are theirs; a login link keeps neither.
    async fn confirm_owner(
        &self,
        txn: &Transaction<'_>,
        user: &User,
        own_sign_up: bool,
    ) -> Result<(), AccountsError> {
        let confirm = txn
            .prepare_cached(
                "UPDATE users SET confirmed_at = now(), updated_at = now(), \
                 password_hash = CASE WHEN $2 THEN password_hash END, \
                 name = CASE WHEN $2 THEN name ELSE '' END WHERE id = $1",
            )
            .await?;
        txn.execute(&confirm, &[&user.id, &own_sign_up]).await?;
        void_links(txn, user.id).await?;
        end_sessions(txn, user.id, None).await?;
        let name = if own_sign_up { user.name.as_str() } else { "" };
        self.mail(
            txn,
            Email {
                to: user.address()?,
                kind: EmailKind::Welcome,
                data: json!({ "name": name }),
            },
        )
        .await?;
        Ok(())
    }

    /// Uses a login link: the address is proven. On an account nobody had
    /// confirmed, the password someone else may have set is cleared.
    pub async fn use_login_link(
        &self,
        token: &str,
        replacing: Option<&str>,
    ) -> Result<(User, NewSession), AccountsError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let target = use_link(&txn, token, &[Purpose::Magic]).await?;
        if !target.user.confirmed {
            self.confirm_owner(&txn, &target.user, false).await?;
        }
        let session = self.open_session(&txn, target.user.id, replacing).await?;
        txn.commit().await?;
        Ok((target.user, session))
    }

    /// Uses a confirmation link (sign-up, or change of address) and logs
    /// the user in.
    pub async fn confirm_email(
        &self,
        token: &str,
        replacing: Option<&str>,
    ) -> Result<(Confirmed, NewSession), AccountsError> {
        let mut client = self.pool.get().await?;
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
                // Links sent to the old address, or for another new one, are void.
                void_links(&txn, user.id).await?;
                self.mail(
                    &txn,
                    Email {
                        to: user.address()?,
                        kind: EmailKind::EmailChanged,
                        data: json!({ "name": user.name, "old_email": user.email, "new_email": target.sent_to }),
                    },
                )
                .await?;
                Confirmed::NewAddress(target.sent_to.clone())
            }
            _ => {
                // The password is the one set by the sign-up that sent this
                // link: a later sign-up would have voided it.
                if !user.confirmed {
                    self.confirm_owner(&txn, user, true).await?;
                }
                Confirmed::Address
            }
        };
        let session = self.open_session(&txn, user.id, replacing).await?;
        txn.commit().await?;
        Ok((confirmed, session))
    }

    /// Uses a reset link: sets the password, ends every session (whoever had
    /// the old password is out), voids every other link, opens a new session.
    pub async fn reset_password(
        &self,
        token: &str,
        new_password: &str,
        replacing: Option<&str>,
    ) -> Result<(User, NewSession), AccountsError> {
        // Checked before hashing, so that a spent link costs no hash.
        self.check_link(token, &[Purpose::Reset]).await?;
        let hash = self.passwords.hash(new_password).await?;
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let target = use_link(&txn, token, &[Purpose::Reset]).await?;
        let update = txn
            .prepare_cached(
                "UPDATE users SET password_hash = $2, confirmed_at = coalesce(confirmed_at, now()), \
                 updated_at = now() WHERE id = $1",
            )
            .await?;
        txn.execute(&update, &[&target.user.id, &hash]).await?;
        void_links(&txn, target.user.id).await?;
        end_sessions(&txn, target.user.id, None).await?;
        let session = self.open_session(&txn, target.user.id, replacing).await?;
        txn.commit().await?;
        Ok((target.user, session))
    }

    /// Whether `password` is the account's current one; an account without
    /// a password (it logs in by emailed link) has nothing to check.
    async fn current_password_ok(&self, user: &User, password: &str) -> Result<bool, AccountsError> {
        if !user.has_password {
            return Ok(true);
        }
        let stored = {
            let client = self.pool.get().await?;
            let statement = client
                .prepare_cached("SELECT password_hash FROM users WHERE id = $1")
                .await?;
            client
                .query_opt(&statement, &[&user.id])
                .await?
                .and_then(|row| row.get(0))
        };
        self.passwords.verify(password, stored).await
    }

    /// Sets a new password from the account page, after checking the
    /// current one: ends the user's other sessions and voids every link
    /// sent before.
    pub async fn change_password(
        &self,
        user: &User,
        current_password: &str,
        new_password: &str,
        current_session: &str,
    ) -> Result<(), AccountsError> {
        self.passwords.policy().check(new_password)?;
        if !self.current_password_ok(user, current_password).await? {
            return Err(AccountsError::WrongPassword);
        }
        let hash = self.passwords.hash(new_password).await?;
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let update = txn
            .prepare_cached("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1")
            .await?;
        txn.execute(&update, &[&user.id, &hash]).await?;
        void_links(&txn, user.id).await?;
        end_sessions(&txn, user.id, Some(current_session)).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Emails a confirmation link to `new_email`, after checking the current
    /// password; the address changes when the link is used.
    pub async fn request_email_change(
        &self,
        user: &User,
        current_password: &str,
        new_email: &EmailAddress,
    ) -> Result<(), AccountsError> {
        if !self.current_password_ok(user, current_password).await? {
            return Err(AccountsError::WrongPassword);
        }
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        // The new address is not proven yet: no name goes to it.
        let data = json!({ "name": "", "change": true });
        self.mail_link(
            &txn,
            user.id,
            new_email,
            Purpose::ChangeEmail,
            EmailKind::ConfirmEmail,
            data,
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Deletes an account with its sessions and links, after checking the
    /// current password.
    pub async fn delete_user(&self, user: &User, current_password: &str) -> Result<(), AccountsError> {
        if !self.current_password_ok(user, current_password).await? {
            return Err(AccountsError::WrongPassword);
        }
        let client = self.pool.get().await?;
        let statement = client.prepare_cached("DELETE FROM users WHERE id = $1").await?;
        client.execute(&statement, &[&user.id]).await?;
        Ok(())
    }

    /// Makes `email` an admin (creating a confirmed account if there is
    /// none) and returns a one-time login link for it.
    pub async fn create_admin(&self, email: &EmailAddress) -> Result<String, AccountsError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let upsert = txn
            .prepare_cached(
                "INSERT INTO users (email, role, confirmed_at) VALUES ($1, 'admin', now()) \
                 ON CONFLICT (email) DO UPDATE SET role = 'admin', updated_at = now() RETURNING id",
            )
            .await?;
        let id: i64 = txn.query_one(&upsert, &[&email.as_str()]).await?.get(0);
        let token = create_link(&txn, id, Purpose::Magic, email.as_str(), ADMIN_LINK_TTL).await?;
        txn.commit().await?;
        Ok(self.links.url(Purpose::Magic, &token))
    }
}

async fn find_user_by_email<C: GenericClient>(
    client: &C,
    email: &EmailAddress,
    lock: bool,
) -> Result<Option<User>, AccountsError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.email = $1{}",
            if lock { " FOR UPDATE" } else { "" }
        ))
        .await?;
    client
        .query_opt(&statement, &[&email.as_str()])
        .await?
        .map(|row| User::from_columns(&row, 0))
        .transpose()
}

/// Ends every session of `user_id` but the one `keep` names.
async fn end_sessions(txn: &Transaction<'_>, user_id: i64, keep: Option<&str>) -> Result<(), AccountsError> {
    let statement = txn
        .prepare_cached("DELETE FROM sessions WHERE user_id = $1 AND token_hash IS DISTINCT FROM $2")
        .await?;
    let keep = keep.map(token_hash);
    txn.execute(&statement, &[&user_id, &keep]).await?;
    Ok(())
}

/// What housekeeping removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub unconfirmed_accounts: u64,
    pub sessions: u64,
    pub links: u64,
    pub limits: u64,
}

/// Deletes accounts nobody confirmed within [`UNCONFIRMED_KEPT`] of their
/// last sign-up, expired sessions, links expired a day ago, and limits
/// that have recovered.
pub async fn purge_stale(pool: &Pool) -> Result<Purged, AccountsError> {
    let client = pool.get().await?;
    let unconfirmed_accounts = client
        .execute(
            "DELETE FROM users WHERE confirmed_at IS NULL \
             AND updated_at < now() - make_interval(secs => $1)",
            &[&UNCONFIRMED_KEPT.as_seconds_f64()],
        )
        .await?;
    let sessions = client
        .execute("DELETE FROM sessions WHERE expires_at < now()", &[])
        .await?;
    let links = client
        .execute(
            "DELETE FROM user_tokens WHERE expires_at < now() - interval '1 day'",
            &[],
        )
        .await?;
    let limits = rate_limit::purge(pool).await?;
    Ok(Purged {
        unconfirmed_accounts,
        sessions,
        links,
        limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_refuse_unknown_values() {
        assert_eq!(Role::try_from("admin").unwrap(), Role::Admin);
        assert_eq!(Role::try_from("member").unwrap(), Role::Member);
        for bad in ["Admin", "", "owner"] {
            assert!(
                matches!(Role::try_from(bad), Err(AccountsError::StoredValue(_))),
                "{bad}"
            );
        }
    }
}
