//! Backups: `pg_dump -Fc` of the database, streamed to the backup storage
//! while its SHA-256 is computed, and recorded in `backups`; verified by
//! restoring into a scratch database on the same server and comparing every
//! public table's row count and checksum with those taken in the dump's own
//! snapshot; restored into a database the operator names. Older backups of a
//! kind are pruned once a newer one verified.
//!
//! A run holds an advisory lock (class [`LEASE_CLASS`], the row's id) on a
//! connection of its own while it works: a `running` row whose lock nobody
//! holds belongs to a process that died, and is settled by
//! [`Backups::settle_interrupted`].
//!
//! The PostgreSQL client programs are found as the embedded server's are
//! (PATH, then /usr/lib/postgresql/*/bin) and get their connection settings
//! from the environment (`PGHOST`, `PGPASSWORD` …), never on their command line.

pub mod scheduler;
pub mod storage;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::store::embedded::find_programs;
use crate::store::{quote_ident, DbConfig, DbPool, StoreError};
pub use storage::s3::{S3Config, S3Storage};
pub use storage::{DirStorage, Fetched, Storage, Upload};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "PostgreSQL's client programs (pg_dump, pg_restore) were not found on PATH or under \
         /usr/lib/postgresql/*/bin: install them (Debian: apt-get install postgresql-client)"
    )]
    ProgramsMissing,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("pg_dump failed: {0}")]
    Dump(String),
    #[error("pg_restore failed: {0}")]
    Restore(String),
    /// The backup storage failed (S3: unreachable, access denied, no bucket …).
    #[error("{0}")]
    Storage(String),
    #[error("a backup named {0} exists already")]
    Exists(String),
    #[error("no backup named {0} (lectern backup list shows them)")]
    Unknown(String),
    #[error("no backup has succeeded yet: nothing to restore")]
    NoneSucceeded,
    #[error("backup {key} is {status}, not succeeded: there is nothing to check or restore")]
    NotSucceeded { key: String, status: String },
    #[error("backup {key}: the object {location} is missing")]
    Missing { key: String, location: String },
    #[error(
        "backup {key}: sha256 mismatch: the stored object hashes to {actual}, \
         the backup was recorded as {expected}: the object is damaged"
    )]
    Sha256Mismatch {
        key: String,
        expected: String,
        actual: String,
    },
    #[error("backup {key} did not verify: {differences}")]
    Mismatch { key: String, differences: String },
    #[error(
        "the database {database} already has {tables} table(s) in the public schema: \
         restore refuses to overwrite them; pass --force to replace them"
    )]
    TargetNotEmpty { database: String, tables: i64 },
}

impl BackupError {
    /// Whether this is the operator's mistake (exit status 2) rather than a failure.
    pub fn is_usage(&self) -> bool {
        matches!(self, BackupError::TargetNotEmpty { .. })
    }
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The advisory-lock class of a run's lease (its second key is the row's id).
pub const LEASE_CLASS: i32 = 0x6c62; // "lb"

/// The runs of dead processes, as [`Backups::settle_interrupted`] left them.
#[derive(Debug, Default)]
pub struct Settled {
    /// Their dumps were complete: now recorded as succeeded.
    pub recovered: Vec<String>,
    /// Marked failed, their leftovers deleted.
    pub failed: Vec<String>,
}

/// Why an interrupted run failed.
const INTERRUPTED: &str = "interrupted: the process running it stopped before it finished";

/// What a backup is for: the scheduler's daily and weekly ones, or by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Daily,
    Weekly,
    Manual,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Daily => "daily",
            Kind::Weekly => "weekly",
            Kind::Manual => "manual",
        }
    }
}

/// The key of a backup started at `at`: `daily/2026-12-02T05-13-00Z.dump`.
pub fn key_for(kind: Kind, at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{}/{:04}-{:02}-{:02}T{:02}-{:02}-{:02}Z.dump",
        kind.as_str(),
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// A finished dump.
#[derive(Debug, Clone)]
pub struct Dumped {
    pub key: String,
    pub location: String,
    pub bytes: u64,
    pub sha256: String,
    pub tables: usize,
    pub rows: i64,
    pub took: Duration,
}

/// A verification that passed.
#[derive(Debug, Clone)]
pub struct Verified {
    pub key: String,
    pub tables: usize,
    pub rows: i64,
    pub took: Duration,
}

/// A restore that finished.
#[derive(Debug, Clone)]
pub struct Restored {
    pub key: String,
    pub database: String,
    pub bytes: u64,
    pub tables: usize,
    pub took: Duration,
}

/// One row of `backups`, as `lectern backup list` shows it.
#[derive(Debug, Clone)]
pub struct BackupRow {
    pub key: String,
    pub kind: String,
    pub status: String,
    pub bytes: Option<i64>,
    pub sha256: Option<String>,
    pub started_at: OffsetDateTime,
    pub error: Option<String>,
    pub verified_at: Option<OffsetDateTime>,
    /// Whether the last verification passed (None: never verified).
    pub verified_ok: Option<bool>,
}

/// Backups started within some days, for the operator's weekly digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackupCounts {
    pub succeeded: i64,
    pub failed: i64,
    /// Succeeded, and a restore of them was checked and passed.
    pub verified: i64,
}

