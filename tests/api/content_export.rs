//! Content export through `lectern content export DIR`: the files that
//! `content import` reads, so that export, import, export writes the same
//! bytes and the same rows; what `--force` replaces; and that a failed
//! export leaves nothing behind.

use std::collections::BTreeMap;
use std::path::Path;

use crate::content::{content, import, query_strings, stderr, stdout, write};
use crate::helpers::{demo_database, fresh_database};

type Files = BTreeMap<String, Vec<u8>>;

/// Every file under `dir` (hidden ones too), by its path below it.
fn files(dir: &Path) -> Files {
    fn walk(root: &Path, dir: &Path, found: &mut Files) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, found);
            } else {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                found.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut found = Files::new();
    walk(dir, dir, &mut found);
    found
}

/// The paths of `files`, to show what differs when the bytes are too many to print.
fn differing(left: &Files, right: &Files) -> Vec<String> {
    let mut paths: Vec<String> = left
        .keys()
        .chain(right.keys())
        .filter(|path| left.get(*path) != right.get(*path))
        .cloned()
        .collect();
    paths.dedup();
    paths
}

/// Every column of the content tables that an import writes, but ids and
/// update times; an episode's series and an item's tags by slug.
async fn content_rows(database: &tokio_postgres::Config) -> Vec<String> {
    let tags = |table: &str, key: &str, item: &str| {
        format!(
            "ARRAY(SELECT t.slug FROM {table} x JOIN tags t ON t.id = x.tag_id WHERE x.{key} = {item}.id ORDER BY t.slug)"
        )
    };
    let queries = [
        "SELECT s::text FROM (SELECT slug, title, summary, body_source, body_html, position FROM series) s ORDER BY 1"
            .to_owned(),
        format!(
            "SELECT r::text FROM (SELECT e.slug, e.number, e.title, e.summary, e.body_source, e.body_html, \
                e.teaser_html, e.teaser_source, e.duration_secs, e.video_url, e.poster_url, e.access, e.status, \
                e.published_at, s.slug AS series, e.series_position, {} AS tags \
             FROM episodes e LEFT JOIN series s ON s.id = e.series_id) r ORDER BY 1",
            tags("episode_tags", "episode_id", "e")
        ),
        format!(
            "SELECT r::text FROM (SELECT a.slug, a.title, a.summary, a.body_source, a.body_html, a.status, \
                a.published_at, {} AS tags FROM articles a) r ORDER BY 1",
            tags("article_tags", "article_id", "a")
        ),
        "SELECT slug FROM tags ORDER BY 1".to_owned(),
        "SELECT m::text FROM (SELECT path, content_type, sha256, md5(bytes) FROM media) m ORDER BY 1"
            .to_owned(),
    ];
    let mut rows = Vec::new();
    for sql in &queries {
        let found = query_strings(database, sql).await;
        rows.push(format!("{} rows", found.len()));
        rows.extend(found);
    }
    rows
}

/// `lectern content export [ARGS] DIR` against `database`, which must succeed.
fn export(database: &tokio_postgres::Config, dir: &Path, args: &[&str]) -> String {
    let output = content(database, &[&["export"], args].concat(), Some(dir));
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
}

/// Exports `database`, imports that into a fresh database, and exports
/// that again: the rows and the files must come out the same. The files.
pub(crate) async fn round_trip(database: &tokio_postgres::Config) -> Files {
    let work = tempfile::tempdir().unwrap();
    let first = work.path().join("first");
    let second = work.path().join("second");

    export(database, &first, &[]);
    let copy = fresh_database().await;
    let imported = import(&copy, &first);
    assert!(imported.status.success(), "{}", stderr(&imported));
    export(&copy, &second, &[]);

    assert_eq!(content_rows(&copy).await, content_rows(database).await);
    let (first, second) = (files(&first), files(&second));
    assert_eq!(differing(&first, &second), Vec::<String>::new());
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        2,
        "nothing is left beside the folders"
    );
    first
}

#[actix_rt::test]
async fn the_demo_content_exports_as_its_own_files_and_round_trips() {
    let database = demo_database().await;

    let exported = round_trip(&database).await;

    let demo = files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("actors/demo"));
    assert!(exported.len() >= 45, "{}", exported.len());
    assert_eq!(differing(&exported, &demo), Vec::<String>::new());
}

const SERIES: &str = "+++
title = \"Rust, tief: “Eigentum” ☕\"
summary = 'Ownership, the \"hard\" way: C:\\Users\\you'
position = 3
+++
Ein Überblick.

```rust
fn main() { println!(\"+++\"); }
```
";

