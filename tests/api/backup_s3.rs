//! Backups in an S3 bucket (`backup.storage = "s3"`), against a moto server
//! that each test starts for itself: a dump of several parts restores every
//! row of every table; an upload that is dropped, or a dump that fails after
//! its first part, leaves neither an object nor a multipart upload; an
//! unreachable endpoint, a missing bucket, a damaged or missing object are
//! refused in words that say which.

use std::io::Write;

use lectern_actors::backup::storage::s3::PART_BYTES;
use lectern_actors::backup::{BackupError, S3Storage, Storage};

use crate::backup::{
    client, failing_pg_dump, files_under, fingerprints, refused_as_damaged, restores_every_row, stderr, Site,
};
use crate::helpers::lectern_command;
use crate::helpers::moto::{use_test_credentials, MotoServer};

const BUCKET: &str = "lectern-backups";

/// The environment that sends a site's backups to `bucket` at `endpoint`.
fn s3_env(endpoint: &str, bucket: &str, prefix: &str) -> Vec<(String, String)> {
    [
        ("LECTERN__BACKUP__STORAGE", "s3"),
        ("LECTERN__BACKUP__S3__ENDPOINT", endpoint),
        ("LECTERN__BACKUP__S3__BUCKET", bucket),
        ("LECTERN__BACKUP__S3__REGION", "us-east-1"),
        ("LECTERN__BACKUP__S3__PREFIX", prefix),
        ("LECTERN__BACKUP__S3__PATH_STYLE", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A site with the demo content whose backups go to `bucket` of `moto`.
async fn site_on(moto: &MotoServer, bucket: &str, prefix: &str) -> Site {
    let mut site = Site::demo().await;
    site.env = s3_env(&moto.endpoint, bucket, prefix);
    site
}

/// Every object in `bucket`, with its size.
async fn objects(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, i64)> {
    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    listed
        .contents()
        .iter()
        .map(|o| (o.key().unwrap_or_default().to_owned(), o.size().unwrap_or(-1)))
        .collect()
}

/// The keys of the multipart uploads begun in `bucket` and neither
/// completed nor aborted.
async fn multipart_uploads(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let listed = s3.list_multipart_uploads().bucket(bucket).send().await.unwrap();
    listed
        .uploads()
        .iter()
        .map(|u| u.key().unwrap_or_default().to_owned())
        .collect()
}

async fn object_bytes(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let object = s3.get_object().bucket(bucket).key(key).send().await.unwrap();
    object.body.collect().await.unwrap().into_bytes().to_vec()
}

/// Accounts, sessions, tokens and rate limits beside the demo content, and
/// a table of random bytes that pg_dump cannot compress much (`mib` MiB).
async fn seed(database: &lectern_actors::store::DbConfig, mib: u32) {
    let client = client(database).await;
    client
        .batch_execute(&format!(
            "INSERT INTO users (email, name, password_hash, role, confirmed_at) \
             SELECT 'member' || i || '@example.com', 'Member ' || i, \
                    CASE WHEN i % 2 = 0 THEN '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA' END, \
                    CASE WHEN i = 1 THEN 'admin' ELSE 'member' END, now() - i * interval '1 day' \
             FROM generate_series(1, 25) i; \
             INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at) \
             SELECT sha256(('session' || id)::bytea), id, md5(id::text), now() + interval '30 days' \
             FROM users; \
             INSERT INTO user_tokens (token_hash, user_id, purpose, sent_to, expires_at) \
             SELECT sha256(('token' || id)::bytea), id, 'confirm', email, now() + interval '1 day' \
             FROM users; \
             INSERT INTO rate_limits (key, tat) \
             SELECT 'ip:192.0.2.' || i, now() + i * interval '1 second' FROM generate_series(1, 10) i; \
             CREATE TABLE scratch (id integer PRIMARY KEY, blob bytea NOT NULL); \
             INSERT INTO scratch \
             SELECT i, (SELECT decode(string_agg(md5(random()::text || i || j), ''), 'hex') \
                        FROM generate_series(1, 4096) j) \
             FROM generate_series(1, {}) i;",
            mib * 16
        ))
        .await
        .unwrap();
}

/// `backup now` (pg_dump found on `path` when given) fails, exit status 1,
/// saying `says`; its row, the only one, is failed with that reason and no
/// size or hash. The reason.
async fn backup_fails_saying(site: &Site, path: Option<&str>, says: &str) -> String {
    let output = site.run_with_path(&["backup", "now"], path);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(says), "{}", stderr(&output));
    let row = client(&site.database)
        .await
        .query_one("SELECT status, error, bytes, sha256 FROM backups", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "failed");
    let error: String = row.get(1);
    assert!(error.contains(says), "{error}");
    assert_eq!(row.get::<_, Option<i64>>(2), None);
    assert_eq!(row.get::<_, Option<String>>(3), None);
    error
}

#[actix_rt::test]
async fn a_backup_of_several_parts_goes_to_the_bucket_and_restores_every_row_of_every_table() {
    let moto = MotoServer::start().await;
    let s3 = moto.create_bucket(BUCKET).await;
    let site = site_on(&moto, BUCKET, "/site-a/").await;
    seed(&site.database, 20).await;
    let before = fingerprints(&site.database).await;
    for table in [
        "users",
        "sessions",
        "user_tokens",
        "rate_limits",
        "episodes",
        "scratch",
    ] {
        assert!(before[table].0 > 0, "{table} has rows");
    }

    let (key, fields) = site.backup_now();

    let object = format!("site-a/{key}");
    assert_eq!(fields["stored"], format!("s3://{BUCKET}/{object}"));
    let bytes: i64 = fields["bytes"].parse().unwrap();
    assert!(
        bytes > 2 * PART_BYTES as i64,
        "{bytes} bytes: more than two parts"
    );
    assert!(
        fields["verified"].contains("every row count and checksum matches"),
        "{fields:?}"
    );
    let stored = objects(&s3, BUCKET).await;
    assert_eq!(stored.len(), 2, "the dump and its manifest: {stored:?}");
    assert_eq!(stored[0], (object.clone(), bytes));
    assert_eq!(stored[1].0, format!("{object}.json"));
    assert_eq!(multipart_uploads(&s3, BUCKET).await, Vec::<String>::new());
    let head = s3.head_object().bucket(BUCKET).key(&object).send().await.unwrap();
    assert_eq!(head.content_length(), Some(bytes));
    // The ETag of an object made by a multipart upload ends in its number of parts.
    let etag = head.e_tag().unwrap_or_default().trim_matches('"').to_owned();
    assert!(etag.ends_with("-3"), "{etag}: three parts of at most 8 MiB");
    let stored = object_bytes(&s3, BUCKET, &object).await;
    assert_eq!(
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &stored)),
        fields["sha256"]
    );
    let row = client(&site.database)
        .await
        .query_one(
            "SELECT storage, status, bytes, sha256 FROM backups WHERE key = $1",
            &[&key],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "s3");
    assert_eq!(row.get::<_, &str>(1), "succeeded");
    assert_eq!(row.get::<_, i64>(2), bytes);
    assert_eq!(row.get::<_, &str>(3), fields["sha256"]);

    restores_every_row(&site, &key, before.clone()).await;
    // A new machine with a new database and the same bucket restores from
    // the bucket alone: the newest backup, through its manifest.
    let new_machine = Site {
        data: tempfile::tempdir().unwrap(),
        database: crate::helpers::fresh_database().await,
        env: site.env.clone(),
    };
    restores_every_row(&new_machine, &key, before).await;
    let spool = site.data.path().join("backups");
    assert!(
        !spool.exists() || files_under(&spool).is_empty(),
        "the fetched copies are deleted: {:?}",
        files_under(&spool)
    );
}

