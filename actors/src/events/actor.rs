//! The EventLog actor: buffers events and writes them in batches, every
//! `log.events_flush_secs` (a second by default) or when a batch is full,
//! and once more when it is told to flush at shutdown. While the database is away it keeps a bounded backlog.
//! It drains the page views' ring (see [`super::page_views`]) on the same
//! interval, and as soon as the ring is half full.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::fut::ready;
use actix::prelude::*;
use deadpool_postgres::Pool;
use slog::{warn, Logger};
use time::Date;

use super::page_views::{Batch, MOST_TAKEN};
use super::{day_of, insert_events, insert_page_views, Event, PageViews, Salt};
use crate::supervisor::restarts::{guard, guard_future, ActorStats, Crashed, SupervisedActor};

const BATCH: usize = 500;
/// Past this many unwritten events the oldest are dropped (and counted).
const MAX_BACKLOG: usize = 50_000;
/// Dropped page views are reported (log line, last error) at most this often.
const DROPS_REPORTED_EVERY: Duration = Duration::from_secs(60);

pub struct EventLog {
    pool: Pool,
    stats: Arc<ActorStats>,
    flush_every: Duration,
    buffer: Vec<Event>,
    dropped: u64,
    /// Kept by the supervisor, so that a restart loses none of it.
    views: Arc<PageViews>,
    /// A batch of views taken from the ring that could not be written yet.
    unwritten_views: Batch,
    writing_views: bool,
    /// The salts of today and yesterday, once asked of the database.
    salts: Vec<(Date, Salt)>,
    drops_reported: (u64, Option<Instant>),
    log: Logger,
}

impl EventLog {
    /// An EventLog that writes what it holds every `flush_every` (and when told to flush).
    pub fn new(
        pool: Pool,
        views: Arc<PageViews>,
        stats: Arc<ActorStats>,
        flush_every: Duration,
        log: Logger,
    ) -> EventLog {
        EventLog {
            pool,
            stats,
            flush_every,
            buffer: Vec::new(),
            dropped: 0,
            views,
            unwritten_views: Batch::default(),
            writing_views: false,
            salts: Vec::new(),
            drops_reported: (0, None),
            log,
        }
    }

