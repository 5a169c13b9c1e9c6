//! The root of Lectern's supervision tree: the one place that starts the
//! actors, in order, with their restart policy, and stops them at shutdown.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use deadpool_postgres::Pool;
use slog::{warn, Logger};

use crate::cache::{PageCache, PageTable};
use crate::events::{Event, EventLog, Flush, Record};
use crate::render::{compile_templates, RenderError, Renderer};
use crate::store::DbConfig;
use crate::supervision::{ActorReport, Child, RestartPolicy, Tree};

/// How often the watchdog looks for actors that died outside a guarded handler.
const WATCHDOG_EVERY: Duration = Duration::from_millis(500);
const FLUSH_AT_SHUTDOWN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub policy: RestartPolicy,
    /// Renderer threads; one per core is right for CPU-bound rendering.
    pub render_threads: usize,
    /// How often PageCache looks for scheduled content that came due.
    pub schedule_check: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the templates do not compile: {0}")]
    Templates(#[from] RenderError),
}

/// The running actors. Handlers reach them through these children, whose
/// addresses stay valid across restarts.
pub struct RootSupervisor {
    tree: Arc<Tree>,
    pub event_log: Arc<Child<EventLog>>,
    pub renderer: Arc<Child<Renderer>>,
    pub page_cache: Arc<Child<PageCache>>,
    /// The cache table outlives PageCache restarts, as an ETS table with an heir does.
    pub pages: Arc<PageTable>,
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
        log: Logger,
    ) -> Result<RootSupervisor, StartError> {
        let tree = Tree::new(config.policy, log.clone());

        // 1. EventLog first: the others record into it.
        let event_log_arbiter = Arbiter::new();
        let event_log_pool = pool.clone();
        let event_log = tree.supervise("event_log", event_log_arbiter.handle(), move |stats| {
            EventLog::new(event_log_pool.clone(), stats)
        });

        // 2. The Renderer pool; templates are compiled once, here, so that a
        //    broken template stops the start with a clear error.
        let templates = Arc::new(compile_templates()?);
        let renderer = tree.supervise_pool("renderer", config.render_threads.max(1), move |stats| {
            Renderer::new(Arc::clone(&templates), stats)
        });

        // 3. PageCache: invalidation, and the listener for other nodes' changes.
        let page_cache_arbiter = Arbiter::new();
        let cache_table = Arc::clone(&pages);
        let cache_log = log.clone();
        let schedule_check = config.schedule_check;
        let page_cache = tree.supervise("page_cache", page_cache_arbiter.handle(), move |stats| {
            PageCache::new(
                Arc::clone(&cache_table),
                schedule_check,
                database.clone(),
                pool.clone(),
                stats,
                cache_log.clone(),
            )
        });

        tree.watch(WATCHDOG_EVERY);
        Ok(RootSupervisor {
            tree,
            event_log,
            renderer,
            page_cache,
            pages,
            arbiters: vec![event_log_arbiter, page_cache_arbiter],
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

    /// Writes what the EventLog holds, then stops the actors' arbiters.
    pub async fn shutdown(&self) {
        match tokio::time::timeout(FLUSH_AT_SHUTDOWN, self.event_log.send(Flush)).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => warn!(self.log, "event log flush failed at shutdown"; "error" => %e),
            Ok(Err(e)) => warn!(self.log, "event log unreachable at shutdown"; "error" => %e),
            Err(_) => warn!(self.log, "event log flush timed out at shutdown"),
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}