/// The backups started from `from` to `to` (UTC days, both included).
pub async fn count_backups(
    pool: &DbPool,
    from: time::Date,
    to: time::Date,
) -> Result<BackupCounts, StoreError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed'), \
                    count(*) FILTER (WHERE status = 'succeeded' AND (verification->>'ok')::boolean) \
             FROM backups \
             WHERE started_at >= $1::date AT TIME ZONE 'UTC' AND started_at < ($2::date + 1) AT TIME ZONE 'UTC'",
        )
        .await?;
    let row = client.query_one(&statement, &[&from, &to]).await?;
    Ok(BackupCounts {
        succeeded: row.get(0),
        failed: row.get(1),
        verified: row.get(2),
    })
}

/// Which backup to restore.
#[derive(Debug, Clone)]
pub enum Which {
    Key(String),
    Latest,
}

/// The backups context: the database it backs up (and records backups in)
/// and the storage the dumps go to.
pub struct Backups {
    pool: DbPool,
    database: DbConfig,
    storage: Arc<dyn Storage>,
}

impl Backups {
    pub fn new(pool: DbPool, database: DbConfig, storage: Arc<dyn Storage>) -> Backups {
        Backups {
            pool,
            database,
            storage,
        }
    }

    /// Where the object of `key` is (a path, a URL), for people to read.
    pub fn location(&self, key: &str) -> String {
        self.storage.location(key)
    }

    /// Dumps the database now (see [`Backups::run`]).
    pub async fn backup_now(&self, kind: Kind, progress: &dyn Fn(&str)) -> Result<Dumped, BackupError> {
        self.run(kind, OffsetDateTime::now_utc(), progress).await
    }

