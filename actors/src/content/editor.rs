//! The admin's editor: one series, episode or article as the fields of a
//! form, made into the very file that `content import` reads and `content
//! export` writes, checked and compiled by the same parser (the Markdown
//! once, on save) and written by the same writer. A save names the version
//! it was made from and is refused if the item changed since, with the
//! stored version given back so that neither text is lost; each save is an
//! audit event with the administrator's id, in the transaction of its
//! change, and announces the pages it touched to every node's page cache.

use std::collections::BTreeSet;
use std::path::PathBuf;

use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use tokio_postgres::GenericClient;

use super::export::{read_item, ExportError};
use super::front_matter::{write_file, Access, DateValue, FileKind, FrontMatter, SourceFile};
use super::import::{parse_files, write_items, Bundle, ImportError};
use super::inventory::Status;
use super::markdown::MarkdownOptions;
use super::{
    Article, ArticleSummary, Episode, EpisodeRef, EpisodeSummary, Series, SeriesRef, SeriesSummary, Slug,
};
use crate::cache::{publish_invalidation, Topic};
use crate::events::{self, Event};
use crate::store::StoreError;

/// One item as the editor's form holds it: every field as typed, so that a
/// form shown again (with what to fix, or beside a newer version) keeps
/// every character.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Draft {
    pub slug: String,
    pub title: String,
    pub summary: String,
    /// Comma-separated tag slugs.
    pub tags: String,
    /// RFC 3339 (`2026-03-14T09:00:00Z`) or a browser's `2026-03-14T09:00`
    /// (UTC); empty until published. A time to come schedules the item.
    pub published_at: String,
    /// Stored but never shown, whatever `published_at` says.
    pub draft: bool,
    pub number: String,
    /// The series' slug, if the episode is in one.
    pub series: String,
    /// The episode's place in its series, or the series' place among series.
    pub position: String,
    /// `MM:SS` or `H:MM:SS`.
    pub duration: String,
    pub video: String,
    pub poster: String,
    pub premium: bool,
    /// The Markdown body: show notes, article or series introduction.
    pub body: String,
}

/// A save or preview of a draft: what to do with the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Keep (or make) it a draft: stored, never shown.
    Draft,
    /// Show it from `published_at` on, or from now if that is empty.
    Publish,
}

/// Why a draft cannot be saved.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// What is wrong with the fields, each as the author is told it.
    #[error("the item has {} problem(s): {}", .0.len(), .0.join("; "))]
    Invalid(Vec<String>),
    /// The item changed (or came to exist) since the form was filled in.
    #[error("{item} was changed by someone else since this edit began")]
    Stale {
        item: String,
        /// The stored version, and the revision a save over it must name.
        current: Box<Draft>,
        revision: String,
    },
    #[error("the check of the item did not finish: {0}")]
    Interrupted(String),
    #[error("the stored item cannot be read: {0}")]
    Unreadable(#[from] ExportError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for EditError {
    fn from(e: tokio_postgres::Error) -> Self {
        EditError::Store(StoreError::Query(e))
    }
}

/// One item checked and compiled, ready to preview or save.
#[derive(Debug)]
pub struct Checked {
    kind: FileKind,
    slug: Slug,
    bundle: Bundle,
}

impl Checked {
    pub fn kind(&self) -> FileKind {
        self.kind
    }

    pub fn slug(&self) -> &Slug {
        &self.slug
    }

    /// Where the item stands for visitors at `now`, once saved.
    pub fn status(&self, now: OffsetDateTime) -> Status {
        let common = match (self.bundle.episodes().first(), self.bundle.articles().first()) {
            (Some(episode), _) => &episode.common,
            (None, Some(article)) => &article.common,
            (None, None) => return Status::Listed,
        };
        match (common.status(), common.published_at) {
            ("published", Some(at)) if at <= now => Status::Published,
            ("published", _) => Status::Scheduled,
            _ => Status::Draft,
        }
    }

