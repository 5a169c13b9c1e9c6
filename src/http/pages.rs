//! The visitor's pages. Each handler names its cache key (the canonical
//! path with only the query parameters that matter) and how to load its
//! data; `serve_page` does the rest: a hit is answered from memory in the
//! encoding the client accepts, concurrent misses render once, and a
//! database outage gets the 503 page while cached pages keep being served.

use std::future::Future;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use lectern_actors::cache::{CachedPage, PageKey, Topic, ViewerClass};
use lectern_actors::content::{self, topics, Listing, Slug};
use lectern_actors::render::{RenderError, RenderPage};
use lectern_actors::store::StoreError;
use serde::Serialize;
use serde_json::{json, Map, Value};
use slog::{error, warn};
use std::sync::Arc;

use super::middleware::X_CACHE;
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

/// What the layout shows about a page: title, description, canonical path,
/// OpenGraph type and image.
#[derive(Serialize)]
pub struct Meta {
    title: String,
    description: String,
    path: String,
    og_type: &'static str,
    og_image: Option<String>,
}

impl Meta {
    pub fn new(title: impl Into<String>, description: impl Into<String>, path: impl Into<String>) -> Meta {
        Meta {
            title: title.into(),
            description: description.into(),
            path: path.into(),
            og_type: "website",
            og_image: None,
        }
    }
}

