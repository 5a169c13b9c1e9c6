//! Content import: a folder of Markdown files with TOML front matter
//! (`series/*.md`, `episodes/*.md`, `articles/*.md`), upserted by slug in
//! one transaction. Every file is read (by `front_matter`) before anything
//! is written; a bad file is reported with its path, line and what is wrong,
//! and then nothing is written. Importing the same files again changes
//! nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use deadpool_postgres::Pool;
use tokio_postgres::Transaction;

use super::front_matter::{
    no_such_series, parse_file, ArticleDoc, Common, Document, EpisodeDoc, FileError, FileKind, SeriesDoc,
    SourceFile,
};
use super::markdown::MarkdownOptions;
use super::{topics, Slug};
use crate::cache::{publish_invalidation, Topic};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{} file(s) cannot be imported; nothing was written:\n{}", .0.len(), join_lines(.0))]
    Invalid(Vec<FileError>),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}; nothing was written")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for ImportError {
    fn from(e: tokio_postgres::Error) -> Self {
        ImportError::Store(StoreError::Query(e))
    }
}

fn join_lines(errors: &[FileError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub series: usize,
    pub episodes: usize,
    pub articles: usize,
    /// Slugs of the items inserted or changed, e.g. `episodes/ownership`.
    pub changed: Vec<String>,
    /// The cache topics invalidated.
    pub topics: BTreeSet<Topic>,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Read {} series, {} episodes, {} articles; {} changed",
            self.series,
            self.episodes,
            self.articles,
            self.changed.len()
        )?;
        for item in &self.changed {
            write!(f, "\n  {item}")?;
        }
        Ok(())
    }
}

/// Reads every `.md` file under `series/`, `episodes/` and `articles/` of `dir`.
pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, ImportError> {
    let read_error = |path: &Path| {
        let path = path.to_owned();
        move |source| ImportError::Read { path, source }
    };
    if !dir.is_dir() {
        return Err(ImportError::Read {
            path: dir.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let mut files = Vec::new();
    for kind in FileKind::ALL {
        let folder = dir.join(kind.folder());
        if !folder.is_dir() {
            continue;
        }
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&folder)
            .map_err(read_error(&folder))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "md"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(read_error(&path))?;
            files.push(SourceFile { path, text });
        }
    }
    Ok(files)
}

/// Every file parsed, validated and compiled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bundle {
    series: Vec<SeriesDoc>,
    episodes: Vec<EpisodeDoc>,
    articles: Vec<ArticleDoc>,
}

/// How much a bundle holds (for reports and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleCounts {
    pub series: usize,
    pub published_episodes: usize,
    pub premium_episodes: usize,
    pub published_articles: usize,
}

impl Bundle {
    pub fn counts(&self) -> BundleCounts {
        let published = |c: &Common| c.status() == "published";
        BundleCounts {
            series: self.series.len(),
            published_episodes: self.episodes.iter().filter(|e| published(&e.common)).count(),
            premium_episodes: self
                .episodes
                .iter()
                .filter(|e| published(&e.common) && e.premium)
                .count(),
            published_articles: self.articles.iter().filter(|a| published(&a.common)).count(),
        }
    }
}

/// Parses, validates and compiles every file; all problems at once.
pub fn parse_files(files: &[SourceFile], options: MarkdownOptions) -> Result<Bundle, ImportError> {
    let mut bundle = Bundle::default();
    let mut errors = Vec::new();
    for file in files {
        match parse_file(file, options) {
            Ok(Document::Series(series)) => bundle.series.push(series),
            Ok(Document::Episode(episode)) => bundle.episodes.push(episode),
            Ok(Document::Article(article)) => bundle.articles.push(article),
            Err(mut problems) => errors.append(&mut problems),
        }
    }
    check_across_files(&bundle, &mut errors);
    if errors.is_empty() {
        Ok(bundle)
    } else {
        Err(ImportError::Invalid(errors))
    }
}

/// Episode numbers are unique, and so are positions within a series.
fn check_across_files(bundle: &Bundle, errors: &mut Vec<FileError>) {
    let mut numbers: BTreeMap<i32, &EpisodeDoc> = BTreeMap::new();
    let mut positions: BTreeMap<(&str, i32), &EpisodeDoc> = BTreeMap::new();
    for episode in &bundle.episodes {
        if let Some(other) = numbers.insert(episode.number, episode) {
            errors.push(FileError {
                path: episode.common.path.clone(),
                line: 1,
                message: format!(
                    "episode number {} is also used by {}",
                    episode.number,
                    other.common.path.display()
                ),
            });
        }
        if let Some((series, position)) = &episode.series {
            if let Some(other) = positions.insert((series.as_str(), *position), episode) {
                errors.push(FileError {
                    path: episode.common.path.clone(),
                    line: episode.series_line,
                    message: format!(
                        "position {position} in series {:?} is also used by {}",
                        series.as_str(),
                        other.common.path.display()
                    ),
                });
            }
        }
    }
}

