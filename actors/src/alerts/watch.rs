//! The AlertWatch actor: on every node, it looks for what the operator
//! must hear of and raises it: dead letters in the outbox (every
//! `alerts.dead_letters_check_secs`), a database that stopped answering for
//! `alerts.database_down_secs` (told once it answers again, since the
//! outbox lives there), and the TLS certificate (at start, then daily);
//! and it queues the weekly digest when it is due (see [`super::digest`]).
//! Every node watches; the alerts table tells each condition once, and
//! the digest goes once a week.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use deadpool_postgres::Pool;
use slog::{error, info, Logger};
use time::OffsetDateTime;

use super::certificate::{self, CertificateCheck};
use super::digest::{self, Digest, DigestSchedule};
use super::{Alert, Alerts, Condition};
use crate::events::RouteTimes;
use crate::mail::outbox;
use crate::store::{self, StoreError};
use crate::supervisor::restarts::{guard_future, ActorStats, Crashed, SupervisedActor, Tree};

/// How long one probe of the database may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const CERTIFICATE_EVERY: Duration = Duration::from_secs(24 * 3600);
/// How often the watch looks whether the weekly digest is due: it goes
/// within this of its hour.
const DIGEST_EVERY: Duration = Duration::from_secs(600);

/// What the watch looks at, and how often.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub dead_letters_every: Duration,
    /// An outage this long or longer is alerted on.
    pub database_down_after: Duration,
    pub certificate: Option<CertificateWatch>,
    /// When the weekly digest goes; `None`: never.
    pub digest: Option<DigestSchedule>,
}

#[derive(Debug, Clone)]
pub struct CertificateWatch {
    pub path: PathBuf,
    /// Alert when the certificate expires within this.
    pub warn_within: Duration,
}

impl WatchConfig {
    /// Probes often enough to see an outage of `database_down_after` within
    /// about a sixth of it, between once a second and every 10 s.
    fn probe_every(&self) -> Duration {
        (self.database_down_after / 6).clamp(Duration::from_secs(1), Duration::from_secs(10))
    }
}

pub struct AlertWatch {
    alerts: Alerts,
    pool: Pool,
    config: WatchConfig,
    outage: Outage,
    probing: bool,
    /// The tree, for the digest's restart counts (weak: the tree owns the watch).
    tree: Weak<Tree>,
    /// This node's routes' times, for the digest's slowest routes.
    route_times: Arc<RouteTimes>,
    stats: Arc<ActorStats>,
    log: Logger,
}

impl AlertWatch {
    pub fn new(
        alerts: Alerts,
        pool: Pool,
        config: WatchConfig,
        tree: Weak<Tree>,
        route_times: Arc<RouteTimes>,
        stats: Arc<ActorStats>,
        log: Logger,
    ) -> AlertWatch {
        AlertWatch {
            alerts,
            pool,
            config,
            outage: Outage::default(),
            probing: false,
            tree,
            route_times,
            stats,
            log,
        }
    }
}

impl Actor for AlertWatch {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.config.dead_letters_every, |_, ctx| {
            ctx.notify(CheckDeadLetters)
        });
        ctx.run_interval(self.config.probe_every(), |_, ctx| ctx.notify(ProbeDatabase));
        if self.config.certificate.is_some() {
            ctx.notify(CheckCertificate);
            ctx.run_interval(CERTIFICATE_EVERY, |_, ctx| ctx.notify(CheckCertificate));
        }
        if self.config.digest.is_some() {
            ctx.notify(CheckDigest);
            ctx.run_interval(DIGEST_EVERY, |_, ctx| ctx.notify(CheckDigest));
        }
    }
}

impl Supervised for AlertWatch {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.stats.record_restart("stopped");
        // A probe in flight was dropped with the stopped actor; the outage
        // it was timing, if any, goes on being timed.
        self.probing = false;
    }
}

impl SupervisedActor for AlertWatch {
    fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }
}

/// Looks for dead letters nobody was told of; answers how many it found.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<u64, Crashed>")]
pub struct CheckDeadLetters;

impl Handler<CheckDeadLetters> for AlertWatch {
    type Result = ResponseActFuture<Self, Result<u64, Crashed>>;

    fn handle(&mut self, _: CheckDeadLetters, _: &mut Context<Self>) -> Self::Result {
        let (pool, alerts, stats) = (self.pool.clone(), self.alerts.clone(), Arc::clone(&self.stats));
        let check = async move {
            match report_dead_letters(&pool, &alerts).await {
                Ok(found) => found,
                Err(e) => {
                    stats.record_error(format!("cannot look for dead letters: {e}"));
                    0
                }
            }
        };
        guard_future(self, "CheckDeadLetters", check)
    }
}

