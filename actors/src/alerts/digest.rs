//! The weekly digest to the operator (`alerts.email`): the week's
//! visitors, sign-ups, new and lost subscribers, revenue, backups, alerts,
//! most viewed pages, and this node's slowest routes and actor restarts, in one email queued
//! through the outbox. Every node's AlertWatch looks for it; it is queued
//! once a week across all of them, and a restart does not queue it again:
//! under a transaction-level advisory lock, the `digest.sent` event of its
//! week is written in the transaction that queues it, as alerts are.

use deadpool_postgres::Pool;
use serde_json::{json, Value};
use time::{Date, Duration, OffsetDateTime, Time, UtcOffset, Weekday};

use crate::backup;
use crate::billing::Money;
use crate::events::figures::{self, grouped};
use crate::events::{self, record_in, Event, SlowRoute};
use crate::mail::{self, Email, EmailAddress, EmailKind};
use crate::store::StoreError;
use crate::supervisor::actor_title;
use crate::supervisor::restarts::ActorReport;

/// When the digest goes: each `weekday` at `hour`:00 UTC (or at the first
/// look after, when no node was running then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestSchedule {
    pub weekday: Weekday,
    pub hour: u8,
}

/// Pages the digest lists as the most viewed.
const TOP_PAGES: i64 = 5;

impl DigestSchedule {
    /// The newest moment a digest was due at, at or before `now`.
    pub fn due_at(self, now: OffsetDateTime) -> OffsetDateTime {
        let now = now.to_offset(UtcOffset::UTC);
        let at = Time::from_hms(self.hour.min(23), 0, 0).unwrap_or(Time::MIDNIGHT);
        let days_back =
            (7 + now.weekday().number_days_from_monday() - self.weekday.number_days_from_monday()) % 7;
        let due = now.replace_time(at) - Duration::days(i64::from(days_back));
        match due > now {
            true => due - Duration::days(7),
            false => due,
        }
    }
}

/// The week a digest due at `due` tells of: the seven whole UTC days
/// before the day it is due.
pub fn week_of(due: OffsetDateTime) -> (Date, Date) {
    let day = due.to_offset(UtcOffset::UTC).date();
    (day - Duration::days(7), day - Duration::days(1))
}

/// What became of a look for the digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    /// Queued now, as this outbox row.
    Queued(i64),
    /// This week's was queued already (by this node or another).
    AlreadySent,
}

/// What the node that sends the digest knows only of itself, since it
/// started: its actors as they stand and its slowest routes.
#[derive(Debug, Clone, Copy)]
pub struct ThisNode<'a> {
    pub actors: &'a [ActorReport],
    pub slowest: &'a [SlowRoute],
}

/// Routes the digest lists as the slowest, and how often each must have
/// been asked for to be listed.
pub const SLOWEST_ROUTES: usize = 5;
pub const SLOWEST_MIN_REQUESTS: u64 = 10;

/// Queues the digest due at `due` to `to`, unless it was.
pub async fn send_digest(
    pool: &Pool,
    to: &EmailAddress,
    due: OffsetDateTime,
    node: ThisNode<'_>,
) -> Result<Digest, StoreError> {
    let week = week_of(due);
    let subject = week.0.to_string();
    // A look costs one query once the week's digest is out.
    if was_sent(&pool.get().await?, &subject).await? {
        return Ok(Digest::AlreadySent);
    }
    let data = gather(pool, week, node).await?;
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    // Every node's look waits here for the one before it to commit, then
    // sees its event.
    let lock = transaction
        .prepare_cached("SELECT pg_advisory_xact_lock(hashtext('lectern.alerts'), hashtext('digest'))")
        .await?;
    transaction.execute(&lock, &[]).await?;
    if was_sent(&transaction, &subject).await? {
        return Ok(Digest::AlreadySent);
    }
    let email = Email {
        to: to.clone(),
        kind: EmailKind::Digest,
        data,
    };
    let queued = mail::enqueue(&transaction, email)
        .await
        .map_err(|mail::MailError::Database(e)| e)?;
    let sent = Event::new(
        "digest.sent",
        subject,
        json!({ "to": to.as_str(), "outbox_id": queued, "due": due.unix_timestamp() }),
    );
    record_in(&transaction, &sent).await?;
    transaction.commit().await?;
    Ok(Digest::Queued(queued))
}

