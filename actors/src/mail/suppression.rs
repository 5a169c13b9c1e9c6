//! The suppression list: addresses that bounced for good or complained, and
//! are never mailed again. Amazon SES reports them through SNS
//! (`POST /webhooks/ses`); the Mailer's claim query joins the list and
//! dead-letters a suppressed recipient's email instead of sending it.

use deadpool_postgres::GenericClient;

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
