//! The cache topics of content, named in one place: the pages tag what they
//! cache with them and the importer invalidates them, so the two cannot
//! drift apart on a string.

use super::Slug;
use crate::cache::Topic;

/// The home page.
pub const HOME: Topic = Topic::fixed("home");
/// The listing of episodes.
pub const EPISODES: Topic = Topic::fixed("episodes");
/// The listing of series.
pub const SERIES_INDEX: Topic = Topic::fixed("series");
/// The listing of articles.
pub const ARTICLES: Topic = Topic::fixed("articles");
/// The Atom feed.
pub const FEED: Topic = Topic::fixed("feed");
pub const SITEMAP: Topic = Topic::fixed("sitemap");

/// An episode's page.
pub fn episode(slug: &Slug) -> Topic {
    Topic::named(format!("episode:{slug}"))
}

/// A series' page, and the pages of its episodes (which link to each other).
pub fn series(slug: &Slug) -> Topic {
    Topic::named(format!("series:{slug}"))
}

/// An article's page.
pub fn article(slug: &Slug) -> Topic {
    Topic::named(format!("article:{slug}"))
}

/// The page of everything tagged `tag`.
pub fn tag(tag: &Slug) -> Topic {
    Topic::named(format!("tag:{tag}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_keep_the_names_other_nodes_read() {
        let slug = Slug::parse("async-rust").unwrap();
        let names: Vec<String> = [episode(&slug), series(&slug), article(&slug), tag(&slug), HOME]
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "episode:async-rust",
                "series:async-rust",
                "article:async-rust",
                "tag:async-rust",
                "home"
            ]
        );
    }
}
