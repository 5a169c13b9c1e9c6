//! Page views: HTTP workers record each into [`PageViews`], a bounded ring
//! kept outside the EventLog (as the page table is kept outside PageCache),
//! so that recording one costs a push and no message, no lock, no
//! database; the EventLog drains it in batches. Under overload the ring
//! drops its oldest views and counts each drop.
//!
//! No cookie and no address is stored: a view carries the client's address
//! and a hash of its User-Agent ([`AgentHash`]) only in memory, until the
//! EventLog turns them into the visitor hash under the day's salt (see
//! [`super::day_salt`]).

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use crossbeam_queue::ArrayQueue;
use hashbrown::HashTable;
use siphasher::sip::SipHasher13;
use tokio::sync::Notify;

use crate::cache::ViewerClass;

/// A day's salt for visitor hashes (a SipHash key).
pub type Salt = [u8; 16];

/// One page answered with 200 to a GET.
pub struct PageView {
    pub(super) at: SystemTime,
    pub(super) path: ShortText,
    pub(super) referrer_host: Option<ShortText>,
    pub(super) country: Option<[u8; 2]>,
    pub(super) viewer: ViewerClass,
    client: Client,
}

/// A User-Agent made a number, the part of a visitor that is not its
/// address. Made by the HTTP worker, which may keep it for the next request
/// with the same User-Agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgentHash(u64);

impl AgentHash {
    pub fn of(user_agent: &[u8]) -> AgentHash {
        AgentHash(AGENT_HASH.hash_one(user_agent))
    }
}

/// Who is asking, before the day's salt turns it into the visitor hash:
/// the address (an IPv6 one as its /64, which one subscriber usually has
/// whole) and a hash of the User-Agent. Never written anywhere.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Client {
    address: [u8; 16],
    agent: AgentHash,
}

impl PageView {
    /// A view of `path` at `at`. `referrer` is the `Referer` header as sent
    /// (only its host is kept), `country` the proxy's two-letter header.
    pub fn new(
        at: SystemTime,
        path: &str,
        referrer: Option<&[u8]>,
        country: Option<[u8; 2]>,
        viewer: ViewerClass,
        address: Option<IpAddr>,
        agent: AgentHash,
    ) -> PageView {
        PageView {
            at,
            path: ShortText::new(path),
            referrer_host: referrer.and_then(referrer_host).map(|host| {
                let mut host = ShortText::new(host);
                host.make_ascii_lowercase();
                host
            }),
            country,
            viewer,
            client: Client {
                address: address.map_or([0; 16], address_bytes),
                agent,
            },
        }
    }

    /// What this view has in common with the views one row counts;
    /// `unix_day`: the day of its moment, counted from the epoch.
    pub(super) fn alike(&self, unix_day: i64) -> Alike<'_> {
        Alike {
            unix_day,
            path: self.path.as_bytes(),
            referrer_host: self.referrer_host.as_ref().map(ShortText::as_bytes),
            country: self.country,
            viewer: self.viewer,
            client: self.client,
        }
    }

    /// The visitor hash under `salt`: one visitor, one value a day.
    pub(super) fn visitor(&self, salt: &Salt) -> i64 {
        let mut hasher = SipHasher13::new_with_key(salt);
        hasher.write(&self.client.address);
        hasher.write_u64(self.client.agent.0);
        i64::from_ne_bytes(hasher.finish().to_ne_bytes())
    }
}

/// Views alike in all of these are one row (see
/// [`super::insert_page_views`]): the client, not yet its visitor hash, so
/// that the hash is made once a row; the text as bytes, checked once a row.
#[derive(PartialEq, Eq, Hash)]
pub(super) struct Alike<'a> {
    unix_day: i64,
    path: &'a [u8],
    referrer_host: Option<&'a [u8]>,
    country: Option<[u8; 2]>,
    viewer: ViewerClass,
    client: Client,
}

/// Views taken out of the ring, alike ones folded into one row as they
/// come out (see [`super::insert_page_views`]): a view is copied once,
/// into its row or nowhere, rather than into a batch first and folded
/// after.
#[derive(Default)]
pub(super) struct Batch {
    /// Each row's first view and how many views the row counts.
    pub(super) rows: Vec<(PageView, i32)>,
    /// The rows, found by the hash of what their views share.
    row_of: HashTable<usize>,
    hasher: foldhash::fast::RandomState,
    views: u64,
}