#[actix_rt::test]
async fn an_upload_takes_its_key_only_when_committed_and_one_dropped_is_aborted() {
    let moto = MotoServer::start().await;
    let s3 = moto.create_bucket("parts").await;
    let spool = tempfile::tempdir().unwrap();
    let storage = S3Storage::new(&moto.s3_config("parts", "p"), spool.path().to_owned()).unwrap();
    let data: Vec<u8> = (0..PART_BYTES + 1000).map(|i| (i * 7 % 251) as u8).collect();
    // The storage blocks: it is used from a blocking thread, as backups do.
    let blocking = |work: Box<dyn FnOnce() + Send>| tokio::task::spawn_blocking(work);

    let (sender, upload) = std::sync::mpsc::channel();
    let (writer, written) = (storage.clone(), data.clone());
    blocking(Box::new(move || {
        let mut upload = writer.create("daily/a.dump").unwrap();
        upload.write_all(&written).unwrap();
        sender.send(upload).unwrap();
    }))
    .await
    .unwrap();
    let upload = upload.recv().unwrap();
    assert_eq!(
        multipart_uploads(&s3, "parts").await,
        ["p/daily/a.dump"],
        "the first part is sent"
    );
    assert!(objects(&s3, "parts").await.is_empty(), "no object before commit");
    blocking(Box::new(move || drop(upload))).await.unwrap();
    assert_eq!(multipart_uploads(&s3, "parts").await, Vec::<String>::new());
    assert!(objects(&s3, "parts").await.is_empty());

    let (sender, outcome) = std::sync::mpsc::channel();
    let (worker, written) = (storage.clone(), data.clone());
    blocking(Box::new(move || {
        let mut upload = worker.create("daily/b.dump").unwrap();
        upload.write_all(&written).unwrap();
        upload.commit().unwrap();
        let fetched = worker.fetch("daily/b.dump").unwrap();
        let copy = fetched.path().to_owned();
        let read = std::fs::read(&copy).unwrap();
        drop(fetched);
        let missing = worker.fetch("daily/missing.dump").map(|f| f.path().to_owned());
        worker.delete("daily/b.dump").unwrap();
        worker.delete("daily/b.dump").unwrap();
        sender.send((copy, read, missing)).unwrap();
    }))
    .await
    .unwrap();
    let (copy, read, missing) = outcome.recv().unwrap();
    assert!(read == data, "the object comes back as written");
    assert!(copy.starts_with(spool.path()), "{}", copy.display());
    assert!(!copy.exists(), "the fetched copy is deleted when dropped");
    match missing {
        Err(e @ BackupError::Missing { .. }) => {
            assert!(
                e.to_string()
                    .contains("s3://parts/p/daily/missing.dump is missing"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(objects(&s3, "parts").await.is_empty(), "deleted");
    assert!(files_under(spool.path()).is_empty());
}

#[actix_rt::test]
async fn a_dump_that_fails_after_its_first_part_leaves_no_object_and_no_upload() {
    let moto = MotoServer::start().await;
    let s3 = moto.create_bucket(BUCKET).await;
    let site = site_on(&moto, BUCKET, "").await;
    // More than a part, so that a multipart upload has begun when it fails.
    let (_bin, path) = failing_pg_dump("head -c 10485760 /dev/urandom");

    backup_fails_saying(&site, Some(&path), "simulated failure").await;

    assert!(objects(&s3, BUCKET).await.is_empty());
    assert_eq!(multipart_uploads(&s3, BUCKET).await, Vec::<String>::new());
}

#[actix_rt::test]
async fn an_unreachable_storage_fails_the_backup_and_says_where_it_tried() {
    use_test_credentials();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut site = Site::demo().await;
    site.env = s3_env(&endpoint, BUCKET, "");

    let says = format!("S3 PutObject of s3://{BUCKET}/manual/");
    let error = backup_fails_saying(&site, None, &says).await;

    assert!(error.contains(&format!("cannot reach {endpoint}")), "{error}");
}

#[actix_rt::test]
async fn a_missing_bucket_fails_the_backup_and_names_the_bucket() {
    let moto = MotoServer::start().await;
    let site = site_on(&moto, "no-such-bucket", "").await;

    backup_fails_saying(&site, None, "the bucket no-such-bucket does not exist").await;
}

#[actix_rt::test]
async fn a_damaged_or_missing_object_is_neither_verified_nor_restored() {
    let moto = MotoServer::start().await;
    let s3 = moto.create_bucket(BUCKET).await;
    let site = site_on(&moto, BUCKET, "").await;
    let (key, _) = site.backup_now();
    let mut bytes = object_bytes(&s3, BUCKET, &key).await;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    s3.put_object()
        .bucket(BUCKET)
        .key(&key)
        .body(bytes.into())
        .send()
        .await
        .unwrap();

    refused_as_damaged(&site, &key).await;
    let spool = site.data.path().join("backups");
    assert!(files_under(&spool).is_empty(), "{:?}", files_under(&spool));

    s3.delete_object().bucket(BUCKET).key(&key).send().await.unwrap();
    let verify = site.run(&["backup", "verify", &key]);
    assert_eq!(verify.status.code(), Some(1));
    let text = stderr(&verify);
    assert!(
        text.contains(&format!("the object s3://{BUCKET}/{key} is missing")),
        "{text}"
    );
}

#[test]
fn an_s3_storage_without_a_bucket_or_with_a_bad_endpoint_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value, named) in [
        ("LECTERN__BACKUP__S3__BUCKET", "", "backup.s3.bucket"),
        (
            "LECTERN__BACKUP__S3__ENDPOINT",
            "minio:9000",
            "backup.s3.endpoint",
        ),
    ] {
        let output = lectern_command(dir.path())
            .args(["backup", "list"])
            .env("LECTERN__BACKUP__STORAGE", "s3")
            .env(key, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let text = stderr(&output);
        assert!(
            text.starts_with(&format!(
                "lectern: configuration error: {named} (from the environment)"
            )),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}
