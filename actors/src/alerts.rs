//! Alerts to the operator: the one way any part of Lectern tells the
//! operator that something needs them. An alert is a row in `alerts` and,
//! when `alerts.email` is set, an email in the outbox, written in one
//! transaction; each condition is told at most once an hour, across every
//! node that shares the database, and what is raised again within the hour
//! is counted on the alert that was told, so that the next one says how
//! many came in between. The watches that raise most of them are in
//! [`watch`]; the weekly digest of how things went is in [`digest`].

pub mod certificate;
pub mod digest;
pub mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Pool, Transaction};
use serde_json::json;
use slog::{error, warn, Logger};

use crate::events::{record_in, Event};
use crate::mail::{self, Email, EmailAddress, EmailKind};
use crate::store::StoreError;

/// A condition is told again only once this long has passed since it last was.
pub const REPEAT_AFTER: Duration = Duration::from_secs(3600);

/// What an alert is about; each is told at most once per [`REPEAT_AFTER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    /// Emails given up on (dead letters) appeared in the outbox.
    DeadLetters,
    /// An actor restarted more often than `alerts.restart_storm_*` allows,
    /// or the supervision tree escalated and the process exited.
    RestartStorm,
    /// The database did not answer for `alerts.database_down_secs` or more.
    DatabaseUnreachable,
    /// The TLS certificate (`alerts.tls_certificate`) expires soon, or cannot be read.
    TlsCertificate,
    /// Billing reconciliation found Lectern and Stripe disagreeing.
    BillingDrift,
    /// A backup failed, or did not verify.
    BackupFailed,
}

impl Condition {
    pub const ALL: [Condition; 6] = [
        Condition::DeadLetters,
        Condition::RestartStorm,
        Condition::DatabaseUnreachable,
        Condition::TlsCertificate,
        Condition::BillingDrift,
        Condition::BackupFailed,
    ];

    /// Its name in the `alerts` table, events and metrics.
    pub fn key(self) -> &'static str {
        match self {
            Condition::DeadLetters => "dead_letters",
            Condition::RestartStorm => "restart_storm",
            Condition::DatabaseUnreachable => "database_unreachable",
            Condition::TlsCertificate => "tls_certificate",
            Condition::BillingDrift => "billing_drift",
            Condition::BackupFailed => "backup_failed",
        }
    }

    /// What the email's subject calls it.
    pub fn title(self) -> &'static str {
        match self {
            Condition::DeadLetters => "emails were given up on",
            Condition::RestartStorm => "actors are restarting",
            Condition::DatabaseUnreachable => "the database was unreachable",
            Condition::TlsCertificate => "the TLS certificate needs renewing",
            Condition::BillingDrift => "billing drifted from Stripe",
            Condition::BackupFailed => "a backup failed",
        }
    }

    /// What the operator can do about it.
    fn advice(self) -> &'static str {
        match self {
            Condition::DeadLetters => {
                "The outbox keeps them with their error (status dead) until mail.keep_days have passed; \
                 the log has a line for each."
            }
            Condition::RestartStorm => {
                "The log has each restart and the panic that caused it; /readyz shows every actor's \
                 restarts and last error. Past supervisor.max_restarts within supervisor.within_secs, \
                 Lectern exits and systemd starts it again."
            }
            Condition::DatabaseUnreachable => {
                "Pages in the cache were served meanwhile; pages that needed the database answered 503. \
                 The PostgreSQL log may say why it was away."
            }
            Condition::TlsCertificate => {
                "Renew it (certbot renew) and reload nginx; check that the renewal timer runs."
            }
            Condition::BillingDrift => {
                "What could be fixed was fixed from Stripe's side; problems need a look in Stripe's \
                 dashboard or in the configuration; lectern billing reconcile runs it again."
            }
            Condition::BackupFailed => {
                "The failure is recorded (lectern backup list shows it) and the next scheduled backup \
                 will run as planned. Until one succeeds, the newest good backup is the one \
                 lectern backup list shows as verified."
            }
        }
    }
}

/// What the operator is told: one line, and as much detail as helps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub condition: Condition,
    pub summary: String,
    pub detail: String,
}

impl Alert {
    pub fn new(condition: Condition, summary: impl Into<String>, detail: impl Into<String>) -> Alert {
        Alert {
            condition,
            summary: summary.into(),
            detail: detail.into(),
        }
    }
}

/// What became of a raised alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raised {
    /// Told: emailed (the outbox row) or, without `alerts.email`, only logged.
    Told { alert_id: i64, email_id: Option<i64> },
    /// Told less than an hour ago: counted on that alert, which has now
    /// been raised `repeats` more times.
    Repeated { alert_id: i64, repeats: i32 },
}

/// Raises alerts; cheap to clone, one for the whole process.
#[derive(Clone)]
pub struct Alerts {
    pool: Pool,
    to: Option<EmailAddress>,
    counts: Arc<RaisedCounts>,
    log: Logger,
}

/// Alerts this process raised, by condition, told or not (for `/metrics`).
#[derive(Default)]
struct RaisedCounts([AtomicU64; Condition::ALL.len()]);

impl Alerts {
    /// Alerts emailed to `to`; with `None` they are only logged.
    pub fn new(pool: Pool, to: Option<EmailAddress>, log: Logger) -> Alerts {
        Alerts {
            pool,
            to,
            counts: Arc::default(),
            log,
        }
    }

    /// The operator's address (`alerts.email`), if set.
    pub fn operator(&self) -> Option<&EmailAddress> {
        self.to.as_ref()
    }

