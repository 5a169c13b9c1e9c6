//! The suppression list: addresses that bounced for good or complained, and
//! are never mailed again. Amazon SES reports them through SNS
//! (`POST /webhooks/ses`); the Mailer asks `find_suppression` before every send.

use std::fmt;

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;

use super::{EmailAddress, MailError};

/// Why an address is suppressed. A complaint outranks a bounce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A permanent bounce: the mailbox does not exist or never accepts mail.
    Bounce,
    /// The recipient marked a message as spam.
    Complaint,
}

impl Reason {
    /// The value in `email_suppressions.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Bounce => "bounce",
            Reason::Complaint => "complaint",
        }
    }

    fn from_column(value: &str) -> Option<Reason> {
        match value {
            "bounce" => Some(Reason::Bounce),
            "complaint" => Some(Reason::Complaint),
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An address on the suppression list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub reason: Reason,
    /// What the provider said (bounce type, diagnostic code), for the dead letter.
    pub detail: String,
    /// When the address was first suppressed.
    pub created_at: OffsetDateTime,
}

/// Puts `address` on the suppression list. Idempotent: a second report
/// keeps the first one's time and detail, except that a complaint replaces
/// a bounce (it is the stronger reason never to write again).
pub async fn suppress(
    client: &impl GenericClient,
    address: &EmailAddress,
    reason: Reason,
    detail: &str,
) -> Result<(), MailError> {
    let upsert = client
        .prepare_cached(
            "INSERT INTO email_suppressions (email, reason, detail) VALUES ($1, $2, $3) \
             ON CONFLICT (email) DO UPDATE SET reason = EXCLUDED.reason, detail = EXCLUDED.detail \
             WHERE email_suppressions.reason = 'bounce' AND EXCLUDED.reason = 'complaint'",
        )
        .await?;
    client
        .execute(&upsert, &[&address.as_str(), &reason.as_str(), &detail])
        .await?;
    Ok(())
}

/// The suppression of `address`, if it has one.
pub async fn find_suppression(
    client: &impl GenericClient,
    address: &EmailAddress,
) -> Result<Option<Suppression>, MailError> {
    let select = client
        .prepare_cached("SELECT reason, detail, created_at FROM email_suppressions WHERE email = $1")
        .await?;
    let Some(row) = client.query_opt(&select, &[&address.as_str()]).await? else {
        return Ok(None);
    };
    let reason: &str = row.get(0);
    // The table's CHECK constraint admits only the two reasons; were it
    // otherwise, the address would still be suppressed, as strictly as can be.
    let reason = Reason::from_column(reason).unwrap_or(Reason::Complaint);
    Ok(Some(Suppression {
        reason,
        detail: row.get(1),
        created_at: row.get(2),
    }))
}
