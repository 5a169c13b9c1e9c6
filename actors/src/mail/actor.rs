//! The Mailer actor: drains the outbox with up to `concurrency` workers.
//! Each worker claims one due email in a transaction (`FOR UPDATE SKIP
//! LOCKED`), renders it, sends it under the shared rate limit, records the
//! outcome and commits. It is woken by `NOTIFY lectern_mail` (any node's
//! commits) and by a poll timer (retries that came due, missed wake-ups).
//!
//! Delivery is at least once: a process killed before the provider answered
//! leaves the row pending (its lock dies with the connection) and it is
//! sent later; one killed after the provider accepted the email but before
//! the commit sends it again, because the provider's acceptance and our
//! commit cannot be one atomic step.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use deadpool_postgres::Pool;
use serde_json::json;
use slog::{info, warn, Logger};
use tokio::sync::oneshot;

use super::backend::{Backend, BackendConfig, SendError};
use super::messages::{FinishSends, Wake};
use super::outbox::{claim_due_email, jitter, record_outcome, retry_delay, ClaimedEmail, Outcome, SendRate};
use super::templates::MailTemplates;
use super::NOTIFY_CHANNEL;
use crate::events::{Event, EventLog, Record};
use crate::store::listen::listen;
use crate::store::DbConfig;
use crate::supervisor::restarts::{guard, guard_future, ActorStats, Child, Crashed, SupervisedActor};

/// How the Mailer sends, from the `[mail]` configuration.
#[derive(Debug, Clone)]
pub struct MailerConfig {
    pub backend: BackendConfig,
    /// The sender of every email, `Name <address>` or an address.
    pub from: String,
    /// Given to every template as `site_name` and `site_url`.
    pub site_name: String,
    pub site_url: String,
    pub max_per_second: u32,
    /// Emails in flight at once.
    pub concurrency: usize,
    pub poll: Duration,
    pub max_attempts: u32,
    pub retry_base: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot get a database connection: {0}")]
    Checkout(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
}

/// Everything a send needs; shared by the workers, and kept across restarts.
pub struct Deliverer {
    pool: Pool,
    backend: Backend,
    templates: MailTemplates,
    from: String,
    max_attempts: u32,
    retry_base: Duration,
    rate: Mutex<SendRate>,
    event_log: Arc<Child<EventLog>>,
    log: Logger,
}

/// What one worker did with the email it claimed.
struct Delivered {
    id: i64,
    message: String,
    attempts: i32,
    outcome: Outcome,
}

impl Deliverer {
    /// `pool` should be the Mailer's own, so that sends never wait on (or
    /// starve) the HTTP handlers' connections.
    pub fn new(
        config: &MailerConfig,
        templates: MailTemplates,
        pool: Pool,
        event_log: Arc<Child<EventLog>>,
        log: Logger,
    ) -> Deliverer {
        Deliverer {
            pool,
            backend: Backend::new(&config.backend),
            templates,
            from: config.from.clone(),
            max_attempts: config.max_attempts,
            retry_base: config.retry_base,
            rate: Mutex::new(SendRate::new(config.max_per_second)),
            event_log,
            log,
        }
    }

    /// Claims, sends and records one due email; `None` when none is due.
    async fn deliver_next(&self) -> Result<Option<Delivered>, DeliveryError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let Some(email) = claim_due_email(&transaction).await? else {
            return Ok(None);
        };
        let (attempts, outcome) = self.attempt(&email).await;
        record_outcome(&transaction, email.id, attempts, &outcome).await?;
        // If the process dies between the provider's acceptance and this
        // commit, the row is still pending and is sent again: at least once.
        transaction.commit().await?;
        Ok(Some(Delivered {
            id: email.id,
            message: email.message,
            attempts,
            outcome,
        }))
    }

    /// Sends `email` unless it cannot or must not be; the attempts made
    /// so far, and the outcome.
    async fn attempt(&self, email: &ClaimedEmail) -> (i32, Outcome) {
        if let Some(why) = &email.suppressed {
            let error = format!("suppressed: {why}");
            return (email.attempts, Outcome::Dead { error });
        }
        let rendered = match self.templates.render(&email.message, &email.data) {
            Ok(rendered) => rendered,
            Err(e) => return (email.attempts, Outcome::Dead { error: e.to_string() }),
        };
        let send_at = self
            .rate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reserve(Instant::now());
        tokio::time::sleep_until(send_at.into()).await;
        let attempts = email.attempts + 1;
        let outcome = match self
            .backend
            .send(&self.from, &email.recipient, email.id, &rendered)
            .await
        {
            Ok(provider_id) => Outcome::Sent { provider_id },
            Err(SendError::Permanent(error)) => Outcome::Dead { error },
            Err(SendError::Transient(error)) if attempts.unsigned_abs() >= self.max_attempts => {
                Outcome::Dead {
                    error: format!("gave up after {attempts} attempts: {error}"),
                }
            }
            Err(SendError::Transient(error)) => Outcome::Retry {
                error,
                after: retry_delay(self.retry_base, attempts.unsigned_abs(), jitter()),
            },
        };
        (attempts, outcome)
    }

