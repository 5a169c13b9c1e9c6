//! The EventLog actor: buffers events and writes them in batches, every
//! `log.events_flush_secs` (a second by default) or when a batch is full,
//! and once more when it is told to flush at shutdown. While the database is away it keeps a bounded backlog.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use deadpool_postgres::Pool;

use super::{insert_events, Event};
use crate::supervisor::restarts::{guard, guard_future, ActorStats, Crashed, SupervisedActor};

const BATCH: usize = 500;
/// Past this many unwritten events the oldest are dropped (and counted).
const MAX_BACKLOG: usize = 50_000;

pub struct EventLog {
    pool: Pool,
    stats: Arc<ActorStats>,
    flush_every: Duration,
    buffer: Vec<Event>,
    dropped: u64,
}

impl EventLog {
    /// An EventLog that writes what it holds every `flush_every` (and when told to flush).
    pub fn new(pool: Pool, stats: Arc<ActorStats>, flush_every: Duration) -> EventLog {
        EventLog {
            pool,
            stats,
            flush_every,
            buffer: Vec::new(),
            dropped: 0,
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
}

impl Actor for EventLog {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.flush_every, |act, ctx| {
            if !act.buffer.is_empty() {
                ctx.wait(act.write_buffer().map(|_, _, _| ()));
            }
        });
    }
}

impl Supervised for EventLog {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // The buffer survives: a restart should not lose what was recorded.
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

/// Write everything buffered now; answers with how many events were written.
#[derive(Message)]
#[rtype(result = "Result<u64, Crashed>")]
pub struct Flush;

impl Handler<Flush> for EventLog {
    type Result = ResponseActFuture<Self, Result<u64, Crashed>>;

    fn handle(&mut self, _: Flush, _ctx: &mut Context<Self>) -> Self::Result {
        self.write_buffer()
    }
}
