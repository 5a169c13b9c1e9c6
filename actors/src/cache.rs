//! The page cache: rendered responses in every encoding, keyed by path and
//! viewer class, weighed in bytes. Like an ETS table, it is read and filled
//! directly by request handlers through a shared [`PageTable`]; the PageCache
//! actor owns invalidation. Content changes publish the cache topics they
//! touch on PostgreSQL `NOTIFY lectern_cache`, so that every node drops its
//! copies.

pub mod actor;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, Weighter};
use serde::Serialize;
use tokio_postgres::Transaction;

pub use actor::{Invalidate, PageCache};

/// The PostgreSQL channel that carries invalidations between nodes.
pub const NOTIFY_CHANNEL: &str = "lectern_cache";
/// NOTIFY payloads must stay under 8000 bytes.
const MAX_PAYLOAD: usize = 7000;

/// Something a cached page shows (an episode, a listing, a tag…): a change
/// to it drops the page. `content::topics` names them, for the pages that
/// show them and the importer that changes them alike; the cache only
/// compares them, and carries them between nodes as strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Topic(Cow<'static, str>);

impl Topic {
    /// Every page: what a node drops when it may have missed changes.
    pub const EVERYTHING: Topic = Topic::fixed("*");

    pub(crate) const fn fixed(name: &'static str) -> Topic {
        Topic(Cow::Borrowed(name))
    }

    pub(crate) fn named(name: String) -> Topic {
        Topic(Cow::Owned(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who is looking: the one thing about a viewer a cached page may depend
/// on. Nothing personal (a name, a form token) is ever in a cached page:
/// `/me` fills that in. A subscriber sees premium videos; a member is asked
/// to subscribe where a visitor is asked to sign up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewerClass {
    Anonymous,
    Member,
    Subscriber,
}

/// A cache key: the canonical path (with only the query parameters that
/// matter, normalised) and the viewer class.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub path: String,
    pub viewer: ViewerClass,
}

/// A cache key to look a page up with, borrowing its path: a hit allocates
/// nothing. It hashes as [`PageKey`] does (a `&str` as its `String`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageKeyRef<'a> {
    pub path: &'a str,
    pub viewer: ViewerClass,
}

impl quick_cache::Equivalent<PageKey> for PageKeyRef<'_> {
    fn equivalent(&self, key: &PageKey) -> bool {
        self.path == key.path && self.viewer == key.viewer
    }
}

impl PageKey {
    pub fn borrowed(&self) -> PageKeyRef<'_> {
        PageKeyRef {
            path: &self.path,
            viewer: self.viewer,
        }
    }
}

/// A page's strong ETags, one per encoding, as the `ETag` header carries
/// them (quoted): header values made once per cached page, not checked
/// again on every request. Empty for a page that is not cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ETags {
    pub identity: HeaderValue,
    pub gzip: HeaderValue,
    pub brotli: HeaderValue,
}

impl Default for ETags {
    fn default() -> ETags {
        ETags {
            identity: NO_VALUE,
            gzip: NO_VALUE,
            brotli: NO_VALUE,
        }
    }
}

const NO_VALUE: HeaderValue = HeaderValue::from_static("");

impl ETags {
    fn of(etag: &str) -> ETags {
        if etag.is_empty() {
            return ETags::default();
        }
        // The hash is hex digits: always a valid header value.
        let quoted = |suffix: &str| HeaderValue::from_str(&format!("\"{etag}{suffix}\"")).unwrap_or(NO_VALUE);
        ETags {
            identity: quoted(""),
            gzip: quoted("-gz"),
            brotli: quoted("-br"),
        }
    }
}

/// A rendered response, compressed once, served many times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPage {
    pub status: u16,
    /// The `Content-Type` header's value, made once with the page.
    pub content_type: HeaderValue,
    /// The body as rendered; empty for a page kept compressed, whose
    /// [`CachedPage::identity_body`] is unpacked from its gzip form.
    pub identity: Bytes,
    pub gzip: Bytes,
    pub brotli: Bytes,
    /// A hash of the identity body; each encoding's ETag derives from it.
    /// Empty for a page that is not cached.
    pub etag: String,
    pub etags: ETags,
    /// What the page shows, e.g. `episode:ownership`, `series:async-rust`.
    pub topics: Box<[Topic]>,
    /// The route that made the page (`/episodes/{slug}`), the label a hit
    /// at the front door counts under: found once, at the render, instead of
    /// matching the path against the routes again on every hit.
    pub route: &'static str,
}

