//! The mail context: the transactional outbox (an email is a row written in
//! the same transaction as the change that causes it), the templates, the
//! suppression list, and the Mailer actor that drains the outbox.

pub mod actor;
pub mod address;
pub mod backend;
pub mod messages;
pub mod outbox;
pub mod sns;
pub mod suppression;
pub mod templates;

pub use actor::{Deliverer, Mailer, MailerConfig};
pub use address::{AddressError, EmailAddress};
pub use backend::BackendConfig;
pub use outbox::{list_outbox, retry_dead_letter, OutboxEntry, OutboxFilter, OutboxStatus};
pub use suppression::{list_suppressions, remove_suppression, Suppression};

use deadpool_postgres::Transaction;
use serde_json::Value;

use crate::store::StoreError;

/// PostgreSQL channel that wakes every node's Mailer; NOTIFY inside the
/// enqueueing transaction is delivered only if it commits.
pub const NOTIFY_CHANNEL: &str = "lectern_mail";

/// The kinds of email Lectern sends; each is a folder under `templates/email/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailKind {
    ConfirmEmail,
    MagicLink,
    PasswordReset,
    EmailChanged,
    Welcome,
    SubscriptionStarted,
    PaymentFailed,
    CancellationConfirmed,
    GrantExpiring,
    /// To the operator (`alerts.email`): see [`crate::alerts`].
    Alert,
    /// The operator's weekly digest: see [`crate::alerts::digest`].
    Digest,
}

impl EmailKind {
    pub fn name(self) -> &'static str {
        match self {
            EmailKind::ConfirmEmail => "confirm_email",
            EmailKind::MagicLink => "magic_link",
            EmailKind::PasswordReset => "password_reset",
            EmailKind::EmailChanged => "email_changed",
            EmailKind::Welcome => "welcome",
            EmailKind::SubscriptionStarted => "subscription_started",
            EmailKind::PaymentFailed => "payment_failed",
            EmailKind::CancellationConfirmed => "cancellation_confirmed",
            EmailKind::GrantExpiring => "grant_expiring",
            EmailKind::Alert => "alert",
            EmailKind::Digest => "digest",
        }
    }

    /// Whether the message `name` carries a single-use link. The outbox
    /// drops an email's link once it is sent or given up, so such an email
    /// cannot be sent again: its recipient asks for a new link instead.
    pub fn carries_link(name: &str) -> bool {
        [
            EmailKind::ConfirmEmail,
            EmailKind::MagicLink,
            EmailKind::PasswordReset,
        ]
        .iter()
        .any(|kind| kind.name() == name)
    }
}

/// One email to send: its kind, its recipient, and the values its
/// templates use.
#[derive(Debug, Clone)]
pub struct Email {
    pub to: EmailAddress,
    pub kind: EmailKind,
    pub data: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
}

/// Why an administrator's action on the outbox or the suppression list
/// was refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum MailAdminError {
    #[error("there is no email {0} in the outbox")]
    NoSuchEmail(i64),
    #[error("email {id} is {status}, not a dead letter")]
    NotDeadLetter { id: i64, status: String },
    #[error("email {0} carried a single-use link, removed from the outbox when it was given up")]
    LinkRemoved(i64),
    #[error("{0} is not on the suppression list")]
    NotSuppressed(String),
    #[error("{0} is on the suppression list: take it off the list before retrying")]
    RecipientSuppressed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for MailAdminError {
    fn from(e: tokio_postgres::Error) -> Self {
        MailAdminError::Store(StoreError::Query(e))
    }
}

impl From<deadpool_postgres::PoolError> for MailAdminError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        MailAdminError::Store(StoreError::Checkout(e))
    }
}

/// Puts `email` in the outbox as part of `transaction`: it is sent if and
/// only if the transaction commits, and the Mailers hear of it on commit.
pub async fn enqueue(transaction: &Transaction<'_>, email: Email) -> Result<i64, MailError> {
    let insert = transaction
        .prepare_cached(
            "INSERT INTO email_outbox (message, recipient, data) VALUES ($1, $2, $3) RETURNING id",
        )
        .await?;
    let row = transaction
        .query_one(&insert, &[&email.kind.name(), &email.to.as_str(), &email.data])
        .await?;
    transaction
        .batch_execute(&format!("NOTIFY {NOTIFY_CHANNEL}"))
        .await?;
    Ok(row.get(0))
}
