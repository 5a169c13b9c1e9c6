//! The root of Lectern's supervision tree: the one place that starts the
//! actors, in order, with their restart policy, and stops them at shutdown.
//! How supervision works (panics caught, restarts counted, escalation) is
//! in [`restarts`].

#[cfg(debug_assertions)]
pub mod panic_hook;
pub mod restarts;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use deadpool_postgres::Pool;
use slog::{error, warn, Logger};

use crate::alerts::watch::{AlertWatch, WatchConfig};
use crate::alerts::{Alert, Alerts, Condition};
use crate::backup::scheduler::{BackupPlan, BackupScheduler};
use crate::backup::Backups;
use crate::billing::actor::{BillingSchedule, BillingSupervisor, StripeWorker};
use crate::billing::Billing;
use crate::cache::{PageCache, PageTable};
use crate::events::{Event, EventLog, Flush, PageViews, Record, RouteTimes};
use crate::housekeeping::Housekeeper;
use crate::mail::messages::FinishSends;
use crate::mail::templates::{MailTemplates, TemplateError};
use crate::mail::EmailAddress;
use crate::mail::{Deliverer, Mailer, MailerConfig};
use crate::render::{compile_templates, RenderError, Renderer};
use crate::store::{self, DbConfig, StoreError};
use restarts::{ActorReport, Child, RestartPolicy, StormPolicy, Tree};

/// How often the watchdog looks for actors that died outside a guarded handler.
const WATCHDOG_EVERY: Duration = Duration::from_millis(500);

/// An actor's name as ARCHITECTURE.md and the operator know it (`PageCache`),
/// from the name it is supervised under (`page_cache`).
pub fn actor_title(name: &str) -> Cow<'_, str> {
    Cow::Borrowed(match name {
        "event_log" => "EventLog",
        "renderer" => "Renderer",
        "page_cache" => "PageCache",
        "mailer" => "Mailer",
        "housekeeper" => "Housekeeper",
        "billing" => "BillingSupervisor",
        "backup_scheduler" => "BackupScheduler",
        "alert_watch" => "AlertWatch",
        other => match other.strip_prefix("stripe_worker_") {
            // The BillingSupervisor's workers, by number.
            Some(n) => return Cow::Owned(format!("StripeWorker {n}")),
            None => other,
        },
    })
}

const FLUSH_AT_SHUTDOWN: Duration = Duration::from_secs(5);
const ALERT_AT_ESCALATION: Duration = Duration::from_secs(5);
/// How long shutdown waits for the Mailer's sends in flight; one cut short
/// is sent again later (at least once).
const FINISH_SENDS_AT_SHUTDOWN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub policy: RestartPolicy,
    /// Renderer threads; one per core is right for CPU-bound rendering.
    pub render_threads: usize,
    /// Debug builds only: compile the templates again for every render.
    pub live_templates: bool,
    /// How often PageCache looks for scheduled content that came due.
    pub schedule_check: Duration,
    /// How often the EventLog writes what it holds.
    pub events_flush: Duration,
    /// Page views held for the EventLog at most; past that the oldest are dropped.
    pub page_view_buffer: usize,
    pub mail: MailerConfig,
    /// How often the Housekeeper purges, and how long sent emails are kept.
    pub housekeeping_every: Duration,
    pub keep_mail: Duration,
    pub billing: BillingSchedule,
    pub backup: BackupPlan,
    pub alerts: AlertsConfig,
}

/// Whom alerts go to, and what the AlertWatch watches.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// `alerts.email`; without it alerts are only logged.
    pub to: Option<EmailAddress>,
    pub storm: StormPolicy,
    pub watch: WatchConfig,
}