    /// The scheduled backup of `kind` due at `at`, unless another node took
    /// it (`None`): its key is the scheduled time's, and keys are unique, so
    /// of the nodes sharing this database exactly one runs it.
    pub async fn scheduled(
        &self,
        kind: Kind,
        at: OffsetDateTime,
        progress: &dyn Fn(&str),
    ) -> Result<Option<Dumped>, BackupError> {
        match self.run(kind, at, progress).await {
            Ok(dumped) => Ok(Some(dumped)),
            Err(BackupError::Exists(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A `running` row first, then `succeeded` with the object's size and
    /// SHA-256, or `failed` with the reason. The dump streams to a
    /// temporary object that takes its key only once pg_dump exited 0 and
    /// the hash is complete.
    async fn run(
        &self,
        kind: Kind,
        at: OffsetDateTime,
        progress: &dyn Fn(&str),
    ) -> Result<Dumped, BackupError> {
        let started = Instant::now();
        let key = key_for(kind, at);
        let lease = Lease::take(&self.database, kind, self.storage.name(), &key).await?;
        progress(&format!("dumping to {} …", self.storage.location(&key)));
        let stored = async {
            let (bytes, sha256, tables) = self.dump(&key).await?;
            let manifest = Manifest {
                key: key.clone(),
                kind: kind.as_str().to_owned(),
                bytes,
                sha256,
                made_at: at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                lectern: env!("CARGO_PKG_VERSION").to_owned(),
                row_counts: tables.counts,
                checksums: tables.checksums,
            };
            if let Err(e) = self.write_manifest(&manifest).await {
                // An object without its manifest is not a good backup.
                let _ = self.delete_object(&key).await;
                return Err(e);
            }
            Ok(manifest)
        };
        match stored.await {
            Ok(manifest) => {
                record_succeeded(&lease.client, &manifest).await?;
                Ok(Dumped {
                    location: self.storage.location(&key),
                    key,
                    bytes: manifest.bytes,
                    tables: manifest.row_counts.len(),
                    rows: manifest.row_counts.values().sum(),
                    sha256: manifest.sha256,
                    took: started.elapsed(),
                })
            }
            Err(e) => {
                record_failed(&lease.client, &key, &e.to_string()).await?;
                Err(e)
            }
        }
    }

    /// Settles the `running` rows whose process is gone (nobody holds their
    /// lease). One whose manifest is stored had finished storing its dump:
    /// it is recorded as succeeded from the manifest (the process died just
    /// before recording it, or this database was restored from a dump taken
    /// while it ran). Any other is marked failed, and whatever its upload
    /// left is deleted.
    pub async fn settle_interrupted(&self) -> Result<Settled, BackupError> {
        let client = self.pool.get().await.map_err(StoreError::from)?;
        let stale: Vec<String> = client
            .query(
                &format!(
                    "SELECT key FROM backups b \
                     WHERE status = 'running' AND NOT EXISTS ( \
                         SELECT 1 FROM pg_locks l \
                         WHERE l.locktype = 'advisory' AND l.classid = {LEASE_CLASS} \
                           AND l.objid = b.id::int4::oid AND l.objsubid = 2 \
                           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
                ),
                &[],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut settled = Settled::default();
        for key in stale {
            // Several nodes may settle the same row: each update is conditional.
            match self.read_manifest(&key).await {
                Ok(manifest) => {
                    record_succeeded(&client, &manifest).await?;
                    settled.recovered.push(key);
                }
                Err(BackupError::Missing { .. }) => {
                    record_failed(&client, &key, INTERRUPTED).await?;
                    self.delete_object(&key).await?;
                    settled.failed.push(key);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(settled)
    }

    /// Deletes the backups of `kind` beyond the newest `keep` good ones
    /// (succeeded and verified), objects first, then rows; failed runs
    /// older than the oldest kept one go too. Call it only once a new backup
    /// of `kind` verified. Answers the keys deleted.
    pub async fn prune(&self, kind: Kind, keep: u32) -> Result<Vec<String>, BackupError> {
        let client = self.pool.get().await.map_err(StoreError::from)?;
        let rows = client
            .query(
                "SELECT id, key, status = 'succeeded' AND coalesce((verification->>'ok')::boolean, false) \
                 FROM backups WHERE kind = $1 AND status <> 'running' ORDER BY started_at DESC, id DESC",
                &[&kind.as_str()],
            )
            .await?;
        let mut good = 0;
        let mut deleted = Vec::new();
        for row in rows {
            let (id, key, is_good): (i64, String, bool) = (row.get(0), row.get(1), row.get(2));
            if good < keep {
                good += u32::from(is_good);
                continue;
            }
            self.delete_object(&key).await?;
            client
                .execute("DELETE FROM backups WHERE id = $1", &[&id])
                .await?;
            deleted.push(key);
        }
        Ok(deleted)
    }

    /// Deletes a backup's object and its manifest.
    async fn delete_object(&self, key: &str) -> Result<(), BackupError> {
        let (storage, key) = (Arc::clone(&self.storage), key.to_owned());
        tokio::task::spawn_blocking(move || {
            storage.delete(&key)?;
            storage.delete(&manifest_key(&key))
        })
        .await
        .map_err(|e| BackupError::Dump(format!("the deleting thread failed: {e}")))?
    }

    async fn write_manifest(&self, manifest: &Manifest) -> Result<(), BackupError> {
        let storage = Arc::clone(&self.storage);
        let key = manifest_key(&manifest.key);
        let text = serde_json::to_vec_pretty(manifest)
            .map_err(|e| BackupError::Storage(format!("cannot write the manifest {key}: {e}")))?;
        tokio::task::spawn_blocking(move || {
            let mut upload = storage.create(&key)?;
            upload
                .write_all(&text)
                .map_err(|e| BackupError::Storage(format!("cannot write the manifest {key}: {e}")))?;
            upload.commit()
        })
        .await
        .map_err(|e| BackupError::Storage(format!("the manifest thread failed: {e}")))?
    }

    /// The manifest stored beside `key`'s object.
    async fn read_manifest(&self, key: &str) -> Result<Manifest, BackupError> {
        let storage = Arc::clone(&self.storage);
        let name = manifest_key(key);
        let manifest: Manifest = tokio::task::spawn_blocking(move || {
            let fetched = storage.fetch(&name)?;
            let text = std::fs::read(fetched.path()).map_err(io_error(fetched.path()))?;
            serde_json::from_slice(&text)
                .map_err(|e| BackupError::Restore(format!("the manifest {name} is unreadable: {e}")))
        })
        .await
        .map_err(|e| BackupError::Restore(format!("the manifest thread failed: {e}")))??;
        if manifest.key != key {
            return Err(BackupError::Restore(format!(
                "the manifest of {key} describes {}",
                manifest.key
            )));
        }
        Ok(manifest)
    }

    /// The newest backup in the storage that has a manifest.
    async fn latest_in_storage(&self) -> Result<Option<String>, BackupError> {
        let storage = Arc::clone(&self.storage);
        let keys = tokio::task::spawn_blocking(move || storage.list())
            .await
            .map_err(|e| BackupError::Restore(format!("the listing thread failed: {e}")))??;
        let manifests: std::collections::BTreeSet<&String> = keys.iter().collect();
        // Keys are kind/time.dump: the newest is the latest time, whatever the kind.
        Ok(keys
            .iter()
            .filter(|key| key.ends_with(".dump") && manifests.contains(&manifest_key(key)))
            .max_by_key(|key| key.rsplit('/').next().unwrap_or_default().to_owned())
            .cloned())
    }

    /// pg_dump in a snapshot whose row counts and checksums are taken
    /// first: they and the dump see the same data.
    async fn dump(&self, key: &str) -> Result<(u64, String, Tables), BackupError> {
        let pg_dump = programs()?.join("pg_dump");
        let (client, connection) = self.database.connect(NoTls).await?;
        let connection = tokio::spawn(connection);
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        let snapshot: String = client.query_one("SELECT pg_export_snapshot()", &[]).await?.get(0);
        let tables = summarise(&client).await?;
        let upload = self.storage.create(key)?;
        let env = libpq_env(&self.database);
        // The exporting transaction stays open until pg_dump is done with it.
        let dumped = tokio::task::spawn_blocking(move || run_dump(&pg_dump, &env, &snapshot, upload))
            .await
            .map_err(|e| BackupError::Dump(format!("the dump thread failed: {e}")))?;
        client.batch_execute("COMMIT").await?;
        drop(client);
        let _ = connection.await;
        let (bytes, sha256) = dumped?;
        Ok((bytes, sha256, tables))
    }

    /// Checks the object's SHA-256 against the row, restores it into a
    /// scratch database on the same server and compares every public
    /// table's row count and checksum with those taken at dump time. The outcome
    /// is recorded on the row; the scratch database is always dropped.
    pub async fn verify(&self, key: &str, progress: &dyn Fn(&str)) -> Result<Verified, BackupError> {
        let started = Instant::now();
        let row = self.succeeded(&Which::Key(key.to_owned()), progress).await?;
        progress(&format!("checking the sha256 of {key} …"));
        let outcome = match self.check_object(&row).await {
            Ok(fetched) => {
                progress("restoring into a scratch database and comparing every table …");
                self.restore_and_count(fetched.path(), &row).await
            }
            Err(e) => Err(e),
        };
        let verification = match &outcome {
            Ok(_) => serde_json::json!({
                "ok": true, "sha256": row.sha256, "row_counts": row.counts,
            }),
            Err(e) => serde_json::json!({ "ok": false, "error": e.to_string() }),
        };
        let client = self.pool.get().await.map_err(StoreError::from)?;
        client
            .execute(
                "UPDATE backups SET verified_at = now(), verification = $2 WHERE key = $1",
                &[&key, &verification],
            )
            .await?;
        outcome?;
        Ok(Verified {
            key: key.to_owned(),
            tables: row.counts.len(),
            rows: row.counts.values().sum(),
            took: started.elapsed(),
        })
    }

    async fn restore_and_count(&self, path: &Path, row: &Recorded) -> Result<(), BackupError> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| BackupError::Restore(format!("no randomness: {e}")))?;
        let scratch = format!("lectern_verify_{}", hex::encode(random));
        let admin = self.pool.get().await.map_err(StoreError::from)?;
        admin
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&scratch)))
            .await?;
        let mut target = self.database.clone();
        target.dbname(&scratch);
        let compared = async {
            run_restore(path, &target, false).await?;
            let (client, connection) = target.connect(NoTls).await?;
            let connection = tokio::spawn(connection);
            let restored = summarise(&client).await?;
            drop(client);
            let _ = connection.await;
            let mut differences = differences(&row.counts, &restored.counts);
            if let Some(checksums) = &row.checksums {
                differences.extend(changed_contents(checksums, &restored.checksums));
            }
            if differences.is_empty() {
                Ok(())
            } else {
                Err(BackupError::Mismatch {
                    key: row.key.clone(),
                    differences: differences.join("; "),
                })
            }
        }
        .await;
        let dropped = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&scratch)
            ))
            .await;
        compared?;
        dropped?;
        Ok(())
    }

