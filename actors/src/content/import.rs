//! Content import: a folder of Markdown files with TOML front matter
//! (`series/*.md`, `episodes/*.md`, `articles/*.md`), upserted by slug in
//! one transaction. Every file is read (by `front_matter`) before anything
//! is written; a bad file is reported with its path, line and what is wrong,
//! and then nothing is written. What the importer passes over in the folder
//! is named as a warning, and a folder with nothing to import is an error.
//! Importing the same files again changes nothing. Files under `media/` are
//! stored as they are (see `media`). A dry run rolls the transaction back;
//! pruning unpublishes what has no file any more.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use deadpool_postgres::Pool;
use tokio_postgres::{GenericClient, Transaction};

use super::front_matter::{
    no_such_series, parse_file, ArticleDoc, Common, Document, EpisodeDoc, FileError, FileKind, SeriesDoc,
    SourceFile,
};
use super::markdown::MarkdownOptions;
use super::media::{self, MediaSource};
use super::{topics, Slug};
use crate::cache::{publish_invalidation, Topic};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}; nothing was written:\n{}", error_count(.0), join_lines(.0))]
    Invalid(Vec<FileError>),
    #[error(
        "nothing to import in {}: content files go in series/, episodes/ and articles/ inside it \
         (e.g. episodes/first-steps.md), media files in media/{}",
        .dir.display(),
        if *.looks_like_kind_folder { "; did you mean the parent folder?" } else { "" }
    )]
    Empty {
        dir: PathBuf,
        /// The folder is named like a kind's folder, or holds `.md` files itself.
        looks_like_kind_folder: bool,
    },
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

/// "2 files have 3 errors", counting files and errors apart.
fn error_count(errors: &[FileError]) -> String {
    let files = errors.iter().map(|e| &e.path).collect::<BTreeSet<_>>().len();
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{} {} {}",
        plural(files, "file", "files"),
        if files == 1 { "has" } else { "have" },
        plural(errors.len(), "error", "errors")
    )
}

fn join_lines(errors: &[FileError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// What an import changed, or in a dry run would change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub series: usize,
    pub episodes: usize,
    pub articles: usize,
    pub media: usize,
    /// A dry run: the changes were rolled back.
    pub dry_run: bool,
    /// Slugs of the items inserted or changed, e.g. `episodes/ownership`.
    pub changed: Vec<String>,
    /// Published items with no file in the folder, unpublished by `--prune`.
    pub unpublished: Vec<String>,
    /// Published items with no file in the folder, left alone (no `--prune`).
    pub without_file: Vec<String>,
    /// Media with no file in the folder, deleted by `--prune`.
    pub removed_media: Vec<String>,
    /// Media with no file in the folder, left alone (no `--prune`).
    pub media_without_file: Vec<String>,
    /// The cache topics invalidated.
    pub topics: BTreeSet<Topic>,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (read, change, unpublish) = if self.dry_run {
            ("Dry run: read", "would change", "would be unpublished")
        } else {
            ("Read", "changed", "unpublished")
        };
        write!(
            f,
            "{read} {} series, {} episodes, {} articles",
            self.series, self.episodes, self.articles
        )?;
        if self.media > 0 {
            write!(f, ", {} media files", self.media)?;
        }
        write!(f, "; {} {change}", self.changed.len())?;
        for item in &self.changed {
            write!(f, "\n  {item}")?;
        }
        if !self.unpublished.is_empty() {
            write!(
                f,
                "\n{} {unpublish} (no file here; set to draft, not deleted):",
                self.unpublished.len()
            )?;
            for item in &self.unpublished {
                write!(f, "\n  {item}")?;
            }
        }
        if !self.removed_media.is_empty() {
            let removed = if self.dry_run {
                "would be removed"
            } else {
                "removed"
            };
            write!(
                f,
                "\n{} media {removed} (no file here):",
                self.removed_media.len()
            )?;
            for item in &self.removed_media {
                write!(f, "\n  {item}")?;
            }
        }
        if self.dry_run {
            write!(f, "\nDry run: nothing was written.")?;
        }
        Ok(())
    }
}

impl ImportReport {
    /// What the operator should know but did not ask about: published items
    /// that the folder no longer has.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut warn = |items: &[String], what: &str, does: &str| {
            let n = items.len();
            if n == 0 {
                return;
            }
            let mut warning = if n == 1 {
                format!("1 {what} in the database has no file here; --prune {does} it:")
            } else {
                format!("{n} {what}s in the database have no file here; --prune {does} them:")
            };
            for item in items {
                warning.push_str("\n  ");
                warning.push_str(item);
            }
            warnings.push(warning);
        };
        warn(&self.without_file, "published item", "unpublishes");
        warn(&self.media_without_file, "media file", "removes");
        warnings
    }
}

