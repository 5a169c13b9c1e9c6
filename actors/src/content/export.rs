//! Content export, the inverse of import: every series, episode and article
//! the database holds (published, scheduled and drafts alike) and every
//! media file, written as the folder `import` reads, in one snapshot of the
//! database. Importing the folder changes nothing; exporting it again writes
//! the same bytes. The folder is written into a hidden sibling of its
//! destination and moved into place by renames, so a failed export leaves
//! no half folder, and nothing is ever written through a symbolic link.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use deadpool_postgres::Pool;
use tokio_postgres::{GenericClient, IsolationLevel, Row, Transaction};

use super::front_matter::{write_file, Access, DateValue, FileKind, FrontMatter, WriteError};
use super::import::MEDIA;
use super::{media, Slug};
use crate::render::format_duration;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "{} is not empty: export writes a new folder; give a missing or empty one, \
         or --force to replace its series/, episodes/, articles/ and media/ (nothing else in it is touched)",
        .0.display()
    )]
    NotEmpty(PathBuf),
    #[error("{} is not a folder", .0.display())]
    NotAFolder(PathBuf),
    #[error("{} is a symbolic link: give the folder it points to", .0.display())]
    Link(PathBuf),
    #[error("cannot write {}: {source}; nothing was exported", .path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{item} cannot be written as a file: {source}; nothing was exported")]
    Unwritable { item: String, source: WriteError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ExportError {
    /// Whether the destination was refused (the operator's to change: exit
    /// status 2) rather than the export failing.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ExportError::NotEmpty(_) | ExportError::NotAFolder(_) | ExportError::Link(_)
        )
    }
}

impl From<tokio_postgres::Error> for ExportError {
    fn from(e: tokio_postgres::Error) -> Self {
        ExportError::Store(StoreError::Query(e))
    }
}

fn write_error(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |source| ExportError::Write {
        path: path.to_owned(),
        source,
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub dir: PathBuf,
    pub series: usize,
    pub episodes: usize,
    pub articles: usize,
    pub media: usize,
}

impl fmt::Display for ExportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Wrote {} series, {} episodes, {} articles and {} media files to {}",
            self.series,
            self.episodes,
            self.articles,
            self.media,
            self.dir.display()
        )
    }
}

/// What is at the destination now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    Nothing,
    EmptyFolder,
    /// A folder with files, whose content folders `--force` replaces.
    Folder,
}

/// Where an export goes, checked before the database is read.
#[derive(Debug, Clone)]
pub struct Destination {
    dir: PathBuf,
    /// The folder the export is staged in, beside `dir`.
    parent: PathBuf,
    name: String,
    existing: Existing,
}

impl Destination {
    /// `dir` when it is missing or an empty folder, or any folder with
    /// `force`; never a symbolic link.
    pub fn check(dir: &Path, force: bool) -> Result<Destination, ExportError> {
        let existing = match fs::symlink_metadata(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Existing::Nothing,
            Err(source) => return Err(write_error(dir)(source)),
            Ok(meta) if meta.file_type().is_symlink() => return Err(ExportError::Link(dir.to_owned())),
            Ok(meta) if !meta.is_dir() => return Err(ExportError::NotAFolder(dir.to_owned())),
            Ok(_) if fs::read_dir(dir).map_err(write_error(dir))?.next().is_none() => Existing::EmptyFolder,
            Ok(_) if force => Existing::Folder,
            Ok(_) => return Err(ExportError::NotEmpty(dir.to_owned())),
        };
        // An existing folder may be `.`: its real path names its parent.
        let full = match existing {
            Existing::Nothing => dir.to_owned(),
            _ => fs::canonicalize(dir).map_err(write_error(dir))?,
        };
        let name = full.file_name().and_then(|n| n.to_str());
        let (Some(name), Some(parent)) = (name, full.parent()) else {
            return Err(ExportError::NotAFolder(dir.to_owned()));
        };
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        Ok(Destination {
            dir: full.clone(),
            parent: parent.to_owned(),
            name: name.to_owned(),
            existing,
        })
    }

