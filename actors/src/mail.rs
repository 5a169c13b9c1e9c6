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

use deadpool_postgres::Transaction;
use serde_json::Value;

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
        }
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