impl CachedPage {
    /// Compresses `body` (gzip and brotli) and hashes it, keeping only the
    /// compressed forms: CPU work, done on the Renderer pool.
    pub fn build(status: u16, content_type: &'static str, body: String, topics: Vec<Topic>) -> CachedPage {
        let identity = Bytes::from(body);
        let etag = content_hash(&identity);
        let gzip = gzip(&identity);
        CachedPage {
            status,
            content_type: HeaderValue::from_static(content_type),
            brotli: brotli(&identity),
            etags: ETags::of(&etag),
            etag,
            // Nearly every client takes gzip or brotli: keeping the plain
            // body as well would take most of the cache's memory. A client
            // that wants it gets it unpacked, as nginx's gunzip does.
            identity: if gzip.is_empty() { identity } else { Bytes::new() },
            gzip,
            topics: topics.into_boxed_slice(),
            route: "",
        }
    }

    /// A static file: compressed when it is text (images are compressed
    /// already), with `etag` (its content version) as validator.
    pub fn asset(content_type: &'static str, body: Bytes, etag: String) -> CachedPage {
        let text = content_type.starts_with("text/")
            || matches!(
                content_type,
                "image/svg+xml" | "application/javascript" | "application/json"
            );
        let (gzip, brotli) = if text {
            (gzip(&body), brotli(&body))
        } else {
            (Bytes::new(), Bytes::new())
        };
        CachedPage {
            status: 200,
            content_type: HeaderValue::from_static(content_type),
            identity: body,
            gzip,
            brotli,
            etags: ETags::of(&etag),
            etag,
            topics: Box::new([]),
            route: "",
        }
    }

    /// A page that is served once and never cached: no compression, and no
    /// ETag (nothing would be kept to compare it with).
    pub fn uncompressed(status: u16, content_type: &'static str, body: String) -> CachedPage {
        CachedPage {
            status,
            content_type: HeaderValue::from_static(content_type),
            gzip: Bytes::new(),
            brotli: Bytes::new(),
            etag: String::new(),
            etags: ETags::default(),
            identity: Bytes::from(body),
            topics: Box::new([]),
            route: "",
        }
    }

    /// The uncompressed body: kept, or unpacked from the gzip form.
    pub fn identity_body(&self) -> Bytes {
        if !self.identity.is_empty() || self.gzip.is_empty() {
            return self.identity.clone();
        }
        use std::io::Read;
        let mut body = Vec::with_capacity(self.gzip.len() * 8);
        // Lectern compressed these bytes itself; they unpack.
        match flate2::read::GzDecoder::new(&self.gzip[..]).read_to_end(&mut body) {
            Ok(_) => Bytes::from(body),
            Err(_) => Bytes::new(),
        }
    }

    fn weight(&self) -> u64 {
        let bodies = self.identity.len() + self.gzip.len() + self.brotli.len();
        let topics: usize = self.topics.iter().map(|t| t.as_str().len()).sum();
        (bodies + topics + 256) as u64
    }

    fn shows_any(&self, topics: &BTreeSet<Topic>) -> bool {
        self.topics.iter().any(|t| topics.contains(t))
    }
}

/// A validator for the body: it only has to tell our own versions of a page
/// apart, so a fast 64-bit hash does (SHA-256 took 100 µs for a 54 KB page).
fn content_hash(body: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn gzip(body: &[u8]) -> Bytes {
    let mut encoder =
        flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 3), flate2::Compression::new(6));
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    Bytes::from(encoder.finish().unwrap_or_default())
}

fn brotli(body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() / 3);
    // Quality 5 is brotli's usual on-the-fly setting: near gzip's speed,
    // clearly smaller output. (Quality 9 took 10 ms for a 27 KB page.)
    let params = brotli::enc::BrotliEncoderParams {
        quality: 5,
        lgwin: 22,
        ..Default::default()
    };
    let mut input = body;
    if brotli::BrotliCompress(&mut input, &mut out, &params).is_err() {
        return Bytes::new();
    }
    Bytes::from(out)
}