/// How to import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Check and report, then roll back: nothing is written.
    pub dry_run: bool,
    /// Unpublish (set to draft) the episodes and articles with no file.
    pub prune: bool,
}

/// What a content folder holds for the importer: the content and media
/// files, what it passed over, each with why, and the media files it
/// refuses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    pub files: Vec<SourceFile>,
    pub media: Vec<MediaSource>,
    pub warnings: Vec<String>,
    pub errors: Vec<FileError>,
}

impl Scan {
    /// Every file parsed, validated and compiled, with the media, and the
    /// series episodes name looked for in the database too; all problems at
    /// once, or an error when there is nothing to import.
    pub async fn check(
        self,
        pool: &Pool,
        dir: &Path,
        options: MarkdownOptions,
    ) -> Result<Bundle, ImportError> {
        if self.files.is_empty() && self.media.is_empty() {
            return Err(nothing_to_import(dir));
        }
        let (mut bundle, mut errors) = parse_all(&self.files, options);
        // A series file with errors still names its series.
        let series: BTreeSet<&str> = self
            .files
            .iter()
            .filter(|file| {
                file.path.parent().and_then(Path::file_name) == Some(FileKind::Series.folder().as_ref())
            })
            .filter_map(|file| file.path.file_stem()?.to_str())
            .collect();
        let client = pool.get().await.map_err(StoreError::from)?;
        errors.extend(missing_series(&**client, &bundle.episodes, &series).await?);
        errors.extend(self.errors);
        bundle.media = self.media;
        if errors.is_empty() {
            Ok(bundle)
        } else {
            Err(ImportError::Invalid(errors))
        }
    }
}

/// The error for a folder with nothing to import, with a hint when it looks
/// like one kind's folder rather than the content folder.
fn nothing_to_import(dir: &Path) -> ImportError {
    let named_like_kind = dir
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| FileKind::ALL.iter().any(|kind| kind.folder() == name));
    let holds_markdown = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|entry| markdown_name(&entry.file_name().to_string_lossy()).is_some())
    });
    ImportError::Empty {
        dir: dir.to_owned(),
        looks_like_kind_folder: named_like_kind || holds_markdown,
    }
}

/// How a file name reads as Markdown: `Some(true)` for `.md`, `Some(false)`
/// for another spelling (`.MD`, `.markdown`), `None` for anything else.
fn markdown_name(name: &str) -> Option<bool> {
    let (_, extension) = name.rsplit_once('.')?;
    if extension == "md" {
        Some(true)
    } else {
        ["md", "markdown", "mdown", "mkd"]
            .iter()
            .any(|e| extension.eq_ignore_ascii_case(e))
            .then_some(false)
    }
}