/// Reads, parses and writes a folder of content in one transaction.
pub async fn import_dir(
    pool: &Pool,
    dir: &Path,
    options: MarkdownOptions,
) -> Result<ImportReport, ImportError> {
    let files = read_dir(dir)?;
    let bundle = parse_files(&files, options)?;
    import_bundle(pool, &bundle).await
}

/// Writes a parsed bundle in one transaction and announces what changed to
/// every node's page cache when it commits.
pub async fn import_bundle(pool: &Pool, bundle: &Bundle) -> Result<ImportReport, ImportError> {
    let mut client = pool.get().await.map_err(StoreError::from)?;
    let txn = client.transaction().await?;
    let mut report = ImportReport {
        series: bundle.series.len(),
        episodes: bundle.episodes.len(),
        articles: bundle.articles.len(),
        ..ImportReport::default()
    };
    for series in &bundle.series {
        upsert_series(&txn, series, &mut report).await?;
    }
    for episode in &bundle.episodes {
        upsert_episode(&txn, episode, &mut report).await?;
    }
    for article in &bundle.articles {
        upsert_article(&txn, article, &mut report).await?;
    }
    check_uniqueness(&txn).await?;
    if !report.topics.is_empty() {
        publish_invalidation(&txn, &report.topics).await?;
    }
    txn.commit().await?;
    Ok(report)
}

/// Any change shows on the home page, in the feed and the sitemap, and in
/// the `listings` of its kind.
fn listing_topics(report: &mut ImportReport, listings: &[Topic]) {
    let every_change = [topics::HOME, topics::FEED, topics::SITEMAP];
    report
        .topics
        .extend(every_change.into_iter().chain(listings.iter().cloned()));
}

async fn upsert_series(
    txn: &Transaction<'_>,
    doc: &SeriesDoc,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let c = &doc.common;
    let changed = txn
        .query_opt(
            "INSERT INTO series (slug, title, summary, body_source, body_html, position) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (slug) DO UPDATE SET title = EXCLUDED.title, summary = EXCLUDED.summary, \
               body_source = EXCLUDED.body_source, body_html = EXCLUDED.body_html, \
               position = EXCLUDED.position, updated_at = now() \
             WHERE (series.title, series.summary, series.body_source, series.body_html, series.position) \
               IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.summary, EXCLUDED.body_source, EXCLUDED.body_html, EXCLUDED.position) \
             RETURNING id",
            &[&c.slug, &c.title, &c.summary, &c.body_source, &c.body_html, &doc.position],
        )
        .await?
        .is_some();
    if changed {
        report.changed.push(format!("series/{}", c.slug));
        report.topics.insert(topics::series(&c.slug));
        listing_topics(report, &[topics::SERIES_INDEX]);
    }
    Ok(())
}

