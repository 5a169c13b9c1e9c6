//! Content import through `lectern content import DIR`: idempotent, all or
//! nothing, with errors that name the file and line; and the demo content
//! that an empty development database gets.

use std::path::Path;

use crate::helpers::{conninfo, fresh_database, lectern_command, spawn_app_with};

const SERIES: &str =
    "+++\ntitle = \"Tiny series\"\nsummary = \"Two episodes.\"\nposition = 1\n+++\nA series for the tests.\n";

fn episode(number: u32, position: u32, title: &str) -> String {
    format!(
        "+++\ntitle = \"{title}\"\nsummary = \"About {title}.\"\nnumber = {number}\nseries = \"tiny\"\nposition = {position}\n\
         duration = \"10:00\"\nvideo = \"https://v.example/{number}.mp4\"\naccess = \"free\"\n\
         published_at = \"2026-01-0{number}T09:00:00Z\"\ntags = [\"testing\"]\n+++\n## {title}\n\nNotes.\n"
    )
}

fn write(dir: &Path, path: &str, text: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

async fn count(database: &tokio_postgres::Config, table: &str) -> i64 {
    let (client, connection) = database.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// Every row version of the content tables: a row rewritten by an UPDATE,
/// or deleted and inserted again, gets a new `xmin` and `ctid`.
async fn row_versions(database: &tokio_postgres::Config) -> Vec<String> {
    let (client, connection) = database.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let mut versions = Vec::new();
    for table in ["series", "episodes", "tags", "episode_tags"] {
        let rows = client
            .query(
                &format!(
                    "SELECT '{table} ' || ctid::text || ' xmin ' || xmin::text FROM {table} ORDER BY ctid"
                ),
                &[],
            )
            .await
            .unwrap();
        versions.extend(rows.iter().map(|row| row.get::<_, String>(0)));
    }
    versions
}

fn import(database: &tokio_postgres::Config, folder: &Path) -> std::process::Output {
    let work = tempfile::tempdir().unwrap();
    lectern_command(work.path())
        .env("DATABASE_URL", conninfo(database))
        .arg("content")
        .arg("import")
        .arg(folder)
        .output()
        .unwrap()
}

#[actix_rt::test]
async fn importing_twice_writes_once() {
    let database = fresh_database().await;
    let folder = tempfile::tempdir().unwrap();
    write(folder.path(), "series/tiny.md", SERIES);
    write(
        folder.path(),
        "episodes/first-steps.md",
        &episode(1, 1, "First steps"),
    );
    write(
        folder.path(),
        "episodes/second-steps.md",
        &episode(2, 2, "Second steps"),
    );

    let first = import(&database, folder.path());
    let after_first = row_versions(&database).await;
    let second = import(&database, folder.path());

    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(after_first.len(), 1 + 2 + 1 + 2, "{after_first:?}");
    assert_eq!(
        row_versions(&database).await,
        after_first,
        "the second import rewrote rows"
    );
    let first = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.starts_with("Read 1 series, 2 episodes, 0 articles; 3 changed"),
        "{first}"
    );
    let second = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.starts_with("Read 1 series, 2 episodes, 0 articles; 0 changed"),
        "{second}"
    );
    assert_eq!(count(&database, "episodes").await, 2);
    assert_eq!(count(&database, "tags").await, 1);
}

#[actix_rt::test]
async fn one_bad_file_stops_the_import_and_says_where() {
    let database = fresh_database().await;
    let folder = tempfile::tempdir().unwrap();
    write(folder.path(), "series/tiny.md", SERIES);
    write(
        folder.path(),
        "episodes/first-steps.md",
        &episode(1, 1, "First steps"),
    );
    write(
        folder.path(),
        "episodes/broken.md",
        &episode(2, 2, "Broken").replace("access = \"free\"", "access = \"sometimes\""),
    );

    let output = import(&database, folder.path());

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 file(s) cannot be imported; nothing was written"),
        "{stderr}"
    );
    assert!(
        stderr.contains("episodes/broken.md:9: unknown variant `sometimes`"),
        "{stderr}"
    );
    assert_eq!(
        count(&database, "episodes").await,
        0,
        "the good file was not written either"
    );
    assert_eq!(count(&database, "series").await, 0);
}

#[actix_rt::test]
async fn a_number_taken_by_another_episode_is_a_clear_conflict() {
    let database = fresh_database().await;
    let folder = tempfile::tempdir().unwrap();
    write(folder.path(), "series/tiny.md", SERIES);
    write(
        folder.path(),
        "episodes/first-steps.md",
        &episode(1, 1, "First steps"),
    );
    assert!(import(&database, folder.path()).status.success());

    let later = tempfile::tempdir().unwrap();
    write(later.path(), "episodes/usurper.md", &episode(1, 2, "Usurper"));
    let output = import(&database, later.path());

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("episode number 1 would be used by more than one episode: first-steps, usurper; nothing was written"),
        "{stderr}"
    );
    assert_eq!(count(&database, "episodes").await, 1);
}

#[actix_rt::test]
async fn an_empty_development_database_gets_the_demo_content() {
    let app = spawn_app_with(&[("content.demo_when_empty", "true")]).await;

    let episodes = app.get("/episodes").await.text().await.unwrap();

    assert!(episodes.contains("/episodes/ownership-and-borrowing") || episodes.contains("/episodes?page=2"));
    assert!(count(&app.database, "episodes").await >= 30);
}

#[actix_rt::test]
async fn content_scheduled_for_later_appears_when_its_time_comes() {
    let app = spawn_app_with(&[("cache.schedule_check_secs", "1")]).await;
    let folder = tempfile::tempdir().unwrap();
    write(folder.path(), "series/tiny.md", SERIES);
    // A day ahead: certainly not visible yet, however slow this machine.
    let tomorrow = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let tomorrow = tomorrow
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    write(
        folder.path(),
        "episodes/coming-soon.md",
        &episode(1, 1, "Coming soon").replace("2026-01-01T09:00:00Z", &tomorrow),
    );
    lectern_actors::content::import::import_dir(
        &app.pool,
        folder.path(),
        lectern_actors::content::markdown::MarkdownOptions::default(),
    )
    .await
    .unwrap();

    let before = app.get("/episodes").await.text().await.unwrap();
    assert!(
        !before.contains("Coming soon"),
        "not yet: and now the listing is cached"
    );
    assert_eq!(app.get("/episodes/coming-soon").await.status(), 404);

    // The publish time is brought forward to a second from now. The check
    // looks for times that passed since its last look, so the change must
    // be committed before that second is reached: when it was not (a slow
    // commit), it is made again.
    let client = app.pool.get().await.unwrap();
    loop {
        client
            .execute(
                "UPDATE episodes SET published_at = clock_timestamp() + interval '1 second' \
                 WHERE slug = 'coming-soon'",
                &[],
            )
            .await
            .unwrap();
        let committed_in_time: bool = client
            .query_one(
                "SELECT published_at > clock_timestamp() FROM episodes WHERE slug = 'coming-soon'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if committed_in_time {
            break;
        }
    }

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        if app
            .get("/episodes")
            .await
            .text()
            .await
            .unwrap()
            .contains("Coming soon")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the scheduled episode never appeared"
        );
    }
    assert_eq!(app.get("/episodes/coming-soon").await.status(), 200);
}
