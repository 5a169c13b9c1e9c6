//! The content context: series, episodes, articles and tags, search and
//! feeds. Everything a visitor reads comes through these functions; only
//! published content whose publish time has come is ever returned.

pub mod demo;
pub mod editor;
pub mod export;
pub mod front_matter;
pub mod import;
pub mod inventory;
pub mod markdown;
pub mod media;
mod slug;
pub mod topics;

use std::error::Error;

use deadpool_postgres::Pool;
use serde::Serialize;
use time::OffsetDateTime;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::Row;

pub use slug::{Slug, SlugError, MAX_SLUG_LEN, MAX_TAG_LEN};

use crate::store::StoreError;

/// Episodes or articles on one listing page.
pub const PAGE_SIZE: i64 = 12;
/// A search string is cut to this many characters, then to
/// [`MAX_QUERY_TERMS`] words.
pub const MAX_QUERY_CHARS: usize = 200;
/// The most words a search keeps: each is one more term that PostgreSQL
/// matches and highlights, and a visitor's question needs no more.
pub const MAX_QUERY_TERMS: usize = 8;
/// Search shows at most this many hits.
const MAX_HITS: i64 = 30;

/// The SQL condition for "a visitor may see this row" (alias `e` or `a`).
macro_rules! visible {
    ($alias:literal) => {
        concat!(
            $alias,
            ".status = 'published' AND ",
            $alias,
            ".published_at <= now()"
        )
    };
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeriesRef {
    pub slug: Slug,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EpisodeSummary {
    pub slug: Slug,
    pub number: i32,
    pub title: String,
    pub summary: String,
    pub duration_secs: i32,
    pub premium: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub published_at: OffsetDateTime,
    pub poster_url: Option<String>,
    pub series: Option<SeriesRef>,
    pub tags: Vec<Slug>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EpisodeRef {
    pub slug: Slug,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Episode {
    #[serde(flatten)]
    pub summary: EpisodeSummary,
    pub body_html: String,
    pub teaser_html: String,
    pub video_url: String,
    pub series_position: Option<i32>,
    pub previous: Option<EpisodeRef>,
    pub next: Option<EpisodeRef>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeriesSummary {
    pub slug: Slug,
    pub title: String,
    pub summary: String,
    pub episode_count: i64,
    pub duration_secs: i64,
    pub poster_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Series {
    #[serde(flatten)]
    pub summary: SeriesSummary,
    pub body_html: String,
    pub episodes: Vec<EpisodeSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArticleSummary {
    pub slug: Slug,
    pub title: String,
    pub summary: String,
    #[serde(with = "time::serde::rfc3339")]
    pub published_at: OffsetDateTime,
    pub tags: Vec<Slug>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Article {
    #[serde(flatten)]
    pub summary: ArticleSummary,
    pub body_html: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub page: i64,
    pub pages: i64,
    pub total: i64,
}

impl<T> Listing<T> {
    fn new(items: Vec<T>, page: i64, total: i64) -> Listing<T> {
        Listing {
            items,
            page,
            pages: ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1),
            total,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Home {
    pub episodes: Vec<EpisodeSummary>,
    pub articles: Vec<ArticleSummary>,
    pub series: Vec<SeriesSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tagged {
    pub tag: Slug,
    pub episodes: Vec<EpisodeSummary>,
    pub articles: Vec<ArticleSummary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Episode,
    Article,
}

/// The `kind` column of the queries that unite episodes and articles; any
/// other value fails the query rather than passing for an article.
impl<'a> FromSql<'a> for Kind {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Kind, Box<dyn Error + Sync + Send>> {
        match <&str as FromSql>::from_sql(ty, raw)? {
            "episode" => Ok(Kind::Episode),
            "article" => Ok(Kind::Article),
            other => Err(format!("unknown kind of content {other:?}").into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SearchHit {
    pub kind: Kind,
    pub slug: Slug,
    pub title: String,
    /// Escaped text with the matches in `<mark>`.
    pub snippet_html: String,
}

/// An entry of the Atom feed: premium episodes carry their teaser only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedEntry {
    pub kind: Kind,
    pub slug: Slug,
    pub title: String,
    pub summary: String,
    pub content_html: String,
    #[serde(with = "time::serde::rfc3339")]
    pub published_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SitemapEntry {
    pub path: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const EPISODE_SUMMARY_COLUMNS: &str = "e.slug, e.number, e.title, e.summary, e.duration_secs, \
     e.access = 'premium', e.published_at, e.poster_url, s.slug, s.title, \
     ARRAY(SELECT t.slug FROM episode_tags et JOIN tags t ON t.id = et.tag_id \
           WHERE et.episode_id = e.id ORDER BY t.slug)";
const EPISODE_SUMMARY_WIDTH: usize = 11;

// The rows' readers: slugs and kinds are parsed with `try_get`, so that a
// value their rules refuse fails the query; the other columns' types are
// fixed by the queries themselves.

fn episode_summary(row: &Row) -> Result<EpisodeSummary, StoreError> {
    let series_slug: Option<Slug> = row.try_get(8)?;
    let series_title: Option<String> = row.get(9);
    Ok(EpisodeSummary {
        slug: row.try_get(0)?,
        number: row.get(1),
        title: row.get(2),
        summary: row.get(3),
        duration_secs: row.get(4),
        premium: row.get(5),
        published_at: row.get(6),
        poster_url: row.get(7),
        series: series_slug
            .zip(series_title)
            .map(|(slug, title)| SeriesRef { slug, title }),
        tags: row.try_get(10)?,
    })
}

const ARTICLE_SUMMARY_COLUMNS: &str = "a.slug, a.title, a.summary, a.published_at, \
     ARRAY(SELECT t.slug FROM article_tags at JOIN tags t ON t.id = at.tag_id \
           WHERE at.article_id = a.id ORDER BY t.slug)";
const ARTICLE_SUMMARY_WIDTH: usize = 5;

fn article_summary(row: &Row) -> Result<ArticleSummary, StoreError> {
    Ok(ArticleSummary {
        slug: row.try_get(0)?,
        title: row.get(1),
        summary: row.get(2),
        published_at: row.get(3),
        tags: row.try_get(4)?,
    })
}

const SERIES_SUMMARY_SQL: &str = "SELECT s.slug, s.title, s.summary, count(e.id), \
     COALESCE(sum(e.duration_secs), 0)::int8, \
     (SELECT p.poster_url FROM episodes p WHERE p.series_id = s.id AND p.poster_url IS NOT NULL \
      ORDER BY p.series_position LIMIT 1) \
     FROM series s LEFT JOIN episodes e ON e.series_id = s.id AND e.status = 'published' AND e.published_at <= now()";

fn series_summary(row: &Row) -> Result<SeriesSummary, StoreError> {
    Ok(SeriesSummary {
        slug: row.try_get(0)?,
        title: row.get(1),
        summary: row.get(2),
        episode_count: row.get(3),
        duration_secs: row.get(4),
        poster_url: row.get(5),
    })
}

/// Every row read by `item`; the first that cannot be read fails them all.
fn read_rows<T>(rows: &[Row], item: fn(&Row) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
    rows.iter().map(item).collect()
}

/// The series that have published episodes.
fn read_series_with_episodes(rows: &[Row]) -> Result<Vec<SeriesSummary>, StoreError> {
    let mut series = read_rows(rows, series_summary)?;
    series.retain(|s| s.episode_count > 0);
    Ok(series)
}

/// Latest episodes and articles, and every series, for the home page.
pub async fn get_home(pool: &Pool) -> Result<Home, StoreError> {
    let client = pool.get().await?;
    let episodes = client
        .query(
            &client
                .prepare_cached(&format!(
                "SELECT {EPISODE_SUMMARY_COLUMNS} FROM episodes e LEFT JOIN series s ON s.id = e.series_id \
                 WHERE {} ORDER BY e.published_at DESC, e.number DESC LIMIT 6",
                visible!("e")
            ))
                .await?,
            &[],
        )
        .await?;
    let articles = client
        .query(
            &client
                .prepare_cached(&format!(
                    "SELECT {ARTICLE_SUMMARY_COLUMNS} FROM articles a WHERE {} \
                 ORDER BY a.published_at DESC LIMIT 4",
                    visible!("a")
                ))
                .await?,
            &[],
        )
        .await?;
    let series = client
        .query(
            &client
                .prepare_cached(&format!(
                    "{SERIES_SUMMARY_SQL} GROUP BY s.id ORDER BY s.position, s.title"
                ))
                .await?,
            &[],
        )
        .await?;
    Ok(Home {
        episodes: read_rows(&episodes, episode_summary)?,
        articles: read_rows(&articles, article_summary)?,
        series: read_series_with_episodes(&series)?,
    })
}

/// One page of published episodes, newest first; `None` past the last page.
pub async fn list_episodes(pool: &Pool, page: i64) -> Result<Option<Listing<EpisodeSummary>>, StoreError> {
    let count = format!("SELECT count(*) FROM episodes e WHERE {}", visible!("e"));
    let rows = format!(
        "SELECT {EPISODE_SUMMARY_COLUMNS} FROM episodes e LEFT JOIN series s ON s.id = e.series_id \
         WHERE {} ORDER BY e.published_at DESC, e.number DESC LIMIT $1 OFFSET $2",
        visible!("e")
    );
    list_page(pool, page, &count, &rows, episode_summary).await
}

/// One page of a listing: `count` counts every item, `rows` takes
/// `LIMIT $1 OFFSET $2`; `None` past the last page.
async fn list_page<T>(
    pool: &Pool,
    page: i64,
    count: &str,
    rows: &str,
    item: fn(&Row) -> Result<T, StoreError>,
) -> Result<Option<Listing<T>>, StoreError> {
    let client = pool.get().await?;
    let total: i64 = client
        .query_one(&client.prepare_cached(count).await?, &[])
        .await?
        .get(0);
    let Some(offset) = page_offset(page, total) else {
        return Ok(None);
    };
    let rows = client
        .query(&client.prepare_cached(rows).await?, &[&PAGE_SIZE, &offset])
        .await?;
    Ok(Some(Listing::new(read_rows(&rows, item)?, page, total)))
}

/// The offset of `page` (from 1), or `None` when no such page exists; an
/// empty listing still has its first page.
fn page_offset(page: i64, total: i64) -> Option<i64> {
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    (1..=pages).contains(&page).then(|| (page - 1) * PAGE_SIZE)
}

pub async fn get_episode_by_slug(pool: &Pool, slug: &Slug) -> Result<Option<Episode>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(&client.prepare_cached(&format!(
                "SELECT {EPISODE_SUMMARY_COLUMNS}, e.body_html, e.teaser_html, e.video_url, e.series_position, \
                        prev.slug, prev.title, next.slug, next.title, e.updated_at \
                 FROM episodes e LEFT JOIN series s ON s.id = e.series_id \
                 LEFT JOIN LATERAL (SELECT p.slug, p.title FROM episodes p \
                     WHERE p.series_id = e.series_id AND p.series_position < e.series_position AND {p} \
                     ORDER BY p.series_position DESC LIMIT 1) prev ON true \
                 LEFT JOIN LATERAL (SELECT p.slug, p.title FROM episodes p \
                     WHERE p.series_id = e.series_id AND p.series_position > e.series_position AND {p} \
                     ORDER BY p.series_position LIMIT 1) next ON true \
                 WHERE e.slug = $1 AND {e}",
                p = visible!("p"),
                e = visible!("e")
            )).await?,
            &[&slug],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let w = EPISODE_SUMMARY_WIDTH;
    let reference = |slug: usize| -> Result<Option<EpisodeRef>, StoreError> {
        let slug_value: Option<Slug> = row.try_get(slug)?;
        let title: Option<String> = row.get(slug + 1);
        Ok(slug_value
            .zip(title)
            .map(|(slug, title)| EpisodeRef { slug, title }))
    };
    Ok(Some(Episode {
        summary: episode_summary(&row)?,
        body_html: row.get(w),
        teaser_html: row.get(w + 1),
        video_url: row.get(w + 2),
        series_position: row.get(w + 3),
        previous: reference(w + 4)?,
        next: reference(w + 6)?,
        updated_at: row.get(w + 8),
    }))
}

/// Every series with at least one published episode, in their order.
pub async fn list_series(pool: &Pool) -> Result<Vec<SeriesSummary>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            &client
                .prepare_cached(&format!(
                    "{SERIES_SUMMARY_SQL} GROUP BY s.id ORDER BY s.position, s.title"
                ))
                .await?,
            &[],
        )
        .await?;
    read_series_with_episodes(&rows)
}

pub async fn get_series_by_slug(pool: &Pool, slug: &Slug) -> Result<Option<Series>, StoreError> {
    let client = pool.get().await?;
    let Some(row) = client
        .query_opt(
            &client
                .prepare_cached(&format!("{SERIES_SUMMARY_SQL} WHERE s.slug = $1 GROUP BY s.id"))
                .await?,
            &[&slug],
        )
        .await?
    else {
        return Ok(None);
    };
    let summary = series_summary(&row)?;
    if summary.episode_count == 0 {
        return Ok(None);
    }
    let body: String = client
        .query_one(
            &client
                .prepare_cached("SELECT body_html FROM series WHERE slug = $1")
                .await?,
            &[&slug],
        )
        .await?
        .get(0);
    let episodes = client
        .query(
            &client
                .prepare_cached(&format!(
                    "SELECT {EPISODE_SUMMARY_COLUMNS} FROM episodes e JOIN series s ON s.id = e.series_id \
                 WHERE s.slug = $1 AND {} ORDER BY e.series_position",
                    visible!("e")
                ))
                .await?,
            &[&slug],
        )
        .await?;
    Ok(Some(Series {
        summary,
        body_html: body,
        episodes: read_rows(&episodes, episode_summary)?,
    }))
}

/// One page of published articles, newest first; `None` past the last page.
pub async fn list_articles(pool: &Pool, page: i64) -> Result<Option<Listing<ArticleSummary>>, StoreError> {
    let count = format!("SELECT count(*) FROM articles a WHERE {}", visible!("a"));
    let rows = format!(
        "SELECT {ARTICLE_SUMMARY_COLUMNS} FROM articles a WHERE {} \
         ORDER BY a.published_at DESC LIMIT $1 OFFSET $2",
        visible!("a")
    );
    list_page(pool, page, &count, &rows, article_summary).await
}

pub async fn get_article_by_slug(pool: &Pool, slug: &Slug) -> Result<Option<Article>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &client
                .prepare_cached(&format!(
                    "SELECT {ARTICLE_SUMMARY_COLUMNS}, a.body_html, a.updated_at FROM articles a \
                 WHERE a.slug = $1 AND {}",
                    visible!("a")
                ))
                .await?,
            &[&slug],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(Article {
        summary: article_summary(&row)?,
        body_html: row.get(ARTICLE_SUMMARY_WIDTH),
        updated_at: row.get(ARTICLE_SUMMARY_WIDTH + 1),
    }))
}

/// Everything published under `tag`; `None` when nothing is.
pub async fn list_tagged(pool: &Pool, tag: &Slug) -> Result<Option<Tagged>, StoreError> {
    let client = pool.get().await?;
    let episodes = client
        .query(
            &client
                .prepare_cached(&format!(
                "SELECT {EPISODE_SUMMARY_COLUMNS} FROM episodes e LEFT JOIN series s ON s.id = e.series_id \
                 WHERE {} AND EXISTS (SELECT 1 FROM episode_tags et JOIN tags t ON t.id = et.tag_id \
                                      WHERE et.episode_id = e.id AND t.slug = $1) \
                 ORDER BY e.published_at DESC",
                visible!("e")
            ))
                .await?,
            &[&tag],
        )
        .await?;
    let articles = client
        .query(
            &client
                .prepare_cached(&format!(
                    "SELECT {ARTICLE_SUMMARY_COLUMNS} FROM articles a \
                 WHERE {} AND EXISTS (SELECT 1 FROM article_tags at JOIN tags t ON t.id = at.tag_id \
                                      WHERE at.article_id = a.id AND t.slug = $1) \
                 ORDER BY a.published_at DESC",
                    visible!("a")
                ))
                .await?,
            &[&tag],
        )
        .await?;
    if episodes.is_empty() && articles.is_empty() {
        return Ok(None);
    }
    Ok(Some(Tagged {
        tag: tag.clone(),
        episodes: read_rows(&episodes, episode_summary)?,
        articles: read_rows(&articles, article_summary)?,
    }))
}

/// Cuts a visitor's search string to [`MAX_QUERY_CHARS`] characters, then
/// to [`MAX_QUERY_TERMS`] words.
pub fn clean_query(raw: &str) -> String {
    let text: String = raw
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_QUERY_CHARS)
        .collect();
    text.split_whitespace()
        .take(MAX_QUERY_TERMS)
        .collect::<Vec<_>>()
        .join(" ")
}

const MARK_START: char = '\u{2}';
const MARK_END: char = '\u{3}';

/// What search may read of an episode: a premium episode's notes only up to
/// their public teaser. The `search` column (`sql/V5__search_teaser.sql`)
/// indexes the same text, so that paid notes are neither found nor quoted.
const EPISODE_SEARCHABLE_SOURCE: &str =
    "CASE WHEN e.access = 'premium' THEN e.teaser_source ELSE e.body_source END";

/// Ranked matches in episodes and articles, at most [`MAX_HITS`].
pub async fn search(pool: &Pool, query: &str) -> Result<Vec<SearchHit>, StoreError> {
    let query = clean_query(query);
    if query.is_empty() {
        return Ok(Vec::new());
    }
    let options = format!(
        "StartSel={MARK_START}, StopSel={MARK_END}, MaxFragments=2, MaxWords=24, MinWords=8, FragmentDelimiter=\" … \""
    );
    let client = pool.get().await?;
    // Rank and cut first: a snippet reads its whole document, so only the
    // hits that are shown get one.
    let rows = client
        .query(
            &client
                .prepare_cached(&format!(
                    "WITH q AS (SELECT websearch_to_tsquery('english', $1) AS query), \
                 hits AS ( \
                   SELECT 'episode' AS kind, e.id, ts_rank(e.search, q.query) AS rank, e.published_at \
                   FROM episodes e, q WHERE {} AND e.search @@ q.query \
                   UNION ALL \
                   SELECT 'article', a.id, ts_rank(a.search, q.query), a.published_at \
                   FROM articles a, q WHERE {} AND a.search @@ q.query \
                   ORDER BY rank DESC, published_at DESC LIMIT {MAX_HITS}) \
                 SELECT h.kind, COALESCE(e.slug, a.slug), COALESCE(e.title, a.title), \
                        ts_headline('english', CASE h.kind \
                            WHEN 'episode' THEN e.summary || ' ' || {EPISODE_SEARCHABLE_SOURCE} \
                            ELSE a.summary || ' ' || a.body_source END, q.query, $2) \
                 FROM hits h CROSS JOIN q \
                 LEFT JOIN episodes e ON h.kind = 'episode' AND e.id = h.id \
                 LEFT JOIN articles a ON h.kind = 'article' AND a.id = h.id \
                 ORDER BY h.rank DESC, h.published_at DESC",
                    visible!("e"),
                    visible!("a")
                ))
                .await?,
            &[&query, &options],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(SearchHit {
                kind: row.try_get(0)?,
                slug: row.try_get(1)?,
                title: row.get(2),
                snippet_html: mark_snippet(row.get(3)),
            })
        })
        .collect()
}

/// Escapes the snippet's text, then turns the match markers into `<mark>`.
fn mark_snippet(snippet: &str) -> String {
    let mut html = String::with_capacity(snippet.len() + 32);
    for c in snippet.chars() {
        match c {
            '&' => html.push_str("&amp;"),
            '<' => html.push_str("&lt;"),
            '>' => html.push_str("&gt;"),
            '"' => html.push_str("&quot;"),
            '\'' => html.push_str("&#39;"),
            MARK_START => html.push_str("<mark>"),
            MARK_END => html.push_str("</mark>"),
            c => html.push(c),
        }
    }
    html
}

/// The newest published episodes and articles, for the Atom feed.
pub async fn list_feed_entries(pool: &Pool, limit: i64) -> Result<Vec<FeedEntry>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            &client
                .prepare_cached(&format!(
                    "SELECT * FROM ( \
                   SELECT 'episode' AS kind, e.slug, e.title, e.summary, \
                          CASE WHEN e.access = 'premium' THEN e.teaser_html ELSE e.body_html END, \
                          e.published_at, e.updated_at FROM episodes e WHERE {} \
                   UNION ALL \
                   SELECT 'article', a.slug, a.title, a.summary, a.body_html, a.published_at, a.updated_at \
                   FROM articles a WHERE {} \
                 ) entries ORDER BY published_at DESC LIMIT $1",
                    visible!("e"),
                    visible!("a")
                ))
                .await?,
            &[&limit],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(FeedEntry {
                kind: row.try_get(0)?,
                slug: row.try_get(1)?,
                title: row.get(2),
                summary: row.get(3),
                content_html: row.get(4),
                published_at: row.get(5),
                updated_at: row.get(6),
            })
        })
        .collect()
}

/// Every public page and when it last changed.
pub async fn list_sitemap_entries(pool: &Pool) -> Result<Vec<SitemapEntry>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(&client.prepare_cached(&format!(
                "SELECT '/episodes/' || e.slug, e.updated_at FROM episodes e WHERE {e} \
                 UNION ALL SELECT '/articles/' || a.slug, a.updated_at FROM articles a WHERE {a} \
                 UNION ALL SELECT '/series/' || s.slug, max(e.updated_at) FROM series s \
                           JOIN episodes e ON e.series_id = s.id WHERE {e} GROUP BY s.slug \
                 UNION ALL SELECT '/tags/' || t.slug, max(x.updated_at) FROM tags t JOIN ( \
                           SELECT et.tag_id, e.updated_at FROM episode_tags et JOIN episodes e ON e.id = et.episode_id WHERE {e} \
                           UNION ALL \
                           SELECT at.tag_id, a.updated_at FROM article_tags at JOIN articles a ON a.id = at.article_id WHERE {a} \
                         ) x ON x.tag_id = t.id GROUP BY t.slug \
                 ORDER BY 1",
                e = visible!("e"),
                a = visible!("a")
            )).await?,
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| SitemapEntry {
            path: row.get(0),
            updated_at: row.get(1),
        })
        .collect())
}

/// How many episodes and articles came due in `(after, until]`: content
/// scheduled for a later time that is now visible.
pub async fn count_published_between(
    pool: &Pool,
    after: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<i64, StoreError> {
    let client = pool.get().await?;
    Ok(client
        .query_one(
            "SELECT (SELECT count(*) FROM episodes WHERE status = 'published' AND published_at > $1 AND published_at <= $2)                   + (SELECT count(*) FROM articles WHERE status = 'published' AND published_at > $1 AND published_at <= $2)",
            &[&after, &until],
        )
        .await?
        .get(0))
}

/// Whether any content exists, published or not (an empty database gets the
/// demo content in development).
pub async fn has_content(pool: &Pool) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM episodes) OR EXISTS (SELECT 1 FROM articles) \
             OR EXISTS (SELECT 1 FROM series)",
            &[],
        )
        .await?
        .get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pages_exist_from_one_to_the_last() {
        assert_eq!(page_offset(1, 0), Some(0), "an empty listing has a first page");
        assert_eq!(page_offset(2, 12), None);
        assert_eq!(page_offset(2, 13), Some(12));
        for absurd in [0, -1, i64::MIN, i64::MAX] {
            assert_eq!(page_offset(absurd, 100), None, "{absurd}");
        }
    }

    #[test]
    fn search_strings_are_cut_and_cleaned() {
        assert_eq!(clean_query("  rust\u{0}traits\n "), "rusttraits");
        assert_eq!(clean_query(&"é".repeat(500)).chars().count(), MAX_QUERY_CHARS);
        assert_eq!(
            clean_query("one  two three four five six seven eight nine ten"),
            "one two three four five six seven eight"
        );
    }

    proptest! {
        #[test]
        fn a_cleaned_search_is_short_and_has_few_words(raw in "\\PC{0,400}|[a-z \t\n]{0,400}") {
            let query = clean_query(&raw);
            prop_assert!(query.chars().count() <= MAX_QUERY_CHARS);
            prop_assert!(query.split_whitespace().count() <= MAX_QUERY_TERMS);
            prop_assert_eq!(query.trim(), query.as_str());
        }
    }

    #[test]
    fn a_kind_of_content_that_is_neither_episode_nor_article_is_an_error() {
        assert_eq!(Kind::from_sql(&Type::TEXT, b"episode").ok(), Some(Kind::Episode));
        assert_eq!(Kind::from_sql(&Type::TEXT, b"article").ok(), Some(Kind::Article));
        let error = Kind::from_sql(&Type::TEXT, b"podcast").expect_err("not a kind");
        assert_eq!(error.to_string(), "unknown kind of content \"podcast\"");
    }

    #[test]
    fn snippets_are_escaped_and_marked() {
        assert_eq!(
            mark_snippet("a <b> \u{2}match\u{3} & 'c'"),
            "a &lt;b&gt; <mark>match</mark> &amp; &#39;c&#39;"
        );
    }
}