/// Marks the new dead letters reported and raises one alert for them, in
/// one transaction: if the alert cannot be written, they stay new.
async fn report_dead_letters(pool: &Pool, alerts: &Alerts) -> Result<u64, StoreError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    let Some(dead) = outbox::report_dead_letters(&transaction).await? else {
        return Ok(0);
    };
    let alert = Alert::new(
        Condition::DeadLetters,
        format!("{} email(s) were given up on since the last check.", dead.count),
        format!(
            "The newest: a {} email, given up because: {}",
            dead.latest_message, dead.latest_error
        ),
    );
    let raised = match alerts.raise_in(&transaction, &alert).await {
        Ok(raised) => transaction
            .commit()
            .await
            .map(|()| raised)
            .map_err(StoreError::from),
        Err(e) => Err(e),
    };
    alerts.settled(&alert, &raised);
    raised.map(|_| dead.count)
}

/// Checks the TLS certificate now.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), Crashed>")]
pub struct CheckCertificate;

impl Handler<CheckCertificate> for AlertWatch {
    type Result = ResponseActFuture<Self, Result<(), Crashed>>;

    fn handle(&mut self, _: CheckCertificate, _: &mut Context<Self>) -> Self::Result {
        let (watch, alerts, log) = (
            self.config.certificate.clone(),
            self.alerts.clone(),
            self.log.clone(),
        );
        let check = async move {
            let Some(watch) = watch else { return };
            let path = watch.path.display();
            let alert = match certificate::check(&watch.path, watch.warn_within, SystemTime::now()) {
                CertificateCheck::Fine { not_after } => {
                    info!(log, "TLS certificate checked"; "path" => %path, "not_after" => %utc(not_after));
                    return;
                }
                CertificateCheck::Expiring { not_after, left } => Alert::new(
                    Condition::TlsCertificate,
                    match left.is_zero() {
                        true => format!("The TLS certificate {path} expired on {}.", utc(not_after)),
                        false => format!(
                            "The TLS certificate {path} expires on {}, in {} day(s).",
                            utc(not_after),
                            left.as_secs() / 86_400
                        ),
                    },
                    "",
                ),
                CertificateCheck::Unreadable(why) => Alert::new(
                    Condition::TlsCertificate,
                    format!("The TLS certificate {path} cannot be checked."),
                    why,
                ),
            };
            // A failure to record it is logged with the alert by `raise`.
            let _ = alerts.raise(alert).await;
        };
        guard_future(self, "CheckCertificate", check)
    }
}

/// Queues the weekly digest if it is due and was not queued yet (by any
/// node); answers what became of it (`None`: no digest is configured, or
/// no `alerts.email` to send it to).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<Option<Digest>, Crashed>")]
pub struct CheckDigest;

impl Handler<CheckDigest> for AlertWatch {
    type Result = ResponseActFuture<Self, Result<Option<Digest>, Crashed>>;

    fn handle(&mut self, _: CheckDigest, _: &mut Context<Self>) -> Self::Result {
        let (schedule, pool, alerts, log, stats) = (
            self.config.digest,
            self.pool.clone(),
            self.alerts.clone(),
            self.log.clone(),
            Arc::clone(&self.stats),
        );
        let restarts = self.tree.upgrade().map(|tree| tree.report()).unwrap_or_default();
        let slowest = self
            .route_times
            .slowest(digest::SLOWEST_ROUTES, digest::SLOWEST_MIN_REQUESTS);
        let check = async move {
            let (schedule, to) = (schedule?, alerts.operator()?);
            let due = schedule.due_at(OffsetDateTime::now_utc());
            let node = digest::ThisNode {
                actors: &restarts,
                slowest: &slowest,
            };
            match digest::send_digest(&pool, to, due, node).await {
                Ok(Digest::Queued(email_id)) => {
                    let (from, to) = digest::week_of(due);
                    info!(log, "weekly digest queued"; "outbox_id" => email_id,
                        "from" => %from, "to" => %to);
                    Some(Digest::Queued(email_id))
                }
                Ok(Digest::AlreadySent) => Some(Digest::AlreadySent),
                Err(e) => {
                    stats.record_error(format!("cannot queue the weekly digest: {e}"));
                    error!(log, "cannot queue the weekly digest"; "error" => %e);
                    None
                }
            }
        };
        guard_future(self, "CheckDigest", check)
    }
}

/// Asks the database whether it answers, and times an outage.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), Crashed>")]
pub struct ProbeDatabase;

