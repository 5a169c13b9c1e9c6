//! The events context: analytics and audit events, and page views (see
//! [`page_views`]), written in batches by the EventLog actor so that
//! recording one never waits on the database; and the daily figures read
//! back from them (see [`figures`]).

pub mod actor;
pub mod figures;
pub mod page_views;
pub mod route_times;

use std::time::{Duration, SystemTime};

use deadpool_postgres::{GenericClient, Pool};
use time::{Date, OffsetDateTime};

use crate::cache::ViewerClass;
use crate::store::StoreError;

pub use actor::{EventLog, Flush, Record};
use page_views::Batch;
pub use page_views::{AgentHash, PageViewStats, PageViews, Salt, Seen};
pub use route_times::{RouteTime, RouteTimes, SlowRoute};

/// One analytics or audit event, e.g. `server.started` or `mail.sent`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Dotted lower-case name; the database checks the shape.
    pub kind: &'static str,
    pub subject: Option<String>,
    pub data: serde_json::Value,
    pub occurred_at: SystemTime,
}

impl Event {
    pub fn new(kind: &'static str, subject: impl Into<Option<String>>, data: serde_json::Value) -> Event {
        Event {
            kind,
            subject: subject.into(),
            data,
            occurred_at: SystemTime::now(),
        }
    }

    /// An administrator's action, for the audit trail: `data` (an object)
    /// with the administrator's user id added as `admin_id`.
    pub fn by_admin(
        kind: &'static str,
        subject: String,
        admin_id: i64,
        mut data: serde_json::Value,
    ) -> Event {
        if let Some(map) = data.as_object_mut() {
            map.insert("admin_id".into(), admin_id.into());
        }
        Event::new(kind, subject, data)
    }
}

/// Writes a batch of events in one statement.
pub async fn insert_events(pool: &Pool, events: &[Event]) -> Result<u64, StoreError> {
    if events.is_empty() {
        return Ok(0);
    }
    let client = pool.get().await?;
    Ok(write_events(&client, events).await?)
}

async fn write_events(client: &impl GenericClient, events: &[Event]) -> Result<u64, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "INSERT INTO events (kind, subject, data, occurred_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::jsonb[], $4::timestamptz[])",
        )
        .await?;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let subjects: Vec<Option<&str>> = events.iter().map(|e| e.subject.as_deref()).collect();
    let data: Vec<&serde_json::Value> = events.iter().map(|e| &e.data).collect();
    let times: Vec<SystemTime> = events.iter().map(|e| e.occurred_at).collect();
    client
        .execute(&statement, &[&kinds, &subjects, &data, &times])
        .await
}

/// Writes one event in the caller's transaction: for what a context
/// records as part of a change (a sign-up, a checkout, a cancellation, an
/// alert raised), so that the event exists if and only if the change does.
pub async fn record_in(client: &impl GenericClient, event: &Event) -> Result<(), StoreError> {
    write_events(client, std::slice::from_ref(event)).await?;
    Ok(())
}

/// How many events of `kind` are stored (for the dashboard and tests).
pub async fn count_events(pool: &Pool, kind: &str) -> Result<i64, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_one("SELECT count(*) FROM events WHERE kind = $1", &[&kind])
        .await?;
    Ok(row.get(0))
}

/// The salt of `day`'s visitor hashes: made by the first node that needs
/// it, the same for every node. Salts of days before `today` are deleted
/// (the caller keeps the one it asked for in memory while it needs it), so
/// that a past day's hashes cannot be made again from an address.
pub async fn day_salt(pool: &Pool, day: Date, today: Date) -> Result<Salt, StoreError> {
    let client = pool.get().await?;
    let mut fresh = [0; 16];
    getrandom::fill(&mut fresh).map_err(|e| StoreError::Unexpected(format!("no randomness: {e}")))?;
    let insert = client
        .prepare_cached("INSERT INTO visitor_salts (day, salt) VALUES ($1, $2) ON CONFLICT (day) DO NOTHING")
        .await?;
    client.execute(&insert, &[&day, &fresh.as_slice()]).await?;
    let select = client
        .prepare_cached("SELECT salt FROM visitor_salts WHERE day = $1")
        .await?;
    let stored: Vec<u8> = client.query_one(&select, &[&day]).await?.get(0);
    let forget = client
        .prepare_cached("DELETE FROM visitor_salts WHERE day < $1")
        .await?;
    client.execute(&forget, &[&today]).await?;
    stored
        .try_into()
        .map_err(|_| StoreError::Unexpected("a visitor salt is not 16 bytes".into()))
}

/// The UTC day of a moment, counted in whole days from the Unix epoch
/// (a day's view costs no calendar arithmetic beyond the date itself).
pub fn day_of(at: SystemTime) -> Date {
    /// 1970-01-01 as a Julian day.
    const EPOCH: i64 = 2_440_588;
    i32::try_from(EPOCH + unix_day(at))
        .ok()
        .and_then(|julian| Date::from_julian_day(julian).ok())
        .unwrap_or_else(|| OffsetDateTime::from(at).date())
}