/// StripeWorkers under the BillingSupervisor: calls to Stripe at once.
const STRIPE_WORKERS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the templates do not compile: {0}")]
    Templates(#[from] RenderError),
    #[error("the email templates do not compile: {0}")]
    MailTemplates(#[from] TemplateError),
    #[error("the Mailer's connection pool: {0}")]
    MailPool(#[from] StoreError),
}

/// The running actors. Handlers reach them through these children, whose
/// addresses stay valid across restarts.
pub struct RootSupervisor {
    tree: Arc<Tree>,
    pub event_log: Arc<Child<EventLog>>,
    pub renderer: Arc<Child<Renderer>>,
    pub page_cache: Arc<Child<PageCache>>,
    pub mailer: Arc<Child<Mailer>>,
    pub housekeeper: Arc<Child<Housekeeper>>,
    /// The one way to Stripe.
    pub billing: Arc<Child<BillingSupervisor>>,
    pub backup_scheduler: Arc<Child<BackupScheduler>>,
    pub alert_watch: Arc<Child<AlertWatch>>,
    /// The one way to raise an alert.
    pub alerts: Alerts,
    /// The cache table outlives PageCache restarts, as an ETS table with an heir does.
    pub pages: Arc<PageTable>,
    /// The ring of page views, which HTTP workers push into and the
    /// EventLog drains: it outlives EventLog restarts the same way.
    pub page_views: Arc<PageViews>,
    /// Each route's time to answer on this node, which the HTTP workers
    /// add to and the weekly digest reads.
    pub route_times: Arc<RouteTimes>,
    arbiters: Vec<Arbiter>,
    log: Logger,
}

impl RootSupervisor {
    /// Starts every actor, in order. Must run inside an actix `System`.
    pub fn start(
        config: &SupervisorConfig,
        pool: Pool,
        database: DbConfig,
        pages: Arc<PageTable>,
        billing: Arc<Billing>,
        backups: Arc<Backups>,
        log: Logger,
    ) -> Result<RootSupervisor, StartError> {
        let tree = Tree::new(config.policy, log.clone());
        let alerts = Alerts::new(pool.clone(), config.alerts.to.clone(), log.clone());

        // 1. EventLog first: the others record into it.
        let event_log_arbiter = Arbiter::new();
        let event_log_pool = pool.clone();
        let events_flush = config.events_flush;
        let page_views = Arc::new(PageViews::new(config.page_view_buffer));
        let (views, event_log_log) = (Arc::clone(&page_views), log.clone());
        let event_log = tree.supervise("event_log", event_log_arbiter.handle(), move |stats| {
            EventLog::new(
                event_log_pool.clone(),
                Arc::clone(&views),
                stats,
                events_flush,
                event_log_log.clone(),
            )
        });

        // 2. The Renderer pool; templates are compiled once, here, so that a
        //    broken template stops the start with a clear error.
        let templates = Arc::new(compile_templates()?);
        let live_templates = config.live_templates;
        let renderer = tree.supervise_pool("renderer", config.render_threads.max(1), move |stats| {
            Renderer::new(Arc::clone(&templates), stats, live_templates)
        });

        // 3. PageCache: invalidation, and the listener for other nodes' changes.
        let page_cache_arbiter = Arbiter::new();
        let housekeeper_pool = pool.clone();
        let watch_pool = pool.clone();
        let cache_table = Arc::clone(&pages);
        let cache_log = log.clone();
        let schedule_check = config.schedule_check;
        let cache_database = database.clone();
        let page_cache = tree.supervise("page_cache", page_cache_arbiter.handle(), move |stats| {
            PageCache::new(
                Arc::clone(&cache_table),
                schedule_check,
                cache_database.clone(),
                pool.clone(),
                stats,
                cache_log.clone(),
            )
        });

        // 4. The Mailer, with its own pool (one connection per worker, and
        //    one spare) so that sends never starve the HTTP handlers.
        let mail = &config.mail;
        let templates = MailTemplates::compile(&mail.site_name, &mail.site_url)?;
        let mail_pool = store::connect_pool(database.clone(), mail.concurrency + 1)?;
        let deliverer = Arc::new(Deliverer::new(
            mail,
            templates,
            mail_pool,
            Arc::clone(&event_log),
            log.clone(),
        ));
        let mailer_arbiter = Arbiter::new();
        let billing_database = database.clone();
        let mailer_config = mail.clone();
        let mailer_log = log.clone();
        let mailer = tree.supervise("mailer", mailer_arbiter.handle(), move |stats| {
            Mailer::new(
                Arc::clone(&deliverer),
                &mailer_config,
                database.clone(),
                stats,
                mailer_log.clone(),
            )
        });

        // 5. The Housekeeper: purges of what must not be kept.
        let housekeeper_arbiter = Arbiter::new();
        let (every, keep_mail, housekeeper_log) = (config.housekeeping_every, config.keep_mail, log.clone());
        let housekeeper = tree.supervise("housekeeper", housekeeper_arbiter.handle(), move |stats| {
            Housekeeper::new(
                housekeeper_pool.clone(),
                every,
                keep_mail,
                stats,
                housekeeper_log.clone(),
            )
        });

        // 6. Billing: the StripeWorkers, then the BillingSupervisor that
        //    hands them every call to Stripe, all on one arbiter.
        let billing_arbiter = Arbiter::new();
        let workers = (1..=STRIPE_WORKERS)
            .map(|n| {
                let billing = Arc::clone(&billing);
                let name: &'static str = if n == 1 {
                    "stripe_worker_1"
                } else {
                    "stripe_worker_2"
                };
                tree.supervise(name, billing_arbiter.handle(), move |stats| {
                    StripeWorker::new(Arc::clone(&billing), stats)
                })
            })
            .collect::<Vec<_>>();
        let (schedule, billing_alerts, billing_log) = (config.billing.clone(), alerts.clone(), log.clone());
        let billing = tree.supervise("billing", billing_arbiter.handle(), move |stats| {
            BillingSupervisor::new(
                Arc::clone(&billing),
                workers.clone(),
                schedule.clone(),
                billing_database.clone(),
                billing_alerts.clone(),
                stats,
                billing_log.clone(),
            )
        });

        // 7. The BackupScheduler, on an arbiter of its own: a dump and its
        //    verification take minutes, and must not hold up anything else.
        let backup_arbiter = Arbiter::new();
        let (plan, backup_events, backup_alerts, backup_log) = (
            config.backup.clone(),
            Arc::clone(&event_log),
            alerts.clone(),
            log.clone(),
        );
        let backup_scheduler = tree.supervise("backup_scheduler", backup_arbiter.handle(), move |stats| {
            BackupScheduler::new(
                Arc::clone(&backups),
                plan.clone(),
                Arc::clone(&backup_events),
                backup_alerts.clone(),
                stats,
                backup_log.clone(),
            )
        });

        // 8. The AlertWatch, and the restart storms the tree reports.
        let alert_arbiter = Arbiter::new();
        if let Some(mut storms) = tree.storms(config.alerts.storm) {
            let alerts = alerts.clone();
            alert_arbiter.spawn(async move {
                while let Some(storm) = storms.recv().await {
                    let alert = Alert::new(
                        Condition::RestartStorm,
                        format!(
                            "The actor {} restarted {} times within {} s.",
                            storm.actor,
                            storm.restarts,
                            storm.within.as_secs()
                        ),
                        format!(
                            "Its last error: {}",
                            storm.last_error.as_deref().unwrap_or("none recorded")
                        ),
                    );
                    // A failure to record it is logged with the alert by `raise`.
                    let _ = alerts.raise(alert).await;
                }
            });
        }
        let (watch, watch_alerts, watch_log) = (config.alerts.watch.clone(), alerts.clone(), log.clone());
        let watch_tree = Arc::downgrade(&tree);
        let route_times = Arc::new(RouteTimes::default());
        let watch_times = Arc::clone(&route_times);
        let alert_watch = tree.supervise("alert_watch", alert_arbiter.handle(), move |stats| {
            AlertWatch::new(
                watch_alerts.clone(),
                watch_pool.clone(),
                watch.clone(),
                watch_tree.clone(),
                Arc::clone(&watch_times),
                stats,
                watch_log.clone(),
            )
        });

        tree.watch(WATCHDOG_EVERY);
        Ok(RootSupervisor {
            tree,
            event_log,
            renderer,
            page_cache,
            mailer,
            housekeeper,
            billing,
            backup_scheduler,
            alert_watch,
            alerts,
            pages,
            page_views,
            route_times,
            arbiters: vec![
                event_log_arbiter,
                page_cache_arbiter,
                mailer_arbiter,
                housekeeper_arbiter,
                billing_arbiter,
                backup_arbiter,
                alert_arbiter,
            ],
            log,
        })
    }

    /// Records an analytics or audit event; never waits.
    pub fn record(&self, event: Event) {
        self.event_log.do_send(Record(event));
    }

    pub fn report(&self) -> Vec<ActorReport> {
        self.tree.report()
    }

    /// Resolves with the reason once an actor restarts more often than the
    /// restart intensity allows; the process should then exit non-zero.
    pub async fn escalated(&self) -> String {
        self.tree.escalated().await
    }

    /// Tells the operator that the process is exiting because the tree
    /// escalated; systemd starts it again. Told now, while the database
    /// most likely answers (an escalation comes of actors restarting, not
    /// of the database, which has its own alert); if it does not answer
    /// within a few seconds, the log has it.
    pub async fn alert_escalation(&self, reason: &str) {
        let alert = Alert::new(
            Condition::RestartStorm,
            "Lectern exited: actors restarted more often than supervisor.max_restarts allows.",
            reason,
        );
        if tokio::time::timeout(ALERT_AT_ESCALATION, self.alerts.raise(alert))
            .await
            .is_err()
        {
            error!(self.log, "the escalation alert was not recorded in time; it is only logged"; "reason" => reason);
        }
    }

    /// Lets the Mailer finish the sends in flight (claiming no more), writes
    /// what the EventLog holds (page views included), then stops the actors' arbiters.
    pub async fn shutdown(&self) {
        match tokio::time::timeout(FINISH_SENDS_AT_SHUTDOWN, self.mailer.send(FinishSends)).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(self.log, "mailer crashed at shutdown"; "error" => %e),
            Ok(Err(e)) => warn!(self.log, "mailer unreachable at shutdown"; "error" => %e),
            Err(_) => warn!(
                self.log,
                "mailer sends still in flight at shutdown; they will be sent again"
            ),
        }
        match tokio::time::timeout(FLUSH_AT_SHUTDOWN, self.event_log.send(Flush)).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => warn!(self.log, "event log flush failed at shutdown"; "error" => %e),
            Ok(Err(e)) => warn!(self.log, "event log unreachable at shutdown"; "error" => %e),
            Err(_) => warn!(self.log, "event log flush timed out at shutdown"),
        }
        self.stop_arbiters();
    }

    /// Stops the actors' arbiters now, waiting for nothing. Their threads
    /// keep running until told to, even when everything else is gone.
    pub fn stop_arbiters(&self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}
