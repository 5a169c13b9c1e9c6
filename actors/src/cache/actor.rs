//! The PageCache actor: the one writer of invalidations. It listens on
//! PostgreSQL `NOTIFY lectern_cache` (every node's content changes), drops
//! everything when that connection was lost (it may have missed some), and
//! drops everything when scheduled content comes due.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use slog::{info, warn, Logger};
use tokio_postgres::{AsyncMessage, NoTls};

use super::{parse_topics, PageTable, EVERYTHING, NOTIFY_CHANNEL};
use crate::store::DbConfig;
use crate::supervision::{guard, ActorStats, Crashed, SupervisedActor};

const RECONNECT_AFTER: Duration = Duration::from_secs(1);

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
        let listener = listen(
            self.database.clone(),
            ctx.address(),
            Arc::clone(&self.stats),
            self.log.clone(),
        );
        ctx.spawn(listener.into_actor(self));
        let pool = self.pool.clone();
        let address = ctx.address();
        let stats = Arc::clone(&self.stats);
        ctx.spawn(watch_schedule(pool, address, stats, self.schedule_check).into_actor(self));
    }
}

impl Supervised for PageCache {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // Notifications may have been missed while the listener was down.
        self.table.invalidate(&BTreeSet::from([EVERYTHING.to_owned()]));
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
pub struct Invalidate(pub BTreeSet<String>);

impl Handler<Invalidate> for PageCache {
    type Result = Result<(), Crashed>;

    fn handle(&mut self, Invalidate(topics): Invalidate, ctx: &mut Context<Self>) -> Self::Result {
        guard(self, ctx, "Invalidate", |act, _| act.table.invalidate(&topics))
    }
}

/// Forwards NOTIFY payloads as `Invalidate`; reconnects, forgetting
/// everything, when the connection drops.
async fn listen(database: DbConfig, cache: Addr<PageCache>, stats: Arc<ActorStats>, log: Logger) {
    let mut first = true;
    loop {
        match database.connect(NoTls).await {
            Ok((client, mut connection)) => {
                // The connection must be polled for the LISTEN to complete and
                // for notifications to arrive: a task drives it and forwards them.
                let (payloads, mut received) = tokio::sync::mpsc::unbounded_channel::<String>();
                let driver_stats = Arc::clone(&stats);
                actix_rt::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) if n.channel() == NOTIFY_CHANNEL => {
                                if payloads.send(n.payload().to_owned()).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                driver_stats.record_error(format!("cache listener connection lost: {e}"));
                                return;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}")).await {
                    Err(e) => stats.record_error(format!("cannot LISTEN {NOTIFY_CHANNEL}: {e}")),
                    Ok(()) => {
                        if !first {
                            // Whatever changed while we were away is unknown.
                            cache.do_send(Invalidate(BTreeSet::from([EVERYTHING.to_owned()])));
                            info!(log, "cache listener reconnected; cache cleared");
                        }
                        first = false;
                        while let Some(payload) = received.recv().await {
                            cache.do_send(Invalidate(parse_topics(&payload)));
                        }
                        warn!(log, "cache listener disconnected");
                    }
                }
            }
            Err(e) => stats.record_error(format!("cache listener cannot connect: {e}")),
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
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
                cache.do_send(Invalidate(BTreeSet::from([EVERYTHING.to_owned()])));
                last_check = now;
            }
            // Keep `last_check`, so that nothing that came due is skipped.
            Err(e) => stats.record_error(format!("cannot check scheduled content: {e}")),
        }
    }
}