    /// Restores a backup into `into`: the object's SHA-256 is checked first;
    /// a database that has tables in its public schema is refused unless
    /// `force` (then the dump's objects replace their namesakes there). The
    /// restore is one transaction: on any error nothing is changed.
    pub async fn restore(
        &self,
        which: &Which,
        into: &DbConfig,
        force: bool,
        progress: &dyn Fn(&str),
    ) -> Result<Restored, BackupError> {
        let started = Instant::now();
        let row = self.succeeded(which, progress).await?;
        let database = into.get_dbname().unwrap_or_default().to_owned();
        let (client, connection) = into.connect(NoTls).await?;
        let connection = tokio::spawn(connection);
        let tables: i64 = client
            .query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", &[])
            .await?
            .get(0);
        if tables > 0 && !force {
            return Err(BackupError::TargetNotEmpty { database, tables });
        }
        progress(&format!("checking the sha256 of {} …", row.key));
        let fetched = self.check_object(&row).await?;
        progress(&format!("restoring {} into {database} …", row.key));
        run_restore(fetched.path(), into, force).await?;
        drop(fetched);
        let restored = summarise(&client).await?.counts;
        drop(client);
        let _ = connection.await;
        Ok(Restored {
            key: row.key,
            database,
            bytes: row.bytes,
            tables: restored.len(),
            took: started.elapsed(),
        })
    }

