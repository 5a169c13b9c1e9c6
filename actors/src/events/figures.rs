//! The operator's figures, one function a figure, for the dashboard's
//! charts and the weekly digest: traffic from the page views, sign-ups
//! from their events, subscribers and revenue from what billing recorded
//! (subscriptions as Stripe last told them, payments received and
//! refunded). Days and months are UTC; a range is its first and last day,
//! both included; a day without any is not listed.

use deadpool_postgres::Pool;
use time::{Date, Month};

use crate::billing::Money;
use crate::store::StoreError;

/// How many of something on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyCount {
    pub day: Date,
    pub count: i64,
}

/// One of the most viewed paths, referrer hosts or countries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranked {
    pub name: String,
    pub views: i64,
    /// Unique visitors, counted once a day each (a visitor's hash changes
    /// every day) and summed over the days.
    pub visitors: i64,
}

/// Subscriptions that started and that ended on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberChanges {
    pub day: Date,
    pub started: i64,
    pub ended: i64,
}

/// Money received on one day (or in one month: `day` is its first day),
/// in one currency, refunds taken off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revenue {
    pub day: Date,
    pub money: Money,
}

/// What page views are ranked by: a column of `page_views`.
#[derive(Debug, Clone, Copy)]
enum Rank {
    Path,
    ReferrerHost,
    Country,
}

/// The `limit` most viewed paths from `from` to `to`.
pub async fn list_top_pages(
    pool: &Pool,
    from: Date,
    to: Date,
    limit: i64,
) -> Result<Vec<Ranked>, StoreError> {
    list_ranked(pool, Rank::Path, from, to, limit).await
}

/// The `limit` referrer hosts that sent the most views from `from` to `to`.
pub async fn list_top_referrers(
    pool: &Pool,
    from: Date,
    to: Date,
    limit: i64,
) -> Result<Vec<Ranked>, StoreError> {
    list_ranked(pool, Rank::ReferrerHost, from, to, limit).await
}

/// The `limit` countries (as the proxy reported them) with the most views
/// from `from` to `to`.
pub async fn list_top_countries(
    pool: &Pool,
    from: Date,
    to: Date,
    limit: i64,
) -> Result<Vec<Ranked>, StoreError> {
    list_ranked(pool, Rank::Country, from, to, limit).await
}

async fn list_ranked(
    pool: &Pool,
    rank: Rank,
    from: Date,
    to: Date,
    limit: i64,
) -> Result<Vec<Ranked>, StoreError> {
    // One statement per column, written out: no text is ever spliced in.
    let sql = match rank {
        Rank::Path => {
            "SELECT path, sum(views)::bigint, count(DISTINCT (day, visitor)) FROM page_views \
             WHERE day BETWEEN $1 AND $2 GROUP BY path ORDER BY 2 DESC, 1 LIMIT $3"
        }
        Rank::ReferrerHost => {
            "SELECT referrer_host, sum(views)::bigint, count(DISTINCT (day, visitor)) FROM page_views \
             WHERE day BETWEEN $1 AND $2 AND referrer_host IS NOT NULL \
             GROUP BY referrer_host ORDER BY 2 DESC, 1 LIMIT $3"
        }
        Rank::Country => {
            "SELECT country, sum(views)::bigint, count(DISTINCT (day, visitor)) FROM page_views \
             WHERE day BETWEEN $1 AND $2 AND country IS NOT NULL \
             GROUP BY country ORDER BY 2 DESC, 1 LIMIT $3"
        }
    };
    let client = pool.get().await?;
    let statement = client.prepare_cached(sql).await?;
    Ok(client
        .query(&statement, &[&from, &to, &limit])
        .await?
        .iter()
        .map(|row| Ranked {
            name: row.get(0),
            views: row.get(1),
            visitors: row.get(2),
        })
        .collect())
}

/// Accounts signed up on each day (their `account.signed_up` events,
/// written in the sign-up's transaction; administrators made from the
/// command line are not sign-ups).
pub async fn list_daily_signups(pool: &Pool, from: Date, to: Date) -> Result<Vec<DailyCount>, StoreError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, count(*) FROM events \
             WHERE kind = 'account.signed_up' \
               AND occurred_at >= $1::date AT TIME ZONE 'UTC' \
               AND occurred_at < ($2::date + 1) AT TIME ZONE 'UTC' \
             GROUP BY day ORDER BY day",
        )
        .await?;
    Ok(client
        .query(&statement, &[&from, &to])
        .await?
        .iter()
        .map(|row| DailyCount {
            day: row.get(0),
            count: row.get(1),
        })
        .collect())
}

/// Members with premium access now: a subscription that gives it
/// (`active`, `trialing`, `past_due`) or a grant that has not expired.
pub async fn count_subscribers(pool: &Pool) -> Result<i64, StoreError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT count(*) FROM ( \
                 SELECT user_id FROM subscriptions \
                 WHERE user_id IS NOT NULL AND status IN ('active', 'trialing', 'past_due') \
                 UNION \
                 SELECT user_id FROM grants WHERE starts_at <= now() AND expires_at > now() \
             ) premium",
        )
        .await?;
    Ok(client.query_one(&statement, &[]).await?.get(0))
}