    /// A new hidden folder beside the destination, removed when dropped.
    fn stage(&self) -> Result<tempfile::TempDir, ExportError> {
        fs::create_dir_all(&self.parent).map_err(write_error(&self.parent))?;
        tempfile::Builder::new()
            .prefix(&format!(".{}.export-", self.name))
            .permissions(fs::Permissions::from_mode(0o755))
            .tempdir_in(&self.parent)
            .map_err(write_error(&self.parent))
    }

    /// Moves the staged export into place: the whole folder when there is
    /// none or it is empty, otherwise each content folder, the replaced
    /// ones going into the stage to be removed with it.
    fn put_in_place(&self, staged: tempfile::TempDir) -> Result<(), ExportError> {
        if self.existing != Existing::Folder {
            let staged = staged.keep();
            // A rename replaces an empty folder, and fails on one that has
            // been written to since the check.
            return fs::rename(&staged, &self.dir).map_err(|source| {
                let _ = fs::remove_dir_all(&staged);
                write_error(&self.dir)(source)
            });
        }
        let replaced = staged.path().join(".replaced");
        fs::create_dir(&replaced).map_err(write_error(&replaced))?;
        for folder in content_folders() {
            let current = self.dir.join(folder);
            if fs::symlink_metadata(&current).is_ok() {
                fs::rename(&current, replaced.join(folder)).map_err(write_error(&current))?;
            }
            let new = staged.path().join(folder);
            if new.is_dir() {
                fs::rename(&new, &current).map_err(write_error(&current))?;
            }
        }
        Ok(())
    }
}

/// The folders of a content folder that an export writes.
fn content_folders() -> [&'static str; 4] {
    let [series, episodes, articles] = FileKind::ALL.map(FileKind::folder);
    [series, episodes, articles, MEDIA]
}

/// Writes every item and media file of the database to `to`, from one
/// snapshot.
pub async fn export(pool: &Pool, to: &Destination) -> Result<ExportReport, ExportError> {
    let staged = to.stage()?;
    let mut client = pool.get().await.map_err(StoreError::from)?;
    let txn = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let root = staged.path();
    let mut written = [0; 3];
    for ((kind, select, front), count) in ITEMS.into_iter().zip(&mut written) {
        let sql = format!("{select} ORDER BY 1");
        for row in txn.query(&sql, &[]).await? {
            write_item(root, kind, &row, front(&row)?)?;
            *count += 1;
        }
    }
    let [series, episodes, articles] = written;
    let media = write_media(&txn, root).await?;
    txn.commit().await?;
    to.put_in_place(staged)?;
    Ok(ExportReport {
        dir: to.dir.clone(),
        series,
        episodes,
        articles,
        media,
    })
}

/// How a row becomes front matter.
type FrontOfRow = fn(&Row) -> Result<FrontMatter, ExportError>;

/// Each kind's query (a row's slug and body first, and the item's table
/// named `i`) and its front matter.
const ITEMS: [(FileKind, &str, FrontOfRow); 3] = [
    (
        FileKind::Series,
        "SELECT i.slug, i.body_source, i.title, i.summary, i.position FROM series i",
        series_front,
    ),
    (
        FileKind::Episode,
        "SELECT i.slug, i.body_source, i.title, i.summary, i.status, i.published_at, \
                ARRAY(SELECT t.slug FROM episode_tags et JOIN tags t ON t.id = et.tag_id \
                      WHERE et.episode_id = i.id ORDER BY t.slug), \
                i.number, s.slug, i.series_position, i.duration_secs, i.video_url, i.poster_url, i.access \
         FROM episodes i LEFT JOIN series s ON s.id = i.series_id",
        episode_front,
    ),
    (
        FileKind::Article,
        "SELECT i.slug, i.body_source, i.title, i.summary, i.status, i.published_at, \
                ARRAY(SELECT t.slug FROM article_tags at JOIN tags t ON t.id = at.tag_id \
                      WHERE at.article_id = i.id ORDER BY t.slug) \
         FROM articles i",
        article_front,
    ),
];