fn data(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn to_value(value: impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Why a page could not be served from its data.
enum Failure {
    NotFound,
    Database(StoreError),
    Render(RenderError),
}

/// A page's own data with what the layout needs: site, page and viewer.
pub fn layout_data(state: &AppState, meta: Meta, mut data: Map<String, Value>) -> Value {
    data.insert(
        "site".into(),
        json!({ "name": "Lectern", "public_url": state.settings.server.public_url }),
    );
    data.insert("page".into(), to_value(&meta));
    data.insert(
        "viewer".into(),
        json!({ "class": "anonymous", "subscriber": false }),
    );
    // Personal pages name their user; cached pages never do (`/me` fills it in).
    data.entry("user").or_insert(Value::Null);
    Value::Object(data)
}

async fn render(state: &AppState, view: View, compress: bool) -> Result<Arc<CachedPage>, Failure> {
    let message = RenderPage {
        template: view.template,
        layout: (view.content_type == HTML).then_some("layouts/base"),
        content_type: view.content_type,
        status: 200,
        topics: view.topics.clone(),
        compress,
        data: layout_data(state, view.meta, view.data),
    };
    state
        .actors
        .renderer
        .send(message)
        .await
        .unwrap_or(Err(RenderError::Unavailable))
        .map_err(Failure::Render)
}

/// Serves `key` from the cache, or loads, renders and caches it. `load`
/// makes the data's future only on a miss: a hit builds nothing (a handler's
/// future is moved several times per request, so its size is paid on hits).
async fn serve_page<F, Fut>(req: &HttpRequest, state: &AppState, key: String, load: F) -> HttpResponse
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Option<View>, StoreError>>,
{
    if !state.settings.cache.enabled {
        let page = async {
            match load().await {
                Ok(Some(view)) => render(state, view, false).await,
                Ok(None) => Err(Failure::NotFound),
                Err(e) => Err(Failure::Database(e)),
            }
        };
        return match Box::pin(page).await {
            Ok(page) => send(req, &page, "bypass"),
            Err(failure) => fail(req, state, failure).await,
        };
    }
    let key = PageKey {
        path: key,
        viewer: ViewerClass::Anonymous,
    };
    if let Some(page) = state.actors.pages.get(&key) {
        return send(req, &page, "hit");
    }
    let miss = async {
        let render = async {
            match load().await {
                Ok(Some(view)) => render(state, view, true).await,
                Ok(None) => Err(Failure::NotFound),
                Err(e) => Err(Failure::Database(e)),
            }
        };
        state.actors.pages.get_or_render(&key, render).await
    };
    match Box::pin(miss).await {
        Ok((page, lookup)) => send(req, &page, lookup.as_str()),
        Err(failure) => fail(req, state, failure).await,
    }
}

/// A page that is never cached (search results): loaded and rendered each time.
async fn serve_uncached<F>(req: &HttpRequest, state: &AppState, load: F) -> HttpResponse
where
    F: Future<Output = Result<View, StoreError>>,
{
    let outcome = match load.await {
        Ok(view) => render(state, view, false).await,
        Err(e) => Err(Failure::Database(e)),
    };
    match outcome {
        Ok(page) => send(req, &page, "bypass"),
        Err(failure) => fail(req, state, failure).await,
    }
}

async fn fail(req: &HttpRequest, state: &AppState, failure: Failure) -> HttpResponse {
    match failure {
        Failure::NotFound => super::errors::not_found_page(req, state).await,
        Failure::Database(e) => {
            warn!(state.log, "page unavailable: database error"; "path" => req.path(), "error" => %e);
            super::errors::unavailable_page(req, state).await
        }
        Failure::Render(e) => {
            error!(state.log, "page cannot be rendered"; "path" => req.path(), "error" => %e);
            super::errors::server_error_page()
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

/// The best encoding the client accepts that the page has.
fn negotiate(req: &HttpRequest, page: &CachedPage) -> Encoding {
    let Some(accept) = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
    else {
        return Encoding::Identity;
    };
    let accepts = |name: &str| {
        accept.split(',').any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().map_or(true, |q| q <= 0.0))
            });
            coding.eq_ignore_ascii_case(name) && !refused
        })
    };
    if !page.brotli.is_empty() && accepts("br") {
        Encoding::Brotli
    } else if !page.gzip.is_empty() && accepts("gzip") {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// Answers with the cached page: the negotiated body, a strong ETag per
/// encoding, 304 when the client has it already.
fn send(req: &HttpRequest, page: &CachedPage, verdict: &'static str) -> HttpResponse {
    let encoding = negotiate(req, page);
    let (body, suffix, content_encoding) = match encoding {
        Encoding::Brotli => (&page.brotli, "-br", Some("br")),
        Encoding::Gzip => (&page.gzip, "-gz", Some("gzip")),
        Encoding::Identity => (&page.identity, "", None),
    };
    let has_etag = !page.etag.is_empty();
    let not_modified = has_etag
        && page.status == 200
        && req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| {
                tags.split(',').any(|t| {
                    let t = t.trim().trim_start_matches("W/");
                    t == "*"
                        || t.strip_prefix('"')
                            .is_some_and(|t| t.starts_with(page.etag.as_str()))
                })
            });
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::build(StatusCode::from_u16(page.status).unwrap_or(StatusCode::OK))
    };
    if has_etag {
        response.insert_header((header::ETAG, format!("\"{}{suffix}\"", page.etag)));
    }
    response
        .insert_header((header::VARY, HeaderValue::from_static("Accept-Encoding")))
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, no-cache"),
        ))
        .insert_header((X_CACHE, HeaderValue::from_static(verdict)));
    if not_modified {
        return response.finish();
    }
    if let Some(coding) = content_encoding {
        response.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static(coding)));
    }
    response.content_type(page.content_type).body(body.clone())
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