impl Batch {
    /// Counts `view` in the row of views alike, or starts a row.
    fn add(&mut self, view: PageView) {
        fn alike(view: &PageView) -> Alike<'_> {
            view.alike(super::unix_day(view.at))
        }
        self.views += 1;
        let (rows, hasher) = (&mut self.rows, &self.hasher);
        let key = alike(&view);
        let hash = hasher.hash_one(&key);
        match self.row_of.find(hash, |&row| alike(&rows[row].0) == key) {
            Some(&row) => rows[row].1 += 1,
            None => {
                self.row_of
                    .insert_unique(hash, rows.len(), |&row| hasher.hash_one(alike(&rows[row].0)));
                rows.push((view, 1));
            }
        }
    }

    /// How many views the rows count.
    pub(super) fn views(&self) -> u64 {
        self.views
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// How a User-Agent is made a number: a fixed seed, so that it hashes
/// alike on every node (and the day's salted SipHash of address and number
/// is what keeps a visitor unknown). foldhash reads it sixteen bytes a step,
/// a quarter of SipHash's cost; a release of foldhash that hashed
/// differently would count a visitor seen on both sides of the upgrade
/// twice that day.
const AGENT_HASH: foldhash::quality::FixedState =
    foldhash::quality::FixedState::with_seed(0x6c65_6374_6572_6e00);

/// An address as 16 bytes: IPv4 as IPv4-mapped IPv6, IPv6 cut to its /64.
fn address_bytes(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_ipv6_mapped().octets(),
            None => {
                let mut bytes = v6.octets();
                bytes[8..].fill(0);
                bytes
            }
        },
    }
}

/// The host of an `http` or `https` referrer, without user, port, path or
/// query; `None` for anything else.
pub fn referrer_host(referrer: &[u8]) -> Option<&str> {
    let scheme_end = referrer.iter().position(|&b| b == b':')?;
    let scheme = &referrer[..scheme_end];
    if !(scheme.eq_ignore_ascii_case(b"https") || scheme.eq_ignore_ascii_case(b"http")) {
        return None;
    }
    let rest = referrer[scheme_end + 1..].strip_prefix(b"//")?;
    let authority = rest
        .split(|&b| matches!(b, b'/' | b'?' | b'#'))
        .next()
        .unwrap_or_default();
    let host_and_port = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    let host = match host_and_port.strip_prefix(b"[") {
        // An IPv6 literal keeps its brackets.
        Some(v6) => &host_and_port[..v6.iter().position(|&b| b == b']')? + 2],
        None => host_and_port.split(|&b| b == b':').next().unwrap_or_default(),
    };
    let plain = host
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':'));
    let host = std::str::from_utf8(host).ok()?;
    (!host.is_empty() && host.len() <= 253 && plain).then_some(host)
}

/// A path or host: kept inline when short, as nearly all are, so that a
/// view usually costs no allocation.
pub(super) enum ShortText {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

const INLINE: usize = 62;

impl ShortText {
    fn new(text: &str) -> ShortText {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                ShortText::Inline { len, bytes }
            }
            _ => ShortText::Heap(text.into()),
        }
    }

    fn make_ascii_lowercase(&mut self) {
        match self {
            ShortText::Inline { len, bytes } => bytes[..usize::from(*len)].make_ascii_lowercase(),
            ShortText::Heap(text) => text.make_ascii_lowercase(),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            ShortText::Inline { len, bytes } => &bytes[..usize::from(*len)],
            ShortText::Heap(text) => text.as_bytes(),
        }
    }

    pub(super) fn as_str(&self) -> &str {
        match self {
            // Copied whole from a `&str`: valid UTF-8.
            ShortText::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("")
            }
            ShortText::Heap(text) => text,
        }
    }
}

/// The ring of page views not yet written, shared by the HTTP workers
/// (which push) and the EventLog (which drains).
pub struct PageViews {
    ring: ArrayQueue<PageView>,
    dropped: AtomicU64,
    written: AtomicU64,
    /// Told once the ring is half full, so that the EventLog drains it
    /// before its interval comes round.
    half_full: Notify,
    drain_asked: AtomicBool,
}

/// What `/metrics` and `/readyz` show of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageViewStats {
    pub buffered: usize,
    pub dropped: u64,
    pub written: u64,
}

impl PageViews {
    /// A ring of `capacity` views (at least one).
    pub fn new(capacity: usize) -> PageViews {
        PageViews {
            ring: ArrayQueue::new(capacity.max(1)),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            half_full: Notify::new(),
            drain_asked: AtomicBool::new(false),
        }
    }

    /// Records a view; never waits. A full ring drops its oldest view.
    pub fn record(&self, view: PageView) {
        if self.ring.force_push(view).is_some() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if self.ring.len() * 2 >= self.ring.capacity() && !self.drain_asked.swap(true, Ordering::Relaxed) {
            self.half_full.notify_one();
        }
    }

    pub fn stats(&self) -> PageViewStats {
        PageViewStats {
            buffered: self.ring.len(),
            dropped: self.dropped.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
        }
    }

    /// Up to `max` of the oldest views, taken out of the ring and folded.
    pub(super) fn take(&self, max: usize) -> Batch {
        self.drain_asked.store(false, Ordering::Relaxed);
        let mut batch = Batch::default();
        for view in std::iter::from_fn(|| self.ring.pop()).take(max) {
            batch.add(view);
        }
        batch
    }

    pub(super) fn count_written(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
    }

