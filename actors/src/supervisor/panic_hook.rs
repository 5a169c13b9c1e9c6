//! A test hook, in debug builds only (release builds do not have it): any
//! of Lectern's own actors can be made to panic inside a guarded handler, as
//! a bug would, so that tests and drills watch a real actor restart in
//! `lectern serve`, and the tree escalate when it restarts too often.

use actix::prelude::*;

use super::restarts::{guard, Crashed};
use super::RootSupervisor;
use crate::alerts::watch::AlertWatch;
use crate::backup::scheduler::BackupScheduler;
use crate::billing::actor::BillingSupervisor;
use crate::cache::PageCache;
use crate::events::EventLog;
use crate::housekeeping::Housekeeper;
use crate::mail::Mailer;
use crate::render::Renderer;

/// The actor that handles this panics inside its guard.
#[derive(Message)]
#[rtype(result = "Result<(), Crashed>")]
pub struct Panic;

macro_rules! panics_on_request {
    ($($actor:ty),+) => {$(
        impl Handler<Panic> for $actor {
            type Result = Result<(), Crashed>;

            fn handle(&mut self, _: Panic, ctx: &mut Self::Context) -> Self::Result {
                guard(self, ctx, "Panic", |_, _| panic!("panic requested by the test hook"))
            }
        }
    )+};
}

panics_on_request!(
    EventLog,
    Renderer,
    PageCache,
    Mailer,
    Housekeeper,
    BillingSupervisor,
    BackupScheduler,
    AlertWatch
);

impl RootSupervisor {
    /// Makes the actor named as `/readyz` names it panic in a handler, and
    /// answers with the crash it reported; `None` for a name it does not know.
    pub async fn inject_panic(&self, actor: &str) -> Option<String> {
        let answer = match actor {
            "event_log" => self.event_log.send(Panic).await,
            "renderer" => self.renderer.send(Panic).await,
            "page_cache" => self.page_cache.send(Panic).await,
            "mailer" => self.mailer.send(Panic).await,
            "housekeeper" => self.housekeeper.send(Panic).await,
            "billing" => self.billing.send(Panic).await,
            "backup_scheduler" => self.backup_scheduler.send(Panic).await,
            "alert_watch" => self.alert_watch.send(Panic).await,
            _ => return None,
        };
        Some(match answer {
            Ok(Err(crashed)) => crashed.to_string(),
            Ok(Ok(())) => format!("actor {actor} handled the panic request without panicking"),
            Err(e) => format!("actor {actor} is unreachable: {e}"),
        })
    }
}