fn listing_key(base: &str, page: i64) -> String {
    if page == 1 {
        base.to_owned()
    } else {
        format!("{base}?page={page}")
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

async fn home(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    serve_page(&req, &state, "/".into(), || async {
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

async fn episodes(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(page) = page_number(&req) else {
        return super::errors::not_found_page(&req, &state).await;
    };
    let key = listing_key("/episodes", page);
    serve_page(&req, &state, key.clone(), || async {
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
            meta: Meta::new(title, "Every screencast episode, newest first.", key),
            data: data([("listing", pagination(listing))]),
            topics: vec![topics::EPISODES],
        }))
    })
    .await
}

async fn episode(req: HttpRequest, state: web::Data<AppState>, slug: web::Path<String>) -> HttpResponse {
    let Ok(slug) = Slug::parse(&slug) else {
        return super::errors::not_found_page(&req, &state).await;
    };
    let path = format!("/episodes/{slug}");
    serve_page(&req, &state, path.clone(), || async {
        let Some(episode) = content::get_episode_by_slug(&state.pool, &slug).await? else {
            return Ok(None);
        };
        let mut shows = vec![topics::episode(&slug)];
        if let Some(series) = &episode.summary.series {
            shows.push(topics::series(&series.slug));
        }
        let can_watch = !episode.summary.premium;
        let mut meta = Meta::new(&episode.summary.title, &episode.summary.summary, path);
        meta.og_type = "video.episode";
        meta.og_image = episode.summary.poster_url.clone();
        Ok(Some(View {
            template: "pages/episode",
            content_type: HTML,
            meta,
            data: data([
                ("episode", to_value(&episode)),
                ("can_watch", Value::Bool(can_watch)),
            ]),
            topics: shows,
        }))
    })
    .await
}

async fn series_index(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    serve_page(&req, &state, "/series".into(), || async {
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

async fn series(req: HttpRequest, state: web::Data<AppState>, slug: web::Path<String>) -> HttpResponse {
    let Ok(slug) = Slug::parse(&slug) else {
        return super::errors::not_found_page(&req, &state).await;
    };
    let path = format!("/series/{slug}");
    serve_page(&req, &state, path.clone(), || async {
        let Some(series) = content::get_series_by_slug(&state.pool, &slug).await? else {
            return Ok(None);
        };
        let mut meta = Meta::new(&series.summary.title, &series.summary.summary, path);
        meta.og_image = series.summary.poster_url.clone();
        Ok(Some(View {
            template: "pages/series",
            content_type: HTML,
            meta,
            data: data([("series", to_value(&series))]),
            topics: vec![topics::series(&slug)],
        }))
    })
    .await
}

async fn articles(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(page) = page_number(&req) else {
        return super::errors::not_found_page(&req, &state).await;
    };
    let key = listing_key("/articles", page);
    serve_page(&req, &state, key.clone(), || async {
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
            meta: Meta::new(title, "Articles, newest first.", key),
            data: data([("listing", pagination(listing))]),
            topics: vec![topics::ARTICLES],
        }))
    })
    .await
}

async fn article(req: HttpRequest, state: web::Data<AppState>, slug: web::Path<String>) -> HttpResponse {
    let Ok(slug) = Slug::parse(&slug) else {
        return super::errors::not_found_page(&req, &state).await;
    };
    let path = format!("/articles/{slug}");
    serve_page(&req, &state, path.clone(), || async {
        let Some(article) = content::get_article_by_slug(&state.pool, &slug).await? else {
            return Ok(None);
        };
        let mut meta = Meta::new(&article.summary.title, &article.summary.summary, path);
        meta.og_type = "article";
        Ok(Some(View {
            template: "pages/article",
            content_type: HTML,
            meta,
            data: data([("article", to_value(&article))]),
            topics: vec![topics::article(&slug)],
        }))
    })
    .await
}

async fn tag(req: HttpRequest, state: web::Data<AppState>, tag: web::Path<String>) -> HttpResponse {
    let Ok(tag) = Slug::parse_tag(&tag) else {
        return super::errors::not_found_page(&req, &state).await;
    };
    let path = format!("/tags/{tag}");
    serve_page(&req, &state, path.clone(), || async {
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

async fn search(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let query = content::clean_query(&query_param(&req, "q").unwrap_or_default());
    serve_uncached(&req, &state, async {
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

async fn feed(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    serve_page(&req, &state, "/feed.xml".into(), || async {
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

async fn sitemap(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    serve_page(&req, &state, "/sitemap.xml".into(), || async {
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

    fn page() -> CachedPage {
        CachedPage::build(200, HTML, "<p>x</p>".repeat(100), Vec::new())
    }

    #[test]
    fn brotli_then_gzip_then_identity() {
        let choose = |accept: &str| {
            negotiate(
                &TestRequest::default()
                    .insert_header(("Accept-Encoding", accept))
                    .to_http_request(),
                &page(),
            )
        };
        assert!(choose("gzip, deflate, br") == Encoding::Brotli);
        assert!(choose("gzip") == Encoding::Gzip);
        assert!(choose("br;q=0, gzip;q=0.5") == Encoding::Gzip);
        assert!(choose("identity") == Encoding::Identity);
        assert!(choose("BR") == Encoding::Brotli);
        assert!(negotiate(&TestRequest::default().to_http_request(), &page()) == Encoding::Identity);
    }

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