    /// `episodes/first-steps`: how the audit trail and messages name it.
    pub fn item(&self) -> String {
        item_name(self.kind, &self.slug)
    }
}

fn item_name(kind: FileKind, slug: &Slug) -> String {
    format!("{}/{slug}", kind.folder())
}

/// What a save did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// Whether anything differed from the stored item.
    pub changed: bool,
    /// Where it stands now.
    pub status: Status,
    /// The pages it touched, dropped from every node's cache.
    pub topics: BTreeSet<Topic>,
}

/// The kind whose folder (and URL segment) is `folder`: `episodes`,
/// `articles` or `series`.
pub fn kind_of_folder(folder: &str) -> Option<FileKind> {
    FileKind::ALL.into_iter().find(|kind| kind.folder() == folder)
}

/// Checks and compiles `draft` as a file of `kind`, published as `intent`
/// says (`now` when publishing with no date): every problem at once. The
/// compiling (Markdown, highlighting) runs on the blocking pool, never on
/// the caller's (an HTTP worker's) thread.
pub async fn check(
    kind: FileKind,
    draft: Draft,
    intent: Intent,
    now: OffsetDateTime,
    options: MarkdownOptions,
) -> Result<Checked, EditError> {
    tokio::task::spawn_blocking(move || check_now(kind, &draft, intent, now, options))
        .await
        .map_err(|e| EditError::Interrupted(e.to_string()))?
}

fn check_now(
    kind: FileKind,
    draft: &Draft,
    intent: Intent,
    now: OffsetDateTime,
    options: MarkdownOptions,
) -> Result<Checked, EditError> {
    let mut problems = Vec::new();
    let slug = Slug::parse(draft.slug.trim())
        .map_err(|e| problems.push(format!("`slug`: {e}")))
        .ok();
    let front = front_matter(kind, draft, intent, now, &mut problems);
    let text = write_file(&front, &draft.body).map_err(|e| EditError::Invalid(vec![e.to_string()]))?;
    let body_line = text.lines().position(|line| line == "+++").map_or(1, |first| {
        text.lines()
            .skip(first + 1)
            .position(|line| line == "+++")
            .map_or(1, |second| first + second + 3)
    });
    // With a bad slug the rest is still checked, under a stand-in name.
    let name = slug.as_ref().map_or("untitled", Slug::as_str);
    let file = SourceFile {
        path: PathBuf::from(format!("{}/{name}.md", kind.folder())),
        text,
    };
    let parsed = parse_files(&[file], options);
    match (parsed, slug) {
        (Ok(bundle), Some(slug)) if problems.is_empty() => Ok(Checked { kind, slug, bundle }),
        (Ok(_), _) => Err(EditError::Invalid(problems)),
        (Err(ImportError::Invalid(errors)), _) => {
            problems.extend(errors.into_iter().map(|e| match e.line.checked_sub(body_line) {
                Some(line) => format!("line {} of the text: {}", line + 1, e.message),
                None => e.message,
            }));
            Err(EditError::Invalid(problems))
        }
        (Err(other), _) => {
            problems.push(other.to_string());
            Err(EditError::Invalid(problems))
        }
    }
}

