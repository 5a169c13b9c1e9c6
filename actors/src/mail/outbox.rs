//! The outbox from the Mailer's side: claiming the next due email inside a
//! transaction, recording what became of it, and when to try again; and
//! from the operator's: the list of emails (never their data, which may
//! hold a link) and the retry of a dead letter.

use std::time::{Duration, Instant};

use deadpool_postgres::{Pool, Transaction};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{EmailKind, MailAdminError, NOTIFY_CHANNEL};
use crate::events::{self, Event};

/// Retries are never further apart than this.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// A due email, locked by the transaction that claimed it.
#[derive(Debug, Clone)]
pub struct ClaimedEmail {
    pub id: i64,
    /// The template folder; not parsed into [`super::EmailKind`], so that a
    /// row another version wrote is still read (and dead-lettered).
    pub message: String,
    pub recipient: String,
    pub data: Value,
    /// Sends tried before this one.
    pub attempts: i32,
    /// Why the recipient is on the suppression list, if it is.
    pub suppressed: Option<String>,
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent { provider_id: String },
    Retry { error: String, after: Duration },
    Dead { error: String },
}

/// Locks the longest-due pending email, skipping those that other
/// workers (of this or any node) hold. The lock lasts as long as the
/// transaction: if the process dies, the row is pending again.
pub async fn claim_due_email(
    transaction: &Transaction<'_>,
) -> Result<Option<ClaimedEmail>, tokio_postgres::Error> {
    let claim = transaction
        .prepare_cached(
            "SELECT o.id, o.message, o.recipient, o.data, o.attempts, \
                    s.reason || CASE WHEN s.detail = '' THEN '' ELSE ' (' || s.detail || ')' END \
             FROM email_outbox o \
             LEFT JOIN email_suppressions s ON s.email = lower(o.recipient) \
             WHERE o.status = 'pending' AND o.due_at <= now() \
             ORDER BY o.due_at \
             FOR UPDATE OF o SKIP LOCKED \
             LIMIT 1",
        )
        .await?;
    Ok(transaction.query_opt(&claim, &[]).await?.map(|row| ClaimedEmail {
        id: row.get(0),
        message: row.get(1),
        recipient: row.get(2),
        data: row.get(3),
        attempts: row.get(4),
        suppressed: row.get(5),
    }))
}

/// Writes the outcome of the claimed email `id`, with `attempts` sends
/// tried so far. A sent or dead email keeps no link: the outbox must not
/// hold working login or reset links once they are out of its hands. Times are the clock's, not `now()`: the transaction began
/// at the claim, before the rate limit's wait and the send.
pub async fn record_outcome(
    transaction: &Transaction<'_>,
    id: i64,
    attempts: i32,
    outcome: &Outcome,
) -> Result<(), tokio_postgres::Error> {
    match outcome {
        Outcome::Sent { provider_id } => {
            let sent = transaction
                .prepare_cached(
                    "UPDATE email_outbox SET status = 'sent', attempts = $2, provider_id = $3, \
                     sent_at = clock_timestamp(), last_error = NULL, data = data - 'link' WHERE id = $1",
                )
                .await?;
            transaction.execute(&sent, &[&id, &attempts, provider_id]).await?;
        }
        Outcome::Retry { error, after } => {
            let retry = transaction
                .prepare_cached(
                    "UPDATE email_outbox SET attempts = $2, last_error = $3, \
                     due_at = clock_timestamp() + make_interval(secs => $4) WHERE id = $1",
                )
                .await?;
            transaction
                .execute(&retry, &[&id, &attempts, error, &after.as_secs_f64()])
                .await?;
        }
        Outcome::Dead { error } => {
            let dead = transaction
                .prepare_cached(
                    "UPDATE email_outbox SET status = 'dead', attempts = $2, last_error = $3, \
                     data = data - 'link' WHERE id = $1",
                )
                .await?;
            transaction.execute(&dead, &[&id, &attempts, error]).await?;
        }
    }
    Ok(())
}

/// Dead letters not reported yet: how many, and the newest one's message
/// and error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeadLetters {
    pub count: u64,
    pub latest_message: String,
    pub latest_error: String,
}

/// Marks the dead letters nobody reported yet as reported, as part of
/// `transaction` (the alert that tells of them goes in the same one). Two
/// nodes checking at once report each dead letter once: the second waits
/// for the first's row locks and then finds them reported.
pub async fn report_dead_letters(
    transaction: &Transaction<'_>,
) -> Result<Option<NewDeadLetters>, tokio_postgres::Error> {
    let report = transaction
        .prepare_cached(
            "UPDATE email_outbox SET dead_reported = true \
             WHERE status = 'dead' AND NOT dead_reported \
             RETURNING id, message, coalesce(last_error, '')",
        )
        .await?;
    let rows = transaction.query(&report, &[]).await?;
    let latest = rows.iter().max_by_key(|row| row.get::<_, i64>(0));
    Ok(latest.map(|row| NewDeadLetters {
        count: rows.len() as u64,
        latest_message: row.get(1),
        latest_error: row.get(2),
    }))
}