    /// Every backup, newest first.
    pub async fn list(&self) -> Result<Vec<BackupRow>, BackupError> {
        let client = self.pool.get().await.map_err(StoreError::from)?;
        let rows = client
            .query(
                "SELECT key, kind, status, bytes, sha256, started_at, error, verified_at, \
                 (verification->>'ok')::boolean FROM backups ORDER BY started_at DESC, id DESC",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| BackupRow {
                key: row.get(0),
                kind: row.get(1),
                status: row.get(2),
                bytes: row.get(3),
                sha256: row.get(4),
                started_at: row.get(5),
                error: row.get(6),
                verified_at: row.get(7),
                verified_ok: row.get(8),
            })
            .collect())
    }

    /// A succeeded backup as this database recorded it, or, when it has no
    /// row for it (the database that made it is gone), as its manifest in
    /// the storage describes it.
    async fn succeeded(&self, which: &Which, progress: &dyn Fn(&str)) -> Result<Recorded, BackupError> {
        let unrecorded = match self.recorded(which).await {
            Err(e @ (BackupError::Unknown(_) | BackupError::NoneSucceeded)) => e,
            recorded => return recorded,
        };
        let key = match which {
            Which::Key(key) => key.clone(),
            Which::Latest => match self.latest_in_storage().await? {
                Some(key) => key,
                None => return Err(unrecorded),
            },
        };
        progress(&format!(
            "this database has no record of {key}: reading its manifest from {} …",
            self.storage.location(&manifest_key(&key))
        ));
        let manifest = match self.read_manifest(&key).await {
            Err(BackupError::Missing { .. }) => return Err(unrecorded),
            manifest => manifest?,
        };
        Ok(Recorded {
            key: manifest.key,
            bytes: manifest.bytes,
            sha256: manifest.sha256,
            counts: manifest.row_counts,
            checksums: Some(manifest.checksums),
        })
    }

    async fn recorded(&self, which: &Which) -> Result<Recorded, BackupError> {
        let client = self.pool.get().await.map_err(StoreError::from)?;
        let row = match which {
            Which::Key(key) => client
                .query_opt(
                    "SELECT key, status, bytes, sha256, row_counts, checksums FROM backups WHERE key = $1",
                    &[key],
                )
                .await?
                .ok_or_else(|| BackupError::Unknown(key.clone()))?,
            Which::Latest => client
                .query_opt(
                    "SELECT key, status, bytes, sha256, row_counts, checksums FROM backups \
                     WHERE status = 'succeeded' ORDER BY started_at DESC, id DESC LIMIT 1",
                    &[],
                )
                .await?
                .ok_or(BackupError::NoneSucceeded)?,
        };
        let key: String = row.get(0);
        let status: String = row.get(1);
        if status != "succeeded" {
            return Err(BackupError::NotSucceeded { key, status });
        }
        let unreadable = |e: serde_json::Error| {
            BackupError::Restore(format!("the table summary of {key} is unreadable: {e}"))
        };
        let counts = serde_json::from_value(row.get(4)).map_err(unreadable)?;
        let checksums = row
            .get::<_, Option<serde_json::Value>>(5)
            .map(serde_json::from_value)
            .transpose()
            .map_err(unreadable)?;
        Ok(Recorded {
            bytes: row.get::<_, i64>(2).unsigned_abs(),
            sha256: row.get(3),
            counts,
            checksums,
            key,
        })
    }

    /// The object in a local file, once its SHA-256 matches the row's.
    async fn check_object(&self, row: &Recorded) -> Result<Fetched, BackupError> {
        let (storage, key) = (self.storage.clone(), row.key.clone());
        let (fetched, actual) = tokio::task::spawn_blocking(move || {
            let fetched = storage.fetch(&key)?;
            let hashed = fetched.path();
            let mut file = std::fs::File::open(hashed).map_err(io_error(hashed))?;
            let (_, actual) = copy_hashing(&mut file, &mut io::sink()).map_err(io_error(hashed))?;
            Ok::<_, BackupError>((fetched, actual))
        })
        .await
        .map_err(|e| BackupError::Restore(format!("the hashing thread failed: {e}")))??;
        if actual != row.sha256 {
            return Err(BackupError::Sha256Mismatch {
                key: row.key.clone(),
                expected: row.sha256.clone(),
                actual,
            });
        }
        Ok(fetched)
    }
}