/// The front matter the fields make, with what is wrong with them.
fn front_matter(
    kind: FileKind,
    draft: &Draft,
    intent: Intent,
    now: OffsetDateTime,
    problems: &mut Vec<String>,
) -> FrontMatter {
    let text = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
    let mut whole = |key: &str, value: &str| -> Option<i32> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        value.parse::<i32>().map_or_else(
            |_| {
                problems.push(format!("`{key}` must be a whole number, not {value:?}"));
                None
            },
            Some,
        )
    };
    let title = Some(draft.title.trim().to_owned());
    let summary = draft.summary.trim().to_owned();
    match kind {
        FileKind::Series => FrontMatter {
            title,
            summary,
            position: Some(whole("position", &draft.position).unwrap_or(0)),
            ..FrontMatter::default()
        },
        FileKind::Episode | FileKind::Article => {
            let number = whole("number", &draft.number);
            let position = whole("position", &draft.position);
            let published_at = match (date(&draft.published_at), intent) {
                (Ok(Some(date)), _) => Some(date),
                (Ok(None), Intent::Publish) => Some(now),
                (Ok(None), Intent::Draft) => None,
                (Err(problem), _) => {
                    problems.push(problem);
                    // Reported; a stand-in keeps the parser from saying it is missing.
                    Some(now)
                }
            };
            let published_at = published_at.and_then(|date| {
                DateValue::try_from(date)
                    .map_err(|e| problems.push(format!("`published_at`: {e}")))
                    .ok()
            });
            let common = FrontMatter {
                title,
                summary,
                published_at,
                draft: intent == Intent::Draft,
                tags: tag_list(&draft.tags),
                ..FrontMatter::default()
            };
            if kind == FileKind::Article {
                return common;
            }
            FrontMatter {
                number,
                series: text(&draft.series),
                position,
                duration: text(&draft.duration),
                video: Some(draft.video.trim().to_owned()),
                poster: text(&draft.poster),
                access: Some(Access::of(draft.premium)),
                ..common
            }
        }
    }
}

/// Tags as typed: separated by commas or spaces, each trimmed, in order,
/// once.
fn tag_list(tags: &str) -> Vec<String> {
    let mut list: Vec<String> = Vec::new();
    for tag in tags.split(|c: char| c == ',' || c.is_whitespace()) {
        let tag = tag.trim().to_lowercase();
        if !tag.is_empty() && !list.contains(&tag) {
            list.push(tag);
        }
    }
    list
}

/// A date as RFC 3339, or as a browser's `datetime-local` (taken as UTC);
/// none if empty.
fn date(text: &str) -> Result<Option<OffsetDateTime>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(date) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(Some(date));
    }
    let local = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let local_seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    PrimitiveDateTime::parse(text, &local)
        .or_else(|_| PrimitiveDateTime::parse(text, &local_seconds))
        .map(|date| Some(date.assume_utc()))
        .map_err(|_| format!("`published_at` = {text:?} is not a date: write it as 2026-03-14T09:00:00Z"))
}

/// The draft a stored item makes: what its exported file says.
fn draft_of(slug: &Slug, front: FrontMatter, body: String) -> Draft {
    let published_at = match front.published_at {
        Some(DateValue::Text(text)) => text,
        Some(DateValue::Toml(date)) => date.to_string(),
        None => String::new(),
    };
    let number = |n: Option<i32>| n.map(|n| n.to_string()).unwrap_or_default();
    Draft {
        slug: slug.to_string(),
        title: front.title.unwrap_or_default(),
        summary: front.summary,
        tags: front.tags.join(", "),
        published_at,
        draft: front.draft,
        number: number(front.number),
        series: front.series.unwrap_or_default(),
        position: number(front.position),
        duration: front.duration.unwrap_or_default(),
        video: front.video.unwrap_or_default(),
        poster: front.poster.unwrap_or_default(),
        premium: front.access == Some(Access::Premium),
        body,
    }
}

/// The stored item `slug` of `kind` as the editor shows it, with the
/// revision a save must name; none if there is no such item.
pub async fn get_draft(
    pool: &Pool,
    kind: FileKind,
    slug: &Slug,
) -> Result<Option<(Draft, String)>, EditError> {
    let mut client = pool.get().await.map_err(StoreError::from)?;
    let txn = client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await?;
    let draft = stored(&*txn, kind, slug).await?;
    txn.commit().await?;
    Ok(draft)
}