/// Subscriptions that gave access at the end of each day from `from` to
/// `to`, as far as they can be told now: started by then, and still
/// giving access or ended after that day (an ended one dated by its last
/// change from Stripe). Every day is listed, zeros too.
pub async fn list_daily_subscriptions(
    pool: &Pool,
    from: Date,
    to: Date,
) -> Result<Vec<DailyCount>, StoreError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT day::date, count(s.id) FROM generate_series($1::date, $2::date, interval '1 day') AS day \
             LEFT JOIN subscriptions s ON s.started_at IS NOT NULL \
                 AND (s.started_at AT TIME ZONE 'UTC')::date <= day::date \
                 AND (s.status IN ('active', 'trialing', 'past_due') \
                      OR (s.updated_at AT TIME ZONE 'UTC')::date > day::date) \
             GROUP BY day ORDER BY day",
        )
        .await?;
    Ok(client
        .query(&statement, &[&from, &to])
        .await?
        .iter()
        .map(|row| DailyCount {
            day: row.get(0),
            count: row.get(1),
        })
        .collect())
}

/// Subscriptions that started (were first seen active) and that ended
/// (a started one that no longer gives access, dated by its last change
/// from Stripe) on each day. Manual grants are not subscriptions.
pub async fn list_daily_subscriber_changes(
    pool: &Pool,
    from: Date,
    to: Date,
) -> Result<Vec<SubscriberChanges>, StoreError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "WITH changes AS ( \
                 SELECT (started_at AT TIME ZONE 'UTC')::date AS day, 1 AS started, 0 AS ended \
                 FROM subscriptions WHERE started_at IS NOT NULL \
                 UNION ALL \
                 SELECT (updated_at AT TIME ZONE 'UTC')::date, 0, 1 FROM subscriptions \
                 WHERE started_at IS NOT NULL AND status NOT IN ('active', 'trialing', 'past_due') \
             ) \
             SELECT day, sum(started)::bigint, sum(ended)::bigint FROM changes \
             WHERE day BETWEEN $1 AND $2 GROUP BY day ORDER BY day",
        )
        .await?;
    Ok(client
        .query(&statement, &[&from, &to])
        .await?
        .iter()
        .map(|row| SubscriberChanges {
            day: row.get(0),
            started: row.get(1),
            ended: row.get(2),
        })
        .collect())
}

/// Money received each day from `from` to `to`, by currency: invoices
/// paid less refunds.
pub async fn list_daily_revenue(pool: &Pool, from: Date, to: Date) -> Result<Vec<Revenue>, StoreError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, currency, sum(amount)::bigint FROM payments \
             WHERE occurred_at >= $1::date AT TIME ZONE 'UTC' \
               AND occurred_at < ($2::date + 1) AT TIME ZONE 'UTC' \
             GROUP BY day, currency ORDER BY day, currency",
        )
        .await?;
    Ok(revenue_rows(client.query(&statement, &[&from, &to]).await?))
}

/// Money received in each month from the month of `from` to the month of
/// `to`, by currency; `day` is the month's first day.
pub async fn list_monthly_revenue(pool: &Pool, from: Date, to: Date) -> Result<Vec<Revenue>, StoreError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date AS month, currency, \
                    sum(amount)::bigint FROM payments \
             WHERE occurred_at >= date_trunc('month', $1::date) AT TIME ZONE 'UTC' \
               AND occurred_at < ($2::date + 1) AT TIME ZONE 'UTC' \
             GROUP BY month, currency ORDER BY month, currency",
        )
        .await?;
    Ok(revenue_rows(client.query(&statement, &[&from, &to]).await?))
}

fn revenue_rows(rows: Vec<tokio_postgres::Row>) -> Vec<Revenue> {
    rows.iter()
        .map(|row| Revenue {
            day: row.get(0),
            money: Money::new(row.get(2), row.get(1)),
        })
        .collect()
}

/// Alerts raised from `from` to `to` (their `alert.raised` events, told
/// or counted as repeats), by condition, most first.
pub async fn list_alerts_raised(pool: &Pool, from: Date, to: Date) -> Result<Vec<(String, i64)>, StoreError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT coalesce(subject, ''), count(*) FROM events \
             WHERE kind = 'alert.raised' \
               AND occurred_at >= $1::date AT TIME ZONE 'UTC' \
               AND occurred_at < ($2::date + 1) AT TIME ZONE 'UTC' \
             GROUP BY 1 ORDER BY 2 DESC, 1",
        )
        .await?;
    Ok(client
        .query(&statement, &[&from, &to])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// A count as a reader reads it: `1234567` as `1,234,567`.
pub fn grouped(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if value < 0 {
        text.push('-');
    }
    for (n, digit) in digits.chars().enumerate() {
        if n > 0 && (digits.len() - n) % 3 == 0 {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

/// The first day of the month `months` before `day`'s.
pub fn months_before(day: Date, months: u32) -> Date {
    let index = day.year() * 12 + i32::from(u8::from(day.month())) - 1 - months as i32;
    let (year, month) = (index.div_euclid(12), index.rem_euclid(12) + 1);
    // `month` is 1 to 12 and the first of a month always exists.
    u8::try_from(month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .and_then(|m| Date::from_calendar_date(year, m, 1).ok())
        .unwrap_or(day)
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(-1_234_567), "-1,234,567");
    }

    #[test]
    fn months_before_cross_years_and_land_on_the_first() {
        assert_eq!(months_before(date!(2026 - 12 - 03), 0), date!(2026 - 12 - 01));
        assert_eq!(months_before(date!(2026 - 12 - 31), 11), date!(2026 - 01 - 01));
        assert_eq!(months_before(date!(2026 - 03 - 31), 3), date!(2025 - 12 - 01));
        assert_eq!(months_before(date!(2026 - 01 - 15), 25), date!(2023 - 12 - 01));
    }
}
