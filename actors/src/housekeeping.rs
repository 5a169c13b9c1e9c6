//! The Housekeeper actor: every few minutes it deletes what must not be
//! kept: accounts nobody confirmed, expired sessions and links, recovered
//! rate limits, and sent or dead emails past their keeping time. Each purge
//! is idempotent, so every node may run it.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use deadpool_postgres::Pool;
use slog::{info, Logger};

use crate::accounts;
use crate::mail::outbox;
use crate::supervisor::restarts::{guard_future, ActorStats, Crashed, SupervisedActor};

pub struct Housekeeper {
    pool: Pool,
    every: Duration,
    /// How long sent and dead emails stay in the outbox.
    keep_mail: Duration,
    stats: Arc<ActorStats>,
    log: Logger,
}

impl Housekeeper {
    pub fn new(
        pool: Pool,
        every: Duration,
        keep_mail: Duration,
        stats: Arc<ActorStats>,
        log: Logger,
    ) -> Housekeeper {
        Housekeeper {
            pool,
            every,
            keep_mail,
            stats,
            log,
        }
    }
}

impl Actor for Housekeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(Sweep);
        ctx.run_interval(self.every, |_, ctx| ctx.notify(Sweep));
    }
}

impl Supervised for Housekeeper {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.stats.record_restart("stopped");
    }
}

impl SupervisedActor for Housekeeper {
    fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }
}

/// Purge now; answers when done (a failed purge is recorded as the actor's
/// last error and tried again at the next sweep).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), Crashed>")]
pub struct Sweep;

impl Handler<Sweep> for Housekeeper {
    type Result = ResponseActFuture<Self, Result<(), Crashed>>;

    fn handle(&mut self, _: Sweep, _: &mut Context<Self>) -> Self::Result {
        let (pool, keep_mail, stats, log) = (
            self.pool.clone(),
            self.keep_mail,
            Arc::clone(&self.stats),
            self.log.clone(),
        );
        let sweep = async move {
            match accounts::purge_stale(&pool).await {
                Ok(purged) if purged != accounts::Purged::default() => {
                    info!(log, "housekeeping: accounts purged";
                        "unconfirmed_accounts" => purged.unconfirmed_accounts,
                        "sessions" => purged.sessions, "links" => purged.links, "limits" => purged.limits)
                }
                Ok(_) => {}
                Err(e) => stats.record_error(format!("cannot purge accounts: {e}")),
            }
            match outbox::purge(&pool, keep_mail).await {
                Ok(0) => {}
                Ok(emails) => info!(log, "housekeeping: old emails purged"; "emails" => emails),
                Err(e) => stats.record_error(format!("cannot purge the outbox: {e}")),
            }
        };
        guard_future(self, "Sweep", sweep)
    }
}
