//! `lectern backup now|list|verify|restore` against a test database with
//! the demo content: the dump's object and row agree, a restore gives back
//! every table's rows, and a damaged object, an occupied target or a failing
//! pg_dump are refused or recorded, never passed off as good.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use lectern_actors::store::DbConfig;
use tempfile::TempDir;
use tokio_postgres::NoTls;

use crate::helpers::{conninfo, demo_database, empty_database, fresh_database, lectern_command};

/// A Lectern data directory, the database its commands use and the
/// environment they get (the backup storage's settings, say).
pub struct Site {
    pub data: TempDir,
    pub database: DbConfig,
    pub env: Vec<(String, String)>,
}

impl Site {
    pub async fn demo() -> Site {
        Site {
            data: tempfile::tempdir().unwrap(),
            database: demo_database().await,
            env: Vec::new(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_path(args, None)
    }

    pub fn run_with_path(&self, args: &[&str], path: Option<&str>) -> Output {
        let mut command = lectern_command(self.data.path());
        command
            .env("DATABASE_URL", conninfo(&self.database))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args);
        if let Some(path) = path {
            command.env("PATH", path);
        }
        let output = command.output().unwrap();
        println!(
            "$ lectern {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// `backup now`, which must succeed: its key and its printed fields.
    pub fn backup_now(&self) -> (String, BTreeMap<String, String>) {
        let output = self.run(&["backup", "now"]);
        assert!(output.status.success(), "{}", stderr(&output));
        let fields: BTreeMap<String, String> = stdout(&output)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect();
        (fields["backup"].clone(), fields)
    }

    fn object(&self, key: &str) -> PathBuf {
        self.data.path().join("backups").join(key)
    }

    pub fn restore_into(&self, key: &str, target: &DbConfig, force: bool) -> Output {
        let into = conninfo(target);
        let mut args = vec!["backup", "restore", key, "--into", into.as_str()];
        if force {
            args.push("--force");
        }
        self.run(&args)
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn sha256_of(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))
}

pub async fn client(database: &DbConfig) -> tokio_postgres::Client {
    let (client, connection) = database.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Every public table's row count and an MD5 of all its rows.
pub async fn fingerprints(database: &DbConfig) -> BTreeMap<String, (i64, String)> {
    let client = client(database).await;
    let tables: Vec<String> = client
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut prints = BTreeMap::new();
    for table in tables {
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) \
                     FROM public.\"{table}\" t"
                ),
                &[],
            )
            .await
            .unwrap();
        prints.insert(table, (row.get(0), row.get(1)));
    }
    prints
}

/// The files under `dir`, recursively, dot files included.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[actix_rt::test]
async fn backup_now_stores_a_dump_that_lists_verifies_and_restores_every_row() {
    let site = Site::demo().await;
    let before = fingerprints(&site.database).await;
    assert!(before["episodes"].0 > 0, "the demo content is there");

    let (key, fields) = site.backup_now();

    assert!(key.starts_with("manual/") && key.ends_with("Z.dump"), "{key}");
    let object = site.object(&key);
    assert_eq!(fields["stored"], object.display().to_string());
    let sha256 = sha256_of(&object);
    assert_eq!(fields["sha256"], sha256);
    let bytes = std::fs::metadata(&object).unwrap().len();
    assert_eq!(fields["bytes"], bytes.to_string());
    assert!(
        fields["verified"].contains("every row count and checksum matches"),
        "{fields:?}"
    );
    // The dump, and beside it its manifest; nothing else (no partial file).
    let mut stored = files_under(&site.data.path().join("backups"));
    stored.sort();
    let manifest = PathBuf::from(format!("{}.json", object.display()));
    assert_eq!(stored, [object, manifest]);
    let row = client(&site.database)
        .await
        .query_one(
            "SELECT kind, storage, status, bytes, sha256, finished_at IS NOT NULL, \
             verified_at IS NOT NULL, (verification->>'ok')::boolean FROM backups WHERE key = $1",
            &[&key],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "manual");
    assert_eq!(row.get::<_, &str>(1), "dir");
    assert_eq!(row.get::<_, &str>(2), "succeeded");
    assert_eq!(row.get::<_, i64>(3), bytes as i64);
    assert_eq!(row.get::<_, &str>(4), sha256);
    assert!(row.get::<_, bool>(5) && row.get::<_, bool>(6) && row.get::<_, bool>(7));
    let scratch: i64 = client(&site.database)
        .await
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'lectern_verify_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(scratch, 0, "the scratch database is dropped");

    let list = site.run(&["backup", "list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    let listed = stdout(&list);
    let line = listed.lines().find(|l| l.starts_with(&key)).expect("listed");
    for column in ["manual", &bytes.to_string(), " ok ", "succeeded"] {
        assert!(line.contains(column), "{column} in {line}");
    }

    let verify = site.run(&["backup", "verify", &key]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(stdout(&verify).contains("every row count and checksum matches"));

    restores_every_row(&site, &key, before).await;
}

/// `backup restore KEY` into an empty database gives back every table of
/// `before` (the source's fingerprints) row for row, and `backups` as it
/// was while dumping: its own row, running.
pub async fn restores_every_row(site: &Site, key: &str, before: BTreeMap<String, (i64, String)>) {
    let target = empty_database().await;
    let restored = site.restore_into(key, &target, false);
    assert!(restored.status.success(), "{}", stderr(&restored));
    let mut after = fingerprints(&target).await;
    let own: Vec<(String, String)> = client(&target)
        .await
        .query("SELECT key, status FROM backups", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(own, [(key.to_owned(), "running".to_owned())]);
    after.remove("backups");
    let mut expected = before;
    expected.remove("backups");
    assert_eq!(after, expected, "every other table, row for row");
}

/// The machine is lost: a new one, with a new database of its own and the
/// same storage, restores from the storage alone (each object's manifest).
#[actix_rt::test]
async fn a_new_database_restores_a_backup_from_the_storage_alone() {
    let site = Site::demo().await;
    let before = fingerprints(&site.database).await;
    let (key, _) = site.backup_now();
    let manifest = site.object(&format!("{key}.json"));
    let described: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(described["key"], key.as_str());
    assert_eq!(described["sha256"], sha256_of(&site.object(&key)).as_str());

    let shared = site.data.path().join("backups").display().to_string();
    let new_machine = Site {
        data: tempfile::tempdir().unwrap(),
        database: fresh_database().await,
        env: vec![("LECTERN__BACKUP__DIR".to_owned(), shared)],
    };
    let list = new_machine.run(&["backup", "list"]);
    assert!(
        stdout(&list).contains("No backups yet"),
        "its own database has no rows"
    );
    restores_every_row(&new_machine, &key, before).await;

    let target = empty_database().await;
    let into = conninfo(&target);
    let latest = new_machine.run(&["backup", "restore", "--latest", "--into", &into]);
    assert!(latest.status.success(), "{}", stderr(&latest));
    assert!(stdout(&latest).contains(&key), "{}", stdout(&latest));
    assert!(
        stderr(&latest).contains("reading its manifest"),
        "{}",
        stderr(&latest)
    );

    // Without its manifest, an object is not restored on trust.
    std::fs::remove_file(&manifest).unwrap();
    let unknown = new_machine.restore_into(&key, &empty_database().await, false);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains(&format!("no backup named {key}")),
        "{}",
        stderr(&unknown)
    );
}

#[actix_rt::test]
async fn restore_refuses_a_database_with_tables_unless_forced() {
    let site = Site::demo().await;
    let (key, _) = site.backup_now();
    let target = fresh_database().await;
    let untouched = fingerprints(&target).await;

    let refused = site.restore_into(&key, &target, false);

    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert_eq!(stdout(&refused), "");
    let text = stderr(&refused);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("refuses") && text.contains("--force"), "{text}");
    assert_eq!(fingerprints(&target).await, untouched, "nothing changed");

    let into = conninfo(&target);
    let forced = site.run(&["backup", "restore", "--latest", "--into", &into, "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let mut source = fingerprints(&site.database).await;
    let mut restored = fingerprints(&target).await;
    source.remove("backups");
    restored.remove("backups");
    assert_eq!(restored, source);
}

#[actix_rt::test]
async fn a_damaged_object_fails_verify_and_restore_and_nothing_is_restored() {
    let site = Site::demo().await;
    let (key, _) = site.backup_now();
    let object = site.object(&key);
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&object, &bytes).unwrap();

    refused_as_damaged(&site, &key).await;

    let list = stdout(&site.run(&["backup", "list"]));
    assert!(list.contains("FAILED"), "{list}");
}

/// `backup verify` and `backup restore` of the damaged object of `key`
/// both fail on its sha256; the failed verification is recorded and
/// nothing is restored.
pub async fn refused_as_damaged(site: &Site, key: &str) {
    let verify = site.run(&["backup", "verify", key]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(stderr(&verify).contains("sha256 mismatch"), "{}", stderr(&verify));
    let ok: Option<bool> = client(&site.database)
        .await
        .query_one(
            "SELECT (verification->>'ok')::boolean FROM backups WHERE key = $1",
            &[&key],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ok, Some(false), "the failed verification is recorded");

    let target = empty_database().await;
    let restore = site.restore_into(key, &target, false);
    assert_eq!(restore.status.code(), Some(1));
    assert!(
        stderr(&restore).contains("sha256 mismatch"),
        "{}",
        stderr(&restore)
    );
    assert!(fingerprints(&target).await.is_empty(), "nothing restored");
}

/// A PATH whose pg_dump runs `writes` to its standard output, then fails
/// ("simulated failure"), and whose pg_restore fails; the directory that
/// holds them lives as long as the first value.
pub fn failing_pg_dump(writes: &str) -> (TempDir, String) {
    let bin = tempfile::tempdir().unwrap();
    let pg_dump = format!("#!/bin/sh\n{writes}\necho 'pg_dump: error: simulated failure' >&2\nexit 1\n");
    for (name, script) in [
        ("pg_dump", pg_dump.as_str()),
        ("pg_restore", "#!/bin/sh\nexit 1\n"),
    ] {
        let path = bin.path().join(name);
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (bin, path)
}

#[actix_rt::test]
async fn a_failing_pg_dump_leaves_a_failed_row_and_no_object() {
    let site = Site::demo().await;
    let (_bin, path) = failing_pg_dump("printf 'PGDMP half a dump'");

    let output = site.run_with_path(&["backup", "now", "--kind", "daily"], Some(&path));

    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("pg_dump failed") && text.contains("simulated failure"),
        "{text}"
    );
    let row = client(&site.database)
        .await
        .query_one("SELECT key, kind, status, error, bytes, sha256 FROM backups", &[])
        .await
        .unwrap();
    let key: String = row.get(0);
    assert!(key.starts_with("daily/"), "{key}");
    assert_eq!(row.get::<_, &str>(2), "failed");
    assert!(row.get::<_, &str>(3).contains("simulated failure"));
    assert_eq!(row.get::<_, Option<i64>>(4), None);
    assert_eq!(row.get::<_, Option<String>>(5), None);
    let backups = site.data.path().join("backups");
    assert!(
        !backups.exists() || files_under(&backups).is_empty(),
        "{:?}",
        files_under(&backups)
    );

    let list = stdout(&site.run(&["backup", "list"]));
    assert!(list.contains("failed: pg_dump failed"), "{list}");
    let verify = site.run(&["backup", "verify", &key]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(stderr(&verify).contains("is failed, not succeeded"));
}

#[test]
fn bad_backup_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["backup", "now", "--kind", "hourly"][..],
        &["backup", "restore", "--into", "postgres://localhost/x"],
        &[
            "backup",
            "restore",
            "k",
            "--latest",
            "--into",
            "postgres://localhost/x",
        ],
        &["backup", "restore", "k"],
        &["backup", "restore", "k", "--into", "postgres://[::1"],
        &["backup", "verify"],
    ] {
        let output = lectern_command(dir.path()).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
    }
}