async fn tag_ids(txn: &Transaction<'_>, tags: &[Slug]) -> Result<Vec<i64>, ImportError> {
    if tags.is_empty() {
        return Ok(Vec::new());
    }
    txn.execute(
        "INSERT INTO tags (slug) SELECT unnest($1::text[]) ON CONFLICT (slug) DO NOTHING",
        &[&tags],
    )
    .await?;
    let rows = txn
        .query("SELECT id FROM tags WHERE slug = ANY($1) ORDER BY slug", &[&tags])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Which link table holds an item's tags.
#[derive(Clone, Copy)]
enum Tagging {
    Episode,
    Article,
}

/// Makes `tags` the item's tags, creating tags that do not exist yet.
async fn replace_tags(
    txn: &Transaction<'_>,
    kind: Tagging,
    id: i64,
    tags: &[Slug],
) -> Result<(), ImportError> {
    let (delete, insert) = match kind {
        Tagging::Episode => (
            "DELETE FROM episode_tags WHERE episode_id = $1",
            "INSERT INTO episode_tags (episode_id, tag_id) SELECT $1, unnest($2::int8[])",
        ),
        Tagging::Article => (
            "DELETE FROM article_tags WHERE article_id = $1",
            "INSERT INTO article_tags (article_id, tag_id) SELECT $1, unnest($2::int8[])",
        ),
    };
    let ids = tag_ids(txn, tags).await?;
    txn.execute(delete, &[&id]).await?;
    txn.execute(insert, &[&id, &ids]).await?;
    Ok(())
}

async fn upsert_episode(
    txn: &Transaction<'_>,
    doc: &EpisodeDoc,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let c = &doc.common;
    let (series_id, position) = match &doc.series {
        None => (None, None),
        Some((slug, position)) => {
            let row = txn
                .query_opt("SELECT id FROM series WHERE slug = $1", &[slug])
                .await?;
            let Some(row) = row else {
                return Err(ImportError::Invalid(vec![FileError {
                    path: c.path.clone(),
                    line: doc.series_line,
                    message: no_such_series(slug.as_str()),
                }]));
            };
            (Some(row.get::<_, i64>(0)), Some(*position))
        }
    };
    // What the episode was before, to invalidate the pages it used to be on.
    let before = txn
        .query_opt(
            "SELECT s.slug, ARRAY(SELECT t.slug FROM episode_tags et JOIN tags t ON t.id = et.tag_id \
                                  WHERE et.episode_id = e.id ORDER BY t.slug) \
             FROM episodes e LEFT JOIN series s ON s.id = e.series_id WHERE e.slug = $1",
            &[&c.slug],
        )
        .await?;
    let status = c.status();
    let access = if doc.premium { "premium" } else { "free" };
    let upserted = txn
        .query_opt(
            "INSERT INTO episodes (slug, number, title, summary, body_source, body_html, teaser_html, \
                duration_secs, video_url, poster_url, access, status, published_at, series_id, series_position, \
                teaser_source, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, COALESCE($13, now())) \
             ON CONFLICT (slug) DO UPDATE SET number = EXCLUDED.number, title = EXCLUDED.title, \
               summary = EXCLUDED.summary, body_source = EXCLUDED.body_source, body_html = EXCLUDED.body_html, \
               teaser_html = EXCLUDED.teaser_html, duration_secs = EXCLUDED.duration_secs, \
               video_url = EXCLUDED.video_url, poster_url = EXCLUDED.poster_url, access = EXCLUDED.access, \
               status = EXCLUDED.status, published_at = EXCLUDED.published_at, series_id = EXCLUDED.series_id, \
               series_position = EXCLUDED.series_position, teaser_source = EXCLUDED.teaser_source, \
               updated_at = now() \
             WHERE (episodes.number, episodes.title, episodes.summary, episodes.body_source, episodes.body_html, \
                    episodes.teaser_html, episodes.duration_secs, episodes.video_url, episodes.poster_url, \
                    episodes.access, episodes.status, episodes.published_at, episodes.series_id, episodes.series_position, \
                    episodes.teaser_source) \
               IS DISTINCT FROM (EXCLUDED.number, EXCLUDED.title, EXCLUDED.summary, EXCLUDED.body_source, \
                    EXCLUDED.body_html, EXCLUDED.teaser_html, EXCLUDED.duration_secs, EXCLUDED.video_url, \
                    EXCLUDED.poster_url, EXCLUDED.access, EXCLUDED.status, EXCLUDED.published_at, \
                    EXCLUDED.series_id, EXCLUDED.series_position, EXCLUDED.teaser_source) \
             RETURNING id",
            &[
                &c.slug, &doc.number, &c.title, &c.summary, &c.body_source, &c.body_html, &c.teaser_html,
                &doc.duration_secs, &doc.video_url, &doc.poster_url, &access, &status, &c.published_at,
                &series_id, &position, &doc.teaser_source,
            ],
        )
        .await?;
    let episode_id: i64 = match &upserted {
        Some(row) => row.get(0),
        None => txn
            .query_one("SELECT id FROM episodes WHERE slug = $1", &[&c.slug])
            .await?
            .get(0),
    };
    let old_tags: Vec<Slug> = match &before {
        Some(row) => row.try_get(1)?,
        None => Vec::new(),
    };
    let tags_changed = old_tags != c.tags;
    if tags_changed {
        replace_tags(txn, Tagging::Episode, episode_id, &c.tags).await?;
    }
    if upserted.is_some() || tags_changed {
        report.changed.push(format!("episodes/{}", c.slug));
        report.topics.insert(topics::episode(&c.slug));
        let old_series: Option<Slug> = match &before {
            Some(row) => row.try_get(0)?,
            None => None,
        };
        for series in old_series.iter().chain(doc.series.as_ref().map(|(s, _)| s)) {
            report.topics.insert(topics::series(series));
        }
        for tag in old_tags.iter().chain(&c.tags) {
            report.topics.insert(topics::tag(tag));
        }
        listing_topics(report, &[topics::EPISODES, topics::SERIES_INDEX]);
    }
    Ok(())
}

async fn upsert_article(
    txn: &Transaction<'_>,
    doc: &ArticleDoc,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let c = &doc.common;
    let old_tags: Vec<Slug> = match txn
        .query_opt(
            "SELECT ARRAY(SELECT t.slug FROM article_tags at JOIN tags t ON t.id = at.tag_id \
                          WHERE at.article_id = a.id ORDER BY t.slug) FROM articles a WHERE a.slug = $1",
            &[&c.slug],
        )
        .await?
    {
        Some(row) => row.try_get(0)?,
        None => Vec::new(),
    };
    let status = c.status();
    let upserted = txn
        .query_opt(
            "INSERT INTO articles (slug, title, summary, body_source, body_html, status, published_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($7, now())) \
             ON CONFLICT (slug) DO UPDATE SET title = EXCLUDED.title, summary = EXCLUDED.summary, \
               body_source = EXCLUDED.body_source, body_html = EXCLUDED.body_html, status = EXCLUDED.status, \
               published_at = EXCLUDED.published_at, updated_at = now() \
             WHERE (articles.title, articles.summary, articles.body_source, articles.body_html, articles.status, \
                    articles.published_at) \
               IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.summary, EXCLUDED.body_source, EXCLUDED.body_html, \
                    EXCLUDED.status, EXCLUDED.published_at) \
             RETURNING id",
            &[&c.slug, &c.title, &c.summary, &c.body_source, &c.body_html, &status, &c.published_at],
        )
        .await?;
    let article_id: i64 = match &upserted {
        Some(row) => row.get(0),
        None => txn
            .query_one("SELECT id FROM articles WHERE slug = $1", &[&c.slug])
            .await?
            .get(0),
    };
    let tags_changed = old_tags != c.tags;
    if tags_changed {
        replace_tags(txn, Tagging::Article, article_id, &c.tags).await?;
    }
    if upserted.is_some() || tags_changed {
        report.changed.push(format!("articles/{}", c.slug));
        report.topics.insert(topics::article(&c.slug));
        for tag in old_tags.iter().chain(&c.tags) {
            report.topics.insert(topics::tag(tag));
        }
        listing_topics(report, &[topics::ARTICLES]);
    }
    Ok(())
}

/// The deferred unique constraints would fail at commit with a terse
/// message; say which episodes collide instead.
async fn check_uniqueness(txn: &Transaction<'_>) -> Result<(), ImportError> {
    let numbers = txn
        .query(
            "SELECT number, string_agg(slug, ', ' ORDER BY slug) FROM episodes \
             GROUP BY number HAVING count(*) > 1 ORDER BY number LIMIT 5",
            &[],
        )
        .await?;
    if let Some(row) = numbers.first() {
        return Err(ImportError::Conflict(format!(
            "episode number {} would be used by more than one episode: {}",
            row.get::<_, i32>(0),
            row.get::<_, String>(1)
        )));
    }
    let positions = txn
        .query(
            "SELECT s.slug, e.series_position, string_agg(e.slug, ', ' ORDER BY e.slug) \
             FROM episodes e JOIN series s ON s.id = e.series_id \
             GROUP BY s.slug, e.series_position HAVING count(*) > 1 LIMIT 5",
            &[],
        )
        .await?;
    if let Some(row) = positions.first() {
        return Err(ImportError::Conflict(format!(
            "position {} in series {:?} would be used by more than one episode: {}",
            row.get::<_, i32>(1),
            row.get::<_, String>(0),
            row.get::<_, String>(2)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn episode(path: &str, number: u32) -> SourceFile {
        SourceFile {
            path: PathBuf::from(path),
            text: format!(
                "+++\ntitle = \"Ownership\"\nnumber = {number}\nduration = \"12:30\"\n\
                 video = \"https://v.example/1.mp4\"\naccess = \"free\"\n\
                 published_at = \"2026-01-02T09:00:00Z\"\n+++\nBody.\n"
            ),
        }
    }

    #[test]
    fn duplicate_numbers_and_positions_are_reported() {
        let found = match parse_files(
            &[episode("c/episodes/a.md", 1), episode("c/episodes/b.md", 1)],
            MarkdownOptions::default(),
        ) {
            Err(ImportError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            other => panic!("expected errors, got {other:?}"),
        };
        assert_eq!(
            found,
            ["c/episodes/b.md:1: episode number 1 is also used by c/episodes/a.md"]
        );
    }

    #[test]
    fn every_file_is_read_and_the_folder_decides_its_kind() {
        let bundle = parse_files(
            &[episode("c/episodes/a.md", 1), episode("c/episodes/b.md", 2)],
            MarkdownOptions::default(),
        )
        .expect("valid");
        assert_eq!(bundle.counts().published_episodes, 2);
        assert!(matches!(
            parse_files(&[episode("c/drafts/a.md", 1)], MarkdownOptions::default()),
            Err(ImportError::Invalid(errors)) if errors[0].message.contains("not \"drafts\"")
        ));
    }
}