/// A succeeded backup's row.
struct Recorded {
    key: String,
    bytes: u64,
    sha256: String,
    counts: BTreeMap<String, i64>,
    /// None for a backup made before checksums were taken.
    checksums: Option<BTreeMap<String, String>>,
}

/// What a backup holds, stored beside its object as `KEY.json`: enough to
/// check and restore it when the database that recorded it is gone.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Manifest {
    key: String,
    kind: String,
    bytes: u64,
    sha256: String,
    /// When the backup was due (RFC 3339).
    made_at: String,
    /// The version of Lectern that made it.
    lectern: String,
    row_counts: BTreeMap<String, i64>,
    checksums: BTreeMap<String, String>,
}

/// Records the running backup `manifest` describes as succeeded. Only a
/// `running` row changes: several nodes may settle the same one.
async fn record_succeeded(client: &Client, manifest: &Manifest) -> Result<(), BackupError> {
    client
        .execute(
            "UPDATE backups SET status = 'succeeded', finished_at = now(), error = NULL, \
             bytes = $2, sha256 = $3, row_counts = $4, checksums = $5 \
             WHERE key = $1 AND status = 'running'",
            &[
                &manifest.key,
                &(manifest.bytes as i64),
                &manifest.sha256,
                &serde_json::json!(manifest.row_counts),
                &serde_json::json!(manifest.checksums),
            ],
        )
        .await?;
    Ok(())
}

/// Records the running backup `key` as failed, with why.
async fn record_failed(client: &Client, key: &str, reason: &str) -> Result<(), BackupError> {
    client
        .execute(
            "UPDATE backups SET status = 'failed', finished_at = now(), error = $2 \
             WHERE key = $1 AND status = 'running'",
            &[&key, &reason],
        )
        .await?;
    Ok(())
}

/// The key of `key`'s manifest.
fn manifest_key(key: &str) -> String {
    format!("{key}.json")
}

/// A run's lease: the connection that wrote its row and holds its advisory
/// lock until the run ends (or the process dies, which ends both).
struct Lease {
    client: Client,
}

impl Lease {
    /// Inserts the `running` row and takes its lock in one transaction, so
    /// that no other node sees the row without its lock.
    async fn take(database: &DbConfig, kind: Kind, storage: &str, key: &str) -> Result<Lease, BackupError> {
        let (mut client, connection) = database.connect(NoTls).await?;
        tokio::spawn(connection);
        let transaction = client.transaction().await?;
        let inserted = transaction
            .query_one(
                "INSERT INTO backups (kind, storage, key) VALUES ($1, $2, $3) RETURNING id",
                &[&kind.as_str(), &storage, &key],
            )
            .await;
        let id: i64 = match inserted {
            Ok(row) => row.get(0),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Err(BackupError::Exists(key.to_owned()))
            }
            Err(e) => return Err(e.into()),
        };
        transaction
            .execute(
                &format!("SELECT pg_advisory_lock({LEASE_CLASS}, $1::bigint::int4)"),
                &[&id],
            )
            .await?;
        transaction.commit().await?;
        Ok(Lease { client })
    }
}