async fn stored(
    client: &impl GenericClient,
    kind: FileKind,
    slug: &Slug,
) -> Result<Option<(Draft, String)>, EditError> {
    let Some(revision) = revision(client, kind, slug).await? else {
        return Ok(None);
    };
    Ok(read_item(client, kind, slug)
        .await?
        .map(|(front, body)| (draft_of(slug, front, body), revision)))
}

/// The item's version: when it last changed, to the microsecond, as text.
async fn revision(
    client: &impl GenericClient,
    kind: FileKind,
    slug: &Slug,
) -> Result<Option<String>, EditError> {
    let sql = format!("SELECT updated_at::text FROM {} WHERE slug = $1", kind.folder());
    Ok(client.query_opt(&sql, &[slug]).await?.map(|row| row.get(0)))
}

/// Saves `checked` for the administrator `admin_id`, if the stored item is
/// still at `revision` (empty for an item that must not exist yet).
pub async fn save(pool: &Pool, checked: &Checked, revision: &str, admin_id: i64) -> Result<Saved, EditError> {
    let (kind, slug) = (checked.kind, &checked.slug);
    let item = checked.item();
    let mut client = pool.get().await.map_err(StoreError::from)?;
    let txn = client.transaction().await?;
    // One save of an item at a time, on any node, whether it exists yet or not.
    txn.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("content:{item}")],
    )
    .await?;
    let lock = format!("SELECT 1 FROM {} WHERE slug = $1 FOR UPDATE", kind.folder());
    txn.query_opt(&lock, &[slug]).await?;
    let current = stored(&*txn, kind, slug).await?;
    let at = current.as_ref().map_or("", |(_, revision)| revision.as_str());
    if at != revision {
        return Err(match current {
            Some((draft, revision)) => EditError::Stale {
                item,
                current: Box::new(draft),
                revision,
            },
            // Deleted since: saving makes it again.
            None => EditError::Stale {
                item,
                current: Box::default(),
                revision: String::new(),
            },
        });
    }
    let report = write_items(&txn, &checked.bundle).await.map_err(|e| match e {
        ImportError::Invalid(errors) => EditError::Invalid(errors.into_iter().map(|e| e.message).collect()),
        ImportError::Conflict(message) => EditError::Invalid(vec![message]),
        ImportError::Store(e) => EditError::Store(e),
        other => EditError::Invalid(vec![other.to_string()]),
    })?;
    let changed = !report.changed.is_empty();
    if changed {
        // A new version even if only the tags changed (the row's own
        // columns did not, and the importer left its time alone).
        let sql = format!(
            "UPDATE {} SET updated_at = clock_timestamp() WHERE slug = $1",
            kind.folder()
        );
        txn.execute(&sql, &[slug]).await?;
    }
    let status = checked.status(OffsetDateTime::now_utc());
    let event = Event::by_admin(
        "admin.content_saved",
        item,
        admin_id,
        json!({ "status": status.as_str(), "changed": changed }),
    );
    events::record_in(&txn, &event).await?;
    if changed {
        publish_invalidation(&txn, &report.topics).await?;
    }
    txn.commit().await?;
    Ok(Saved {
        changed,
        status,
        topics: report.topics,
    })
}

/// What a checked item will look like on its public page: the same value
/// the page is rendered from, as if published now if it has no date.
#[derive(Debug, Clone)]
pub enum Preview {
    Series(Series),
    Episode(Box<Episode>),
    Article(Article),
}

