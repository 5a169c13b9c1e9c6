//! The supervision mechanism, as OTP means it, for actix actors (the tree
//! of Lectern's own actors is built by `supervisor.rs`): handler panics become
//! restarts, restarts are counted against a restart intensity, a watchdog
//! replaces actors that died outside a guarded handler, and a tree that
//! restarts too often escalates so that the process exits and systemd starts
//! it again.
//!
//! actix restarts a supervised actor that stops, but a panic in a handler
//! kills it for good. So every handler body runs under [`guard`] (or
//! [`guard_future`] for async bodies): a caught panic is logged with the
//! message type, counted, and turned into `ctx.stop()`, which actix's
//! `Supervisor` (or `SyncArbiter`'s factory) turns into a restart.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use actix::dev::ToEnvelope;
use actix::prelude::*;
use futures_util::FutureExt;
use serde::Serialize;
use slog::{error, warn, Logger};
use tokio::sync::{mpsc, watch};

/// At most `max_restarts` restarts of one actor within `within`; one more and
/// the tree escalates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    pub max_restarts: u32,
    pub within: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 5,
            within: Duration::from_secs(60),
        }
    }
}

/// More than `restarts` restarts of one actor within `within` are a storm
/// the operator is told of (an alert), before the restart intensity
/// escalates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StormPolicy {
    pub restarts: u32,
    pub within: Duration,
}

/// An actor restarting more often than the [`StormPolicy`] allows; sent at
/// each restart while it lasts.
#[derive(Debug, Clone)]
pub struct Storm {
    pub actor: &'static str,
    pub restarts: usize,
    pub within: Duration,
    pub last_error: Option<String>,
}

/// A handler panicked; the actor is being restarted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("actor {actor} crashed while handling {message}; it is being restarted")]
pub struct Crashed {
    pub actor: &'static str,
    pub message: &'static str,
}

/// What every supervised actor can tell the supervisor about itself.
pub trait SupervisedActor: Actor {
    fn stats(&self) -> &Arc<ActorStats>;
}

/// Counters for one actor; they live in the tree, so they outlive restarts.
pub struct ActorStats {
    name: &'static str,
    restarts: AtomicU64,
    handled: AtomicU64,
    enqueued: AtomicU64,
    last_error: Mutex<Option<String>>,
    recent_restarts: Mutex<VecDeque<Instant>>,
    tree: Arc<TreeShared>,
}

/// A point-in-time view of one actor, for `/readyz` (and, as they come,
/// `/metrics` and the dashboard).
#[derive(Debug, Clone, Serialize)]
pub struct ActorReport {
    pub name: &'static str,
    pub alive: bool,
    pub restarts: u64,
    pub handled: u64,
    pub backlog: u64,
    pub last_error: Option<String>,
}

impl ActorStats {
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Remembers an error the actor recovered from (shown by `/readyz`).
    pub fn record_error(&self, error: impl fmt::Display) {
        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
    }

    /// Counts a restart and escalates when the restart intensity is exceeded.
    pub fn record_restart(&self, why: &str) {
        let restarts = self.restarts.fetch_add(1, Ordering::Relaxed) + 1;
        let policy = self.tree.policy;
        let storms = self.tree.storms.get();
        let (in_window, in_storm_window) = {
            let mut recent = self
                .recent_restarts
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let keep = storms.map_or(policy.within, |(storm, _)| storm.within.max(policy.within));
            recent.push_back(now);
            while recent.front().is_some_and(|t| now.duration_since(*t) > keep) {
                recent.pop_front();
            }
            let within = |window: Duration| {
                recent
                    .iter()
                    .filter(|t| now.duration_since(**t) <= window)
                    .count()
            };
            (
                within(policy.within),
                storms.map(|(storm, _)| within(storm.within)),
            )
        };
        warn!(self.tree.log, "actor restarted";
            "actor" => self.name, "why" => why, "restarts" => restarts);
        if let (Some((storm, storms)), Some(restarts)) = (storms, in_storm_window) {
            if restarts > storm.restarts as usize {
                // The receiver goes with the tree; nothing to tell then.
                let _ = storms.send(Storm {
                    actor: self.name,
                    restarts,
                    within: storm.within,
                    last_error: self.last_error(),
                });
            }
        }
        if in_window > policy.max_restarts as usize {
            self.tree.escalate(format!(
                "actor {} restarted {} times within {} s (limit {}); last error: {}",
                self.name,
                in_window,
                policy.within.as_secs(),
                policy.max_restarts,
                self.last_error().unwrap_or_else(|| why.to_owned())
            ));
        }
    }