/// Every public table's row count and checksum, from one snapshot.
struct Tables {
    counts: BTreeMap<String, i64>,
    checksums: BTreeMap<String, String>,
}

/// The directory holding pg_dump and pg_restore.
fn programs() -> Result<PathBuf, BackupError> {
    find_programs(&["pg_dump", "pg_restore"]).ok_or(BackupError::ProgramsMissing)
}

/// Every table in the public schema: its row count, and the MD5 of its
/// rows' MD5s in order (the same for the same contents, whatever the
/// physical order, with one 32-byte value per row in memory).
async fn summarise(client: &Client) -> Result<Tables, BackupError> {
    let tables = client
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
            &[],
        )
        .await?;
    let mut summary = Tables {
        counts: BTreeMap::new(),
        checksums: BTreeMap::new(),
    };
    for table in tables {
        let name: String = table.get(0);
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '') \
                     FROM (SELECT md5(t::text) AS h FROM public.{} t) rows",
                    quote_ident(&name)
                ),
                &[],
            )
            .await?;
        summary.counts.insert(name.clone(), row.get(0));
        summary.checksums.insert(name, row.get(1));
    }
    Ok(summary)
}

/// The tables whose contents differ from the dump's (present on both sides).
fn changed_contents(dumped: &BTreeMap<String, String>, restored: &BTreeMap<String, String>) -> Vec<String> {
    dumped
        .iter()
        .filter(|(table, sum)| restored.get(*table).is_some_and(|got| got != *sum))
        .map(|(table, _)| format!("table {table}: contents differ from the dump"))
        .collect()
}

/// What differs between the counts at dump time and the restored ones.
fn differences(dumped: &BTreeMap<String, i64>, restored: &BTreeMap<String, i64>) -> Vec<String> {
    let mut differences = Vec::new();
    for (table, count) in dumped {
        match restored.get(table) {
            None => differences.push(format!("table {table} is missing")),
            Some(got) if got != count => {
                differences.push(format!("table {table}: {count} rows dumped, {got} restored"))
            }
            Some(_) => {}
        }
    }
    for table in restored.keys().filter(|t| !dumped.contains_key(*t)) {
        differences.push(format!("table {table} was not in the dump"));
    }
    differences
}

/// libpq's environment for `config`: the client programs read their
/// connection settings (the password too) from it.
fn libpq_env(config: &DbConfig) -> Vec<(&'static str, String)> {
    use tokio_postgres::config::{Host, SslMode};
    let mut env = Vec::new();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    if !hosts.is_empty() {
        env.push(("PGHOST", hosts.join(",")));
    }
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    if !ports.is_empty() {
        env.push(("PGPORT", ports.join(",")));
    }
    if let Some(user) = config.get_user() {
        env.push(("PGUSER", user.to_owned()));
    }
    if let Some(password) = config.get_password() {
        env.push(("PGPASSWORD", String::from_utf8_lossy(password).into_owned()));
    }
    if let Some(database) = config.get_dbname() {
        env.push(("PGDATABASE", database.to_owned()));
    }
    if let Some(timeout) = config.get_connect_timeout() {
        env.push(("PGCONNECT_TIMEOUT", timeout.as_secs().max(2).to_string()));
    }
    let ssl = match config.get_ssl_mode() {
        SslMode::Disable => "disable",
        SslMode::Require => "require",
        _ => "prefer",
    };
    env.push(("PGSSLMODE", ssl.to_owned()));
    env.push(("PGAPPNAME", "lectern-backup".to_owned()));
    env
}

