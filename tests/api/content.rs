//! Content import through `lectern content import DIR`: idempotent, all or
//! nothing, with errors that name the file and line; and the demo content
//! that an empty development database gets.

use std::path::Path;

use crate::helpers::{conninfo, fresh_database, lectern_command, spawn_app, spawn_app_with};

const SERIES: &str =
    "+++\ntitle = \"Tiny series\"\nsummary = \"Two episodes.\"\nposition = 1\n+++\nA series for the tests.\n";

fn episode(number: u32, position: u32, title: &str) -> String {
    format!(
        "+++\ntitle = \"{title}\"\nsummary = \"About {title}.\"\nnumber = {number}\nseries = \"tiny\"\nposition = {position}\n\
         duration = \"10:00\"\nvideo = \"https://v.example/{number}.mp4\"\naccess = \"free\"\n\
         published_at = \"2026-01-0{number}T09:00:00Z\"\ntags = [\"testing\"]\n+++\n## {title}\n\nNotes.\n"
    )
}

pub(crate) fn write(dir: &Path, path: &str, text: &str) {
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

pub(crate) fn import(database: &tokio_postgres::Config, folder: &Path) -> std::process::Output {
    content(database, &["import"], Some(folder))
}

/// `lectern content ARGS [FOLDER]` against `database`.
pub(crate) fn content(
    database: &tokio_postgres::Config,
    args: &[&str],
    folder: Option<&Path>,
) -> std::process::Output {
    let work = tempfile::tempdir().unwrap();
    lectern_command(work.path())
        .env("DATABASE_URL", conninfo(database))
        .arg("content")
        .args(args)
        .args(folder)
        .output()
        .unwrap()
}

pub(crate) fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The tiny series with its two episodes.
fn tiny_folder() -> tempfile::TempDir {
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
    folder
}

pub(crate) async fn query_strings(database: &tokio_postgres::Config, sql: &str) -> Vec<String> {
    let (client, connection) = database.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[actix_rt::test]
async fn importing_twice_writes_once() {
    let database = fresh_database().await;
    let folder = tiny_folder();

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
        stderr.contains("1 file has 1 error; nothing was written"),
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

#[actix_rt::test]
async fn what_the_importer_passes_over_is_named_with_why() {
    let database = fresh_database().await;
    let folder = tiny_folder();
    write(folder.path(), "episode/third-steps.md", &episode(3, 3, "Third"));
    write(folder.path(), "episodes/intro.MD", &episode(4, 4, "Intro"));
    write(folder.path(), "articles/notes.markdown", "+++\n+++\n");
    write(folder.path(), "episodes/cover.png", "not markdown");
    write(folder.path(), "README.md", "About this folder.");
    write(folder.path(), ".DS_Store", "");
    write(folder.path(), "episodes/.first-steps.md.swp", "");

    let output = import(&database, folder.path());

    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("Read 1 series, 2 episodes, 0 articles; 3 changed"),
        "{}",
        stdout(&output)
    );
    let warnings: Vec<String> = stderr(&output).lines().map(str::to_owned).collect();
    assert_eq!(
        warnings,
        [
            "warning: README.md: ignored, content files go in series/, episodes/, articles/ (e.g. episodes/README.md)",
            "warning: articles/notes.markdown: ignored, content files end in .md (rename it notes.md)",
            "warning: episode/: not a content folder (expected series/, episodes/, articles/, media/)",
            "warning: episodes/cover.png: ignored, content files end in .md",
            "warning: episodes/intro.MD: ignored, content files end in .md (rename it intro.md)",
        ],
        "hidden files pass silently"
    );
}

#[actix_rt::test]
async fn a_folder_with_nothing_to_import_fails_and_says_what_was_expected() {
    let database = fresh_database().await;
    let folder = tiny_folder();
    let misspelt = tempfile::tempdir().unwrap();
    write(misspelt.path(), "episode/first-steps.md", &episode(1, 1, "First"));

    let kind_folder = import(&database, &folder.path().join("episodes"));
    let wrong_layout = import(&database, misspelt.path());
    let empty = import(&database, tempfile::tempdir().unwrap().path());

    assert_eq!(kind_folder.status.code(), Some(1));
    let said = stderr(&kind_folder);
    assert!(
        said.contains(&format!(
            "nothing to import in {}: content files go in series/, episodes/ and articles/ inside it \
             (e.g. episodes/first-steps.md), media files in media/; did you mean the parent folder?",
            folder.path().join("episodes").display()
        )),
        "{said}"
    );
    assert_eq!(wrong_layout.status.code(), Some(1));
    let said = stderr(&wrong_layout);
    assert!(
        said.starts_with(
            "warning: episode/: not a content folder (expected series/, episodes/, articles/, media/)\n"
        ),
        "{said}"
    );
    assert!(said.contains("lectern: nothing to import in"), "{said}");
    assert!(!said.contains("parent folder"), "{said}");
    assert_eq!(empty.status.code(), Some(1));
    assert!(stderr(&empty).contains("nothing to import in"));
    assert_eq!(count(&database, "episodes").await, 0);
}

#[actix_rt::test]
async fn every_error_of_every_file_is_reported_in_one_run() {
    let database = fresh_database().await;
    let folder = tiny_folder();
    write(
        folder.path(),
        "episodes/first-steps.md",
        &episode(1, 1, "First steps")
            .replace("access = \"free\"", "access = \"sometimes\"")
            .replace("\"10:00\"", "\"ten minutes\""),
    );
    write(
        folder.path(),
        "episodes/second-steps.md",
        &episode(2, 2, "Second steps").replace("series = \"tiny\"", "series = \"tinny\""),
    );

    let output = import(&database, folder.path());

    assert_eq!(output.status.code(), Some(1));
    let said = stderr(&output);
    assert!(
        said.starts_with("lectern: 2 files have 3 errors; nothing was written:\n"),
        "{said}"
    );
    for error in [
        "episodes/first-steps.md:7: `duration` = \"ten minutes\" must be MM:SS or H:MM:SS",
        "episodes/first-steps.md:9: unknown variant `sometimes`",
        "episodes/second-steps.md:5: there is no series \"tinny\"",
    ] {
        assert!(said.contains(error), "{error} in {said}");
    }
    assert_eq!(count(&database, "series").await, 0);
}

#[actix_rt::test]
async fn a_dry_run_says_what_would_change_and_writes_nothing() {
    let database = fresh_database().await;
    let folder = tiny_folder();

    let first = content(&database, &["import", "--dry-run"], Some(folder.path()));

    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        stdout(&first),
        "Dry run: read 1 series, 2 episodes, 0 articles; 3 would change\n  series/tiny\n  \
         episodes/first-steps\n  episodes/second-steps\nDry run: nothing was written.\n"
    );
    for table in ["series", "episodes", "tags"] {
        assert_eq!(count(&database, table).await, 0, "{table}");
    }

    assert!(import(&database, folder.path()).status.success());
    write(
        folder.path(),
        "episodes/second-steps.md",
        &episode(2, 2, "Renamed steps"),
    );
    std::fs::remove_file(folder.path().join("episodes/first-steps.md")).unwrap();
    let second = content(
        &database,
        &["import", "--dry-run", "--prune"],
        Some(folder.path()),
    );

    assert!(second.status.success(), "{}", stderr(&second));
    let said = stdout(&second);
    assert!(
        said.contains("1 series, 1 episodes, 0 articles; 1 would change\n  episodes/second-steps\n"),
        "{said}"
    );
    assert!(
        said.contains(
            "1 would be unpublished (no file here; set to draft, not deleted):\n  episodes/first-steps\n"
        ),
        "{said}"
    );
    assert_eq!(
        query_strings(
            &database,
            "SELECT title || ' ' || status FROM episodes ORDER BY number"
        )
        .await,
        ["First steps published", "Second steps published"]
    );
}

#[actix_rt::test]
async fn content_list_shows_published_scheduled_and_draft_items() {
    let database = fresh_database().await;
    let folder = tiny_folder();
    write(
        folder.path(),
        "episodes/second-steps.md",
        &episode(2, 2, "Second steps").replace("2026-01-02", "2099-01-02"),
    );
    write(
        folder.path(),
        "articles/unfinished.md",
        "+++\ntitle = \"Unfinished\"\ndraft = true\n+++\nLater.\n",
    );
    assert!(import(&database, folder.path()).status.success());

    let output = content(&database, &["list"], None);

    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "ITEM                   STATUS     PUBLISHED AT          TITLE\n\
         series/tiny            listed     -                     Tiny series\n\
         episodes/first-steps   published  2026-01-01T09:00:00Z  First steps\n\
         episodes/second-steps  scheduled  2099-01-02T09:00:00Z  Second steps\n\
         articles/unfinished    draft      -                     Unfinished\n\
         1 series; 1 published, 1 scheduled, 1 drafts\n"
    );
}

