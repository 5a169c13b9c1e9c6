//! Supervision: a stopped actor restarts, a panicking handler becomes a
//! restart while other actors keep answering, a dead actor is revived by the
//! watchdog, and too many restarts escalate.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use lectern_actors::supervisor::restarts::{
    guard, ActorStats, Crashed, RestartPolicy, SupervisedActor, Tree,
};
use slog::{o, Discard, Logger};

struct Counter {
    stats: Arc<ActorStats>,
    count: u32,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Supervised for Counter {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.count = 0;
        self.stats.record_restart("stopped");
    }
}

impl SupervisedActor for Counter {
    fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }
}

/// Adds to the count and answers the total; adding 0 panics.
#[derive(Message)]
#[rtype(result = "Result<u32, Crashed>")]
struct Add(u32);

impl Handler<Add> for Counter {
    type Result = Result<u32, Crashed>;

    fn handle(&mut self, Add(n): Add, ctx: &mut Context<Self>) -> Self::Result {
        guard(self, ctx, "Add", |act, _| {
            assert!(n != 0, "adding zero is a bug");
            act.count += n;
            act.count
        })
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct StopYourself;

impl Handler<StopYourself> for Counter {
    type Result = ();

    fn handle(&mut self, _: StopYourself, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Panics in a future spawned on the context, where no guard can catch it.
#[derive(Message)]
#[rtype(result = "()")]
struct PanicOutsideGuard;

impl Handler<PanicOutsideGuard> for Counter {
    type Result = ();

    fn handle(&mut self, _: PanicOutsideGuard, ctx: &mut Context<Self>) {
        ctx.spawn(async { panic!("unguarded") }.into_actor(self));
    }
}

struct Doubler {
    stats: Arc<ActorStats>,
}

impl Actor for Doubler {
    type Context = SyncContext<Self>;
}

impl SupervisedActor for Doubler {
    fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }
}

#[derive(Message)]
#[rtype(result = "Result<u32, Crashed>")]
struct Double(u32);

impl Handler<Double> for Doubler {
    type Result = Result<u32, Crashed>;

    fn handle(&mut self, Double(n): Double, ctx: &mut SyncContext<Self>) -> Self::Result {
        guard(self, ctx, "Double", |_, _| {
            assert!(n != 0, "doubling zero is a bug");
            n * 2
        })
    }
}

fn quiet() -> Logger {
    Logger::root(Discard, o!())
}

fn lenient() -> RestartPolicy {
    RestartPolicy {
        max_restarts: 100,
        within: Duration::from_secs(60),
    }
}

fn counter_on(tree: &Tree, name: &'static str) -> Arc<lectern_actors::supervisor::restarts::Child<Counter>> {
    tree.supervise(name, Arbiter::new().handle(), |stats| Counter { stats, count: 0 })
}

#[actix_rt::test]
async fn an_actor_that_stops_is_restarted_with_fresh_state() {
    let tree = Tree::new(lenient(), quiet());
    let counter = counter_on(&tree, "counter");
    assert_eq!(counter.send(Add(2)).await.unwrap().unwrap(), 2);

    counter.send(StopYourself).await.unwrap();

    assert_eq!(counter.send(Add(3)).await.unwrap().unwrap(), 3, "state was reset");
    assert_eq!(counter.stats().restarts(), 1);
}

#[actix_rt::test]
async fn a_panic_in_a_handler_becomes_a_restart_and_others_keep_answering() {
    let tree = Tree::new(lenient(), quiet());
    let counter = counter_on(&tree, "counter");
    let bystander = counter_on(&tree, "bystander");
    counter.send(Add(5)).await.unwrap().unwrap();

    let crashed = counter.send(Add(0)).await.unwrap();
    assert_eq!(bystander.send(Add(1)).await.unwrap().unwrap(), 1);

    let crashed = crashed.expect_err("the panic is answered as an error");
    assert_eq!((crashed.actor, crashed.message), ("counter", "Add"));
    assert_eq!(
        counter.send(Add(4)).await.unwrap().unwrap(),
        4,
        "restarted, state reset"
    );
    assert_eq!(counter.stats().restarts(), 1);
    let last_error = counter.stats().last_error().expect("the panic is remembered");
    assert!(
        last_error.contains("Add") && last_error.contains("adding zero is a bug"),
        "{last_error}"
    );
    let report = tree.report();
    let counter_report = report.iter().find(|r| r.name == "counter").unwrap();
    assert!(counter_report.alive);
    assert_eq!(counter_report.restarts, 1);
    assert_eq!(counter_report.handled, 3);
    assert_eq!(counter_report.backlog, 0);
    assert_eq!(bystander.stats().restarts(), 0);
}

#[actix_rt::test]
async fn a_panic_in_a_sync_pool_worker_does_not_shrink_the_pool() {
    let tree = Tree::new(lenient(), quiet());
    let doubler = tree.supervise_pool("doubler", 1, |stats| Doubler { stats });

    for _ in 0..3 {
        assert!(doubler.send(Double(0)).await.unwrap().is_err());
        assert_eq!(doubler.send(Double(21)).await.unwrap().unwrap(), 42);
    }
    assert_eq!(doubler.stats().restarts(), 3);
}

#[actix_rt::test]
async fn the_watchdog_revives_an_actor_killed_outside_a_guard() {
    let tree = Tree::new(lenient(), quiet());
    tree.watch(Duration::from_millis(50));
    let counter = counter_on(&tree, "counter");
    let dead = counter.addr();

    counter.do_send(PanicOutsideGuard);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while counter.stats().restarts() == 0 && std::time::Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }

    assert!(!dead.connected(), "the old address is gone for good");
    assert_eq!(counter.send(Add(7)).await.unwrap().unwrap(), 7);
    assert_eq!(counter.stats().restarts(), 1);
}

#[actix_rt::test]
async fn restarting_past_the_intensity_escalates() {
    let tree = Tree::new(
        RestartPolicy {
            max_restarts: 2,
            within: Duration::from_secs(60),
        },
        quiet(),
    );
    let counter = counter_on(&tree, "flaky");

    for _ in 0..2 {
        let _ = counter.send(Add(0)).await.unwrap();
    }
    let not_yet = tokio::time::timeout(Duration::from_millis(200), tree.escalated()).await;
    assert!(not_yet.is_err(), "two restarts are within the limit");

    let _ = counter.send(Add(0)).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(2), tree.escalated())
        .await
        .expect("the third restart escalates");
    assert!(reason.contains("flaky") && reason.contains("3 times"), "{reason}");
}

/// The real binary and its real actors: debug builds make an actor panic
/// on `POST /debug/panic/{actor}` from this machine, a hook release builds
/// do not have.
#[cfg(debug_assertions)]
mod in_lectern_serve {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use serde_json::json;