/// Runs pg_dump, streaming its output into `upload` while hashing it; the
/// upload is committed only when pg_dump exited 0.
fn run_dump(
    pg_dump: &Path,
    env: &[(&'static str, String)],
    snapshot: &str,
    mut upload: Box<dyn Upload>,
) -> Result<(u64, String), BackupError> {
    let mut child = Command::new(pg_dump)
        .args(["--format=custom", "--no-password"])
        .arg(format!("--snapshot={snapshot}"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BackupError::Dump(format!("cannot run {}: {e}", pg_dump.display())))?;
    let errors = collect_stderr(&mut child);
    let copied = match child.stdout.take() {
        Some(mut stdout) => copy_hashing(&mut stdout, &mut upload),
        None => Err(io::Error::other("pg_dump has no standard output")),
    };
    // Its standard output is closed by now: a pg_dump still writing ends.
    let status = child
        .wait()
        .map_err(|e| BackupError::Dump(format!("cannot wait for pg_dump: {e}")))?;
    let errors = errors.join().unwrap_or_default();
    // A failed write is the cause of pg_dump's broken pipe, not its effect;
    // the storage's own error (an upload's) is passed on as it is.
    let (bytes, sha256) = copied.map_err(|e| match e.downcast::<BackupError>() {
        Ok(failed) => failed,
        Err(e) => BackupError::Dump(format!("cannot store its output: {e}")),
    })?;
    if !status.success() {
        return Err(BackupError::Dump(format!("{status}: {errors}")));
    }
    upload.commit()?;
    Ok((bytes, sha256))
}

/// Restores the dump at `path` into `target` in one transaction.
async fn run_restore(path: &Path, target: &DbConfig, clean: bool) -> Result<(), BackupError> {
    let pg_restore = programs()?.join("pg_restore");
    let mut command = Command::new(pg_restore);
    command.args([
        "--no-owner",
        "--no-password",
        "--exit-on-error",
        "--single-transaction",
    ]);
    if clean {
        command.args(["--clean", "--if-exists"]);
    }
    command
        .arg("--dbname")
        .arg(dbname_conninfo(target.get_dbname().unwrap_or_default()))
        .arg(path)
        .envs(libpq_env(target))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| BackupError::Restore(format!("the restore thread failed: {e}")))?
        .map_err(|e| BackupError::Restore(format!("cannot run pg_restore: {e}")))?;
    if !output.status.success() {
        return Err(BackupError::Restore(format!(
            "{}: {}",
            output.status,
            last_lines(&String::from_utf8_lossy(&output.stderr))
        )));
    }
    Ok(())
}

/// `dbname='…'` for `--dbname`, so that a name with `=` in it is not read
/// as a connection string.
fn dbname_conninfo(name: &str) -> String {
    format!("dbname='{}'", name.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn collect_stderr(child: &mut std::process::Child) -> std::thread::JoinHandle<String> {
    let stderr = child.stderr.take();
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            text = last_lines(&String::from_utf8_lossy(&bytes));
        }
        text
    })
}

/// The end of a program's error output, on one line.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let start = lines.len().saturating_sub(5);
    let joined = lines[start..].join(" | ");
    if joined.is_empty() {
        "(no error output)".to_owned()
    } else {
        joined
    }
}

/// Copies `from` into `to`, hashing as it goes: the byte count and the SHA-256 in hex.
fn copy_hashing(from: &mut dyn Read, to: &mut dyn Write) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..read]);
        to.write_all(&buffer[..read])?;
        total += read as u64;
    }
    to.flush()?;
    Ok((total, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_kind_and_the_utc_time() {
        let at = time::macros::datetime!(2026-12-02 06:13:00 +01:00);
        assert_eq!(key_for(Kind::Daily, at), "daily/2026-12-02T05-13-00Z.dump");
    }

    #[test]
    fn differences_name_each_table() {
        let dumped = BTreeMap::from([("a".to_owned(), 2), ("b".to_owned(), 1)]);
        let restored = BTreeMap::from([("a".to_owned(), 1), ("c".to_owned(), 0)]);
        assert_eq!(
            differences(&dumped, &restored),
            [
                "table a: 2 rows dumped, 1 restored",
                "table b is missing",
                "table c was not in the dump"
            ]
        );
        assert!(differences(&dumped, &dumped).is_empty());
    }

    #[test]
    fn changed_contents_name_each_table_whose_checksum_differs() {
        let dumped = BTreeMap::from([("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())]);
        let restored = BTreeMap::from([("a".to_owned(), "1".to_owned()), ("b".to_owned(), "3".to_owned())]);
        assert_eq!(
            changed_contents(&dumped, &restored),
            ["table b: contents differ from the dump"]
        );
        assert!(changed_contents(&dumped, &dumped).is_empty());
    }

    #[test]
    fn a_database_name_is_quoted_for_dbname() {
        assert_eq!(dbname_conninfo("lectern"), "dbname='lectern'");
        assert_eq!(dbname_conninfo("a='b"), "dbname='a=\\'b'");
    }

    #[test]
    fn the_password_goes_to_the_environment() {
        let config: DbConfig = "postgres://app:s3cret@db:5433/lectern".parse().expect("url");
        let env = libpq_env(&config);
        assert!(env.contains(&("PGPASSWORD", "s3cret".to_owned())));
        assert!(env.contains(&("PGHOST", "db".to_owned())));
        assert!(env.contains(&("PGPORT", "5433".to_owned())));
        assert!(env.contains(&("PGDATABASE", "lectern".to_owned())));
    }
}