    fn record_panic(&self, message: &'static str, payload: &(dyn Any + Send)) {
        let text = panic_text(payload);
        error!(self.tree.log, "actor handler panicked";
            "actor" => self.name, "message" => message, "panic" => &text);
        self.record_error(format!("panic while handling {message}: {text}"));
    }

    fn report(&self, alive: bool) -> ActorReport {
        let handled = self.handled();
        ActorReport {
            name: self.name,
            alive,
            restarts: self.restarts(),
            handled,
            backlog: self.enqueued.load(Ordering::Relaxed).saturating_sub(handled),
            last_error: self.last_error(),
        }
    }
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Runs a handler body; a panic in it is logged with the message type,
/// counted, and turned into a restart of the actor.
pub fn guard<A, R>(
    act: &mut A,
    ctx: &mut A::Context,
    message: &'static str,
    body: impl FnOnce(&mut A, &mut A::Context) -> R,
) -> Result<R, Crashed>
where
    A: SupervisedActor,
    A::Context: ActorContext,
{
    act.stats().handled.fetch_add(1, Ordering::Relaxed);
    let outcome = catch_unwind(AssertUnwindSafe(|| body(&mut *act, &mut *ctx)));
    outcome.map_err(|payload| {
        let stats = act.stats();
        stats.record_panic(message, payload.as_ref());
        ctx.stop();
        Crashed {
            actor: stats.name,
            message,
        }
    })
}

/// The async counterpart of [`guard`] for handlers that answer with a future.
pub fn guard_future<A, F>(
    act: &A,
    message: &'static str,
    body: F,
) -> ResponseActFuture<A, Result<F::Output, Crashed>>
where
    A: SupervisedActor<Context = Context<A>>,
    F: Future + 'static,
{
    let stats = Arc::clone(act.stats());
    stats.handled.fetch_add(1, Ordering::Relaxed);
    Box::pin(
        AssertUnwindSafe(body)
            .catch_unwind()
            .into_actor(act)
            .map(move |outcome, _act, ctx| {
                outcome.map_err(|payload| {
                    stats.record_panic(message, payload.as_ref());
                    ctx.stop();
                    Crashed {
                        actor: stats.name,
                        message,
                    }
                })
            }),
    )
}

struct TreeShared {
    policy: RestartPolicy,
    log: Logger,
    escalation: watch::Sender<Option<String>>,
    storms: OnceLock<(StormPolicy, mpsc::UnboundedSender<Storm>)>,
}

impl TreeShared {
    fn escalate(&self, reason: String) {
        error!(self.log, "restart intensity exceeded; escalating"; "reason" => &reason);
        self.escalation.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

/// A supervised child: the current address (replaced when the watchdog
/// restarts a dead actor) and its counters.
pub struct Child<A: Actor> {
    stats: Arc<ActorStats>,
    addr: RwLock<Addr<A>>,
    start: Box<dyn Fn(Arc<ActorStats>) -> Addr<A> + Send + Sync>,
}

impl<A: Actor> Child<A> {
    /// The actor's current address.
    pub fn addr(&self) -> Addr<A> {
        self.addr.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }

    /// Sends a message and waits for the answer.
    pub fn send<M>(&self, msg: M) -> actix::dev::Request<A, M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
        self.addr().send(msg)
    }

    /// Sends a message without waiting; it is dropped if the mailbox is gone.
    pub fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
        self.addr().do_send(msg)
    }
}

trait Watched: Send + Sync {
    fn revive_if_dead(&self);
    fn report(&self) -> ActorReport;
}

impl<A: Actor> Watched for Child<A> {
    fn revive_if_dead(&self) {
        if self.addr().connected() {
            return;
        }
        self.stats.record_error("actor died outside a guarded handler");
        self.stats.record_restart("actor died outside a guarded handler");
        let fresh = (self.start)(Arc::clone(&self.stats));
        *self.addr.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    }