/// One item's front matter and Markdown body, as its exported file holds
/// them; none if there is no such item.
pub(crate) async fn read_item(
    client: &impl GenericClient,
    kind: FileKind,
    slug: &Slug,
) -> Result<Option<(FrontMatter, String)>, ExportError> {
    let Some((_, select, front)) = ITEMS.into_iter().find(|(k, _, _)| *k == kind) else {
        return Ok(None);
    };
    let Some(row) = client
        .query_opt(&format!("{select} WHERE i.slug = $1"), &[slug])
        .await?
    else {
        return Ok(None);
    };
    Ok(Some((front(&row)?, row.try_get(1)?)))
}

/// A series' front matter from its row (slug, body, title, summary, position).
fn series_front(row: &Row) -> Result<FrontMatter, ExportError> {
    Ok(FrontMatter {
        title: Some(row.try_get(2)?),
        summary: row.try_get(3)?,
        position: Some(row.try_get(4)?),
        ..FrontMatter::default()
    })
}

/// What episodes and articles share, from the row's columns 2 to 6 (title,
/// summary, status, published_at, tags).
fn publication_front(kind: FileKind, row: &Row) -> Result<FrontMatter, ExportError> {
    let published_at: Option<time::OffsetDateTime> = row.try_get(5)?;
    let published_at = match published_at.map(DateValue::try_from).transpose() {
        Ok(date) => date,
        Err(source) => {
            let slug: Slug = row.try_get(0)?;
            return Err(ExportError::Unwritable {
                item: format!("{}/{slug}", kind.folder()),
                source,
            });
        }
    };
    let tags: Vec<Slug> = row.try_get(6)?;
    Ok(FrontMatter {
        title: Some(row.try_get(2)?),
        summary: row.try_get(3)?,
        published_at,
        draft: row.try_get::<_, &str>(4)? == "draft",
        tags: tags.iter().map(ToString::to_string).collect(),
        ..FrontMatter::default()
    })
}

fn article_front(row: &Row) -> Result<FrontMatter, ExportError> {
    publication_front(FileKind::Article, row)
}

/// An episode's front matter: what it shares with articles, then columns 7
/// to 13 (number, series, position, duration, video, poster, access).
fn episode_front(row: &Row) -> Result<FrontMatter, ExportError> {
    let duration_secs: i32 = row.try_get(10)?;
    Ok(FrontMatter {
        number: Some(row.try_get(7)?),
        series: row.try_get(8)?,
        position: row.try_get(9)?,
        duration: Some(format_duration(duration_secs.into())),
        video: Some(row.try_get(11)?),
        poster: row.try_get(12)?,
        access: Some(Access::of(row.try_get::<_, &str>(13)? == "premium")),
        ..publication_front(FileKind::Episode, row)?
    })
}

/// Writes the file of the item in `row` (its slug and body first) under `root`.
fn write_item(root: &Path, kind: FileKind, row: &Row, front: FrontMatter) -> Result<(), ExportError> {
    let slug: Slug = row.try_get(0)?;
    let body: &str = row.try_get(1)?;
    let text = write_file(&front, body).map_err(|source| ExportError::Unwritable {
        item: format!("{}/{slug}", kind.folder()),
        source,
    })?;
    let folder = root.join(kind.folder());
    fs::create_dir_all(&folder).map_err(write_error(&folder))?;
    write_new(&folder.join(format!("{slug}.md")), text.as_bytes())
}

/// Writes every media file under `root`'s `media/`, one at a time (each
/// may be 20 MiB); how many.
async fn write_media(txn: &Transaction<'_>, root: &Path) -> Result<usize, ExportError> {
    let paths: Vec<String> = txn
        .query("SELECT path FROM media ORDER BY path", &[])
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    for path in &paths {
        // The table's check allows no other paths; a path that leaves the
        // folder is refused all the same.
        if !media::valid_path(path) {
            return Err(ExportError::Write {
                path: Path::new(MEDIA).join(path),
                source: io::Error::new(io::ErrorKind::InvalidData, "not a plain relative path"),
            });
        }
        let row = txn
            .query_one("SELECT bytes FROM media WHERE path = $1", &[path])
            .await?;
        let file = root.join(MEDIA).join(path);
        if let Some(folder) = file.parent() {
            fs::create_dir_all(folder).map_err(write_error(folder))?;
        }
        write_new(&file, row.try_get(0)?)?;
    }
    Ok(paths.len())
}

/// Writes a file that must not exist yet (nor be a link).
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(write_error(path))
}
