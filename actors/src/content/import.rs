//! Content import: a folder of Markdown files with TOML front matter
//! (`series/*.md`, `episodes/*.md`, `articles/*.md`), upserted by slug in
//! one transaction. Every file is parsed and compiled before anything is
//! written; a bad file is reported with its path, line and what is wrong, and
//! then nothing is written. Importing the same files again changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use deadpool_postgres::Pool;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_postgres::Transaction;

use super::markdown::{compile_markdown, MarkdownOptions};
use super::{topics, Slug, MAX_SLUG_LEN, MAX_TAG_LEN};
use crate::cache::{publish_invalidation, Topic};
use crate::store::StoreError;

/// One file to import: where it came from (for messages) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// What is wrong with one file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

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
    for folder in ["series", "episodes", "articles"] {
        let folder = dir.join(folder);
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Access {
    Free,
    Premium,
}

/// A date as a TOML string ("2026-03-14T09:00:00Z") or a bare TOML datetime.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DateValue {
    Text(String),
    Toml(toml::value::Datetime),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesFront {
    title: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    position: i32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EpisodeFront {
    title: String,
    #[serde(default)]
    summary: String,
    number: i32,
    series: Option<String>,
    position: Option<i32>,
    duration: String,
    video: String,
    poster: Option<String>,
    access: Access,
    published_at: Option<DateValue>,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArticleFront {
    title: String,
    #[serde(default)]
    summary: String,
    published_at: Option<DateValue>,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Common {
    path: PathBuf,
    slug: Slug,
    title: String,
    summary: String,
    body_source: String,
    body_html: String,
    teaser_html: String,
    published_at: Option<OffsetDateTime>,
    /// Drafts are stored but never shown, whatever their date.
    draft: bool,
    tags: Vec<Slug>,
}

impl Common {
    fn status(&self) -> &'static str {
        if self.draft || self.published_at.is_none() {
            "draft"
        } else {
            "published"
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct SeriesDoc {
    common: Common,
    position: i32,
}

#[derive(Debug, Clone, PartialEq)]
struct EpisodeDoc {
    common: Common,
    number: i32,
    series: Option<(Slug, i32)>,
    series_line: usize,
    duration_secs: i32,
    video_url: String,
    poster_url: Option<String>,
    premium: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct ArticleDoc {
    common: Common,
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

/// `MM:SS` or `H:MM:SS` in seconds.
pub fn parse_duration(text: &str) -> Option<i32> {
    let parts: Vec<&str> = text.split(':').collect();
    let numbers: Option<Vec<i32>> = parts
        .iter()
        .map(|p| {
            (!p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        })
        .collect();
    match numbers?.as_slice() {
        [m, s] if *s < 60 => Some(m * 60 + s),
        [h, m, s] if *m < 60 && *s < 60 => Some(h * 3600 + m * 60 + s),
        _ => None,
    }
}

/// What an episode's `series` names when no such series exists.
fn no_such_series(series: &str) -> String {
    format!("there is no series {series:?} (in series/ or already imported)")
}

/// Splits `+++` front matter from the body: (front matter, body, body's first line).
fn split_front_matter(text: &str) -> Result<(&str, &str, usize), (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or("");
    if first.trim_end() != "+++" {
        return Err((
            1,
            "the file must start with front matter: a line `+++`, TOML, and another `+++`".into(),
        ));
    }
    let front_start = first.len();
    let mut offset = front_start;
    for (index, line) in lines.enumerate() {
        if line.trim_end() == "+++" {
            let body_start = offset + line.len();
            return Ok((&text[front_start..offset], &text[body_start..], index + 3));
        }
        offset += line.len();
    }
    Err((1, "the front matter is not closed by a line `+++`".into()))
}

/// The front matter every kind of file shares.
struct SharedFront {
    title: String,
    summary: String,
    tags: Vec<String>,
    published_at: Option<OffsetDateTime>,
    draft: bool,
}

struct Parser<'a> {
    file: &'a SourceFile,
    front: &'a str,
    errors: Vec<FileError>,
}

impl Parser<'_> {
    fn error(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(FileError {
            path: self.file.path.clone(),
            line,
            message: message.into(),
        });
    }

    /// The file line of `key = …` in the front matter, or the first line.
    fn line_of(&self, key: &str) -> usize {
        self.front
            .lines()
            .position(|l| {
                l.trim_start().starts_with(key)
                    && l[l.find(key).unwrap_or(0) + key.len()..]
                        .trim_start()
                        .starts_with('=')
            })
            .map_or(1, |i| i + 2)
    }

    fn date(&mut self, value: Option<DateValue>, draft: bool) -> Option<OffsetDateTime> {
        let text = match value {
            None if draft => return None,
            None => {
                self.error(1, "`published_at` is missing (or mark the file `draft = true`)");
                return None;
            }
            Some(DateValue::Text(text)) => text,
            Some(DateValue::Toml(date)) => date.to_string(),
        };
        match OffsetDateTime::parse(&text, &Rfc3339) {
            Ok(date) => Some(date),
            Err(_) => {
                let line = self.line_of("published_at");
                self.error(
                    line,
                    format!(
                        "`published_at` = {text:?} is not an RFC 3339 date, e.g. \"2026-03-14T09:00:00Z\""
                    ),
                );
                None
            }
        }
    }

    fn common(
        &mut self,
        meta: SharedFront,
        body: &str,
        body_line: usize,
        options: MarkdownOptions,
    ) -> Option<Common> {
        let SharedFront {
            title,
            summary,
            tags,
            published_at,
            draft,
        } = meta;
        let stem = self
            .file
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let slug = Slug::parse(stem);
        if slug.is_err() {
            self.error(1, format!("the file name {stem:?} is not a slug: use lower-case letters, digits and single hyphens, at most {MAX_SLUG_LEN} characters"));
        }
        if title.trim().is_empty() || title.chars().count() > 200 {
            let line = self.line_of("title");
            self.error(line, "`title` must have 1 to 200 characters");
        }
        if summary.chars().count() > 500 {
            let line = self.line_of("summary");
            self.error(line, "`summary` must have at most 500 characters");
        }
        let mut slugs = Vec::with_capacity(tags.len());
        for tag in &tags {
            match Slug::parse_tag(tag) {
                Ok(slug) => slugs.push(slug),
                Err(_) => {
                    let line = self.line_of("tags");
                    self.error(
                        line,
                        format!(
                            "the tag {tag:?} is not a slug (lower-case letters, digits, hyphens; at most {MAX_TAG_LEN})"
                        ),
                    );
                }
            }
        }
        let compiled = match compile_markdown(body, options) {
            Ok(compiled) => compiled,
            Err(super::markdown::MarkdownError::Invalid { line, message }) => {
                self.error(body_line + line - 1, message);
                return None;
            }
            Err(e) => {
                self.error(body_line, e.to_string());
                return None;
            }
        };
        slugs.sort();
        slugs.dedup();
        Some(Common {
            path: self.file.path.clone(),
            slug: slug.ok()?,
            title: title.trim().to_owned(),
            summary: summary.trim().to_owned(),
            body_source: body.to_owned(),
            body_html: compiled.html,
            teaser_html: compiled.teaser_html,
            published_at,
            draft,
            tags: slugs,
        })
    }

    fn url(&mut self, key: &str, value: &str) {
        let ok = value.starts_with("https://")
            || value.starts_with("http://")
            || (value.starts_with('/') && !value.starts_with("//"));
        if !ok || value.chars().any(char::is_whitespace) {
            let line = self.line_of(key);
            self.error(
                line,
                format!("`{key}` must be an http(s) URL or a path starting with /"),
            );
        }
    }
}

fn front_matter<T: serde::de::DeserializeOwned>(parser: &mut Parser<'_>) -> Option<T> {
    match toml::from_str::<T>(parser.front) {
        Ok(value) => Some(value),
        Err(e) => {
            let line = e.span().map_or(1, |span| {
                parser.front[..span.start.min(parser.front.len())]
                    .matches('\n')
                    .count()
                    + 2
            });
            parser.error(line, e.message().to_owned());
            None
        }
    }
}

/// Parses, validates and compiles every file; all problems at once.
pub fn parse_files(files: &[SourceFile], options: MarkdownOptions) -> Result<Bundle, ImportError> {
    let mut bundle = Bundle::default();
    let mut errors = Vec::new();
    for file in files {
        let kind = file
            .path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let (front, body, body_line) = match split_front_matter(&file.text) {
            Ok(parts) => parts,
            Err((line, message)) => {
                errors.push(FileError {
                    path: file.path.clone(),
                    line,
                    message,
                });
                continue;
            }
        };
        let mut parser = Parser {
            file,
            front,
            errors: Vec::new(),
        };
        match kind {
            "series" => {
                if let Some(meta) = front_matter::<SeriesFront>(&mut parser) {
                    let common = parser.common(
                        SharedFront {
                            title: meta.title,
                            summary: meta.summary,
                            tags: Vec::new(),
                            published_at: None,
                            draft: false,
                        },
                        body,
                        body_line,
                        options,
                    );
                    if let Some(common) = common.filter(|_| parser.errors.is_empty()) {
                        bundle.series.push(SeriesDoc {
                            common,
                            position: meta.position,
                        });
                    }
                }
            }
            "episodes" => {
                if let Some(meta) = front_matter::<EpisodeFront>(&mut parser) {
                    let published_at = parser.date(meta.published_at, meta.draft);
                    if meta.number <= 0 {
                        let line = parser.line_of("number");
                        parser.error(line, "`number` must be a positive integer");
                    }
                    let duration_secs = parse_duration(&meta.duration);
                    if duration_secs.is_none() {
                        let line = parser.line_of("duration");
                        parser.error(
                            line,
                            format!("`duration` = {:?} must be MM:SS or H:MM:SS", meta.duration),
                        );
                    }
                    parser.url("video", &meta.video);
                    if let Some(poster) = &meta.poster {
                        parser.url("poster", poster);
                    }
                    let series_line = parser.line_of("series");
                    let series = match (meta.series, meta.position) {
                        (Some(series), Some(position)) if position > 0 => match Slug::parse(&series) {
                            Ok(slug) => Some((slug, position)),
                            Err(_) => {
                                parser.error(series_line, no_such_series(&series));
                                None
                            }
                        },
                        (None, None) => None,
                        (Some(_), None) => {
                            parser.error(series_line, "an episode in a series needs its `position` too");
                            None
                        }
                        (None, Some(_)) => {
                            let line = parser.line_of("position");
                            parser.error(line, "`position` needs a `series`");
                            None
                        }
                        (Some(_), Some(_)) => {
                            let line = parser.line_of("position");
                            parser.error(line, "`position` must be a positive integer");
                            None
                        }
                    };
                    let common = parser.common(
                        SharedFront {
                            title: meta.title,
                            summary: meta.summary,
                            tags: meta.tags,
                            published_at,
                            draft: meta.draft,
                        },
                        body,
                        body_line,
                        options,
                    );
                    if let (Some(common), Some(duration_secs)) = (common, duration_secs) {
                        if parser.errors.is_empty() {
                            bundle.episodes.push(EpisodeDoc {
                                common,
                                number: meta.number,
                                series,
                                series_line,
                                duration_secs,
                                video_url: meta.video,
                                poster_url: meta.poster,
                                premium: meta.access == Access::Premium,
                            });
                        }
                    }
                }
            }
            "articles" => {
                if let Some(meta) = front_matter::<ArticleFront>(&mut parser) {
                    let published_at = parser.date(meta.published_at, meta.draft);
                    let common = parser.common(
                        SharedFront {
                            title: meta.title,
                            summary: meta.summary,
                            tags: meta.tags,
                            published_at,
                            draft: meta.draft,
                        },
                        body,
                        body_line,
                        options,
                    );
                    if let Some(common) = common.filter(|_| parser.errors.is_empty()) {
                        bundle.articles.push(ArticleDoc { common });
                    }
                }
            }
            other => parser.error(
                1,
                format!("files belong in series/, episodes/ or articles/, not {other:?}"),
            ),
        }
        errors.append(&mut parser.errors);
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
                updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, COALESCE($13, now())) \
             ON CONFLICT (slug) DO UPDATE SET number = EXCLUDED.number, title = EXCLUDED.title, \
               summary = EXCLUDED.summary, body_source = EXCLUDED.body_source, body_html = EXCLUDED.body_html, \
               teaser_html = EXCLUDED.teaser_html, duration_secs = EXCLUDED.duration_secs, \
               video_url = EXCLUDED.video_url, poster_url = EXCLUDED.poster_url, access = EXCLUDED.access, \
               status = EXCLUDED.status, published_at = EXCLUDED.published_at, series_id = EXCLUDED.series_id, \
               series_position = EXCLUDED.series_position, updated_at = now() \
             WHERE (episodes.number, episodes.title, episodes.summary, episodes.body_source, episodes.body_html, \
                    episodes.teaser_html, episodes.duration_secs, episodes.video_url, episodes.poster_url, \
                    episodes.access, episodes.status, episodes.published_at, episodes.series_id, episodes.series_position) \
               IS DISTINCT FROM (EXCLUDED.number, EXCLUDED.title, EXCLUDED.summary, EXCLUDED.body_source, \
                    EXCLUDED.body_html, EXCLUDED.teaser_html, EXCLUDED.duration_secs, EXCLUDED.video_url, \
                    EXCLUDED.poster_url, EXCLUDED.access, EXCLUDED.status, EXCLUDED.published_at, \
                    EXCLUDED.series_id, EXCLUDED.series_position) \
             RETURNING id",
            &[
                &c.slug, &doc.number, &c.title, &c.summary, &c.body_source, &c.body_html, &c.teaser_html,
                &doc.duration_secs, &doc.video_url, &doc.poster_url, &access, &status, &c.published_at,
                &series_id, &position,
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

    fn file(path: &str, text: &str) -> SourceFile {
        SourceFile {
            path: PathBuf::from(path),
            text: text.to_owned(),
        }
    }

    fn errors(files: &[SourceFile]) -> Vec<String> {
        match parse_files(files, MarkdownOptions::default()) {
            Err(ImportError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
            other => panic!("expected errors, got {other:?}"),
        }
    }

    const EPISODE: &str = "+++\ntitle = \"Ownership\"\nnumber = 1\nduration = \"12:30\"\nvideo = \"https://v.example/1.mp4\"\naccess = \"free\"\npublished_at = \"2026-01-02T09:00:00Z\"\ntags = [\"rust\"]\n+++\nBody *here*.\n";

    #[test]
    fn a_valid_episode_parses_and_compiles() {
        let bundle = parse_files(
            &[file("c/episodes/ownership.md", EPISODE)],
            MarkdownOptions::default(),
        )
        .expect("valid");
        let episode = &bundle.episodes[0];
        assert_eq!(episode.common.slug.as_str(), "ownership");
        assert_eq!(episode.duration_secs, 750);
        assert_eq!(episode.common.body_html, "<p>Body <em>here</em>.</p>\n");
        assert_eq!(episode.common.tags, [Slug::parse_tag("rust").unwrap()]);
    }

    #[test]
    fn errors_name_the_file_and_the_line() {
        let bad_duration = EPISODE.replace("\"12:30\"", "\"12 minutes\"");
        let unknown_key = EPISODE.replace("access = \"free\"", "acess = \"free\"");
        let bad_date = EPISODE.replace("2026-01-02T09:00:00Z", "yesterday");
        let found = errors(&[
            file("c/episodes/a.md", &bad_duration),
            file("c/episodes/b.md", &unknown_key),
            file("c/episodes/c.md", &bad_date),
            file("c/episodes/d.md", "no front matter"),
            file(
                "c/episodes/Bad_Name.md",
                &EPISODE.replace("number = 1", "number = 9"),
            ),
        ]);
        assert_eq!(
            found[0],
            "c/episodes/a.md:4: `duration` = \"12 minutes\" must be MM:SS or H:MM:SS"
        );
        assert!(
            found[1].starts_with("c/episodes/b.md:6: unknown field `acess`"),
            "{}",
            found[1]
        );
        assert!(
            found[2].starts_with("c/episodes/c.md:7: `published_at` = \"yesterday\""),
            "{}",
            found[2]
        );
        assert!(
            found[3].starts_with("c/episodes/d.md:1: the file must start with front matter"),
            "{}",
            found[3]
        );
        assert!(
            found[4].starts_with("c/episodes/Bad_Name.md:1: the file name \"Bad_Name\" is not a slug"),
            "{}",
            found[4]
        );
    }

    #[test]
    fn duplicate_numbers_and_positions_are_reported() {
        let found = errors(&[file("c/episodes/a.md", EPISODE), file("c/episodes/b.md", EPISODE)]);
        assert_eq!(
            found,
            ["c/episodes/b.md:1: episode number 1 is also used by c/episodes/a.md"]
        );
    }

    #[test]
    fn durations_parse_strictly() {
        assert_eq!(parse_duration("04:05"), Some(245));
        assert_eq!(parse_duration("1:02:03"), Some(3723));
        for bad in ["", "5", "1:60", "a:10", "-1:10", "1:2:3:4", "1::2"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
