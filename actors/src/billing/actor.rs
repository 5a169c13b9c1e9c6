//! The BillingSupervisor actor: the one way to Stripe. It hands each call
//! (a Checkout, a portal session, a cancellation, reconciliation, draining
//! the events inbox) to one of its StripeWorkers, children of the
//! supervision tree like every actor, so that a worker that panics is
//! restarted and a slow Stripe never holds an HTTP worker: a handler waits
//! for its answer, a page does not. On a timer it drains the inbox (woken
//! by `NOTIFY lectern_billing` too) and runs the scheduled jobs, each
//! claimed for its period by exactly one node, which holds its lease while
//! it runs (a period left unfinished by a node that died is run again).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use slog::{error, info, warn, Logger};
use time::OffsetDateTime;

use super::{Billing, BillingError, CheckoutStarted, CountryCode, ReconcileReport};
use crate::alerts::{Alert, Alerts, Condition};
use crate::store::listen::listen;
use crate::store::DbConfig;
use crate::supervisor::restarts::{guard, guard_future, ActorStats, Child, Crashed, SupervisedActor};

/// PostgreSQL channel that wakes every node's BillingSupervisor when a
/// Stripe event is recorded.
pub const NOTIFY_CHANNEL: &str = "lectern_billing";

/// How often the inbox is looked at besides being woken, and the schedule checked.
const TICK: Duration = Duration::from_secs(30);

/// Job names in `job_runs`.
const RECONCILE_JOB: &str = "billing.reconcile";
const GRANTS_JOB: &str = "billing.grant_reminders";
const GRANTS_EVERY: Duration = Duration::from_secs(3600);

/// A piece of work for a worker.
#[derive(Debug, Clone)]
pub enum Job {
    StartCheckout {
        user_id: i64,
        plan: String,
        country: Option<CountryCode>,
    },
    OpenPortal {
        user_id: i64,
    },
    SetCancelAtPeriodEnd {
        user_id: i64,
        cancel: bool,
    },
    Reconcile,
    DrainEvents,
    RemindGrants,
}

/// What a job gives back.
#[derive(Debug)]
pub enum Done {
    Checkout(Box<CheckoutStarted>),
    Url(String),
    Changed,
    Reconciled(ReconcileReport),
    Drained(usize),
    Reminded(usize),
}

/// Run a job on a worker and answer with its result.
#[derive(Debug, Message)]
#[rtype(result = "Result<Done, BillingError>")]
pub struct Run(pub Job);

/// One worker: runs jobs against Stripe and the database.
pub struct StripeWorker {
    billing: Arc<Billing>,
    stats: Arc<ActorStats>,
}

impl StripeWorker {
    pub fn new(billing: Arc<Billing>, stats: Arc<ActorStats>) -> StripeWorker {
        StripeWorker { billing, stats }
    }
}

impl Actor for StripeWorker {
    type Context = Context<Self>;
}

impl Supervised for StripeWorker {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.stats.record_restart("stopped");
    }
}

impl SupervisedActor for StripeWorker {
    fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }
}

/// What a worker does with its job.
async fn run(billing: Arc<Billing>, job: Job) -> Result<Done, BillingError> {
    Ok(match job {
        Job::StartCheckout {
            user_id,
            plan,
            country,
        } => Done::Checkout(Box::new(
            billing.start_checkout(user_id, &plan, country.as_ref()).await?,
        )),
        Job::OpenPortal { user_id } => Done::Url(billing.portal_url(user_id).await?),
        Job::SetCancelAtPeriodEnd { user_id, cancel } => {
            billing.set_cancel_at_period_end(user_id, cancel).await?;
            Done::Changed
        }
        Job::Reconcile => Done::Reconciled(billing.reconcile().await?),
        Job::DrainEvents => {
            let mut handled = 0;
            while billing.process_next_event().await?.is_some() {
                handled += 1;
            }
            Done::Drained(handled)
        }
        Job::RemindGrants => Done::Reminded(billing.remind_expiring_grants().await?),
    })
}

impl Handler<Run> for StripeWorker {
    type Result = ResponseActFuture<Self, Result<Done, BillingError>>;

    fn handle(&mut self, Run(job): Run, _: &mut Context<Self>) -> Self::Result {
        let work = run(Arc::clone(&self.billing), job);
        Box::pin(
            guard_future(self, "Run", work).map(|outcome, _, _| outcome.unwrap_or_else(|c| Err(crashed(&c)))),
        )
    }
}