    /// Raises `alert` in a transaction of its own.
    pub async fn raise(&self, alert: Alert) -> Result<Raised, StoreError> {
        let raised = async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            let raised = self.raise_in(&transaction, &alert).await?;
            transaction.commit().await?;
            Ok(raised)
        }
        .await;
        self.settled(&alert, &raised);
        raised
    }

    /// Raises `alert` as part of `transaction`: it is told (and counted
    /// against the hour) if and only if the transaction commits. The caller
    /// then hands the outcome to [`Alerts::settled`].
    pub async fn raise_in(&self, transaction: &Transaction<'_>, alert: &Alert) -> Result<Raised, StoreError> {
        let condition = alert.condition.key();
        // Every raise of this condition, on any node, waits here for the
        // one before it to commit or roll back, then sees what it wrote.
        let lock = transaction
            .prepare_cached("SELECT pg_advisory_xact_lock(hashtext('lectern.alerts'), hashtext($1))")
            .await?;
        transaction.execute(&lock, &[&condition]).await?;
        let latest = transaction
            .prepare_cached(
                "SELECT id, repeats, raised_at > now() - make_interval(secs => $2), \
                        to_char(raised_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"') \
                 FROM alerts WHERE condition = $1 ORDER BY raised_at DESC LIMIT 1",
            )
            .await?;
        let latest = transaction
            .query_opt(&latest, &[&condition, &REPEAT_AFTER.as_secs_f64()])
            .await?;
        let raised = match latest {
            Some(row) if row.get::<_, bool>(2) => {
                let repeat = transaction
                    .prepare_cached(
                        "UPDATE alerts SET repeats = repeats + 1, last_repeat_at = now(), last_repeat = $2 \
                         WHERE id = $1 RETURNING repeats",
                    )
                    .await?;
                let alert_id: i64 = row.get(0);
                let repeats = transaction
                    .query_one(&repeat, &[&alert_id, &alert.summary])
                    .await?
                    .get(0);
                Raised::Repeated { alert_id, repeats }
            }
            previous => {
                let (repeats_before, previous_at): (i32, String) =
                    previous.map(|row| (row.get(1), row.get(3))).unwrap_or_default();
                let insert = transaction
                    .prepare_cached(
                        "INSERT INTO alerts (condition, summary, detail, emailed_to) \
                         VALUES ($1, $2, $3, $4) RETURNING id",
                    )
                    .await?;
                let to = self.to.as_ref().map(EmailAddress::as_str);
                let alert_id: i64 = transaction
                    .query_one(&insert, &[&condition, &alert.summary, &alert.detail, &to])
                    .await?
                    .get(0);
                let email_id = match &self.to {
                    None => None,
                    Some(to) => {
                        let email = Email {
                            to: to.clone(),
                            kind: EmailKind::Alert,
                            data: json!({
                                "condition": condition,
                                "title": alert.condition.title(),
                                "summary": alert.summary,
                                "detail": alert.detail,
                                "advice": alert.condition.advice(),
                                "repeats_before": repeats_before,
                                "previous_at": previous_at,
                            }),
                        };
                        let queued = mail::enqueue(transaction, email).await;
                        Some(queued.map_err(|mail::MailError::Database(e)| e)?)
                    }
                };
                Raised::Told { alert_id, email_id }
            }
        };
        self.record_event(transaction, alert, raised).await?;
        Ok(raised)
    }

    /// `alert.raised`, for counting later (the digest, the dashboard).
    async fn record_event(
        &self,
        transaction: &Transaction<'_>,
        alert: &Alert,
        raised: Raised,
    ) -> Result<(), StoreError> {
        let told = matches!(raised, Raised::Told { .. });
        let event = Event::new(
            "alert.raised",
            alert.condition.key().to_owned(),
            json!({ "summary": alert.summary, "detail": alert.detail, "told": told }),
        );
        record_in(transaction, &event).await?;
        Ok(())
    }

    /// Logs what became of `alert` once its transaction is over, and counts it.
    pub fn settled(&self, alert: &Alert, raised: &Result<Raised, StoreError>) {
        let condition = alert.condition.key();
        match raised {
            Ok(Raised::Told { email_id, .. }) => {
                self.count(alert.condition);
                error!(self.log, "alert: {}", alert.condition.title();
                    "condition" => condition, "summary" => &alert.summary, "detail" => &alert.detail,
                    "emailed" => email_id.is_some());
                if email_id.is_none() {
                    warn!(self.log, "no alerts.email: the alert is only logged"; "condition" => condition);
                }
            }
            Ok(Raised::Repeated { repeats, .. }) => {
                self.count(alert.condition);
                warn!(self.log, "alert raised again within the hour: counted, not emailed";
                    "condition" => condition, "summary" => &alert.summary, "repeats" => repeats);
            }
            Err(e) => error!(self.log, "cannot record an alert; it is only logged";
                "condition" => condition, "summary" => &alert.summary, "detail" => &alert.detail,
                "error" => %e),
        }
    }

    fn count(&self, condition: Condition) {
        if let Some(i) = Condition::ALL.iter().position(|c| *c == condition) {
            self.counts.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Alerts this process raised since it started, by condition (told or repeated).
    pub fn raised_counts(&self) -> Vec<(Condition, u64)> {
        Condition::ALL
            .iter()
            .zip(&self.counts.0)
            .map(|(condition, count)| (*condition, count.load(Ordering::Relaxed)))
            .collect()
    }
}