/// Whole days from the Unix epoch to a moment, rounded down (before 1970
/// too: a clock set wrong): what tells two moments' days apart without
/// making either date.
fn unix_day(at: SystemTime) -> i64 {
    let seconds = match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            -i64::try_from(before.as_secs()).unwrap_or(i64::MAX) - i64::from(before.subsec_nanos() > 0)
        }
    };
    seconds.div_euclid(86_400)
}

/// The first moment after a day counted from the Unix epoch; `None` past
/// what a `SystemTime` holds.
fn end_of_unix_day(unix_day: i64) -> Option<SystemTime> {
    let seconds = unix_day.checked_add(1)?.checked_mul(86_400)?;
    let from_epoch = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(from_epoch)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(from_epoch)
    }
}

/// Writes a batch of page views in one statement, each visitor hashed
/// under its day's salt: `salts` holds those known, and the salt of any
/// other day among the views is asked of the database ([`day_salt`]) and
/// added. Views that are alike (day, path, referrer host, country, viewer
/// class and client) are one row counting them, timed at the first (the
/// batch folded them as they left the ring): a burst of views costs the
/// database a row, not a row each, and the date, the visitor hash and the
/// text are made once a row. Answers with the views written.
async fn insert_page_views(
    pool: &Pool,
    batch: &Batch,
    salts: &mut Vec<(Date, Salt)>,
    today: Date,
) -> Result<u64, StoreError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let rows = &batch.rows;
    let days: Vec<Date> = rows.iter().map(|(view, _)| day_of(view.at)).collect();
    let mut visitors = Vec::with_capacity(rows.len());
    for ((view, _), day) in rows.iter().zip(&days) {
        let salt = match salts.iter().find(|(known, _)| known == day) {
            Some((_, salt)) => *salt,
            None => {
                let salt = day_salt(pool, *day, today).await?;
                salts.push((*day, salt));
                salt
            }
        };
        visitors.push(view.visitor(&salt));
    }
    let times: Vec<SystemTime> = rows.iter().map(|(view, _)| view.at).collect();
    let paths: Vec<&str> = rows.iter().map(|(view, _)| view.path.as_str()).collect();
    let referrers: Vec<Option<&str>> = rows
        .iter()
        .map(|(view, _)| view.referrer_host.as_ref().map(|h| h.as_str()))
        .collect();
    let countries: Vec<Option<&str>> = rows
        .iter()
        .map(|(view, _)| view.country.as_ref().and_then(|c| std::str::from_utf8(c).ok()))
        .collect();
    let viewers: Vec<&str> = rows.iter().map(|(view, _)| viewer_name(view.viewer)).collect();
    let counts: Vec<i32> = rows.iter().map(|(_, count)| *count).collect();
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "INSERT INTO page_views (day, viewed_at, path, referrer_host, country, viewer, visitor, views) \
             SELECT * FROM UNNEST($1::date[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], \
                                  $6::text[], $7::bigint[], $8::integer[])",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &days, &times, &paths, &referrers, &countries, &viewers, &visitors, &counts,
            ],
        )
        .await?;
    Ok(batch.views())
}

fn viewer_name(viewer: ViewerClass) -> &'static str {
    match viewer {
        ViewerClass::Anonymous => "anonymous",
        ViewerClass::Member => "member",
        ViewerClass::Subscriber => "subscriber",
    }
}

/// Page views and unique visitors on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyVisits {
    pub day: Date,
    pub views: i64,
    pub visitors: i64,
}

/// Views and unique visitors for each day from `from` to `to` that had any.
pub async fn daily_visits(pool: &Pool, from: Date, to: Date) -> Result<Vec<DailyVisits>, StoreError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT day, sum(views)::bigint, count(DISTINCT visitor) FROM page_views \
             WHERE day BETWEEN $1 AND $2 GROUP BY day ORDER BY day",
        )
        .await?;
    Ok(client
        .query(&statement, &[&from, &to])
        .await?
        .iter()
        .map(|row| DailyVisits {
            day: row.get(0),
            views: row.get(1),
            visitors: row.get(2),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_of_a_moment_is_its_utc_date() {
        let epoch = SystemTime::UNIX_EPOCH;
        let moments = [
            epoch,
            epoch + Duration::from_secs(86_399),
            epoch + Duration::from_secs(86_400),
            epoch + Duration::from_nanos(1_796_083_199_999_999_999),
            epoch + Duration::from_secs(1_796_083_200),
            epoch - Duration::from_nanos(1),
            epoch - Duration::from_secs(86_400),
            epoch - Duration::from_secs(86_401),
            SystemTime::now(),
        ];
        for at in moments {
            assert_eq!(day_of(at), OffsetDateTime::from(at).date(), "{at:?}");
            let end = end_of_unix_day(unix_day(at)).unwrap();
            assert!(end > at, "{at:?}");
            assert_eq!(unix_day(end), unix_day(at) + 1, "{at:?}");
            assert_eq!(unix_day(end - Duration::from_nanos(1)), unix_day(at), "{at:?}");
        }
    }
}