    use crate::helpers::{demo_database, LecternProcess};

    const ACTORS: [&str; 8] = [
        "event_log",
        "renderer",
        "page_cache",
        "mailer",
        "housekeeper",
        "billing",
        "backup_scheduler",
        "alert_watch",
    ];

    /// `actor`'s line in `/readyz`'s detail (given to a loopback client).
    async fn report(lectern: &LecternProcess, actor: &str) -> serde_json::Value {
        let readiness: serde_json::Value = reqwest::get(lectern.url("/readyz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        readiness["actors"]
            .as_array()
            .unwrap_or_else(|| panic!("no actor detail in {readiness}"))
            .iter()
            .find(|line| line["name"] == actor)
            .cloned()
            .unwrap_or_else(|| panic!("no {actor} in {readiness}"))
    }

    /// Makes `actor` panic; the hook answers once it has crashed.
    async fn make_panic(lectern: &LecternProcess, actor: &str) -> reqwest::Result<reqwest::Response> {
        reqwest::Client::new()
            .post(lectern.url(&format!("/debug/panic/{actor}")))
            .send()
            .await
    }

    /// The restart follows the crash: waits for it (20 s at most).
    async fn wait_for_restarts(lectern: &LecternProcess, actor: &str, restarts: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let line = report(lectern, actor).await;
            if line["restarts"] == restarts && line["alive"] == true {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "{actor} did not come back after {restarts} restart(s) within 20 s: {line}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[actix_rt::test]
    async fn each_actor_panicking_in_lectern_serve_restarts_and_too_many_restarts_exit_1() {
        let data_dir = Arc::new(tempfile::tempdir().unwrap());
        let database = demo_database().await;
        let mut lectern = LecternProcess::start_with_env(
            Arc::clone(&data_dir),
            Some(&database),
            &[
                ("LECTERN__SUPERVISOR__MAX_RESTARTS", "2"),
                ("LECTERN__SUPERVISOR__WITHIN_SECS", "3600"),
                // Below max_restarts, as it must be.
                ("LECTERN__ALERTS__RESTART_STORM_RESTARTS", "1"),
            ],
        );

        for actor in ACTORS {
            let before = report(&lectern, actor).await;
            assert_eq!(
                (&before["restarts"], &before["alive"]),
                (&json!(0), &json!(true)),
                "{before}"
            );
            let crashed = make_panic(&lectern, actor).await.unwrap();
            assert_eq!(crashed.status(), 200, "{actor}");
            let crashed = crashed.text().await.unwrap();
            assert!(
                crashed.contains("crashed while handling Panic"),
                "{actor}: {crashed}"
            );
            let restarted = wait_for_restarts(&lectern, actor, 1).await;
            let last_error = restarted["last_error"].as_str().unwrap_or_default();
            assert!(last_error.contains("test hook"), "{restarted}");

            // The site keeps serving, rendered by the Renderer (restarted or
            // not): a page never cached, and the readiness check.
            let login = reqwest::get(lectern.url("/login")).await.unwrap();
            assert_eq!(login.status(), 200, "after {actor} restarted");
            assert!(login.text().await.unwrap().contains("</html>"));
            let ready = reqwest::get(lectern.url("/readyz")).await.unwrap();
            assert_eq!(ready.status(), 200, "after {actor} restarted");
        }
        let unknown = make_panic(&lectern, "nobody").await.unwrap();
        assert_eq!(unknown.status(), 404);

        // A second restart of one actor is still within `max_restarts = 2`;
        // a third within the hour is one too many.
        make_panic(&lectern, "renderer").await.unwrap();
        wait_for_restarts(&lectern, "renderer", 2).await;
        // The process may exit before it answers.
        let _ = make_panic(&lectern, "renderer").await;
        assert_eq!(
            lectern.wait_exit(Duration::from_secs(30)),
            Some(1),
            "lectern exits with status 1 after the third restart"
        );
        let log = std::fs::read_to_string(data_dir.path().join("log/lectern.log")).unwrap();
        let why = "actor renderer restarted 3 times within 3600 s (limit 2)";
        assert!(
            log.lines()
                .any(|line| line.contains("restart intensity exceeded") && line.contains(why)),
            "no escalation logged with {why:?}:\n{log}"
        );
        assert!(
            log.lines()
                .any(|line| line.contains("Lectern stopped with an error") && line.contains(why)),
            "no exit reason logged:\n{log}"
        );
    }
}
