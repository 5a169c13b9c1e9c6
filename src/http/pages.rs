//! The visitor's pages. Each handler names its cache key (the canonical
//! path with only the query parameters that matter) and how to load its
//! data; `serve_page` does the rest: a hit is answered from memory, concurrent
//! misses render once, and a database outage gets the 503 page while cached
//! pages keep being served. Handlers return `Result<_, PageError>`.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use lectern_actors::cache::{CachedPage, PageKey, PageKeyRef, Topic, ViewerClass};
use lectern_actors::content::editor::Preview;
use lectern_actors::content::{self, topics, Listing, Slug};
use lectern_actors::render::{RenderError, RenderPage};
use lectern_actors::store::StoreError;
use serde::Serialize;
use serde_json::{Map, Value};

use super::cached::{self, Verdict, PAGE_CACHE_CONTROL};
use super::errors::ErrorPage;
use super::extract::{AccessError, ClientAddr, Viewer};
use super::layout::{layout_data, Meta};
use super::limits::{self, Limit, LimitError};
use super::metrics::route_label;
use super::page_views::PageSeen;
use super::{get_or_head, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", get_or_head().to(home))
        .route("/episodes", get_or_head().to(episodes))
        .route("/episodes/{slug}", get_or_head().to(episode))
        .route("/series", get_or_head().to(series_index))
        .route("/series/{slug}", get_or_head().to(series))
        .route("/articles", get_or_head().to(articles))
        .route("/articles/{slug}", get_or_head().to(article))
        .route("/tags/{tag}", get_or_head().to(tag))
        .route("/search", get_or_head().to(search))
        .route("/feed.xml", get_or_head().to(feed))
        .route("/sitemap.xml", get_or_head().to(sitemap));
}

const HTML: &str = "text/html; charset=utf-8";
const ATOM: &str = "application/atom+xml; charset=utf-8";
const XML: &str = "application/xml; charset=utf-8";

/// Everything a page needs to be rendered and cached.
struct View {
    template: &'static str,
    content_type: &'static str,
    meta: Meta,
    data: Map<String, Value>,
    topics: Vec<Topic>,
}