#[actix_rt::test]
async fn items_without_a_file_are_named_and_prune_unpublishes_them_from_every_page() {
    let app = spawn_app().await;
    let folder = tiny_folder();
    write(
        folder.path(),
        "articles/old-news.md",
        "+++\ntitle = \"Old news\"\npublished_at = \"2026-01-01T09:00:00Z\"\n+++\nNews.\n",
    );
    assert!(import(&app.database, folder.path()).status.success());
    assert_eq!(app.get("/episodes/second-steps").await.status(), 200);
    assert!(app
        .get("/episodes")
        .await
        .text()
        .await
        .unwrap()
        .contains("Second steps"));
    assert_eq!(app.get("/episodes").await.headers()["x-cache"], "hit");
    std::fs::remove_file(folder.path().join("episodes/second-steps.md")).unwrap();
    std::fs::remove_file(folder.path().join("articles/old-news.md")).unwrap();

    let warned = import(&app.database, folder.path());

    assert!(warned.status.success(), "{}", stderr(&warned));
    assert_eq!(
        stderr(&warned),
        "warning: 2 published items in the database have no file here; --prune unpublishes them:\n  \
         episodes/second-steps\n  articles/old-news\n"
    );
    assert_eq!(app.get("/episodes/second-steps").await.status(), 200);

    let pruned = content(&app.database, &["import", "--prune"], Some(folder.path()));

    assert!(pruned.status.success(), "{}", stderr(&pruned));
    assert_eq!(
        stdout(&pruned),
        "Read 1 series, 1 episodes, 0 articles; 0 changed\n\
         2 unpublished (no file here; set to draft, not deleted):\n  episodes/second-steps\n  articles/old-news\n"
    );
    assert_eq!(stderr(&pruned), "");
    let started = std::time::Instant::now();
    while app
        .get("/episodes")
        .await
        .text()
        .await
        .unwrap()
        .contains("Second steps")
    {
        assert!(started.elapsed().as_secs() < 5, "the listing stayed cached");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(app.get("/episodes/second-steps").await.status(), 404);
    assert_eq!(app.get("/articles/old-news").await.status(), 404);
    assert_eq!(
        query_strings(
            &app.database,
            "SELECT slug || ' ' || status FROM episodes ORDER BY number"
        )
        .await,
        ["first-steps published", "second-steps draft"],
        "unpublished, not deleted"
    );
}

/// A stand-in for an image: the server sends bytes as they are.
fn image_bytes() -> Vec<u8> {
    (0..=255u8).cycle().take(5000).collect()
}

#[actix_rt::test]
async fn authors_media_are_imported_and_served_with_their_hash() {
    let app = spawn_app().await;
    let folder = tiny_folder();
    let image = image_bytes();
    write(folder.path(), "media/posters/tiny.png", "");
    std::fs::write(folder.path().join("media/posters/tiny.png"), &image).unwrap();
    write(
        folder.path(),
        "media/diagram.svg",
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    );
    write(folder.path(), "media/page.html", "<p>no</p>");
    write(folder.path(), "cover.png", "an image in the wrong place");
    write(
        folder.path(),
        "episodes/first-steps.md",
        &(episode(1, 1, "First steps")
            .replace("access = ", "poster = \"/media/posters/tiny.png\"\naccess = ")
            + "\n![The diagram](/media/diagram.svg)\n"),
    );

    let first = import(&app.database, folder.path());
    let second = import(&app.database, folder.path());

    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stdout(&first).starts_with(
            "Read 1 series, 2 episodes, 0 articles, 2 media files; 5 changed\n  series/tiny\n  \
             episodes/first-steps\n  episodes/second-steps\n  media/diagram.svg\n  media/posters/tiny.png\n"
        ),
        "{}",
        stdout(&first)
    );
    assert_eq!(
        stderr(&first),
        "warning: cover.png: ignored, files go in series/, episodes/, articles/ or media/\n\
         warning: media/page.html: ignored, media files are png, jpg, jpeg, gif, webp, svg, avif, mp4, webm, pdf, mp3\n"
    );
    assert!(
        stdout(&second).starts_with("Read 1 series, 2 episodes, 0 articles, 2 media files; 0 changed"),
        "unchanged files are not written again: {}",
        stdout(&second)
    );

    let response = app.get("/media/posters/tiny.png").await;
    assert_eq!(response.status(), 200);
    let etag = format!(
        "\"{}\"",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &image))
    );
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.headers()["etag"], etag.as_str());
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
    assert_eq!(response.bytes().await.unwrap().as_ref(), image.as_slice());
    let revalidated = app
        .client
        .get(app.url("/media/posters/tiny.png"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    assert_eq!(revalidated.headers()["etag"], etag.as_str());
    let head = app
        .client
        .head(app.url("/media/posters/tiny.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["etag"], etag.as_str());
    assert_eq!(head.headers()["content-length"], image.len().to_string().as_str());
    let svg = app.get("/media/diagram.svg").await;
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(
        svg.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox"),
        "an SVG opened by itself runs nothing"
    );

    let page = app.get("/episodes/first-steps").await.text().await.unwrap();
    assert!(page.contains("poster=\"/media/posters/tiny.png\""), "{page}");
    assert!(
        page.contains("<img loading=\"lazy\" src=\"/media/diagram.svg\" alt=\"The diagram\""),
        "{page}"
    );

    std::fs::remove_file(folder.path().join("media/diagram.svg")).unwrap();
    let warned = import(&app.database, folder.path());
    assert!(
        stderr(&warned).contains(
            "warning: 1 media file in the database has no file here; --prune removes it:\n  media/diagram.svg\n"
        ),
        "{}",
        stderr(&warned)
    );
    assert_eq!(app.get("/media/diagram.svg").await.status(), 200);
    let pruned = content(&app.database, &["import", "--prune"], Some(folder.path()));
    assert!(
        stdout(&pruned).ends_with("1 media removed (no file here):\n  media/diagram.svg\n"),
        "{}",
        stdout(&pruned)
    );
    assert_eq!(app.get("/media/diagram.svg").await.status(), 404);
    assert_eq!(app.get("/media/posters/tiny.png").await.status(), 200);
}

#[actix_rt::test]
async fn a_media_path_that_leaves_the_table_is_404() {
    let app = spawn_app().await;
    let folder = tempfile::tempdir().unwrap();
    write(folder.path(), "media/posters/tiny.png", "an image");
    // A link back to its own folder: the import does not go round it.
    std::os::unix::fs::symlink(".", folder.path().join("media/posters/again")).unwrap();
    let output = import(&app.database, folder.path());
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "warning: media/posters/again/: ignored, links to folders are not followed in media/\n"
    );
    assert_eq!(app.get("/media/posters/tiny.png").await.status(), 200);

    // Sent as they are: an HTTP client would resolve the dots itself.
    for path in [
        "/media/posters/../posters/tiny.png",
        "/media/../../Cargo.toml",
        "/media/posters/%2e%2e/posters/tiny.png",
        "/media/..%2f..%2fCargo.toml",
        "/media/%2fetc%2fpasswd",
        "/media//etc/passwd",
        "/media/posters//tiny.png",
        "/media/posters/.tiny.png",
        "/media/posters/tiny.png%00.txt",
        "/media/",
    ] {
        let answer = raw_get(&app, path).await;
        assert!(answer.starts_with("HTTP/1.1 404 "), "{path}: {answer}");
        assert!(answer.contains("Page not found"), "{path}: {answer}");
    }
}

/// The answer to `GET path`, the path sent byte for byte.
async fn raw_get(app: &crate::helpers::TestApp, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[actix_rt::test]
async fn an_oversize_media_file_is_named_and_nothing_is_written() {
    let database = fresh_database().await;
    let folder = tiny_folder();
    write(folder.path(), "media/small.png", "an image");
    write(folder.path(), "media/talk.mp4", "");
    // Sparse: 20 MiB and one byte, written in a blink.
    std::fs::File::options()
        .write(true)
        .open(folder.path().join("media/talk.mp4"))
        .unwrap()
        .set_len(20 * 1024 * 1024 + 1)
        .unwrap();

    let output = import(&database, folder.path());

    assert_eq!(output.status.code(), Some(1));
    let said = stderr(&output);
    assert!(said.contains("1 file has 1 error; nothing was written"), "{said}");
    assert!(
        said.contains("media/talk.mp4:1: 20971521 bytes is more than a media file may have (20 MiB)"),
        "{said}"
    );
    assert_eq!(count(&database, "media").await, 0);
    assert_eq!(count(&database, "episodes").await, 0);
}

/// A content import killed half-way (SIGKILL, while its transaction is
/// open) leaves nothing half-imported: none of its rows; the next import
/// brings them all.
#[actix_rt::test]
async fn an_import_killed_half_way_leaves_nothing_half_imported() {
    const EPISODES: u32 = 3000;
    let database = fresh_database().await;
    let folder = tempfile::tempdir().unwrap();
    write(folder.path(), "series/tiny.md", SERIES);
    for n in 1..=EPISODES {
        write(
            folder.path(),
            &format!("episodes/episode-{n}.md"),
            &format!(
                "+++\ntitle = \"Episode {n}\"\nsummary = \"About {n}.\"\nnumber = {n}\nseries = \"tiny\"\n\
                 position = {n}\nduration = \"10:00\"\nvideo = \"https://v.example/{n}.mp4\"\naccess = \"free\"\n\
                 published_at = \"2026-01-01T09:00:00Z\"\ntags = [\"testing\", \"tag-{}\"]\n+++\n## Episode {n}\n\nNotes.\n",
                n % 50
            ),
        );
    }
    let work = tempfile::tempdir().unwrap();
    let mut importing = lectern_command(work.path())
        .env("DATABASE_URL", conninfo(&database))
        .args(["content", "import"])
        .arg(folder.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // Killed once its transaction has written some of the episodes.
    let (client, connection) = database.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        // The import's transaction holds this lock from its first write
        // to episodes until it commits.
        let open: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                 WHERE c.relname = 'episodes' AND l.mode = 'RowExclusiveLock' AND l.pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if open > 0 {
            break;
        }
        assert!(
            importing.try_wait().unwrap().is_none(),
            "the import finished before it could be killed: make the folder bigger"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the import never began writing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    importing.kill().unwrap();
    importing.wait().unwrap();

    // Its backend notices and rolls back: nothing of it is left.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while client
        .query_one(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             WHERE c.relname = 'episodes' AND l.pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the killed import's transaction is still open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(count(&database, "episodes").await, 0, "half an import");
    assert_eq!(count(&database, "series").await, 0, "half an import");

    let again = import(&database, folder.path());
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(count(&database, "episodes").await, i64::from(EPISODES));
}