const PREMIUM: &str = "+++
title = \"Borrowing — part 2\"
summary = \"What the checker proves.\"
number = 7
series = \"rust-tief\"
position = 1
duration = \"1:02:03\"
video = \"https://v.example/borrowing.mp4\"
poster = \"/media/posters/borrowing.png\"
access = \"premium\"
published_at = \"2026-01-02T09:00:00.123456Z\"
tags = [\"beginners\", \"rust\"]
+++
The free teaser, with `code` and *emphasis*.

## The paid part

```rust
let r = &mut v; // 日本語のコメント
```

+++

A line of pluses above, inside the body.
";

const SCHEDULED: &str = "+++
title = \"Lifetimes\"
number = 8
series = \"rust-tief\"
position = 2
duration = \"4:05\"
video = \"/media/clip.mp4\"
access = \"free\"
published_at = \"2099-12-31T23:59:59Z\"
+++
";

const DRAFT_EPISODE: &str = "+++
title = \"Not yet\"
summary = \"Written, not dated.\"
number = 9
duration = \"0:00\"
video = \"https://v.example/9.mp4\"
access = \"premium\"
draft = true
tags = [\"rust\"]
+++
Notes for later.
";

const DRAFT_ARTICLE: &str = "+++
title = \"Taken down\"
published_at = \"2025-06-01T08:00:00Z\"
draft = true
+++
Once published, now a draft again.
";

const ARTICLE: &str = "+++
title = 'Ünïcödé, quotes \" and more'
summary = \"\"\"
A summary
over two lines.\"\"\"
published_at = \"2025-05-01T08:00:00Z\"
tags = [\"rust\", \"testing\"]
+++
# Heading one

Text with a [link](https://example.com) and an image:

![Poster](/media/posters/borrowing.png)

~~~sh
cargo test
~~~
";

/// A folder in the form the exporter writes, with every key, drafts with
/// and without a date, a scheduled episode, a premium one with its teaser,
/// Unicode, quotes, code fences and media files.
fn canonical_folder() -> tempfile::TempDir {
    let folder = tempfile::tempdir().unwrap();
    for (path, text) in [
        ("series/rust-tief.md", SERIES),
        ("episodes/borrowing.md", PREMIUM),
        ("episodes/lifetimes.md", SCHEDULED),
        ("episodes/not-yet.md", DRAFT_EPISODE),
        ("articles/taken-down.md", DRAFT_ARTICLE),
        ("articles/unicode-and-quotes.md", ARTICLE),
    ] {
        write(folder.path(), path, text);
    }
    let media = folder.path().join("media/posters");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("borrowing.png"), b"\x89PNG\r\n\x1a\n not really").unwrap();
    std::fs::write(folder.path().join("media/clip.mp4"), [0u8, 1, 2, 255]).unwrap();
    folder
}

#[actix_rt::test]
async fn every_field_draft_schedule_and_media_file_round_trips() {
    let database = fresh_database().await;
    let folder = canonical_folder();
    let imported = import(&database, folder.path());
    assert!(imported.status.success(), "{}", stderr(&imported));

    let exported = round_trip(&database).await;

    let originals = files(folder.path());
    for (path, bytes) in &originals {
        assert_eq!(
            String::from_utf8_lossy(&exported[path]),
            String::from_utf8_lossy(bytes),
            "{path}"
        );
    }
    assert_eq!(differing(&exported, &originals), Vec::<String>::new());
}

#[actix_rt::test]
async fn force_replaces_the_content_folders_and_leaves_the_rest() {
    let database = demo_database().await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("content");
    write(&dir, ".git/HEAD", "ref: refs/heads/main\n");
    write(&dir, "README.md", "Our content.\n");
    write(&dir, "episodes/deleted-since.md", "+++\n+++\n");
    write(&dir, "media/old.png", "old");

    let refused = content(&database, &["export"], Some(&dir));
    let said = export(&database, &dir, &["--force"]);

    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("is not empty: export writes a new folder"),
        "{}",
        stderr(&refused)
    );
    assert!(
        said.starts_with("Wrote 5 series, 34 episodes, 13 articles and 0 media files to "),
        "{said}"
    );
    let found = files(&dir);
    assert_eq!(found[".git/HEAD"], b"ref: refs/heads/main\n");
    assert_eq!(found["README.md"], b"Our content.\n");
    assert!(!found.contains_key("episodes/deleted-since.md"));
    assert!(!dir.join("media").exists(), "the database has no media");
    assert_eq!(found.len(), 2 + 5 + 34 + 13);
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        1,
        "nothing is left beside the folder"
    );
}

#[actix_rt::test]
async fn an_item_that_cannot_be_written_fails_the_export_and_leaves_nothing() {
    let database = fresh_database().await;
    let folder = tempfile::tempdir().unwrap();
    // One line in the file, three in the title: TOML would write the
    // title over three lines, the middle one closing the front matter.
    write(
        folder.path(),
        "articles/fenced.md",
        "+++\ntitle = \"Above\\n+++\\nBelow\"\npublished_at = \"2025-05-01T08:00:00Z\"\n+++\nBody.\n",
    );
    assert!(import(&database, folder.path()).status.success());
    let work = tempfile::tempdir().unwrap();

    let output = content(&database, &["export"], Some(&work.path().join("content")));

    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output)
            .contains("articles/fenced cannot be written as a file: its title or summary has a line `+++`"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        0,
        "no folder, half or whole, and no stage"
    );
}