/// An episode's series and its neighbours there, as its public page
/// links them: the published episodes just before and after `position`.
async fn series_place(
    pool: &Pool,
    series: &Slug,
    position: i32,
    episode: &Slug,
) -> Result<(Option<SeriesRef>, Option<EpisodeRef>, Option<EpisodeRef>), StoreError> {
    let client = pool.get().await?;
    let Some(row) = client
        .query_opt(
            "SELECT s.title, prev.slug, prev.title, next.slug, next.title FROM series s \
             LEFT JOIN LATERAL (SELECT p.slug, p.title FROM episodes p \
                 WHERE p.series_id = s.id AND p.series_position < $2 AND p.slug <> $3 \
                   AND p.status = 'published' AND p.published_at <= now() \
                 ORDER BY p.series_position DESC LIMIT 1) prev ON true \
             LEFT JOIN LATERAL (SELECT p.slug, p.title FROM episodes p \
                 WHERE p.series_id = s.id AND p.series_position > $2 AND p.slug <> $3 \
                   AND p.status = 'published' AND p.published_at <= now() \
                 ORDER BY p.series_position LIMIT 1) next ON true \
             WHERE s.slug = $1",
            &[series, &position, episode],
        )
        .await?
    else {
        return Ok((None, None, None));
    };
    let neighbour = |at: usize| -> Result<Option<EpisodeRef>, StoreError> {
        let slug: Option<Slug> = row.try_get(at)?;
        let title: Option<String> = row.try_get(at + 1)?;
        Ok(slug.zip(title).map(|(slug, title)| EpisodeRef { slug, title }))
    };
    let series = SeriesRef {
        slug: series.clone(),
        title: row.try_get(0)?,
    };
    Ok((Some(series), neighbour(1)?, neighbour(3)?))
}

