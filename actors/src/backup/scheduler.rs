//! The BackupScheduler actor: at each daily and weekly time (cron patterns,
//! UTC) it backs the database up, verifies the backup by restoring it into
//! a scratch database, and prunes the older backups of that kind. A run
//! that fails, or does not verify, is recorded with its reason, logged and
//! raised as an alert to the operator; the next run is armed when this one
//! comes due, whatever becomes of it.
//!
//! Every node runs a scheduler; each scheduled run happens on one of them,
//! because its key is the scheduled time's and keys are unique.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use serde_json::json;
use slog::{debug, error, info, warn, Logger};
use time::OffsetDateTime;

use super::{key_for, BackupError, Backups, Kind};
use crate::alerts::{Alert, Alerts, Condition};
use crate::events::{Event, EventLog, Record};
use crate::supervisor::restarts::{guard_future, ActorStats, Child, Crashed, SupervisedActor};

/// When backups of one kind are due: a cron pattern in UTC, five fields
/// (minute hour day-of-month month day-of-week) or six with seconds first.
#[derive(Clone)]
pub struct Schedule {
    cron: Cron,
    pattern: String,
}

impl Schedule {
    /// The next time strictly after `after`; `None` if the pattern never
    /// matches again (`0 0 30 2 *`).
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let from = chrono::DateTime::from_timestamp(after.unix_timestamp(), after.nanosecond())?;
        let next = self.cron.find_next_occurrence(&from, false).ok()?;
        OffsetDateTime::from_unix_timestamp(next.timestamp()).ok()
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(pattern: &str) -> Result<Schedule, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(pattern.trim())
            .map_err(|e| format!("{pattern:?} is not a cron pattern: {e}"))?;
        let schedule = Schedule {
            cron,
            pattern: pattern.trim().to_owned(),
        };
        match schedule.next_after(OffsetDateTime::now_utc()) {
            Some(_) => Ok(schedule),
            None => Err(format!("{pattern:?} never comes due")),
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.pattern)
    }
}

/// What the scheduler does: when, and how many to keep.
#[derive(Debug, Clone)]
pub struct BackupPlan {
    pub daily: Option<Schedule>,
    pub weekly: Option<Schedule>,
    pub keep_daily: u32,
    pub keep_weekly: u32,
}

impl BackupPlan {
    fn schedule(&self, kind: Kind) -> Option<&Schedule> {
        match kind {
            Kind::Daily => self.daily.as_ref(),
            Kind::Weekly => self.weekly.as_ref(),
            Kind::Manual => None,
        }
    }

    fn keep(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Daily => self.keep_daily,
            Kind::Weekly => self.keep_weekly,
            Kind::Manual => u32::MAX,
        }
    }
}

pub struct BackupScheduler {
    run: Arc<Run>,
    /// A run of that kind is under way (daily, weekly).
    busy: [Arc<AtomicBool>; 2],
    stats: Arc<ActorStats>,
}

/// What a run needs; shared with the runs under way.
struct Run {
    backups: Arc<Backups>,
    plan: BackupPlan,
    events: Arc<Child<EventLog>>,
    alerts: Alerts,
    /// One dump at a time on this node, whatever its kind.
    one_at_a_time: tokio::sync::Mutex<()>,
    log: Logger,
}

impl BackupScheduler {
    pub fn new(
        backups: Arc<Backups>,
        plan: BackupPlan,
        events: Arc<Child<EventLog>>,
        alerts: Alerts,
        stats: Arc<ActorStats>,
        log: Logger,
    ) -> BackupScheduler {
        BackupScheduler {
            run: Arc::new(Run {
                backups,
                plan,
                events,
                alerts,
                one_at_a_time: tokio::sync::Mutex::new(()),
                log,
            }),
            busy: Default::default(),
            stats,
        }
    }

    /// Arms the timer for the first time of `kind` after `after`.
    fn arm(&self, kind: Kind, after: OffsetDateTime, ctx: &mut Context<Self>) {
        let Some(at) = self.run.plan.schedule(kind).and_then(|s| s.next_after(after)) else {
            return;
        };
        let wait = (at - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
        let wait = Duration::try_from(wait).unwrap_or_default();
        debug!(self.run.log, "backup armed"; "kind" => kind.as_str(), "at" => %at);
        ctx.run_later(wait, move |act, ctx| {
            ctx.notify(RunDue { kind, at });
            // A timer that fired late (the machine slept) skips the times
            // it missed rather than running them all at once.
            act.arm(kind, at.max(OffsetDateTime::now_utc()), ctx);
        });
    }
}

impl Actor for BackupScheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let now = OffsetDateTime::now_utc();
        self.arm(Kind::Daily, now, ctx);
        self.arm(Kind::Weekly, now, ctx);
        let run = Arc::clone(&self.run);
        ctx.spawn(async move { run.tidy().await }.into_actor(self));
    }
}

impl Supervised for BackupScheduler {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.stats.record_restart("stopped");
        // The runs of the stopped actor were dropped with it.
        self.busy = Default::default();
    }
}

impl SupervisedActor for BackupScheduler {
    fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }
}

/// The backup of `kind` scheduled for `at` is due.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), Crashed>")]
pub struct RunDue {
    pub kind: Kind,
    pub at: OffsetDateTime,
}