fn crashed(crash: &Crashed) -> BillingError {
    BillingError::Stripe(super::StripeError::Unavailable(format!(
        "the billing worker stopped: {crash}"
    )))
}

/// How the BillingSupervisor is set up.
#[derive(Debug, Clone)]
pub struct BillingSchedule {
    pub reconcile_every: Duration,
    /// This node's name in `job_runs`.
    pub node: String,
}

pub struct BillingSupervisor {
    billing: Arc<Billing>,
    workers: Vec<Arc<Child<StripeWorker>>>,
    next_worker: usize,
    draining: bool,
    /// A wake while draining: drain again once done.
    woken: bool,
    schedule: BillingSchedule,
    database: DbConfig,
    alerts: Alerts,
    stats: Arc<ActorStats>,
    log: Logger,
}

impl BillingSupervisor {
    pub fn new(
        billing: Arc<Billing>,
        workers: Vec<Arc<Child<StripeWorker>>>,
        schedule: BillingSchedule,
        database: DbConfig,
        alerts: Alerts,
        stats: Arc<ActorStats>,
        log: Logger,
    ) -> BillingSupervisor {
        BillingSupervisor {
            billing,
            workers,
            next_worker: 0,
            draining: false,
            woken: false,
            schedule,
            database,
            alerts,
            stats,
            log,
        }
    }

    fn worker(&mut self) -> Option<Arc<Child<StripeWorker>>> {
        let worker = self.workers.get(self.next_worker % self.workers.len().max(1))?;
        self.next_worker = self.next_worker.wrapping_add(1);
        Some(Arc::clone(worker))
    }

    fn dispatch(&mut self, job: Job) -> impl std::future::Future<Output = Result<Done, BillingError>> {
        let worker = self.worker();
        async move {
            match worker {
                Some(worker) => worker.send(Run(job)).await.unwrap_or_else(|e| {
                    Err(BillingError::Stripe(super::StripeError::Unavailable(format!(
                        "no billing worker answers: {e}"
                    ))))
                }),
                None => Err(BillingError::NotConfigured),
            }
        }
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        if !self.billing.is_configured() {
            return;
        }
        if self.draining {
            self.woken = true;
            return;
        }
        self.draining = true;
        self.woken = false;
        let work = self.dispatch(Job::DrainEvents);
        ctx.spawn(work.into_actor(self).map(|outcome, act, ctx| {
            act.draining = false;
            match outcome {
                Ok(Done::Drained(n)) if n > 0 => info!(act.log, "Stripe events handled"; "events" => n),
                Ok(_) => {}
                Err(e) => {
                    warn!(act.log, "Stripe events left for later"; "error" => %e);
                    act.stats.record_error(format!("Stripe events: {e}"));
                }
            }
            if act.woken {
                act.drain(ctx);
            }
        }));
    }

    /// The scheduled jobs whose period has come and that this node claims.
    fn run_schedule(&mut self, now: OffsetDateTime, ctx: &mut Context<Self>) {
        if !self.billing.is_configured() {
            return;
        }
        for (job, every, work) in [
            (RECONCILE_JOB, self.schedule.reconcile_every, Job::Reconcile),
            (GRANTS_JOB, GRANTS_EVERY, Job::RemindGrants),
        ] {
            let period = period_start(now, every);
            let billing = Arc::clone(&self.billing);
            let node = self.schedule.node.clone();
            let run = self.dispatch(work);
            let log = self.log.clone();
            let stats = Arc::clone(&self.stats);
            let database = self.database.clone();
            let alerts = self.alerts.clone();
            ctx.spawn(
                async move {
                    let lease = match billing.claim_job(&database, job, period, &node).await {
                        Ok(Some(lease)) => lease,
                        Ok(None) => return,
                        Err(e) => {
                            stats.record_error(format!("cannot claim {job}: {e}"));
                            return;
                        }
                    };
                    let report = match run.await {
                        Ok(Done::Reconciled(report)) => {
                            info!(log, "billing reconciled"; "report" => %report);
                            if let Some(alert) = drift_alert(&report) {
                                // A failure to record it is logged with the alert by `raise`.
                                let _ = alerts.raise(alert).await;
                            }
                            serde_json::to_value(&report).unwrap_or_default()
                        }
                        Ok(Done::Reminded(n)) => serde_json::json!({ "reminded": n }),
                        Ok(_) => serde_json::Value::Null,
                        Err(e) => {
                            error!(log, "scheduled billing job failed"; "job" => job, "error" => %e);
                            stats.record_error(format!("{job}: {e}"));
                            serde_json::json!({ "error": e.to_string() })
                        }
                    };
                    if let Err(e) = billing.finish_job(lease, job, period, report).await {
                        stats.record_error(format!("cannot record {job}: {e}"));
                    }
                }
                .into_actor(self),
            );
        }
    }
}