async fn was_sent(client: &impl deadpool_postgres::GenericClient, week: &str) -> Result<bool, StoreError> {
    let statement = client
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM events WHERE kind = 'digest.sent' AND subject = $1)")
        .await?;
    Ok(client.query_one(&statement, &[&week]).await?.get(0))
}

/// The email's data: the week's figures, as the operator reads them.
async fn gather(pool: &Pool, (from, to): (Date, Date), node: ThisNode<'_>) -> Result<Value, StoreError> {
    let visits = events::daily_visits(pool, from, to).await?;
    let signups = figures::list_daily_signups(pool, from, to).await?;
    let changes = figures::list_daily_subscriber_changes(pool, from, to).await?;
    let subscribers = figures::count_subscribers(pool).await?;
    let revenue = figures::list_daily_revenue(pool, from, to).await?;
    let pages = figures::list_top_pages(pool, from, to, TOP_PAGES).await?;
    let alerts = figures::list_alerts_raised(pool, from, to).await?;
    let backups = backup::count_backups(pool, from, to).await?;

    let mut by_currency: Vec<Money> = Vec::new();
    for day in revenue {
        match by_currency.iter_mut().find(|m| m.currency == day.money.currency) {
            Some(total) => total.amount += day.money.amount,
            None => by_currency.push(day.money),
        }
    }
    let restarted: Vec<Value> = node
        .actors
        .iter()
        .filter(|actor| actor.restarts > 0)
        .map(|actor| {
            json!({
                "actor": actor_title(actor.name),
                "restarts": actor.restarts,
                "last_error": actor.last_error.as_deref().unwrap_or("none recorded"),
            })
        })
        .collect();
    Ok(json!({
        "from": from.to_string(),
        "to": to.to_string(),
        "views": grouped(visits.iter().map(|v| v.views).sum()),
        "visitors": grouped(visits.iter().map(|v| v.visitors).sum()),
        "signups": grouped(signups.iter().map(|s| s.count).sum()),
        "started": grouped(changes.iter().map(|c| c.started).sum()),
        "ended": grouped(changes.iter().map(|c| c.ended).sum()),
        "subscribers": grouped(subscribers),
        "revenue": by_currency.iter().map(Money::to_string).collect::<Vec<_>>(),
        "backups_succeeded": grouped(backups.succeeded),
        "backups_verified": grouped(backups.verified),
        "backups_failed": grouped(backups.failed),
        "alerts": alerts
            .iter()
            .map(|(condition, count)| json!({ "condition": condition, "count": grouped(*count) }))
            .collect::<Vec<_>>(),
        "pages": pages
            .iter()
            .map(|page| json!({ "path": page.name, "views": grouped(page.views) }))
            .collect::<Vec<_>>(),
        "restarts": restarted,
        "slowest": node
            .slowest
            .iter()
            .map(|route| json!({
                "route": route.route,
                "requests": grouped(i64::try_from(route.requests).unwrap_or(i64::MAX)),
                "mean_ms": format!("{:.1}", route.mean_ms),
            }))
            .collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn the_digest_is_due_at_the_last_weekday_and_hour_passed() {
        let monday_eight = DigestSchedule {
            weekday: Weekday::Monday,
            hour: 8,
        };
        // Thursday 2026-12-03.
        assert_eq!(
            monday_eight.due_at(datetime!(2026-12-03 07:30 UTC)),
            datetime!(2026-11-30 08:00 UTC)
        );
        assert_eq!(
            monday_eight.due_at(datetime!(2026-11-30 08:00 UTC)),
            datetime!(2026-11-30 08:00 UTC)
        );
        assert_eq!(
            monday_eight.due_at(datetime!(2026-11-30 07:59 UTC)),
            datetime!(2026-11-23 08:00 UTC)
        );
        let thursday = DigestSchedule {
            weekday: Weekday::Thursday,
            hour: 0,
        };
        assert_eq!(
            thursday.due_at(datetime!(2026-12-03 07:30 +02:00)),
            datetime!(2026-12-03 00:00 UTC)
        );
        assert_eq!(
            week_of(datetime!(2026-11-30 08:00 UTC)),
            (
                time::macros::date!(2026 - 11 - 23),
                time::macros::date!(2026 - 11 - 29)
            )
        );
    }
}
