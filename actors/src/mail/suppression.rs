//! The suppression list: addresses that bounced for good or complained, and
//! are never mailed again. Amazon SES reports them through SNS
//! (`POST /webhooks/ses`); the Mailer's claim query joins the list and
//! dead-letters a suppressed recipient's email instead of sending it.

use deadpool_postgres::{GenericClient, Pool};
use serde_json::json;
use time::OffsetDateTime;

use super::{EmailAddress, MailAdminError, MailError};
use crate::events::{self, Event};

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

/// An address on the suppression list.
#[derive(Debug, Clone)]
pub struct Suppression {
    pub email: String,
    /// `bounce` or `complaint`.
    pub reason: String,
    /// What the provider said.
    pub detail: String,
    pub created_at: OffsetDateTime,
}

/// The newest `limit` suppressed addresses, newest first.
pub async fn list_suppressions(pool: &Pool, limit: i64) -> Result<Vec<Suppression>, MailAdminError> {
    let client = pool.get().await?;
    let list = client
        .prepare_cached(
            "SELECT email, reason, detail, created_at FROM email_suppressions \
             ORDER BY created_at DESC, email LIMIT $1",
        )
        .await?;
    Ok(client
        .query(&list, &[&limit])
        .await?
        .iter()
        .map(|row| Suppression {
            email: row.get(0),
            reason: row.get(1),
            detail: row.get(2),
            created_at: row.get(3),
        })
        .collect())
}

/// Takes `address` off the suppression list for the administrator
/// `admin_id` (the mailbox works again, say): emails to it are sent again.
/// The audit event keeps why it was on the list.
pub async fn remove_suppression(
    pool: &Pool,
    address: &EmailAddress,
    admin_id: i64,
) -> Result<(), MailAdminError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    let removed = transaction
        .query_opt(
            "DELETE FROM email_suppressions WHERE email = $1 RETURNING reason, detail, created_at",
            &[&address.as_str()],
        )
        .await?
        .ok_or_else(|| MailAdminError::NotSuppressed(address.to_string()))?;
    let suppressed_at: OffsetDateTime = removed.get(2);
    let data = json!({
        "reason": removed.get::<_, String>(0),
        "detail": removed.get::<_, String>(1),
        "suppressed_at": suppressed_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    });
    events::record_in(
        &transaction,
        &Event::by_admin("admin.suppression_removed", address.to_string(), admin_id, data),
    )
    .await?;
    transaction.commit().await?;
    Ok(())
}
