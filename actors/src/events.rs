//! The events context: analytics and audit events, written in batches by the
//! EventLog actor so that recording one never waits on the database.

pub mod actor;

use std::time::SystemTime;

use deadpool_postgres::{GenericClient, Pool, Transaction};

use crate::store::StoreError;

pub use actor::{EventLog, Flush, Record};

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
}

/// Writes a batch of events in one statement.
pub async fn insert_events(pool: &Pool, events: &[Event]) -> Result<u64, StoreError> {
    if events.is_empty() {
        return Ok(0);
    }
    let client = pool.get().await?;
    Ok(write_events(&client, events).await?)
}

/// Writes events as part of `transaction`, for those that must be recorded
/// if and only if the change they tell of is (an alert raised).
pub async fn insert_events_in(transaction: &Transaction<'_>, events: &[Event]) -> Result<u64, StoreError> {
    Ok(write_events(transaction, events).await?)
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

/// How many events of `kind` are stored (for the dashboard and tests).
pub async fn count_events(pool: &Pool, kind: &str) -> Result<i64, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_one("SELECT count(*) FROM events WHERE kind = $1", &[&kind])
        .await?;
    Ok(row.get(0))
}
