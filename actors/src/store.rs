//! The PostgreSQL store: the connection pool, the migrations embedded from
//! `sql/`, and the checks `/readyz` asks for.

pub mod embedded;
pub mod listen;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

refinery::embed_migrations!("../sql");

pub use deadpool_postgres::Pool as DbPool;
pub use tokio_postgres::Config as DbConfig;

/// Serialises `migrate` across nodes that share one database.
const MIGRATION_LOCK: i64 = 0x6c65_6374_6572_6e01;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the connection pool: {0}")]
    Pool(#[from] deadpool_postgres::BuildError),
    #[error("cannot get a database connection: {0}")]
    Checkout(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
    /// Something a caller relies on is missing or malformed.
    #[error("{0}")]
    Unexpected(String),
}

/// A pool of connections for the given server and database.
pub fn connect_pool(config: DbConfig, max_size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(Duration::from_secs(5)))
        .wait_timeout(Some(Duration::from_secs(5)))
        .build()?)
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<String>,
    pub current_version: u32,
}

/// Applies the embedded migrations that the database lacks; a no-op when it
/// is current. An advisory lock keeps two nodes from migrating at once.
pub async fn migrate(pool: &Pool) -> Result<MigrationReport, StoreError> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let outcome = migrations::runner()
        .set_abort_divergent(true)
        .run_async(&mut **client)
        .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = outcome?;
    Ok(MigrationReport {
        applied: report
            .applied_migrations()
            .iter()
            .map(|m| m.to_string())
            .collect(),
        current_version: expected_version(),
    })
}

/// The newest migration this binary carries.
pub fn expected_version() -> u32 {
    migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// The newest migration applied to the database (0 when none is).
pub async fn applied_version(pool: &Pool) -> Result<u32, StoreError> {
    let client = pool.get().await?;
    let history_exists: bool = client
        .query_one("SELECT to_regclass('refinery_schema_history') IS NOT NULL", &[])
        .await?
        .get(0);
    if !history_exists {
        return Ok(0);
    }
    let row = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::int4 FROM refinery_schema_history",
            &[],
        )
        .await?;
    Ok(row.get::<_, i32>(0).unsigned_abs())
}

/// A round trip to the database, bounded by `within`.
pub async fn ping(pool: &Pool, within: Duration) -> Result<(), StoreError> {
    let round_trip = async {
        let client = pool.get().await?;
        client.simple_query("SELECT 1").await?;
        Ok::<(), StoreError>(())
    };
    tokio::time::timeout(within, round_trip)
        .await
        .map_err(|_| StoreError::Timeout(within))?
}

/// Creates `database` on the server `admin` points at, unless it exists.
pub async fn ensure_database(admin: &DbConfig, database: &str) -> Result<(), StoreError> {
    let (client, connection) = admin.connect(NoTls).await?;
    let connection = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(database)))
            .await?;
    }
    drop(client);
    let _ = connection.await;
    Ok(())
}

/// Quotes an SQL identifier (a database name cannot be a bind parameter).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("lectern"), "\"lectern\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn the_binary_carries_the_migrations_in_sql() {
        assert!(expected_version() >= 1);
    }
}