    /// Resolves once a push found the ring half full.
    pub(super) async fn half_full(&self) {
        self.half_full.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(path: &str) -> PageView {
        PageView::new(
            SystemTime::now(),
            path,
            None,
            None,
            ViewerClass::Anonymous,
            Some("192.0.2.1".parse().unwrap()),
            AgentHash::of(b"Mozilla/5.0"),
        )
    }

    #[test]
    fn a_flood_drops_the_oldest_and_counts_exactly_the_drops() {
        let views = PageViews::new(100);
        for n in 0..250 {
            views.record(view(&format!("/episodes/{n}")));
        }
        let stats = views.stats();
        assert_eq!((stats.buffered, stats.dropped), (100, 150));
        let kept: Vec<String> = views
            .take(1000)
            .rows
            .iter()
            .map(|(v, _)| v.path.as_str().to_owned())
            .collect();
        let newest: Vec<String> = (150..250).map(|n| format!("/episodes/{n}")).collect();
        assert_eq!(kept, newest);
        assert_eq!(views.stats().buffered, 0);
    }

    #[test]
    fn a_batch_folds_alike_views_into_one_row_as_they_leave_the_ring() {
        let views = PageViews::new(100);
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(20_000 * 86_400);
        let seen = |path: &str, at: SystemTime, agent: &[u8]| {
            PageView::new(
                at,
                path,
                None,
                None,
                ViewerClass::Anonymous,
                Some("192.0.2.1".parse().unwrap()),
                AgentHash::of(agent),
            )
        };
        for _ in 0..3 {
            views.record(seen("/a", at, b"Firefox"));
        }
        views.record(seen("/b", at, b"Firefox"));
        views.record(seen(
            "/a",
            at + std::time::Duration::from_secs(86_400),
            b"Firefox",
        ));
        views.record(seen("/a", at, b"Chrome"));
        views.record(seen("/a", at + std::time::Duration::from_secs(60), b"Firefox"));
        let batch = views.take(1000);
        let rows: Vec<(&str, i32)> = batch
            .rows
            .iter()
            .map(|(view, count)| (view.path.as_str(), *count))
            .collect();
        assert_eq!(rows, [("/a", 4), ("/b", 1), ("/a", 1), ("/a", 1)]);
        assert_eq!(batch.views(), 7);
        assert_eq!(batch.rows[0].0.at, at, "a row is timed at its first view");
        assert!(views.take(1000).is_empty());
    }

    #[test]
    fn referrers_keep_their_host_only() {
        let host = |r: &'static str| referrer_host(r.as_bytes());
        assert_eq!(
            host("https://news.example.com/item?id=1"),
            Some("news.example.com")
        );
        assert_eq!(host("http://user:pw@example.org:8080/x#y"), Some("example.org"));
        assert_eq!(host("HTTPS://example.org"), Some("example.org"));
        assert_eq!(host("https://[2001:db8::1]:443/"), Some("[2001:db8::1]"));
        assert_eq!(host("android-app://com.example"), None);
        assert_eq!(host("https:///nothing"), None);
        assert_eq!(host("https://exa mple.org/"), None);
        assert_eq!(host("not a url"), None);
    }

    #[test]
    fn one_visitor_a_day_and_another_for_another_agent_address_or_day() {
        let (today, tomorrow) = ([1; 16], [2; 16]);
        let seen = |address: &str, agent: &[u8], salt: &Salt| {
            PageView::new(
                SystemTime::now(),
                "/",
                None,
                None,
                ViewerClass::Anonymous,
                address.parse().ok(),
                AgentHash::of(agent),
            )
            .visitor(salt)
        };
        let visitor = seen("192.0.2.1", b"Firefox", &today);
        assert_eq!(visitor, seen("::ffff:192.0.2.1", b"Firefox", &today));
        assert_ne!(visitor, seen("192.0.2.1", b"Chrome", &today));
        assert_ne!(visitor, seen("192.0.2.2", b"Firefox", &today));
        assert_ne!(visitor, seen("192.0.2.1", b"Firefox", &tomorrow));
        assert_eq!(
            seen("2001:db8:1:2::1", b"Firefox", &today),
            seen("2001:db8:1:2:aaaa::9", b"Firefox", &today),
            "an IPv6 client is its /64"
        );
    }

    #[test]
    fn long_paths_are_kept_whole_and_hosts_lower_cased() {
        let long = format!("/episodes/{}", "x".repeat(200));
        assert_eq!(view(&long).path.as_str(), long);
        assert_eq!(view("/").path.as_str(), "/");
        let referred = |r: &str| {
            let view = PageView::new(
                SystemTime::now(),
                "/",
                Some(r.as_bytes()),
                None,
                ViewerClass::Member,
                None,
                AgentHash::of(b""),
            );
            view.referrer_host.map(|h| h.as_str().to_owned())
        };
        assert_eq!(
            referred("https://News.Example.COM/x").as_deref(),
            Some("news.example.com")
        );
        let long_host = format!("https://{}.example/", "A".repeat(100));
        assert_eq!(referred(&long_host), Some(format!("{}.example", "a".repeat(100))));
    }
}