impl Handler<ProbeDatabase> for AlertWatch {
    type Result = ResponseActFuture<Self, Result<(), Crashed>>;

    fn handle(&mut self, _: ProbeDatabase, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool.clone();
        let busy = std::mem::replace(&mut self.probing, true);
        let probe = async move {
            match busy {
                true => None,
                false => Some(store::ping(&pool, PROBE_TIMEOUT).await),
            }
        };
        Box::pin(guard_future(self, "ProbeDatabase", probe).map(move |answer, act, ctx| {
            let Some(answer) = answer? else {
                return Ok(());
            };
            act.probing = false;
            let now = OffsetDateTime::now_utc();
            let threshold = act.config.database_down_after;
            match answer {
                Err(e) => {
                    if let Some(since) = act.outage.failed(now, threshold, e.to_string()) {
                        error!(act.log, "the database has been unreachable for {} s", threshold.as_secs();
                            "since" => %since, "error" => %e);
                    }
                }
                Ok(()) => {
                    if let Some(over) = act.outage.answered(now, threshold) {
                        info!(act.log, "the database answers again"; "from" => %over.from, "to" => %over.to);
                        let alerts = act.alerts.clone();
                        let alert = Alert::new(
                            Condition::DatabaseUnreachable,
                            format!(
                                "The database was unreachable from {} to {} ({} s).",
                                utc(over.from),
                                utc(over.to),
                                (over.to - over.from).whole_seconds()
                            ),
                            format!("The last error: {}", over.last_error),
                        );
                        ctx.spawn(
                            async move {
                                let _ = alerts.raise(alert).await;
                            }
                            .into_actor(act),
                        );
                    }
                }
            }
            Ok(())
        }))
    }
}

/// The time `at`, as the emails show it.
fn utc(at: impl Into<OffsetDateTime>) -> String {
    let at = at.into().to_offset(time::UtcOffset::UTC);
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        at.date(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// An outage of the database as the probes see it: from the first probe
/// that failed to the first that was answered after it.
#[derive(Debug, Default)]
pub struct Outage {
    since: Option<OffsetDateTime>,
    told: bool,
    last_error: String,
}

/// An outage that lasted at least the threshold, now over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutageOver {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub last_error: String,
}

impl Outage {
    /// A probe failed at `now`: answers when the outage began, the first
    /// time it has lasted `threshold` (the moment to log it).
    pub fn failed(
        &mut self,
        now: OffsetDateTime,
        threshold: Duration,
        error: String,
    ) -> Option<OffsetDateTime> {
        self.last_error = error;
        let since = *self.since.get_or_insert(now);
        let long = now - since >= threshold;
        (long && !std::mem::replace(&mut self.told, true)).then_some(since)
    }

    /// A probe was answered at `now`: answers the outage that ended, if
    /// it lasted `threshold` or longer.
    pub fn answered(&mut self, now: OffsetDateTime, threshold: Duration) -> Option<OutageOver> {
        let from = self.since.take()?;
        self.told = false;
        (now - from >= threshold).then(|| OutageOver {
            from,
            to: now,
            last_error: std::mem::take(&mut self.last_error),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn an_outage_is_logged_once_when_it_grows_long_and_told_when_it_ends() {
        let minute = Duration::from_secs(60);
        let start = datetime!(2026-12-02 12:00:00 UTC);
        let mut outage = Outage::default();
        assert_eq!(outage.failed(start, minute, "refused".into()), None);
        let at = |secs: i64| start + time::Duration::seconds(secs);
        assert_eq!(outage.failed(at(59), minute, "refused".into()), None);
        assert_eq!(outage.failed(at(60), minute, "refused".into()), Some(start));
        assert_eq!(
            outage.failed(at(70), minute, "timed out".into()),
            None,
            "logged once"
        );
        assert_eq!(
            outage.answered(at(75), minute),
            Some(OutageOver {
                from: start,
                to: at(75),
                last_error: "timed out".into()
            })
        );
        assert_eq!(outage.answered(at(80), minute), None, "told once");
    }

    #[test]
    fn a_short_outage_is_not_told() {
        let minute = Duration::from_secs(60);
        let start = datetime!(2026-12-02 12:00:00 UTC);
        let mut outage = Outage::default();
        outage.failed(start, minute, "refused".into());
        assert_eq!(outage.answered(start + time::Duration::seconds(30), minute), None);
        // The next outage is timed from its own start.
        let later = start + time::Duration::seconds(100);
        assert_eq!(outage.failed(later, minute, "refused".into()), None);
        assert_eq!(outage.answered(later + time::Duration::seconds(59), minute), None);
    }
}