/// Reads every `.md` file in `series/`, `episodes/` and `articles/` of
/// `dir`, and names everything else it finds there, hidden files aside, as
/// a warning that says why it was passed over.
pub fn scan_dir(dir: &Path) -> Result<Scan, ImportError> {
    if !dir.is_dir() {
        return Err(ImportError::Read {
            path: dir.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let kinds = FileKind::ALL
        .iter()
        .map(|kind| format!("{}/", kind.folder()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut scan = Scan::default();
    for (name, path) in visible_entries(dir)? {
        if !path.is_dir() {
            scan.warnings.push(if markdown_name(&name).is_some() {
                format!("{name}: ignored, content files go in {kinds} (e.g. episodes/{name})")
            } else {
                format!("{name}: ignored, files go in {kinds} or {MEDIA}/")
            });
        } else if FileKind::ALL.iter().any(|kind| kind.folder() == name) {
            scan_kind_folder(&name, &path, &mut scan)?;
        } else if name == MEDIA {
            scan_media(dir, &path, &mut scan)?;
        } else {
            scan.warnings.push(format!(
                "{name}/: not a content folder (expected {kinds}, {MEDIA}/)"
            ));
        }
    }
    Ok(scan)
}

/// The `.md` files of one kind's folder, and warnings for the rest.
fn scan_kind_folder(name: &str, folder: &Path, scan: &mut Scan) -> Result<(), ImportError> {
    for (file, path) in visible_entries(folder)? {
        let shown = format!("{name}/{file}");
        if path.is_dir() {
            scan.warnings
                .push(format!("{shown}/: ignored, folders inside {name}/ are not read"));
            continue;
        }
        match markdown_name(&file) {
            Some(true) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ImportError::Read {
                    path: path.clone(),
                    source,
                })?;
                scan.files.push(SourceFile { path, text });
            }
            Some(false) => {
                let stem = file.rsplit_once('.').map_or(file.as_str(), |(stem, _)| stem);
                scan.warnings.push(format!(
                    "{shown}: ignored, content files end in .md (rename it {stem}.md)"
                ));
            }
            None => scan
                .warnings
                .push(format!("{shown}: ignored, content files end in .md")),
        }
    }
    Ok(())
}

/// The folder of a content folder that holds media files.
pub(crate) const MEDIA: &str = "media";

/// Every media file under `folder` (the content folder's `media/`, at any
/// depth): warnings for the paths and types that are not served, errors for
/// files too large.
fn scan_media(dir: &Path, folder: &Path, scan: &mut Scan) -> Result<(), ImportError> {
    for (_, path) in visible_entries(folder)? {
        let shown = path.strip_prefix(dir).unwrap_or(&path).display().to_string();
        if path.is_symlink() && path.is_dir() {
            // A link to a folder may lead back to its own.
            scan.warnings.push(format!(
                "{shown}/: ignored, links to folders are not followed in media/"
            ));
            continue;
        }
        if path.is_dir() {
            scan_media(dir, &path, scan)?;
            continue;
        }
        let below = shown.strip_prefix("media/").unwrap_or(&shown).to_owned();
        if !media::valid_path(&below) {
            scan.warnings.push(format!(
                "{shown}: ignored, media paths use only letters, digits, '.', '_' and '-' \
                 (at most {} characters)",
                media::MAX_PATH_LEN
            ));
            continue;
        }
        let Some(content_type) = media::content_type(&below) else {
            scan.warnings
                .push(format!("{shown}: ignored, media files are {}", media::EXTENSIONS));
            continue;
        };
        let size = std::fs::metadata(&path)
            .map_err(|source| ImportError::Read {
                path: path.clone(),
                source,
            })?
            .len();
        if size > media::MAX_BYTES {
            scan.errors.push(FileError {
                path: path.clone(),
                line: 1,
                message: format!(
                    "{size} bytes is more than a media file may have ({} MiB)",
                    media::MAX_BYTES / 1024 / 1024
                ),
            });
            continue;
        }
        scan.media.push(MediaSource {
            path: below,
            file: path,
            content_type,
        });
    }
    Ok(())
}

/// A folder's entries but the hidden ones (`.git`, `.DS_Store`), by name.
fn visible_entries(folder: &Path) -> Result<Vec<(String, PathBuf)>, ImportError> {
    let read_error = |source| ImportError::Read {
        path: folder.to_owned(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            entries.push((name, entry.path()));
        }
    }
    entries.sort();
    Ok(entries)
}

/// Every file parsed, validated and compiled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bundle {
    series: Vec<SeriesDoc>,
    episodes: Vec<EpisodeDoc>,
    articles: Vec<ArticleDoc>,
    media: Vec<MediaSource>,
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
    pub(crate) fn series(&self) -> &[SeriesDoc] {
        &self.series
    }

    pub(crate) fn episodes(&self) -> &[EpisodeDoc] {
        &self.episodes
    }

    pub(crate) fn articles(&self) -> &[ArticleDoc] {
        &self.articles
    }

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
    let (bundle, errors) = parse_all(files, options);
    if errors.is_empty() {
        Ok(bundle)
    } else {
        Err(ImportError::Invalid(errors))
    }
}

/// What the files make, and every problem they have.
fn parse_all(files: &[SourceFile], options: MarkdownOptions) -> (Bundle, Vec<FileError>) {
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
    (bundle, errors)
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

/// Reads, parses and writes a folder of content in one transaction (its
/// warnings unsaid: the command line scans, parses and applies itself).
pub async fn import_dir(
    pool: &Pool,
    dir: &Path,
    options: MarkdownOptions,
) -> Result<ImportReport, ImportError> {
    let bundle = scan_dir(dir)?.check(pool, dir, options).await?;
    import_bundle(pool, &bundle).await
}

/// Writes a parsed bundle in one transaction and announces what changed to
/// every node's page cache when it commits.
pub async fn import_bundle(pool: &Pool, bundle: &Bundle) -> Result<ImportReport, ImportError> {
    apply(pool, bundle, ImportOptions::default()).await
}

/// Writes a parsed bundle in one transaction, unpublishes what has no file
/// when pruning, and announces what changed to every node's page cache when
/// it commits; a dry run rolls it all back instead.
pub async fn apply(
    pool: &Pool,
    bundle: &Bundle,
    options: ImportOptions,
) -> Result<ImportReport, ImportError> {
    let mut client = pool.get().await.map_err(StoreError::from)?;
    let txn = client.transaction().await?;
    let report = write(&txn, bundle, options).await?;
    if options.dry_run {
        txn.rollback().await?;
        return Ok(report);
    }
    if !report.topics.is_empty() {
        publish_invalidation(&txn, &report.topics).await?;
    }
    txn.commit().await?;
    Ok(report)
}

/// Writes a parsed folder in `txn` and unpublishes what has no file when
/// pruning; what changed, with the topics to invalidate once `txn` commits.
async fn write(
    txn: &Transaction<'_>,
    bundle: &Bundle,
    options: ImportOptions,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport {
        media: bundle.media.len(),
        dry_run: options.dry_run,
        ..write_items(txn, bundle).await?
    };
    upsert_media(txn, &bundle.media, &mut report).await?;
    without_file(txn, bundle, options.prune, &mut report).await?;
    media_without_file(txn, &bundle.media, options.prune, &mut report).await?;
    Ok(report)
}

/// Writes the series, episodes and articles of `bundle` in `txn` (a
/// folder's, or the one item the admin's editor saves); what changed, with
/// the topics to invalidate once `txn` commits.
pub(crate) async fn write_items(txn: &Transaction<'_>, bundle: &Bundle) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport {
        series: bundle.series.len(),
        episodes: bundle.episodes.len(),
        articles: bundle.articles.len(),
        ..ImportReport::default()
    };
    let series: BTreeSet<&str> = bundle.series.iter().map(|s| s.common.slug.as_str()).collect();
    let missing = missing_series(txn, &bundle.episodes, &series).await?;
    if !missing.is_empty() {
        return Err(ImportError::Invalid(missing));
    }
    for series in &bundle.series {
        upsert_series(txn, series, &mut report).await?;
    }
    for episode in &bundle.episodes {
        upsert_episode(txn, episode, &mut report).await?;
    }
    for article in &bundle.articles {
        upsert_article(txn, article, &mut report).await?;
    }
    check_uniqueness(txn).await?;
    Ok(report)
}

/// Writes the media files whose bytes or type differ from the stored ones,
/// reading one file at a time.
async fn upsert_media(
    txn: &Transaction<'_>,
    files: &[MediaSource],
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    if files.is_empty() {
        return Ok(());
    }
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let stored: BTreeMap<String, (String, String)> = txn
        .query(
            "SELECT path, content_type, sha256 FROM media WHERE path = ANY($1)",
            &[&paths],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect();
    for file in files {
        let (bytes, sha256) = file.read().map_err(|source| ImportError::Read {
            path: file.file.clone(),
            source,
        })?;
        let unchanged = stored.get(&file.path).is_some_and(|(content_type, stored_sha)| {
            content_type == file.content_type && *stored_sha == sha256
        });
        if unchanged {
            continue;
        }
        txn.execute(
            "INSERT INTO media (path, content_type, sha256, bytes) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (path) DO UPDATE SET content_type = EXCLUDED.content_type, \
               sha256 = EXCLUDED.sha256, bytes = EXCLUDED.bytes, updated_at = now()",
            &[&file.path, &file.content_type, &sha256, &bytes],
        )
        .await?;
        report.changed.push(format!("{MEDIA}/{}", file.path));
    }
    Ok(())
}

/// The stored media with no file in the folder: deleted when pruning
/// (pages only link to them), otherwise listed.
async fn media_without_file(
    txn: &Transaction<'_>,
    files: &[MediaSource],
    prune: bool,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let sql = if prune {
        "DELETE FROM media WHERE NOT (path = ANY($1)) RETURNING path"
    } else {
        "SELECT path FROM media WHERE NOT (path = ANY($1))"
    };
    let mut gone: Vec<String> = txn
        .query(sql, &[&paths])
        .await?
        .iter()
        .map(|row| format!("{MEDIA}/{}", row.get::<_, String>(0)))
        .collect();
    gone.sort();
    if prune {
        report.removed_media = gone;
    } else {
        report.media_without_file = gone;
    }
    Ok(())
}

/// The episodes that name a series neither among `series` (the slugs
/// being imported) nor in the database, each as an error.
async fn missing_series(
    client: &impl GenericClient,
    episodes: &[EpisodeDoc],
    series: &BTreeSet<&str>,
) -> Result<Vec<FileError>, ImportError> {
    let named: BTreeSet<&Slug> = episodes
        .iter()
        .filter_map(|e| e.series.as_ref().map(|(slug, _)| slug))
        .filter(|slug| !series.contains(slug.as_str()))
        .collect();
    if named.is_empty() {
        return Ok(Vec::new());
    }
    let named: Vec<&Slug> = named.into_iter().collect();
    let stored: BTreeSet<String> = client
        .query("SELECT slug FROM series WHERE slug = ANY($1)", &[&named])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let errors: Vec<FileError> = episodes
        .iter()
        .filter_map(|e| {
            let (slug, _) = e.series.as_ref()?;
            (!series.contains(slug.as_str()) && !stored.contains(slug.as_str())).then(|| FileError {
                path: e.common.path.clone(),
                line: e.series_line,
                message: no_such_series(slug.as_str()),
            })
        })
        .collect();
    Ok(errors)
}

/// The published episodes and articles that have no file in the bundle:
/// unpublished (set to draft, never deleted) when pruning, with the pages
/// that showed them invalidated; otherwise only listed. Series have no
/// status, and stay.
async fn without_file(
    txn: &Transaction<'_>,
    bundle: &Bundle,
    prune: bool,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let episodes: Vec<&Slug> = bundle.episodes.iter().map(|e| &e.common.slug).collect();
    let articles: Vec<&Slug> = bundle.articles.iter().map(|a| &a.common.slug).collect();
    let episode_rows = txn
        .query(
            "SELECT e.slug, s.slug, ARRAY(SELECT t.slug FROM episode_tags et JOIN tags t ON t.id = et.tag_id \
                                         WHERE et.episode_id = e.id ORDER BY t.slug) \
             FROM episodes e LEFT JOIN series s ON s.id = e.series_id \
             WHERE e.status = 'published' AND NOT (e.slug = ANY($1)) ORDER BY e.slug",
            &[&episodes],
        )
        .await?;
    let article_rows = txn
        .query(
            "SELECT a.slug, ARRAY(SELECT t.slug FROM article_tags at JOIN tags t ON t.id = at.tag_id \
                                  WHERE at.article_id = a.id ORDER BY t.slug) \
             FROM articles a WHERE a.status = 'published' AND NOT (a.slug = ANY($1)) ORDER BY a.slug",
            &[&articles],
        )
        .await?;
    let mut gone = Vec::new();
    let mut invalidated = BTreeSet::new();
    for row in &episode_rows {
        let slug: Slug = row.try_get(0)?;
        let series: Option<Slug> = row.try_get(1)?;
        let tags: Vec<Slug> = row.try_get(2)?;
        invalidated.insert(topics::episode(&slug));
        invalidated.extend(series.iter().map(topics::series));
        invalidated.extend(tags.iter().map(topics::tag));
        invalidated.extend([topics::EPISODES, topics::SERIES_INDEX]);
        gone.push(format!("episodes/{slug}"));
    }
    for row in &article_rows {
        let slug: Slug = row.try_get(0)?;
        let tags: Vec<Slug> = row.try_get(1)?;
        invalidated.insert(topics::article(&slug));
        invalidated.extend(tags.iter().map(topics::tag));
        invalidated.insert(topics::ARTICLES);
        gone.push(format!("articles/{slug}"));
    }
    if !prune {
        report.without_file = gone;
        return Ok(());
    }
    if gone.is_empty() {
        return Ok(());
    }
    txn.execute(
        "UPDATE episodes SET status = 'draft', updated_at = now() \
         WHERE status = 'published' AND NOT (slug = ANY($1))",
        &[&episodes],
    )
    .await?;
    txn.execute(
        "UPDATE articles SET status = 'draft', updated_at = now() \
         WHERE status = 'published' AND NOT (slug = ANY($1))",
        &[&articles],
    )
    .await?;
    report.topics.extend(invalidated);
    listing_topics(report, &[]);
    report.unpublished = gone;
    Ok(())
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
            // `check_series_exist` has made sure it is there.
            let row = txn
                .query_one("SELECT id FROM series WHERE slug = $1", &[slug])
                .await?;
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