impl Handler<RunDue> for BackupScheduler {
    type Result = ResponseActFuture<Self, Result<(), Crashed>>;

    fn handle(&mut self, due: RunDue, _: &mut Context<Self>) -> Self::Result {
        let busy = Arc::clone(&self.busy[usize::from(due.kind == Kind::Weekly)]);
        let run = Arc::clone(&self.run);
        let stats = Arc::clone(&self.stats);
        let work = async move {
            if busy.swap(true, Ordering::AcqRel) {
                warn!(run.log, "backup skipped: the previous one of its kind is still running";
                    "kind" => due.kind.as_str(), "at" => %due.at);
                return;
            }
            let _idle = Idle(busy);
            if let Err(reason) = run.due(due).await {
                stats.record_error(&reason);
            }
        };
        guard_future(self, "RunDue", work)
    }
}

/// Clears a kind's busy flag when its run ends, or is dropped.
struct Idle(Arc<AtomicBool>);

impl Drop for Idle {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Run {
    /// Backs up, verifies and prunes; answers the reason of a failure,
    /// which has been logged and sent to the operator.
    async fn due(&self, due: RunDue) -> Result<(), String> {
        let _one = self.one_at_a_time.lock().await;
        self.tidy().await;
        let key = key_for(due.kind, due.at);
        let log = self
            .log
            .new(slog::o!("kind" => due.kind.as_str(), "key" => key.clone()));
        let progress = |line: &str| debug!(log, "backup: {line}");
        let verified = async {
            let Some(dumped) = self.backups.scheduled(due.kind, due.at, &progress).await? else {
                return Ok(None);
            };
            self.backups.verify(&dumped.key, &progress).await?;
            Ok::<_, BackupError>(Some(dumped))
        };
        match verified.await {
            Ok(None) => {
                info!(log, "scheduled backup taken by another node");
                Ok(())
            }
            Ok(Some(dumped)) => {
                info!(log, "backup made and verified";
                    "bytes" => dumped.bytes, "tables" => dumped.tables, "rows" => dumped.rows,
                    "took_ms" => dumped.took.as_millis() as u64);
                self.events.do_send(Record(Event::new(
                    "backup.succeeded",
                    key.clone(),
                    json!({ "kind": due.kind.as_str(), "bytes": dumped.bytes, "rows": dumped.rows }),
                )));
                match self.backups.prune(due.kind, self.plan.keep(due.kind)).await {
                    Ok(deleted) if deleted.is_empty() => Ok(()),
                    Ok(deleted) => {
                        info!(log, "older backups deleted"; "keys" => deleted.join(", "));
                        Ok(())
                    }
                    Err(e) => Err(self
                        .failed(&key, &format!("pruning older backups failed: {e}"))
                        .await),
                }
            }
            Err(e) => Err(self.failed(&key, &e.to_string()).await),
        }
    }

    /// Settles the runs of processes that died, and tells the operator of
    /// those that failed.
    async fn tidy(&self) {
        match self.backups.settle_interrupted().await {
            Ok(settled) => {
                for key in settled.recovered {
                    info!(self.log, "an interrupted backup had been stored whole: recorded as succeeded";
                        "key" => key);
                }
                for key in settled.failed {
                    self.failed(&key, super::INTERRUPTED).await;
                }
            }
            Err(e) => warn!(self.log, "cannot look for interrupted backups"; "error" => %e),
        }
    }

    /// Logs a failure, records it and alerts the operator; answers the reason.
    async fn failed(&self, key: &str, reason: &str) -> String {
        error!(self.log, "backup failed"; "key" => key, "reason" => reason);
        self.events.do_send(Record(Event::new(
            "backup.failed",
            key.to_owned(),
            json!({ "reason": reason }),
        )));
        let alert = Alert::new(
            Condition::BackupFailed,
            format!("The backup {key} failed."),
            reason,
        );
        // A failure to record the alert is logged with it by `raise`.
        let _ = self.alerts.raise(alert).await;
        format!("backup {key} failed: {reason}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn five_fields_are_minutes_and_six_start_with_seconds() {
        let daily: Schedule = "30 3 * * *".parse().expect("five fields");
        assert_eq!(
            daily.next_after(datetime!(2026-12-02 03:30:00 UTC)),
            Some(datetime!(2026-12-03 03:30:00 UTC)),
            "strictly after"
        );
        let weekly: Schedule = "0 4 * * SUN".parse().expect("weekday name");
        assert_eq!(
            weekly.next_after(datetime!(2026-12-02 12:00:00 UTC)),
            Some(datetime!(2026-12-06 04:00:00 UTC))
        );
        let often: Schedule = "*/5 * * * * *".parse().expect("six fields");
        assert_eq!(
            often.next_after(datetime!(2026-12-02 12:00:01 UTC)),
            Some(datetime!(2026-12-02 12:00:05 UTC))
        );
    }

    #[test]
    fn bad_patterns_are_refused_with_the_pattern() {
        for bad in ["", "every day", "61 * * * *", "0 0 30 2 *"] {
            let error = bad.parse::<Schedule>().expect_err(bad);
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }
}