/// The public page's value for `checked`, completed from the database
/// (the series' title, a series' episodes).
pub async fn preview(pool: &Pool, checked: &Checked, now: OffsetDateTime) -> Result<Preview, StoreError> {
    let bundle = &checked.bundle;
    if let Some(doc) = bundle.episodes().first() {
        let c = &doc.common;
        let (series, previous, next) = match &doc.series {
            None => (None, None, None),
            Some((slug, position)) => series_place(pool, slug, *position, &c.slug).await?,
        };
        return Ok(Preview::Episode(Box::new(Episode {
            summary: EpisodeSummary {
                slug: c.slug.clone(),
                number: doc.number,
                title: c.title.clone(),
                summary: c.summary.clone(),
                duration_secs: doc.duration_secs,
                premium: doc.premium,
                published_at: c.published_at.unwrap_or(now),
                poster_url: doc.poster_url.clone(),
                series,
                tags: c.tags.clone(),
            },
            body_html: c.body_html.clone(),
            teaser_html: c.teaser_html.clone(),
            video_url: doc.video_url.clone(),
            series_position: doc.series.as_ref().map(|(_, position)| *position),
            previous,
            next,
            updated_at: now,
        })));
    }
    if let Some(doc) = bundle.articles().first() {
        let c = &doc.common;
        return Ok(Preview::Article(Article {
            summary: ArticleSummary {
                slug: c.slug.clone(),
                title: c.title.clone(),
                summary: c.summary.clone(),
                published_at: c.published_at.unwrap_or(now),
                tags: c.tags.clone(),
            },
            body_html: c.body_html.clone(),
            updated_at: now,
        }));
    }
    let doc = bundle
        .series()
        .first()
        .ok_or_else(|| StoreError::Unexpected("a checked item holds nothing".into()))?;
    let c = &doc.common;
    let stored = super::get_series_by_slug(pool, &c.slug).await?;
    let episodes = stored.map(|s| s.episodes).unwrap_or_default();
    let duration_secs = episodes.iter().map(|e| i64::from(e.duration_secs)).sum();
    Ok(Preview::Series(Series {
        summary: SeriesSummary {
            slug: c.slug.clone(),
            title: c.title.clone(),
            summary: c.summary.clone(),
            episode_count: i64::try_from(episodes.len()).unwrap_or(i64::MAX),
            duration_secs,
            poster_url: episodes.iter().find_map(|e| e.poster_url.clone()),
        },
        body_html: c.body_html.clone(),
        episodes,
    }))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-12-03 09:00 UTC);

    fn episode() -> Draft {
        Draft {
            slug: "pinning".into(),
            title: "Pinning".into(),
            summary: "Why futures stay put.".into(),
            tags: "Rust, async,, rust ".into(),
            number: "35".into(),
            duration: "18:30".into(),
            video: "https://v.example/pinning.mp4".into(),
            premium: true,
            body: "Teaser.\n\n## Paid\n\n```rust\nlet x = 1;\n```\n".into(),
            ..Draft::default()
        }
    }

    fn problems(result: Result<Checked, EditError>) -> Vec<String> {
        match result {
            Err(EditError::Invalid(problems)) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn a_published_episode_is_compiled_once_with_its_teaser_and_tags() {
        let checked = check_now(
            FileKind::Episode,
            &episode(),
            Intent::Publish,
            NOW,
            MarkdownOptions::default(),
        )
        .unwrap();
        assert_eq!(checked.item(), "episodes/pinning");
        let doc = &checked.bundle.episodes()[0];
        assert_eq!(doc.common.published_at, Some(NOW), "no date publishes now");
        assert_eq!(doc.common.status(), "published");
        let tags: Vec<&str> = doc.common.tags.iter().map(Slug::as_str).collect();
        assert_eq!(tags, ["async", "rust"], "each tag once, lower-cased");
        assert!(doc.common.body_html.contains("<span class=\""), "highlighted");
        assert!(!doc.common.teaser_html.contains("Paid"));
        assert!(doc.premium);
        assert_eq!(doc.duration_secs, 18 * 60 + 30);
    }

    #[test]
    fn a_draft_keeps_its_date_and_a_browser_date_is_utc() {
        let draft = Draft {
            published_at: "2027-01-02T08:30".into(),
            ..episode()
        };
        let checked = check_now(
            FileKind::Episode,
            &draft,
            Intent::Draft,
            NOW,
            MarkdownOptions::default(),
        )
        .unwrap();
        let doc = &checked.bundle.episodes()[0];
        assert_eq!(doc.common.published_at, Some(datetime!(2027-01-02 08:30 UTC)));
        assert_eq!(doc.common.status(), "draft");
        let unsaved = check_now(
            FileKind::Article,
            &Draft {
                published_at: String::new(),
                ..draft
            },
            Intent::Draft,
            NOW,
            MarkdownOptions::default(),
        )
        .unwrap();
        assert_eq!(
            unsaved.bundle.articles()[0].common.published_at,
            None,
            "a draft is not dated for it"
        );
    }

    #[test]
    fn every_problem_is_told_at_once_even_with_a_bad_slug() {
        let draft = Draft {
            slug: "Not a slug".into(),
            number: "thirty-five".into(),
            duration: "long".into(),
            published_at: "soon".into(),
            ..episode()
        };
        let told = problems(check_now(
            FileKind::Episode,
            &draft,
            Intent::Publish,
            NOW,
            MarkdownOptions::default(),
        ));
        let told = told.join("\n");
        for expected in [
            "`slug`",
            "`number` must be a whole number",
            "`published_at` = \"soon\"",
            "`duration` = \"long\"",
        ] {
            assert!(told.contains(expected), "{expected} in:\n{told}");
        }
    }

    #[test]
    fn a_stored_item_comes_back_as_the_draft_that_made_it() {
        let draft = Draft {
            tags: "async, rust".into(),
            published_at: "2026-12-03T09:00:00Z".into(),
            series: "async-rust".into(),
            position: "4".into(),
            poster: "/media/pinning.png".into(),
            ..episode()
        };
        let checked = check_now(
            FileKind::Episode,
            &draft,
            Intent::Publish,
            NOW,
            MarkdownOptions::default(),
        );
        // The series is checked against the database at save; the file is what matters here.
        let front = front_matter(FileKind::Episode, &draft, Intent::Publish, NOW, &mut Vec::new());
        let back = draft_of(&Slug::parse("pinning").unwrap(), front, draft.body.clone());
        assert_eq!(back, draft);
        assert!(checked.is_ok(), "{checked:?}");
    }
}
