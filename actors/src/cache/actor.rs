//! The PageCache actor: the one writer of invalidations. It listens on
//! PostgreSQL `NOTIFY lectern_cache` (every node's content changes), drops
//! everything when that connection was lost (it may have missed some), and
//! drops everything when scheduled content comes due.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use deadpool_postgres::Pool;
use slog::Logger;

use super::{parse_topics, PageTable, Topic, NOTIFY_CHANNEL};
use crate::store::listen::{listen, Heard};
use crate::store::DbConfig;
use crate::supervisor::restarts::{guard, ActorStats, Crashed, SupervisedActor};

pub struct PageCache {
    table: Arc<PageTable>,
    /// How often to look for content whose publish time has come.
    schedule_check: Duration,
    database: DbConfig,
    pool: Pool,
    stats: Arc<ActorStats>,
    log: Logger,
}

impl PageCache {
    pub fn new(
        table: Arc<PageTable>,
        schedule_check: Duration,
        database: DbConfig,
        pool: Pool,
        stats: Arc<ActorStats>,
        log: Logger,
    ) -> Self {
        PageCache {
            table,
            schedule_check,
            database,
            pool,
            stats,
            log,
        }
    }
}

impl Actor for PageCache {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let cache = ctx.address();
        let listener = listen(
            self.database.clone(),
            NOTIFY_CHANNEL,
            Arc::clone(&self.stats),
            self.log.clone(),
            move |heard| {
                let topics = match heard {
                    Heard::Notification(payload) => parse_topics(&payload),
                    // Whatever changed while the connection was down is unknown.
                    Heard::Reconnected => BTreeSet::from([Topic::EVERYTHING]),
                };
                cache.do_send(Invalidate(topics));
            },
        );
        ctx.spawn(listener.into_actor(self));
        // A PageCache starting afresh (the watchdog's restart after a death
        // outside a handler, or `restarting` after a stop) may have missed
        // notifications while it was away: drop everything. At the process's
        // start the table is empty anyway.
        self.table.invalidate(&BTreeSet::from([Topic::EVERYTHING]));
        let pool = self.pool.clone();
        let address = ctx.address();
        let stats = Arc::clone(&self.stats);
        ctx.spawn(watch_schedule(pool, address, stats, self.schedule_check).into_actor(self));
    }
}

impl Supervised for PageCache {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // `started` runs again next and drops what may be stale.
        self.stats.record_restart("stopped");
    }
}

impl SupervisedActor for PageCache {
    fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }
}

/// Drop every cached page that shows one of these topics.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), Crashed>")]
pub struct Invalidate(pub BTreeSet<Topic>);

impl Handler<Invalidate> for PageCache {
    type Result = Result<(), Crashed>;

    fn handle(&mut self, Invalidate(topics): Invalidate, ctx: &mut Context<Self>) -> Self::Result {
        guard(self, ctx, "Invalidate", |act, _| act.table.invalidate(&topics))
    }
}

/// Content published for a later time appears when its time comes: pages
/// rendered before then do not show it, so they are dropped.
async fn watch_schedule(pool: Pool, cache: Addr<PageCache>, stats: Arc<ActorStats>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    let mut last_check = time::OffsetDateTime::now_utc();
    loop {
        ticks.tick().await;
        let now = time::OffsetDateTime::now_utc();
        match crate::content::count_published_between(&pool, last_check, now).await {
            Ok(0) => last_check = now,
            Ok(_) => {
                cache.do_send(Invalidate(BTreeSet::from([Topic::EVERYTHING])));
                last_check = now;
            }
            // Keep `last_check`, so that nothing that came due is skipped.
            Err(e) => stats.record_error(format!("cannot check scheduled content: {e}")),
        }
    }
}