    fn report(&self) -> ActorReport {
        self.stats.report(self.addr().connected())
    }
}

/// A supervision tree: its children, their restart policy, and where an
/// escalation goes.
pub struct Tree {
    shared: Arc<TreeShared>,
    children: Mutex<Vec<Arc<dyn Watched>>>,
    escalated: watch::Receiver<Option<String>>,
}

impl Tree {
    pub fn new(policy: RestartPolicy, log: Logger) -> Arc<Tree> {
        let (escalation, escalated) = watch::channel(None);
        Arc::new(Tree {
            shared: Arc::new(TreeShared {
                policy,
                log,
                escalation,
                storms: OnceLock::new(),
            }),
            children: Mutex::new(Vec::new()),
            escalated,
        })
    }

    fn new_stats(&self, name: &'static str) -> Arc<ActorStats> {
        Arc::new(ActorStats {
            name,
            restarts: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            enqueued: AtomicU64::new(0),
            last_error: Mutex::new(None),
            recent_restarts: Mutex::new(VecDeque::new()),
            tree: Arc::clone(&self.shared),
        })
    }

    fn adopt<A: Actor>(
        &self,
        name: &'static str,
        start: Box<dyn Fn(Arc<ActorStats>) -> Addr<A> + Send + Sync>,
    ) -> Arc<Child<A>> {
        let stats = self.new_stats(name);
        let addr = start(Arc::clone(&stats));
        let child = Arc::new(Child {
            stats,
            addr: RwLock::new(addr),
            start,
        });
        self.children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&child) as Arc<dyn Watched>);
        child
    }

    /// Starts an actor on `arbiter` under actix's `Supervisor`; the actor's
    /// `restarting()` must call `stats().record_restart(..)` and reset its state.
    pub fn supervise<A, F>(&self, name: &'static str, arbiter: ArbiterHandle, factory: F) -> Arc<Child<A>>
    where
        A: SupervisedActor<Context = Context<A>> + Supervised,
        F: Fn(Arc<ActorStats>) -> A + Send + Sync + 'static,
    {
        let factory = Arc::new(factory);
        self.adopt(
            name,
            Box::new(move |stats| {
                let factory = Arc::clone(&factory);
                Supervisor::start_in_arbiter(&arbiter, move |_| factory(stats))
            }),
        )
    }

    /// Starts a pool of `threads` sync actors; a stopped one is re-created
    /// from the factory by `SyncArbiter`, which counts as a restart.
    pub fn supervise_pool<A, F>(&self, name: &'static str, threads: usize, factory: F) -> Arc<Child<A>>
    where
        A: SupervisedActor<Context = SyncContext<A>>,
        F: Fn(Arc<ActorStats>) -> A + Send + Sync + 'static,
    {
        let factory = Arc::new(factory);
        self.adopt(
            name,
            Box::new(move |stats| {
                let factory = Arc::clone(&factory);
                let created = AtomicUsize::new(0);
                SyncArbiter::start(threads, move || {
                    // The first `threads` calls start the pool; later ones replace a stopped actor.
                    if created.fetch_add(1, Ordering::Relaxed) >= threads {
                        stats.record_restart("stopped after a caught panic");
                    }
                    factory(Arc::clone(&stats))
                })
            }),
        )
    }

    /// Checks every `every` that each child is alive, and restarts the dead.
    /// Runs on the current arbiter until the tree is dropped.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let tree = Arc::downgrade(self);
        actix_rt::spawn(async move {
            let mut ticks = actix_rt::time::interval(every);
            loop {
                ticks.tick().await;
                let Some(tree) = tree.upgrade() else { return };
                let children = tree
                    .children
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                for child in children {
                    child.revive_if_dead();
                }
            }
        });
    }

    pub fn report(&self) -> Vec<ActorReport> {
        self.children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|child| child.report())
            .collect()
    }

    /// Restart storms under `policy`, from now on; `None` if they are
    /// already being watched (there is one watcher per tree).
    pub fn storms(&self, policy: StormPolicy) -> Option<mpsc::UnboundedReceiver<Storm>> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.shared.storms.set((policy, sender)).ok()?;
        Some(receiver)
    }

    /// Resolves with the reason once the restart intensity is exceeded.
    pub async fn escalated(&self) -> String {
        let mut escalated = self.escalated.clone();
        let reason = match escalated.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            // The sender lives in `self`, so it cannot be dropped while we wait.
            None => std::future::pending().await,
        }
    }
}
