//! Everything the database holds, whatever a visitor may see of it: for
//! `lectern content list`, so that an author can tell what is published,
//! what is scheduled and what is a draft.

use std::fmt;

use deadpool_postgres::Pool;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::store::StoreError;

/// Where an item stands for visitors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Shown.
    Published,
    /// Published, but its time has not come.
    Scheduled,
    /// Stored, never shown.
    Draft,
    /// Series have no status: a series is listed once it exists.
    Listed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Published => "published",
            Status::Scheduled => "scheduled",
            Status::Draft => "draft",
            Status::Listed => "listed",
        }
    }
}

/// One series, episode or article.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// `series`, `episodes` or `articles`: the folder its file goes in.
    pub kind: &'static str,
    pub slug: String,
    pub title: String,
    pub status: Status,
    pub published_at: Option<OffsetDateTime>,
}

/// Every item, series first, then episodes and articles, each by slug.
pub async fn list(pool: &Pool) -> Result<Vec<Item>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT 0 AS k, slug, title, NULL::text AS status, NULL::timestamptz AS published_at, \
                    NULL::boolean AS due FROM series \
             UNION ALL SELECT 1, slug, title, status, published_at, published_at <= now() FROM episodes \
             UNION ALL SELECT 2, slug, title, status, published_at, published_at <= now() FROM articles \
             ORDER BY 1, 2",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let status: Option<String> = row.get(3);
            let due: Option<bool> = row.get(5);
            Item {
                kind: match row.get::<_, i32>(0) {
                    0 => "series",
                    1 => "episodes",
                    _ => "articles",
                },
                slug: row.get(1),
                title: row.get(2),
                status: match (status.as_deref(), due) {
                    (None, _) => Status::Listed,
                    (Some("published"), Some(true)) => Status::Published,
                    (Some("published"), _) => Status::Scheduled,
                    _ => Status::Draft,
                },
                published_at: row.get(4),
            }
        })
        .collect())
}

/// The items as a plain-text table, one line each, with a count per status.
#[derive(Debug)]
pub struct Listing(pub Vec<Item>);

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "No content yet: `lectern content import DIR` imports some.");
        }
        let date = |item: &Item| {
            item.published_at
                .and_then(|at| at.format(&Rfc3339).ok())
                .unwrap_or_else(|| "-".to_owned())
        };
        let width = self
            .0
            .iter()
            .map(|item| item.kind.len() + 1 + item.slug.len())
            .max()
            .unwrap_or(0);
        writeln!(
            f,
            "{:<width$}  {:<9}  {:<20}  TITLE",
            "ITEM", "STATUS", "PUBLISHED AT"
        )?;
        for item in &self.0 {
            writeln!(
                f,
                "{:<width$}  {:<9}  {:<20}  {}",
                format!("{}/{}", item.kind, item.slug),
                item.status.as_str(),
                date(item),
                item.title
            )?;
        }
        let count = |status: Status| self.0.iter().filter(|item| item.status == status).count();
        write!(
            f,
            "{} series; {} published, {} scheduled, {} drafts",
            count(Status::Listed),
            count(Status::Published),
            count(Status::Scheduled),
            count(Status::Draft)
        )
    }
}