#[derive(Clone)]
struct ByBytes;

impl Weighter<PageKey, Arc<CachedPage>> for ByBytes {
    fn weight(&self, key: &PageKey, page: &Arc<CachedPage>) -> u64 {
        page.weight() + key.path.len() as u64
    }
}

/// Counts evictions made to stay under capacity.
#[derive(Clone, Default)]
struct CountEvictions(Arc<AtomicU64>);

impl Lifecycle<PageKey, Arc<CachedPage>> for CountEvictions {
    type RequestState = ();

    fn begin_request(&self) -> Self::RequestState {}

    fn on_evict(&self, _: &mut (), _: PageKey, _: Arc<CachedPage>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

type Table = Cache<PageKey, Arc<CachedPage>, ByBytes, quick_cache::DefaultHashBuilder, CountEvictions>;

/// Counters for `/readyz` (and, as they come, `/metrics` and the dashboard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    pub entries: u64,
    pub bytes: u64,
    pub capacity_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub invalidations: u64,
}

/// The shared cache table. It lives outside the PageCache actor (in an
/// `Arc` the supervisor keeps), so that handlers read it without the
/// actor; a restarted PageCache empties it, since it may have missed
/// invalidations while it was away.
pub struct PageTable {
    table: Table,
    evictions: Arc<AtomicU64>,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
    /// Bumped by every invalidation: a page rendered from data read before
    /// it is served but not stored.
    generation: AtomicU64,
    /// Misses now rendering or waiting for another request's render.
    misses_in_flight: AtomicU64,
}

/// Counts one miss in flight for as long as it lives (a request may be
/// dropped while it waits).
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicU64) -> InFlight<'a> {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What [`PageTable::get_or_render`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

impl PageTable {
    pub fn new(capacity_bytes: u64) -> Arc<PageTable> {
        let evictions = Arc::new(AtomicU64::new(0));
        // Estimated at 40 KB an entry; the weight capacity is what binds.
        let estimated_items = (capacity_bytes / 40_000).max(16) as usize;
        Arc::new(PageTable {
            table: Cache::with(
                estimated_items,
                capacity_bytes,
                ByBytes,
                quick_cache::DefaultHashBuilder::default(),
                CountEvictions(Arc::clone(&evictions)),
            ),
            evictions,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            misses_in_flight: AtomicU64::new(0),
        })
    }

    /// The cached page, if any, without waiting.
    pub fn get(&self, key: PageKeyRef<'_>) -> Option<Arc<CachedPage>> {
        let page = self.table.get(&key);
        if page.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        page
    }

    /// The cached page, or the one `render` makes. Concurrent misses for one
    /// key wait for a single render (single-flight); a failed render lets
    /// the next waiter try.
    pub async fn get_or_render<E, F>(&self, key: &PageKey, render: F) -> Result<(Arc<CachedPage>, Lookup), E>
    where
        F: std::future::Future<Output = Result<Arc<CachedPage>, E>>,
    {
        if let Some(page) = self.get(key.borrowed()) {
            return Ok((page, Lookup::Hit));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let _in_flight = InFlight::enter(&self.misses_in_flight);
        match self.table.get_value_or_guard_async(key).await {
            Ok(page) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                Ok((page, Lookup::Miss))
            }
            Err(guard) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                let page = render.await?;
                // Content changed while this page was being rendered: serve
                // it, but do not keep it.
                if self.generation.load(Ordering::Acquire) == generation {
                    let _ = guard.insert(Arc::clone(&page));
                }
                Ok((page, Lookup::Miss))
            }
        }
    }

    /// Drops every page that shows one of `topics` (all pages for `*`).
    pub fn invalidate(&self, topics: &BTreeSet<Topic>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if topics.contains(&Topic::EVERYTHING) {
            self.table.clear();
        } else {
            self.table.retain(|_, page| !page.shows_any(topics));
        }
        // Counted once done: whoever sees the count sees the pages gone.
        self.invalidations.fetch_add(1, Ordering::Release);
    }

    /// Misses now in [`PageTable::get_or_render`]: rendering, or waiting for
    /// the one render of their key.
    pub fn misses_in_flight(&self) -> u64 {
        self.misses_in_flight.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.table.len() as u64,
            bytes: self.table.weight(),
            capacity_bytes: self.table.capacity(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Acquire),
        }
    }
}

