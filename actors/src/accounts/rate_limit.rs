//! Rate limits shared by every node: fixed-window counters in PostgreSQL,
//! one row per key and window.

use deadpool_postgres::Pool;

use crate::store::StoreError;

/// The limit was reached; the window ends in this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u32);

/// Counts one attempt under `key`; refuses it when more than `limit`
/// attempts fell in the current window of `window_secs`.
pub async fn hit(
    pool: &Pool,
    key: &str,
    window_secs: u32,
    limit: u32,
) -> Result<Result<(), RetryAfter>, StoreError> {
    let client = pool.get().await?;
    let count = client
        .prepare_cached(
            "INSERT INTO rate_limits (key, window_start, hits) \
             VALUES ($1, to_timestamp(floor(extract(epoch FROM now()) / $2::float8) * $2::float8), 1) \
             ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limits.hits + 1 \
             RETURNING hits, \
                 ceil(extract(epoch FROM window_start - now()) + $2::float8)::int4",
        )
        .await?;
    let window = f64::from(window_secs);
    let row = client.query_one(&count, &[&key, &window]).await?;
    let hits: i32 = row.get(0);
    if hits == 1 {
        // A new window: a good moment to forget windows that are long over.
        let sweep = client
            .prepare_cached(
                "DELETE FROM rate_limits WHERE window_start < now() - make_interval(secs => $1::float8)",
            )
            .await?;
        client.execute(&sweep, &[&window]).await?;
    }
    if u32::try_from(hits).unwrap_or(u32::MAX) > limit {
        let remaining: i32 = row.get(1);
        return Ok(Err(RetryAfter(u32::try_from(remaining).unwrap_or(1).max(1))));
    }
    Ok(Ok(()))
}