/// Deletes sent and dead emails created more than `keep` ago; returns how many.
pub async fn purge(pool: &deadpool_postgres::Pool, keep: Duration) -> Result<u64, crate::store::StoreError> {
    let client = pool.get().await?;
    let purge = client
        .prepare_cached(
            "DELETE FROM email_outbox WHERE status <> 'pending' \
             AND created_at < now() - make_interval(secs => $1)",
        )
        .await?;
    Ok(client.execute(&purge, &[&keep.as_secs_f64()]).await?)
}

/// How many emails wait in the outbox (due or retrying) and how many were
/// given up, for `/metrics`: two counts over the partial indexes on status,
/// bounded by `within`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxDepth {
    pub pending: u64,
    pub dead: u64,
}

pub async fn depth(
    pool: &deadpool_postgres::Pool,
    within: Duration,
) -> Result<OutboxDepth, crate::store::StoreError> {
    let count = async {
        let client = pool.get().await?;
        let count = client
            .prepare_cached(
                "SELECT (SELECT count(*) FROM email_outbox WHERE status = 'pending'), \
                        (SELECT count(*) FROM email_outbox WHERE status = 'dead')",
            )
            .await?;
        let row = client.query_one(&count, &[]).await?;
        Ok::<_, crate::store::StoreError>(OutboxDepth {
            pending: row.get::<_, i64>(0).unsigned_abs(),
            dead: row.get::<_, i64>(1).unsigned_abs(),
        })
    };
    tokio::time::timeout(within, count)
        .await
        .map_err(|_| crate::store::StoreError::Timeout(within))?
}

/// Where an email is in the outbox (`email_outbox.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Waiting to be sent, or to be tried again.
    Pending,
    Sent,
    /// Given up: a permanent error, too many attempts, or a suppressed address.
    Dead,
}

impl OutboxStatus {
    pub fn parse(raw: &str) -> Option<OutboxStatus> {
        match raw {
            "pending" => Some(OutboxStatus::Pending),
            "sent" => Some(OutboxStatus::Sent),
            "dead" => Some(OutboxStatus::Dead),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Dead => "dead",
        }
    }
}

/// One email as the operator sees it: what, to whom, and what became of it.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: i64,
    /// The template folder (`EmailKind::name`).
    pub message: String,
    pub recipient: String,
    pub status: OutboxStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: OffsetDateTime,
    pub sent_at: Option<OffsetDateTime>,
}

impl OutboxEntry {
    /// A dead letter that can be sent again (see [`retry_dead_letter`]).
    pub fn retryable(&self) -> bool {
        self.status == OutboxStatus::Dead && !EmailKind::carries_link(&self.message)
    }
}

/// Which emails [`list_outbox`] lists, newest first.
#[derive(Debug, Clone, Default)]
pub struct OutboxFilter<'a> {
    pub status: Option<OutboxStatus>,
    pub recipient: Option<&'a str>,
    /// Only emails older than this one (the next page).
    pub before: Option<i64>,
}

/// At most `limit` emails of the outbox that `filter` lets through,
/// newest first.
pub async fn list_outbox(
    pool: &Pool,
    filter: &OutboxFilter<'_>,
    limit: i64,
) -> Result<Vec<OutboxEntry>, MailAdminError> {
    let client = pool.get().await?;
    let list = client
        .prepare_cached(
            "SELECT id, message, recipient, status, attempts, last_error, created_at, sent_at \
             FROM email_outbox \
             WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR recipient = $2) \
               AND ($3::bigint IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4",
        )
        .await?;
    let status = filter.status.map(OutboxStatus::as_str);
    client
        .query(&list, &[&status, &filter.recipient, &filter.before, &limit])
        .await?
        .iter()
        .map(|row| {
            let status: &str = row.get(3);
            Ok(OutboxEntry {
                id: row.get(0),
                message: row.get(1),
                recipient: row.get(2),
                status: OutboxStatus::parse(status).ok_or_else(|| {
                    crate::store::StoreError::Unexpected(format!("outbox status {status:?}"))
                })?,
                attempts: row.get(4),
                last_error: row.get(5),
                created_at: row.get(6),
                sent_at: row.get(7),
            })
        })
        .collect()
}