/// The operator is told of a scheduled reconciliation that fixed or found
/// anything; one run at the command line tells whoever ran it.
fn drift_alert(report: &ReconcileReport) -> Option<Alert> {
    if report.fixes.is_empty() && report.problems.is_empty() {
        return None;
    }
    let detail = report.to_string();
    let summary = detail.lines().next().unwrap_or_default();
    Some(Alert::new(
        Condition::BillingDrift,
        format!("Billing reconciliation: {summary}."),
        detail.lines().skip(1).collect::<Vec<_>>().join("\n"),
    ))
}

/// The start of the period of length `every` that `now` falls in, counted
/// from the Unix epoch: every node computes the same one.
fn period_start(now: OffsetDateTime, every: Duration) -> OffsetDateTime {
    let every = i64::try_from(every.as_secs().max(1)).unwrap_or(i64::MAX);
    let secs = now.unix_timestamp();
    OffsetDateTime::from_unix_timestamp(secs - secs.rem_euclid(every)).unwrap_or(now)
}

impl Actor for BillingSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let me = ctx.address();
        let listener = listen(
            self.database.clone(),
            NOTIFY_CHANNEL,
            Arc::clone(&self.stats),
            self.log.clone(),
            // A notification, or a reconnection (events may have come
            // meanwhile): look at the inbox.
            move |_| me.do_send(Wake),
        );
        ctx.spawn(listener.into_actor(self));
        ctx.notify(Wake);
        ctx.run_interval(TICK, |act, ctx| {
            act.drain(ctx);
            act.run_schedule(OffsetDateTime::now_utc(), ctx);
        });
    }
}

impl Supervised for BillingSupervisor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.draining = false;
        self.stats.record_restart("stopped");
    }
}

impl SupervisedActor for BillingSupervisor {
    fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }
}

/// Look at the events inbox now.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), Crashed>")]
pub struct Wake;

impl Handler<Wake> for BillingSupervisor {
    type Result = Result<(), Crashed>;

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) -> Self::Result {
        guard(self, ctx, "Wake", |act, ctx| act.drain(ctx))
    }
}

/// Run this node's share of the scheduled jobs for `now` (the timer does it
/// every half minute; tests and the command line ask for it).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), Crashed>")]
pub struct RunSchedule(pub OffsetDateTime);

impl Handler<RunSchedule> for BillingSupervisor {
    type Result = Result<(), Crashed>;

    fn handle(&mut self, RunSchedule(now): RunSchedule, ctx: &mut Context<Self>) -> Self::Result {
        guard(self, ctx, "RunSchedule", |act, ctx| act.run_schedule(now, ctx))
    }
}

/// Do `job` on a worker: the handlers' and the command line's way to Stripe.
#[derive(Debug, Message)]
#[rtype(result = "Result<Done, BillingError>")]
pub struct Ask(pub Job);

impl Handler<Ask> for BillingSupervisor {
    type Result = ResponseActFuture<Self, Result<Done, BillingError>>;

    fn handle(&mut self, Ask(job): Ask, _: &mut Context<Self>) -> Self::Result {
        let work = self.dispatch(job);
        Box::pin(
            guard_future(self, "Ask", work).map(|outcome, _, _| outcome.unwrap_or_else(|c| Err(crashed(&c)))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_computes_the_same_period() {
        let every = Duration::from_secs(3 * 3600);
        let at = |secs| OffsetDateTime::from_unix_timestamp(secs).unwrap();
        assert_eq!(period_start(at(10_800 * 5 + 7), every), at(10_800 * 5));
        assert_eq!(period_start(at(10_800 * 5), every), at(10_800 * 5));
        assert_eq!(period_start(at(10_800 * 6 - 1), every), at(10_800 * 5));
    }
}
