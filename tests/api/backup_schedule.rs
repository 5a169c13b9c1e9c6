//! The BackupScheduler in `lectern serve`: two nodes on one database run
//! each scheduled backup once, verify it and keep the newest; a failed dump,
//! a restore that fails verification, or a run killed half-way is recorded
//! with its reason and alerted (emailed to the operator once an hour, the
//! rest counted), and the next run happens.
//! Schedules here have a seconds field, so that runs come due every few
//! seconds; production's are daily and weekly.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lectern_actors::store::embedded::find_programs;
use lectern_actors::store::DbConfig;
use nix::sys::signal::Signal;
use tempfile::TempDir;
use tokio_postgres::NoTls;

use crate::helpers::{demo_database, wait_for, LecternProcess};

const OPERATOR: &str = "ops@example.com";

async fn client(database: &DbConfig) -> tokio_postgres::Client {
    let (client, connection) = database.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The rows of `backups`: key, status, error, whether verified ok.
async fn rows(database: &DbConfig) -> Vec<(String, String, Option<String>, Option<bool>)> {
    client(database)
        .await
        .query(
            "SELECT key, status, error, (verification->>'ok')::boolean FROM backups ORDER BY key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// The keys of the backups the EventLog saw succeed (all nodes).
async fn succeeded_events(database: &DbConfig) -> Vec<String> {
    client(database)
        .await
        .query(
            "SELECT subject FROM events WHERE kind = 'backup.succeeded' ORDER BY subject",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The objects under the backup directory, as keys, partial files included.
fn objects(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for kind in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(kind.path()).into_iter().flatten().flatten() {
            found.insert(format!(
                "{}/{}",
                kind.file_name().to_string_lossy(),
                file.file_name().to_string_lossy()
            ));
        }
    }
    found
}

/// The seconds field of a key (`daily/2026-12-02T05-13-04Z.dump` → 4).
fn second_of(key: &str) -> u32 {
    key.trim_end_matches("Z.dump")
        .rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no seconds in {key}"))
}

#[actix_rt::test]
async fn two_nodes_run_each_scheduled_backup_once_verify_it_and_keep_the_newest_two() {
    let database = demo_database().await;
    let shared = tempfile::tempdir().unwrap();
    let dir = shared.path().display().to_string();
    let env = [
        ("LECTERN__BACKUP__DAILY", "*/4 * * * * *"),
        ("LECTERN__BACKUP__KEEP_DAILY", "2"),
        ("LECTERN__BACKUP__DIR", dir.as_str()),
        ("LECTERN__ALERTS__EMAIL", OPERATOR),
    ];
    let first = LecternProcess::start_with_env(Arc::new(tempfile::tempdir().unwrap()), Some(&database), &env);
    let second =
        LecternProcess::start_with_env(Arc::new(tempfile::tempdir().unwrap()), Some(&database), &env);

    let made = wait_for(Duration::from_secs(120), "four scheduled backups", || async {
        let made = succeeded_events(&database).await;
        (made.len() >= 4).then_some(made)
    })
    .await;
    for mut node in [first, second] {
        node.signal(Signal::SIGTERM);
        assert_eq!(node.wait_exit(Duration::from_secs(30)), Some(0));
    }

    // Each scheduled time was backed up once, under the scheduled time's key.
    let distinct: BTreeSet<&String> = made.iter().collect();
    assert_eq!(
        distinct.len(),
        made.len(),
        "a scheduled backup ran twice: {made:?}"
    );
    for key in &made {
        assert!(key.starts_with("daily/"), "{key}");
        assert_eq!(second_of(key) % 4, 0, "{key} is not a scheduled time");
    }
    // The newest two verified backups are kept, and nothing else: every
    // older one lost its object and its row, once a newer one verified.
    let rows = rows(&database).await;
    let good: Vec<&String> = rows
        .iter()
        .filter(|(_, status, _, ok)| status == "succeeded" && *ok == Some(true))
        .map(|(key, ..)| key)
        .collect();
    assert!(good.len() >= 2, "{rows:?}");
    // A run the stop cut short may have left its partial file, or (killed
    // between storing and recording) an object: the next start deals with
    // them, as the last test shows.
    let running: BTreeSet<&String> = rows
        .iter()
        .filter(|(_, status, ..)| status == "running")
        .map(|(key, ..)| key)
        .collect();
    let stored: BTreeSet<String> = objects(shared.path())
        .into_iter()
        .filter(|o| !o.ends_with(".partial") && !running.contains(&o.trim_end_matches(".json").to_owned()))
        .collect();
    // Each succeeded backup: its dump and its manifest.
    let listed: BTreeSet<String> = rows
        .iter()
        .filter(|(_, status, ..)| status == "succeeded")
        .flat_map(|(key, ..)| [key.clone(), format!("{key}.json")])
        .collect();
    assert_eq!(
        stored, listed,
        "the objects are exactly the succeeded rows' ({rows:?})"
    );
    let oldest_made = &made[0];
    assert!(
        !listed.contains(oldest_made) && !stored.contains(oldest_made),
        "the oldest backup {oldest_made} was kept: {rows:?}"
    );
    // A run cut short by the stop may follow the two kept ones, no more.
    assert!(listed.len() <= 2 * 3, "retention kept {listed:?}");
    // Each failed run raised an alert; one email an hour tells of them.
    let (raised, emailed): (i64, i64) = {
        let row = client(&database)
            .await
            .query_one(
                "SELECT (SELECT count(*) FROM events WHERE kind = 'alert.raised' AND subject = 'backup_failed'), \
                        (SELECT count(*) FROM email_outbox WHERE message = 'alert' \
                         AND data->>'condition' = 'backup_failed')",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    let failed: Vec<_> = rows.iter().filter(|(_, status, ..)| status == "failed").collect();
    assert_eq!(
        (raised as usize, emailed as usize),
        (failed.len(), failed.len().min(1)),
        "one alert per failed run, one email: {failed:?}"
    );
}

/// PostgreSQL's client programs, wrapped: each fails while its flag file
/// exists in `dir` (`pg_dump.fail`, `pg_restore.fail`), or waits while
/// `pg_dump.wait` does; otherwise it runs the real one.
fn faulty_programs(dir: &Path) -> String {
    let real = find_programs(&["pg_dump", "pg_restore"]).expect("PostgreSQL's client programs");
    for (program, failure) in [
        ("pg_dump", "pg_dump: error: simulated failure"),
        (
            "pg_restore",
            "pg_restore: error: could not extend file: No space left on device",
        ),
    ] {
        let flag = dir.join(format!("{program}.fail"));
        let wait = dir.join(format!("{program}.wait"));
        let script = format!(
            "#!/bin/sh\nwhile [ -e '{wait}' ]; do sleep 0.1; done\n\
             if [ -e '{flag}' ]; then echo '{failure}' >&2; exit 1; fi\n\
             exec '{real}' \"$@\"\n",
            wait = wait.display(),
            flag = flag.display(),
            real = real.join(program).display(),
        );
        let path = dir.join(program);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default())
}

/// The backup alerts raised, emailed or counted as repeats: (key, reason).
async fn alerts(database: &DbConfig) -> Vec<(String, String)> {
    client(database)
        .await
        .query(
            "SELECT data->>'summary', data->>'detail' FROM events \
             WHERE kind = 'alert.raised' AND subject = 'backup_failed' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let summary: String = r.get(0);
            let key = summary
                .strip_prefix("The backup ")
                .and_then(|s| s.strip_suffix(" failed."))
                .unwrap_or_else(|| panic!("no key in {summary:?}"))
                .to_owned();
            (key, r.get(1))
        })
        .collect()
}

#[actix_rt::test]
async fn a_failed_dump_and_a_failed_verification_are_recorded_and_alerted_and_the_next_run_succeeds() {
    let database = demo_database().await;
    let programs = tempfile::tempdir().unwrap();
    let path = faulty_programs(programs.path());
    let data: Arc<TempDir> = Arc::new(tempfile::tempdir().unwrap());
    let backups = data.path().join("backups");
    std::fs::write(programs.path().join("pg_dump.fail"), "").unwrap();
    let _lectern = LecternProcess::start_with_env(
        Arc::clone(&data),
        Some(&database),
        &[
            ("LECTERN__BACKUP__DAILY", "*/2 * * * * *"),
            ("LECTERN__BACKUP__KEEP_DAILY", "1"),
            ("LECTERN__ALERTS__EMAIL", OPERATOR),
            ("PATH", &path),
        ],
    );

    // pg_dump fails: a failed row with the reason, an alert, no object.
    let (key, reason) = wait_for(
        Duration::from_secs(60),
        "an alert for the failed dump",
        || async { alerts(&database).await.into_iter().next() },
    )
    .await;
    assert!(reason.contains("simulated failure"), "{reason}");
    let row = rows(&database).await.into_iter().find(|r| r.0 == key).unwrap();
    assert_eq!(row.1, "failed", "{row:?}");
    assert!(row.2.unwrap_or_default().contains("simulated failure"));
    assert!(!objects(&backups).contains(&key), "{:?}", objects(&backups));
    // The alert renders and goes out to the operator like any email (the
    // file backend here).
    let status = wait_for(Duration::from_secs(30), "the alert sent", || async {
        let status: String = client(&database)
            .await
            .query_one(
                "SELECT status FROM email_outbox WHERE message = 'alert' AND recipient = $1 \
                 AND data->>'condition' = 'backup_failed' ORDER BY id LIMIT 1",
                &[&OPERATOR],
            )
            .await
            .unwrap()
            .get(0);
        (status != "pending").then_some(status)
    })
    .await;
    assert_eq!(status, "sent");

    // The scratch restore fails (the disk is full): the dump is kept, but it
    // is not a good backup; the operator is told.
    std::fs::write(programs.path().join("pg_restore.fail"), "").unwrap();
    std::fs::remove_file(programs.path().join("pg_dump.fail")).unwrap();
    let (unverified, reason) = wait_for(
        Duration::from_secs(60),
        "an alert for the failed verification",
        || async {
            alerts(&database)
                .await
                .into_iter()
                .find(|(_, reason)| reason.contains("No space left"))
        },
    )
    .await;
    let row = rows(&database)
        .await
        .into_iter()
        .find(|r| r.0 == unverified)
        .unwrap();
    assert_eq!(
        (row.1.as_str(), row.3),
        ("succeeded", Some(false)),
        "{row:?}: {reason}"
    );

    // The next run succeeds and verifies; with keep_daily = 1 it replaces
    // everything older of its kind, the failed ones too.
    std::fs::remove_file(programs.path().join("pg_restore.fail")).unwrap();
    let good = wait_for(Duration::from_secs(60), "a verified backup", || async {
        rows(&database)
            .await
            .into_iter()
            .find(|r| r.1 == "succeeded" && r.3 == Some(true))
    })
    .await;
    assert!(good.0 > unverified, "{good:?}");
    let rows_now = wait_for(Duration::from_secs(30), "the older backups pruned", || async {
        let now = rows(&database).await;
        (!now.iter().any(|r| r.0 == key || r.0 == unverified)).then_some(now)
    })
    .await;
    assert!(
        !objects(&backups).contains(&unverified),
        "{rows_now:?} {:?}",
        objects(&backups)
    );
}

#[actix_rt::test]
async fn a_run_killed_half_way_is_marked_failed_its_partial_file_removed_and_alerted_at_the_next_start() {
    let database = demo_database().await;
    let programs = tempfile::tempdir().unwrap();
    let path = faulty_programs(programs.path());
    let data: Arc<TempDir> = Arc::new(tempfile::tempdir().unwrap());
    let backups = data.path().join("backups");
    std::fs::write(programs.path().join("pg_dump.wait"), "").unwrap();
    let env = [
        ("LECTERN__BACKUP__DAILY", "*/2 * * * * *"),
        ("LECTERN__ALERTS__EMAIL", OPERATOR),
        ("PATH", path.as_str()),
    ];
    let lectern = LecternProcess::start_with_env(Arc::clone(&data), Some(&database), &env);

    // The dump has begun: its row is running and its partial file exists.
    let key = wait_for(Duration::from_secs(60), "a running backup", || async {
        rows(&database)
            .await
            .into_iter()
            .find(|r| r.1 == "running")
            .map(|r| r.0)
    })
    .await;
    let partial = wait_for(Duration::from_secs(10), "the partial file", || async {
        objects(&backups).into_iter().find(|o| o.ends_with(".partial"))
    })
    .await;
    drop(lectern); // SIGKILL
    std::fs::remove_file(programs.path().join("pg_dump.wait")).unwrap();
    let row = rows(&database).await.into_iter().find(|r| r.0 == key).unwrap();
    assert_eq!(row.1, "running", "nothing has looked at it yet");

    // The next start finds the run's lease gone.
    let _again = LecternProcess::start_with_env(Arc::clone(&data), Some(&database), &env);
    let (_, reason) = wait_for(
        Duration::from_secs(30),
        "an alert for the interrupted run",
        || async { alerts(&database).await.into_iter().find(|(k, _)| *k == key) },
    )
    .await;
    assert!(reason.contains("interrupted"), "{reason}");
    let row = rows(&database).await.into_iter().find(|r| r.0 == key).unwrap();
    assert_eq!(row.1, "failed", "{row:?}");
    assert!(
        !objects(&backups).contains(&partial),
        "{partial} was left: {:?}",
        objects(&backups)
    );
    // And the schedule goes on.
    wait_for(
        Duration::from_secs(60),
        "a verified backup after the restart",
        || async {
            rows(&database)
                .await
                .into_iter()
                .find(|r| r.1 == "succeeded" && r.3 == Some(true))
        },
    )
    .await;
}

/// A dump holds its own backup's row as `running` (it was taken while the
/// run ran). A database restored from it must keep that backup, its object
/// and its manifest, when Lectern starts on it: the object is whole (its
/// manifest says so), so the row is recorded as succeeded, not failed.
#[actix_rt::test]
async fn a_database_restored_from_a_backup_keeps_that_backup_when_lectern_starts_on_it() {
    let site = crate::backup::Site::demo().await;
    let (key, _) = site.backup_now();
    let backups = site.data.path().join("backups");
    let restored = crate::helpers::empty_database().await;
    let output = site.restore_into(&key, &restored, false);
    assert!(output.status.success());
    let row = rows(&restored).await.into_iter().find(|r| r.0 == key).unwrap();
    assert_eq!(row.1, "running", "as the dump saw it");

    let shared = backups.display().to_string();
    let _lectern = LecternProcess::start_with_env(
        Arc::new(tempfile::tempdir().unwrap()),
        Some(&restored),
        &[("LECTERN__BACKUP__DIR", shared.as_str())],
    );
    let row = wait_for(Duration::from_secs(30), "the restored row settled", || async {
        rows(&restored)
            .await
            .into_iter()
            .find(|r| r.0 == key && r.1 != "running")
    })
    .await;
    assert_eq!(row.1, "succeeded", "{row:?}");
    let stored = objects(&backups);
    assert!(
        stored.contains(&key) && stored.contains(&format!("{key}.json")),
        "the backup it was restored from is gone: {stored:?}"
    );
}