/// Announces, when `txn` commits, that pages showing `topics` are stale.
pub async fn publish_invalidation(
    txn: &Transaction<'_>,
    topics: &BTreeSet<Topic>,
) -> Result<(), tokio_postgres::Error> {
    let everything = || format!("[\"{}\"]", Topic::EVERYTHING.as_str());
    let mut payload = serde_json::to_string(topics).unwrap_or_else(|_| everything());
    if payload.len() > MAX_PAYLOAD {
        payload = everything();
    }
    txn.execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &payload])
        .await?;
    Ok(())
}

/// Reads a NOTIFY payload; anything unreadable means "everything".
pub fn parse_topics(payload: &str) -> BTreeSet<Topic> {
    serde_json::from_str::<Vec<String>>(payload)
        .ok()
        .filter(|topics| !topics.is_empty())
        .map_or_else(
            || BTreeSet::from([Topic::EVERYTHING]),
            |topics| topics.into_iter().map(Topic::named).collect(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> PageKey {
        PageKey {
            path: path.to_owned(),
            viewer: ViewerClass::Anonymous,
        }
    }

    fn topics(names: &[&'static str]) -> BTreeSet<Topic> {
        names.iter().map(|name| Topic::fixed(name)).collect()
    }

    fn page(body: &str, shows: &[&'static str]) -> Arc<CachedPage> {
        Arc::new(CachedPage::build(
            200,
            "text/html; charset=utf-8",
            body.to_owned(),
            topics(shows).into_iter().collect(),
        ))
    }

    #[test]
    fn encodings_decode_to_the_same_body() {
        use std::io::Read;
        let body = "<p>hello</p>".repeat(200);
        let cached = page(&body, &[]);
        let mut gunzipped = String::new();
        flate2::read::GzDecoder::new(&cached.gzip[..])
            .read_to_string(&mut gunzipped)
            .expect("gzip");
        assert_eq!(gunzipped, body);
        let mut unbrotlied = Vec::new();
        brotli::BrotliDecompress(&mut &cached.brotli[..], &mut unbrotlied).expect("brotli");
        assert_eq!(unbrotlied, body.as_bytes());
        assert!(cached.brotli.len() < cached.gzip.len() && cached.gzip.len() < body.len() / 10);
        // Only the compressed forms are kept; the plain body comes back whole.
        assert!(cached.identity.is_empty());
        assert_eq!(cached.identity_body(), body.as_bytes());
    }

    #[test]
    fn invalidation_drops_only_pages_that_show_a_topic() {
        let table = PageTable::new(10_000_000);
        table
            .table
            .insert(key("/episodes/a"), page("a", &["episode:a", "series:s"]));
        table
            .table
            .insert(key("/episodes/b"), page("b", &["episode:b", "series:t"]));
        table.table.insert(key("/"), page("home", &["home"]));

        table.invalidate(&topics(&["series:s", "home"]));

        assert!(table.get(key("/episodes/a").borrowed()).is_none());
        assert!(table.get(key("/").borrowed()).is_none());
        assert!(table.get(key("/episodes/b").borrowed()).is_some());
        table.invalidate(&BTreeSet::from([Topic::EVERYTHING]));
        assert_eq!(table.stats().entries, 0);
    }

    #[test]
    fn capacity_is_in_bytes_and_evictions_are_counted() {
        // Pages weigh what they keep: their compressed forms.
        let table = PageTable::new(20_000);
        for i in 0..100 {
            table.table.insert(
                key(&format!("/p/{i}")),
                page(&format!("{i:04}").repeat(2_000), &[]),
            );
        }
        let stats = table.stats();
        assert!(stats.bytes <= 20_000, "{stats:?}");
        assert!(stats.evictions > 0, "{stats:?}");
    }

    #[test]
    fn unreadable_payloads_invalidate_everything() {
        assert_eq!(parse_topics("[\"home\",\"feed\"]"), topics(&["feed", "home"]));
        for bad in ["", "not json", "[]", "{\"a\":1}"] {
            assert_eq!(parse_topics(bad), topics(&["*"]), "{bad}");
        }
    }
}