fn data(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn to_value(value: impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Why a page cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("no such page")]
    NotFound,
    #[error("database: {0}")]
    Database(#[from] StoreError),
    #[error("cannot render the page: {0}")]
    Render(#[from] RenderError),
    #[error(transparent)]
    Limited(#[from] LimitError),
    #[error("cannot tell the viewer's class: {0}")]
    Viewer(#[from] AccessError),
}

impl PageError {
    pub(super) fn page(&self) -> ErrorPage {
        match self {
            PageError::NotFound => ErrorPage::not_found(),
            PageError::Database(_) => ErrorPage::unavailable(),
            PageError::Render(_) => ErrorPage::server_error(),
            PageError::Limited(limited) => limited.page(),
            PageError::Viewer(_) => ErrorPage::unavailable(),
        }
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.page().status()
    }

    fn error_response(&self) -> HttpResponse {
        self.page().response()
    }
}

type Answer = Result<HttpResponse, PageError>;

async fn render(
    state: &AppState,
    view: View,
    viewer: ViewerClass,
    compress: bool,
    route: &'static str,
) -> Result<Arc<CachedPage>, PageError> {
    let message = RenderPage {
        template: view.template,
        layout: (view.content_type == HTML).then_some("layouts/base"),
        content_type: view.content_type,
        status: 200,
        topics: view.topics.clone(),
        compress,
        route,
        data: layout_data(state, view.meta, viewer, view.data),
    };
    state
        .actors
        .renderer
        .send(message)
        .await
        .unwrap_or(Err(RenderError::Unavailable))
        .map_err(PageError::Render)
}

/// Serves `key` from the cache, or loads, renders and caches it. `load`
/// makes the data's future only on a miss: a hit builds nothing (a handler's
/// future is moved several times per request, so its size is paid on hits).
async fn serve_page<F, Fut>(
    req: &HttpRequest,
    state: &AppState,
    viewer: ViewerClass,
    key: &str,
    load: F,
) -> Answer
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Option<View>, StoreError>>,
{
    req.extensions_mut().insert(PageSeen(viewer));
    let load_and_render = |compress| async move {
        match load().await? {
            Some(view) => render(state, view, viewer, compress, route_label(req)).await,
            None => Err(PageError::NotFound),
        }
    };
    if !state.settings.cache.enabled {
        let page = Box::pin(load_and_render(false)).await?;
        return Ok(cached::send(req, &page, Verdict::Bypass, PAGE_CACHE_CONTROL));
    }
    if let Some(page) = state.actors.pages.get(PageKeyRef { path: key, viewer }) {
        return Ok(cached::send(req, &page, Verdict::Hit, PAGE_CACHE_CONTROL));
    }
    let key = PageKey {
        path: key.to_owned(),
        viewer,
    };
    let miss = state.actors.pages.get_or_render(&key, load_and_render(true));
    let (page, lookup) = Box::pin(miss).await?;
    Ok(cached::send(req, &page, lookup.into(), PAGE_CACHE_CONTROL))
}

/// A page that is never cached (search results): loaded and rendered each time.
async fn serve_uncached<F>(req: &HttpRequest, state: &AppState, viewer: ViewerClass, load: F) -> Answer
where
    F: Future<Output = Result<View, StoreError>>,
{
    let page = render(state, load.await?, viewer, false, route_label(req)).await?;
    req.extensions_mut().insert(PageSeen(viewer));
    Ok(cached::send(req, &page, Verdict::Bypass, PAGE_CACHE_CONTROL))
}

/// Query parameters, read leniently: malformed percent-encoding is kept as
/// text, never an error.
fn query_param(req: &HttpRequest, name: &str) -> Option<String> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The `page` parameter: absent means 1; anything but a positive number is no page.
fn page_number(req: &HttpRequest) -> Option<i64> {
    match query_param(req, "page") {
        None => Some(1),
        Some(text) => text.parse::<i64>().ok().filter(|n| *n >= 1),
    }
}

/// The cache key of a page named by the path segment `param` after
/// `prefix`: the request's own path when it is already that (a hit copies
/// nothing), else the path rebuilt from the decoded segment.
fn named_key<'a>(req: &'a HttpRequest, prefix: &str, param: &str) -> Cow<'a, str> {
    let segment = req.match_info().query(param);
    match req.path().strip_prefix(prefix) {
        Some(rest) if rest == segment => Cow::Borrowed(req.path()),
        _ => Cow::Owned(format!("{prefix}{segment}")),
    }
}

fn listing_key(base: &'static str, page: i64) -> Cow<'static, str> {
    if page == 1 {
        Cow::Borrowed(base)
    } else {
        Cow::Owned(format!("{base}?page={page}"))
    }
}

fn pagination<T: Serialize>(listing: Listing<T>) -> Value {
    let previous = (listing.page > 1).then(|| listing.page - 1);
    let next = (listing.page < listing.pages).then(|| listing.page + 1);
    let mut value = to_value(&listing);
    if let Value::Object(map) = &mut value {
        map.insert("previous".into(), to_value(previous));
        map.insert("next".into(), to_value(next));
    }
    value
}

async fn home(req: HttpRequest, state: web::Data<AppState>, viewer: Viewer) -> Answer {
    let class = viewer.class(&state).await?;
    serve_page(&req, &state, class, "/", || async {
        let home = content::get_home(&state.pool).await?;
        Ok(Some(View {
            template: "pages/home",
            content_type: HTML,
            meta: Meta::new(
                "Screencasts and articles",
                "Screencasts and articles on Rust, web services and PostgreSQL.",
                "/",
            ),
            data: data([("home", to_value(&home))]),
            topics: vec![topics::HOME],
        }))
    })
    .await
}

async fn episodes(req: HttpRequest, state: web::Data<AppState>, viewer: Viewer) -> Answer {
    let class = viewer.class(&state).await?;
    let Some(page) = page_number(&req) else {
        return Err(PageError::NotFound);
    };
    let key = listing_key("/episodes", page);
    serve_page(&req, &state, class, &key, || async {
        let Some(listing) = content::list_episodes(&state.pool, page).await? else {
            return Ok(None);
        };
        let title = if page == 1 {
            "Episodes".to_owned()
        } else {
            format!("Episodes, page {page}")
        };
        Ok(Some(View {
            template: "pages/episodes",
            content_type: HTML,
            meta: Meta::new(title, "Every screencast episode, newest first.", &*key),
            data: data([("listing", pagination(listing))]),
            topics: vec![topics::EPISODES],
        }))
    })
    .await
}

async fn episode(req: HttpRequest, state: web::Data<AppState>, viewer: Viewer) -> Answer {
    let class = viewer.class(&state).await?;
    let key = named_key(&req, "/episodes/", "slug");
    serve_page(&req, &state, class, &key, || async {
        let Ok(slug) = Slug::parse(req.match_info().query("slug")) else {
            return Ok(None);
        };
        let episode = content::get_episode_by_slug(&state.pool, &slug).await?;
        Ok(episode.map(|episode| episode_view(&episode, class)))
    })
    .await
}

fn episode_view(episode: &content::Episode, class: ViewerClass) -> View {
    let slug = &episode.summary.slug;
    let mut shows = vec![topics::episode(slug)];
    if let Some(series) = &episode.summary.series {
        shows.push(topics::series(&series.slug));
    }
    let can_watch = !episode.summary.premium || class == ViewerClass::Subscriber;
    let meta = Meta::new(
        &episode.summary.title,
        &episode.summary.summary,
        format!("/episodes/{slug}"),
    )
    .open_graph("video.episode", episode.summary.poster_url.clone());
    View {
        template: "pages/episode",
        content_type: HTML,
        meta,
        data: data([
            ("episode", to_value(episode)),
            ("can_watch", Value::Bool(can_watch)),
        ]),
        topics: shows,
    }
}

async fn series_index(req: HttpRequest, state: web::Data<AppState>, viewer: Viewer) -> Answer {
    let class = viewer.class(&state).await?;
    serve_page(&req, &state, class, "/series", || async {
        let series = content::list_series(&state.pool).await?;
        Ok(Some(View {
            template: "pages/series_index",
            content_type: HTML,
            meta: Meta::new("Series", "Episodes grouped into courses, in order.", "/series"),
            data: data([("series", to_value(&series))]),
            topics: vec![topics::SERIES_INDEX],
        }))
    })
    .await
}

async fn series(req: HttpRequest, state: web::Data<AppState>, viewer: Viewer) -> Answer {
    let class = viewer.class(&state).await?;
    let key = named_key(&req, "/series/", "slug");
    serve_page(&req, &state, class, &key, || async {
        let Ok(slug) = Slug::parse(req.match_info().query("slug")) else {
            return Ok(None);
        };
        let series = content::get_series_by_slug(&state.pool, &slug).await?;
        Ok(series.as_ref().map(series_view))
    })
    .await
}

fn series_view(series: &content::Series) -> View {
    let slug = &series.summary.slug;
    let meta = Meta::new(
        &series.summary.title,
        &series.summary.summary,
        format!("/series/{slug}"),
    )
    .open_graph("website", series.summary.poster_url.clone());
    View {
        template: "pages/series",
        content_type: HTML,
        meta,
        data: data([("series", to_value(series))]),
        topics: vec![topics::series(slug)],
    }
}

async fn articles(req: HttpRequest, state: web::Data<AppState>, viewer: Viewer) -> Answer {
    let class = viewer.class(&state).await?;
    let Some(page) = page_number(&req) else {
        return Err(PageError::NotFound);
    };
    let key = listing_key("/articles", page);
    serve_page(&req, &state, class, &key, || async {
        let Some(listing) = content::list_articles(&state.pool, page).await? else {
            return Ok(None);
        };
        let title = if page == 1 {
            "Articles".to_owned()
        } else {
            format!("Articles, page {page}")
        };
        Ok(Some(View {
            template: "pages/articles",
            content_type: HTML,
            meta: Meta::new(title, "Articles, newest first.", &*key),
            data: data([("listing", pagination(listing))]),
            topics: vec![topics::ARTICLES],
        }))
    })
    .await
}

async fn article(req: HttpRequest, state: web::Data<AppState>, viewer: Viewer) -> Answer {
    let class = viewer.class(&state).await?;
    let key = named_key(&req, "/articles/", "slug");
    serve_page(&req, &state, class, &key, || async {
        let Ok(slug) = Slug::parse(req.match_info().query("slug")) else {
            return Ok(None);
        };
        let article = content::get_article_by_slug(&state.pool, &slug).await?;
        Ok(article.as_ref().map(article_view))
    })
    .await
}

fn article_view(article: &content::Article) -> View {
    let slug = &article.summary.slug;
    let meta = Meta::new(
        &article.summary.title,
        &article.summary.summary,
        format!("/articles/{slug}"),
    )
    .open_graph("article", None);
    View {
        template: "pages/article",
        content_type: HTML,
        meta,
        data: data([("article", to_value(article))]),
        topics: vec![topics::article(slug)],
    }
}

/// The public page an edit in the admin area will make, rendered from the
/// same view as the page itself and as a subscriber sees it (the whole of
/// a premium episode), never cached: the editor's preview.
pub async fn preview(state: &AppState, preview: &Preview) -> Result<HttpResponse, PageError> {
    let view = match preview {
        Preview::Episode(episode) => episode_view(episode, ViewerClass::Subscriber),
        Preview::Series(series) => series_view(series),
        Preview::Article(article) => article_view(article),
    };
    // Never cached, so counted under no route of its own.
    let page = render(state, view, ViewerClass::Subscriber, false, "").await?;
    Ok(HttpResponse::Ok()
        .content_type(HTML)
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        ))
        .insert_header(("x-robots-tag", "noindex"))
        .body(page.identity.clone()))
}

async fn tag(req: HttpRequest, state: web::Data<AppState>, viewer: Viewer) -> Answer {
    let class = viewer.class(&state).await?;
    let key = named_key(&req, "/tags/", "tag");
    serve_page(&req, &state, class, &key, || async {
        let Ok(tag) = Slug::parse_tag(req.match_info().query("tag")) else {
            return Ok(None);
        };
        let path = format!("/tags/{tag}");
        let Some(tagged) = content::list_tagged(&state.pool, &tag).await? else {
            return Ok(None);
        };
        Ok(Some(View {
            template: "pages/tag",
            content_type: HTML,
            meta: Meta::new(
                format!("Tagged “{tag}”"),
                format!("Episodes and articles about {tag}."),
                path,
            ),
            data: data([("tagged", to_value(&tagged))]),
            topics: vec![topics::tag(&tag)],
        }))
    })
    .await
}

async fn search(req: HttpRequest, state: web::Data<AppState>, client: ClientAddr, viewer: Viewer) -> Answer {
    let class = viewer.class(&state).await?;
    let query = content::clean_query(&query_param(&req, "q").unwrap_or_default());
    if !query.is_empty() {
        limits::check(&state, &client, Limit::Search, None).await?;
    }
    serve_uncached(&req, &state, class, async {
        let hits = content::search(&state.pool, &query).await?;
        let title = if query.is_empty() {
            "Search".to_owned()
        } else {
            format!("Search: {query}")
        };
        Ok(View {
            template: "pages/search",
            content_type: HTML,
            meta: Meta::new(title, "Search episodes and articles.", "/search"),
            data: data([
                ("searched", Value::Bool(!query.is_empty())),
                ("query", Value::String(query.clone())),
                ("hits", to_value(&hits)),
            ]),
            topics: Vec::new(),
        })
    })
    .await
}

async fn feed(req: HttpRequest, state: web::Data<AppState>) -> Answer {
    // The same for every reader: feeds and sitemaps are for machines.
    let class = ViewerClass::Anonymous;
    serve_page(&req, &state, class, "/feed.xml", || async {
        let entries = content::list_feed_entries(&state.pool, 20).await?;
        let updated = entries
            .iter()
            .map(|e| e.updated_at)
            .max()
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        Ok(Some(View {
            template: "xml/feed",
            content_type: ATOM,
            meta: Meta::new("Feed", "", "/feed.xml"),
            data: data([
                ("entries", to_value(&entries)),
                ("updated", to_value(rfc3339(updated))),
            ]),
            topics: vec![topics::FEED],
        }))
    })
    .await
}

async fn sitemap(req: HttpRequest, state: web::Data<AppState>) -> Answer {
    // The same for every reader: feeds and sitemaps are for machines.
    let class = ViewerClass::Anonymous;
    serve_page(&req, &state, class, "/sitemap.xml", || async {
        let entries = content::list_sitemap_entries(&state.pool).await?;
        Ok(Some(View {
            template: "xml/sitemap",
            content_type: XML,
            meta: Meta::new("Sitemap", "", "/sitemap.xml"),
            data: data([("entries", to_value(&entries))]),
            topics: vec![topics::SITEMAP],
        }))
    })
    .await
}

fn rfc3339(date: time::OffsetDateTime) -> String {
    date.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn page_numbers_are_positive_integers() {
        let number =
            |q: &str| page_number(&TestRequest::with_uri(&format!("/episodes?{q}")).to_http_request());
        assert_eq!(number(""), Some(1));
        assert_eq!(number("page=3"), Some(3));
        for bad in [
            "page=0",
            "page=-2",
            "page=abc",
            "page=99999999999999999999",
            "page=%ZZ",
        ] {
            assert_eq!(number(bad), None, "{bad}");
        }
    }
}