    fn report(&self, delivered: &Delivered) {
        let Delivered {
            id,
            message,
            attempts,
            outcome,
        } = delivered;
        let (kind, data) = match outcome {
            Outcome::Sent { provider_id } => {
                info!(self.log, "email sent";
                    "outbox_id" => id, "message" => message, "attempt" => attempts, "provider_id" => provider_id);
                (
                    "mail.sent",
                    json!({ "message": message, "attempts": attempts, "provider_id": provider_id }),
                )
            }
            Outcome::Retry { error, after } => {
                warn!(self.log, "email not sent; will retry";
                    "outbox_id" => id, "message" => message, "attempt" => attempts,
                    "retry_in_secs" => after.as_secs(), "error" => error);
                (
                    "mail.retry",
                    json!({ "message": message, "attempts": attempts, "error": error }),
                )
            }
            Outcome::Dead { error } => {
                warn!(self.log, "email given up (dead letter)";
                    "outbox_id" => id, "message" => message, "attempt" => attempts, "error" => error);
                (
                    "mail.dead",
                    json!({ "message": message, "attempts": attempts, "error": error }),
                )
            }
        };
        self.event_log
            .do_send(Record(Event::new(kind, Some(id.to_string()), data)));
    }
}

pub struct Mailer {
    deliverer: Arc<Deliverer>,
    database: DbConfig,
    concurrency: usize,
    poll: Duration,
    /// Workers running now.
    in_flight: usize,
    /// Wake-ups so far: a worker that found nothing due checks whether one
    /// came while it looked, so that a wake while busy is not lost.
    wakes: u64,
    /// Shutting down: claim nothing more.
    finishing: bool,
    finished: Vec<oneshot::Sender<()>>,
    stats: Arc<ActorStats>,
    log: Logger,
}

impl Mailer {
    pub fn new(
        deliverer: Arc<Deliverer>,
        config: &MailerConfig,
        database: DbConfig,
        stats: Arc<ActorStats>,
        log: Logger,
    ) -> Mailer {
        Mailer {
            deliverer,
            database,
            concurrency: config.concurrency.max(1),
            poll: config.poll,
            in_flight: 0,
            wakes: 0,
            finishing: false,
            finished: Vec::new(),
            stats,
            log,
        }
    }

    fn wake(&mut self, ctx: &mut Context<Self>) {
        self.wakes += 1;
        self.start_worker(ctx);
    }

    /// Starts one more worker, unless all are busy or we are shutting down.
    fn start_worker(&mut self, ctx: &mut Context<Self>) {
        if self.finishing || self.in_flight >= self.concurrency {
            return;
        }
        self.in_flight += 1;
        let wakes_seen = self.wakes;
        let deliverer = Arc::clone(&self.deliverer);
        let work = async move { deliverer.deliver_next().await };
        ctx.spawn(
            guard_future(self, "Deliver", work)
                .map(move |outcome, act, ctx| act.worker_done(outcome, wakes_seen, ctx)),
        );
    }

    fn worker_done(
        &mut self,
        outcome: Result<Result<Option<Delivered>, DeliveryError>, Crashed>,
        wakes_seen: u64,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight -= 1;
        match outcome {
            // The actor is restarting; `restarting` resets the count.
            Err(_) => return,
            Ok(Ok(Some(delivered))) => {
                self.deliverer.report(&delivered);
                if let Outcome::Dead { error } | Outcome::Retry { error, .. } = &delivered.outcome {
                    self.stats
                        .record_error(format!("email {}: {error}", delivered.id));
                }
                // There may be more: carry on, and bring in one more worker.
                self.start_worker(ctx);
                self.start_worker(ctx);
            }
            Ok(Ok(None)) => {
                if self.wakes != wakes_seen {
                    self.start_worker(ctx);
                }
            }
            // The database is away: the poll timer tries again.
            Ok(Err(e)) => {
                warn!(self.log, "mailer cannot reach the outbox"; "error" => %e);
                self.stats.record_error(format!("cannot reach the outbox: {e}"));
            }
        }
        if self.in_flight == 0 && self.finishing {
            for waiter in self.finished.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

impl Actor for Mailer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Every notification wakes it; so does a reconnection, since
        // notifications may have been missed while the connection was down.
        let mailer = ctx.address();
        let listener = listen(
            self.database.clone(),
            NOTIFY_CHANNEL,
            Arc::clone(&self.stats),
            self.log.clone(),
            move |_| mailer.do_send(Wake),
        );
        ctx.spawn(listener.into_actor(self));
        ctx.run_interval(self.poll, |act, ctx| act.wake(ctx));
        // Emails written while no Mailer ran, or claimed by one that died.
        self.wake(ctx);
    }
}

impl Supervised for Mailer {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // The workers died with the actor; their transactions rolled back.
        // Dropping the waiters tells a shutdown that nothing is in flight.
        self.in_flight = 0;
        self.finished.clear();
        self.stats.record_restart("stopped");
    }
}

impl SupervisedActor for Mailer {
    fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }
}

impl Handler<Wake> for Mailer {
    type Result = Result<(), Crashed>;

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) -> Self::Result {
        guard(self, ctx, "Wake", |act, ctx| act.wake(ctx))
    }
}

impl Handler<FinishSends> for Mailer {
    type Result = ResponseFuture<Result<(), Crashed>>;

    fn handle(&mut self, _: FinishSends, ctx: &mut Context<Self>) -> Self::Result {
        let waiting = guard(self, ctx, "FinishSends", |act, _| {
            act.finishing = true;
            (act.in_flight > 0).then(|| {
                let (done, finished) = oneshot::channel();
                act.finished.push(done);
                finished
            })
        });
        Box::pin(async move {
            if let Some(finished) = waiting? {
                // A dropped sender means the actor restarted: nothing is in flight.
                let _ = finished.await;
            }
            Ok(())
        })
    }
}
