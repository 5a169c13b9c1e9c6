//! Limits shared by every node, kept in PostgreSQL: request rates per key
//! (GCRA, which slides instead of resetting on the clock's window
//! boundaries), and growing delays after failed password logins.

use deadpool_postgres::Pool;
use time::Duration;

use crate::store::StoreError;

/// The limit was reached; the next attempt is allowed in this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u32);

impl RetryAfter {
    fn from_secs(secs: f64) -> RetryAfter {
        // Rounded up: a client that waits exactly this long gets in.
        RetryAfter(secs.ceil().clamp(1.0, f64::from(u32::MAX)) as u32)
    }
}

/// At most `limit` requests at once, then one every `window / limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub window_secs: u32,
}

/// Counts one request under `key`; refuses it when the rate is used up.
pub async fn hit(pool: &Pool, key: &str, rate: Rate) -> Result<Result<(), RetryAfter>, StoreError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached("SELECT rate_limit_hit($1, $2, $3)").await?;
    let limit = i32::try_from(rate.limit).unwrap_or(i32::MAX);
    let wait: f64 = client
        .query_one(&statement, &[&key, &f64::from(rate.window_secs), &limit])
        .await?
        .get(0);
    Ok(if wait > 0.0 {
        Err(RetryAfter::from_secs(wait))
    } else {
        Ok(())
    })
}

/// Failed logins an address may have before each further attempt waits.
const FREE_FAILURES: i32 = 5;
/// The longest wait between attempts, however many failures.
const LONGEST_WAIT_SECS: i64 = 60;
/// Failures older than this are forgotten.
const FAILURES_KEPT: Duration = Duration::days(1);

/// The wait after `failures` failed logins: none for the first few, then
/// 1, 2, 4 … seconds, at most a minute.
pub fn wait_after(failures: i32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(failures - FREE_FAILURES).unwrap_or(0).min(20);
    Duration::seconds((1i64 << doublings).min(LONGEST_WAIT_SECS))
}

/// Whether a password login for `email` must wait, after its failures.
pub async fn login_wait(pool: &Pool, email: &str) -> Result<Result<(), RetryAfter>, StoreError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT failures, extract(epoch FROM now() - last_failed_at)::float8 \
             FROM login_failures WHERE email = $1",
        )
        .await?;
    let Some(row) = client.query_opt(&statement, &[&email]).await? else {
        return Ok(Ok(()));
    };
    let since: f64 = row.get(1);
    let remaining = wait_after(row.get(0)).as_seconds_f64() - since;
    Ok(if remaining > 0.0 {
        Err(RetryAfter::from_secs(remaining))
    } else {
        Ok(())
    })
}

/// Counts a failed login for `email` (a count older than a day starts over).
pub async fn record_login_failure(pool: &Pool, email: &str) -> Result<(), StoreError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "INSERT INTO login_failures (email, failures, last_failed_at) VALUES ($1, 1, now()) \
             ON CONFLICT (email) DO UPDATE SET last_failed_at = now(), failures = CASE \
                 WHEN login_failures.last_failed_at < now() - make_interval(secs => $2) THEN 1 \
                 ELSE login_failures.failures + 1 END",
        )
        .await?;
    client
        .execute(&statement, &[&email, &FAILURES_KEPT.as_seconds_f64()])
        .await?;
    Ok(())
}

/// Forgets the failures of `email` after a successful login.
pub async fn clear_login_failures(pool: &Pool, email: &str) -> Result<(), StoreError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached("DELETE FROM login_failures WHERE email = $1")
        .await?;
    client.execute(&statement, &[&email]).await?;
    Ok(())
}

/// Drops limits that have fully recovered and failures long past.
pub async fn purge(pool: &Pool) -> Result<u64, StoreError> {
    let client = pool.get().await?;
    let limits = client
        .execute("DELETE FROM rate_limits WHERE tat < now()", &[])
        .await?;
    let failures = client
        .execute(
            "DELETE FROM login_failures WHERE last_failed_at < now() - make_interval(secs => $1)",
            &[&FAILURES_KEPT.as_seconds_f64()],
        )
        .await?;
    Ok(limits + failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_wait_longer_and_longer_up_to_a_minute() {
        assert_eq!(wait_after(0), Duration::ZERO);
        assert_eq!(wait_after(4), Duration::ZERO);
        assert_eq!(wait_after(5), Duration::seconds(1));
        assert_eq!(wait_after(6), Duration::seconds(2));
        assert_eq!(wait_after(8), Duration::seconds(8));
        assert_eq!(wait_after(11), Duration::seconds(60));
        assert_eq!(wait_after(i32::MAX), Duration::seconds(60));
    }

    #[test]
    fn a_retry_is_at_least_a_second_and_rounded_up() {
        assert_eq!(RetryAfter::from_secs(0.2), RetryAfter(1));
        assert_eq!(RetryAfter::from_secs(59.01), RetryAfter(60));
    }
}