/// Puts the dead letter `id` back in the queue for the administrator
/// `admin_id`: due now, its attempts counted afresh and its error cleared
/// (the audit event keeps both), and reported again should it die again.
/// The Mailers hear of it on commit.
pub async fn retry_dead_letter(pool: &Pool, id: i64, admin_id: i64) -> Result<(), MailAdminError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    let row = transaction
        .query_opt(
            "SELECT o.message, o.recipient, o.status, o.attempts, o.last_error, \
                    EXISTS (SELECT 1 FROM email_suppressions s WHERE s.email = lower(o.recipient)) \
             FROM email_outbox o WHERE o.id = $1 FOR UPDATE OF o",
            &[&id],
        )
        .await?
        .ok_or(MailAdminError::NoSuchEmail(id))?;
    let message: String = row.get(0);
    let status: String = row.get(2);
    if status != OutboxStatus::Dead.as_str() {
        return Err(MailAdminError::NotDeadLetter { id, status });
    }
    if EmailKind::carries_link(&message) {
        return Err(MailAdminError::LinkRemoved(id));
    }
    if row.get::<_, bool>(5) {
        // It would only be given up again.
        return Err(MailAdminError::RecipientSuppressed(row.get(1)));
    }
    transaction
        .execute(
            "UPDATE email_outbox SET status = 'pending', attempts = 0, last_error = NULL, \
             due_at = now(), dead_reported = false WHERE id = $1",
            &[&id],
        )
        .await?;
    let retried = json!({
        "message": message,
        "recipient": row.get::<_, String>(1),
        "attempts": row.get::<_, i32>(3),
        "error": row.get::<_, Option<String>>(4),
    });
    events::record_in(
        &transaction,
        &Event::by_admin("admin.mail_retried", id.to_string(), admin_id, retried),
    )
    .await?;
    transaction
        .batch_execute(&format!("NOTIFY {NOTIFY_CHANNEL}"))
        .await?;
    transaction.commit().await?;
    Ok(())
}

/// The wait before retry number `attempts` (1 after the first failure):
/// `base * 2^(attempts-1)`, at most an hour, times `jitter` in [0, 1]
/// ("full jitter", so that emails that failed together do not retry together).
pub fn retry_delay(base: Duration, attempts: u32, jitter: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(31);
    let ceiling = base.saturating_mul(1 << exponent).min(MAX_RETRY_DELAY);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A random number in [0, 1] for [`retry_delay`].
pub fn jitter() -> f64 {
    // Without the system's randomness, waiting the whole delay is still correct.
    getrandom::u32().map_or(1.0, |n| f64::from(n) / f64::from(u32::MAX))
}

/// The send-rate limit every worker of a Mailer shares: a token bucket that
/// holds one token and gains `per_second` a second, so sends are spaced
/// evenly and no second ever holds more than `per_second` of them.
#[derive(Debug)]
pub struct SendRate {
    interval: Duration,
    next_token: Option<Instant>,
}

impl SendRate {
    pub fn new(per_second: u32) -> SendRate {
        SendRate {
            // Rounded up: `per_second` intervals must span a whole second.
            interval: Duration::from_nanos(1_000_000_000u64.div_ceil(u64::from(per_second.max(1)))),
            next_token: None,
        }
    }

    /// Takes the next token: the instant the caller may send at.
    pub fn reserve(&mut self, now: Instant) -> Instant {
        let at = self.next_token.map_or(now, |next| next.max(now));
        self.next_token = Some(at + self.interval);
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn retries_back_off_exponentially_up_to_an_hour() {
        let base = Duration::from_secs(30);
        assert_eq!(retry_delay(base, 1, 1.0), Duration::from_secs(30));
        assert_eq!(retry_delay(base, 2, 1.0), Duration::from_secs(60));
        assert_eq!(retry_delay(base, 4, 1.0), Duration::from_secs(240));
        assert_eq!(retry_delay(base, 8, 1.0), Duration::from_secs(3600));
        assert_eq!(retry_delay(base, 400, 1.0), Duration::from_secs(3600));
        assert_eq!(retry_delay(base, 4, 0.5), Duration::from_secs(120));
        assert_eq!(retry_delay(base, 4, 0.0), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn a_retry_delay_is_within_its_ceiling(base in 1u64..3600, attempts in 1u32..100, jitter in 0.0f64..=1.0) {
            let delay = retry_delay(Duration::from_secs(base), attempts, jitter);
            prop_assert!(delay <= MAX_RETRY_DELAY);
            prop_assert!(delay <= Duration::from_secs(base) * 2u32.saturating_pow(attempts - 1));
        }

        #[test]
        fn no_second_holds_more_sends_than_the_rate(per_second in 1u32..50, gaps in proptest::collection::vec(0u64..400, 1..200)) {
            let mut rate = SendRate::new(per_second);
            let start = Instant::now();
            let mut now = start;
            let mut sends = Vec::new();
            for gap in gaps {
                now += Duration::from_millis(gap);
                let at = rate.reserve(now);
                prop_assert!(at >= now);
                sends.push(at);
            }
            for (i, first) in sends.iter().enumerate() {
                let within = sends[i..].iter().take_while(|at| **at < *first + Duration::from_secs(1)).count();
                prop_assert!(within <= per_second as usize, "{} sends within a second", within);
            }
        }
    }
}