    fn take_batch(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.buffer)
    }

    fn put_back(&mut self, mut batch: Vec<Event>) {
        batch.append(&mut self.buffer);
        if batch.len() > MAX_BACKLOG {
            let excess = batch.len() - MAX_BACKLOG;
            batch.drain(..excess);
            self.dropped += excess as u64;
            self.stats.record_error(format!(
                "event backlog full; {} events dropped so far",
                self.dropped
            ));
        }
        self.buffer = batch;
    }

    /// Writes the buffer; on failure the events go back for the next try.
    fn write_buffer(&mut self) -> ResponseActFuture<Self, Result<u64, Crashed>> {
        let batch = self.take_batch();
        let pool = self.pool.clone();
        let write = async move {
            let outcome = insert_events(&pool, &batch).await;
            (batch, outcome)
        };
        Box::pin(guard_future(self, "Flush", write).map(|outcome, act, _ctx| {
            outcome.map(|(batch, written)| match written {
                Ok(n) => n,
                Err(e) => {
                    act.stats.record_error(format!("cannot write events: {e}"));
                    act.put_back(batch);
                    0
                }
            })
        }))
    }

    /// Writes one batch of page views: the one that failed last, else the
    /// oldest in the ring. Answers with how many were written.
    fn write_views(&mut self) -> ResponseActFuture<Self, Result<u64, Crashed>> {
        if self.writing_views {
            return Box::pin(ready(Ok(0)));
        }
        let batch = match std::mem::take(&mut self.unwritten_views) {
            failed if !failed.is_empty() => failed,
            _ => self.views.take(),
        };
        if batch.is_empty() {
            return Box::pin(ready(Ok(0)));
        }
        self.writing_views = true;
        let today = day_of(SystemTime::now());
        let yesterday = today.previous_day().unwrap_or(today);
        self.salts.retain(|(day, _)| *day >= yesterday);
        let mut salts = self.salts.clone();
        let pool = self.pool.clone();
        let write = async move {
            let written = insert_page_views(&pool, &batch, &mut salts, today).await;
            (batch, salts, written)
        };
        Box::pin(
            guard_future(self, "WriteViews", write).map(move |outcome, act, _ctx| {
                act.writing_views = false;
                outcome.map(|(batch, salts, written)| {
                    // A salt older than yesterday was for late views: not kept.
                    act.salts = salts.into_iter().filter(|(day, _)| *day >= yesterday).collect();
                    match written {
                        Ok(n) => {
                            act.views.count_written(n);
                            n
                        }
                        Err(e) => {
                            act.stats.record_error(format!("cannot write page views: {e}"));
                            act.unwritten_views = batch;
                            0
                        }
                    }
                })
            }),
        )
    }

    /// Writes the page views held now (a batch that failed before, the
    /// ring, then the workers' latest tallies), a batch at a time. Views
    /// recorded meanwhile wait for the next interval (or the ring half
    /// full): chasing them would write a few rows per statement, over and
    /// over, under steady traffic.
    fn write_all_views(&mut self) -> ResponseActFuture<Self, Result<u64, Crashed>> {
        // The last batch takes the workers' tallies, once the ring is empty.
        let batches =
            usize::from(!self.unwritten_views.is_empty()) + self.views.stats().buffered / MOST_TAKEN + 1;
        self.write_views_up_to(batches)
    }

    /// Writes up to `batches` batches, until one finds nothing to write or
    /// a write fails.
    fn write_views_up_to(&mut self, batches: usize) -> ResponseActFuture<Self, Result<u64, Crashed>> {
        Box::pin(self.write_views().then(move |outcome, act, _ctx| {
            match outcome {
                Ok(n) if n > 0 && batches > 1 => Box::pin(
                    act.write_views_up_to(batches - 1)
                        .map(move |more, _, _| more.map(|m| n + m)),
                )
                    as ResponseActFuture<Self, Result<u64, Crashed>>,
                outcome => Box::pin(ready(outcome)),
            }
        }))
    }

    /// Drains the ring each time a push finds it half full.
    fn drain_when_half_full(&self, ctx: &mut Context<Self>) {
        let views = Arc::clone(&self.views);
        ctx.spawn(
            async move { views.half_full().await }
                .into_actor(self)
                .map(|(), act, ctx| {
                    ctx.wait(act.write_all_views().map(|_, _, _| ()));
                    act.drain_when_half_full(ctx);
                }),
        );
    }

    /// Says how many page views the full ring dropped, at most once a minute.
    fn report_drops(&mut self) {
        let dropped = self.views.stats().dropped;
        let (reported, at) = self.drops_reported;
        if dropped > reported && at.is_none_or(|at| at.elapsed() >= DROPS_REPORTED_EVERY) {
            warn!(self.log, "page views dropped: the ring was full (log.page_view_buffer)";
                "dropped" => dropped, "since_last_report" => dropped - reported);
            self.stats.record_error(format!("{dropped} page views dropped"));
            self.drops_reported = (dropped, Some(Instant::now()));
        }
    }
}

impl Actor for EventLog {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.flush_every, |act, ctx| {
            if !act.buffer.is_empty() {
                ctx.wait(act.write_buffer().map(|_, _, _| ()));
            }
            ctx.wait(act.write_all_views().map(|_, _, _| ()));
            act.report_drops();
        });
        self.drain_when_half_full(ctx);
    }
}

impl Supervised for EventLog {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // The buffer survives: a restart should not lose what was recorded.
        // The page views' ring is the supervisor's; a batch being written
        // when the actor stopped is lost with its future.
        self.writing_views = false;
        self.stats.record_restart("stopped");
    }
}

impl SupervisedActor for EventLog {
    fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }
}

/// Record one event; it is written within the flush interval.
#[derive(Message)]
#[rtype(result = "Result<(), Crashed>")]
pub struct Record(pub Event);

impl Handler<Record> for EventLog {
    type Result = Result<(), Crashed>;

    fn handle(&mut self, Record(event): Record, ctx: &mut Context<Self>) -> Self::Result {
        guard(self, ctx, "Record", |act, ctx| {
            act.buffer.push(event);
            if act.buffer.len() >= BATCH {
                ctx.wait(act.write_buffer().map(|_, _, _| ()));
            }
        })
    }
}

/// Write everything buffered now, events and page views; answers with how
/// many events and views were written.
#[derive(Message)]
#[rtype(result = "Result<u64, Crashed>")]
pub struct Flush;

impl Handler<Flush> for EventLog {
    type Result = ResponseActFuture<Self, Result<u64, Crashed>>;

    fn handle(&mut self, _: Flush, _ctx: &mut Context<Self>) -> Self::Result {
        Box::pin(self.write_buffer().then(|events, act, _ctx| {
            match events {
                Ok(events) => Box::pin(
                    act.write_all_views()
                        .map(move |views, _, _| views.map(|v| events + v)),
                ) as ResponseActFuture<Self, Result<u64, Crashed>>,
                crashed => Box::pin(ready(crashed)),
            }
        }))
    }
}
