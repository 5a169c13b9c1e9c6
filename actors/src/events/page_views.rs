//! Page views: HTTP workers record each into [`PageViews`], a bounded ring
//! kept outside the EventLog (as the page table is kept outside PageCache),
//! so that recording one costs no message and no database; the EventLog
//! drains it in batches. Each worker first counts alike views that follow
//! one another in a slot of its own (a [`Tally`]), and pushes the tally
//! when a view unlike it comes: a flood from one client is a count, not a
//! ring slot a view. Under overload the ring drops its oldest tallies and
//! counts each view dropped.
//!
//! No cookie and no address is stored: a view carries the client's address
//! and a hash of its User-Agent ([`AgentHash`]) only in memory, until the
//! EventLog turns them into the visitor hash under the day's salt (see
//! [`super::day_salt`]).

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, TryLockError};
use std::time::SystemTime;

use crossbeam_queue::ArrayQueue;
use hashbrown::HashTable;
use siphasher::sip::SipHasher13;
use tokio::sync::Notify;

use crate::cache::ViewerClass;

/// A day's salt for visitor hashes (a SipHash key).
pub type Salt = [u8; 16];

/// A page answered with 200 to a GET, as its HTTP worker sees it: borrowed
/// from the request, and made a [`PageView`] only when it is not counted in
/// the worker's tally.
pub struct Seen<'a> {
    pub at: SystemTime,
    pub path: &'a str,
    /// The `Referer` header as sent (only its host is kept).
    pub referrer: Option<&'a [u8]>,
    /// The proxy's two-letter country header.
    pub country: Option<[u8; 2]>,
    pub viewer: ViewerClass,
    pub address: Option<IpAddr>,
    pub agent: AgentHash,
}

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
    pub fn new(seen: &Seen<'_>) -> PageView {
        PageView {
            at: seen.at,
            path: ShortText::new(seen.path),
            referrer_host: seen.referrer.and_then(referrer_host).map(|host| {
                let mut host = ShortText::new(host);
                host.make_ascii_lowercase();
                host
            }),
            country: seen.country,
            viewer: seen.viewer,
            client: Client {
                address: seen.address.map_or([0; 16], address_bytes),
                agent: seen.agent,
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
    /// A batch with room for `rows` rows, so that it need not grow.
    fn with_capacity(rows: usize) -> Batch {
        Batch {
            rows: Vec::with_capacity(rows),
            row_of: HashTable::with_capacity(rows),
            ..Batch::default()
        }
    }

    /// Counts a tally's views in the row of views alike, or starts a row.
    fn add(
        &mut self,
        Tally {
            view,
            count,
            unix_day,
            ..
        }: Tally,
    ) {
        fn alike(view: &PageView) -> Alike<'_> {
            view.alike(super::unix_day(view.at))
        }
        self.views += u64::from(count);
        // At most `MOST_IN_A_TALLY`, and a row's sum fits too (see `MOST_TAKEN`).
        let count = i32::try_from(count).unwrap_or(i32::MAX);
        let (rows, hasher) = (&mut self.rows, &self.hasher);
        let key = view.alike(unix_day);
        let hash = hasher.hash_one(&key);
        match self.row_of.find(hash, |&row| alike(&rows[row].0) == key) {
            Some(&row) => rows[row].1 += count,
            None => {
                self.row_of
                    .insert_unique(hash, rows.len(), |&row| hasher.hash_one(alike(&rows[row].0)));
                rows.push((view, count));
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

/// Alike views one after another on one worker: the first, how many, and
/// what tells cheaply whether the next is alike.
pub(super) struct Tally {
    view: PageView,
    count: u32,
    /// The first view's day, counted from the epoch...
    unix_day: i64,
    /// ...and its end (`None` past what a `SystemTime` holds).
    day_ends: Option<SystemTime>,
    /// The first view's client address as the worker read it.
    address: Option<IpAddr>,
}

impl Tally {
    fn new(seen: &Seen<'_>) -> Tally {
        let unix_day = super::unix_day(seen.at);
        Tally {
            view: PageView::new(seen),
            count: 1,
            unix_day,
            day_ends: super::end_of_unix_day(unix_day),
            address: seen.address,
        }
    }

    /// Whether `seen` is counted here: the same client (the same address
    /// as read, not only the same /64), path, referrer host, country and
    /// viewer class, later the same day. Each one so counted is one its
    /// row (see [`Alike`]) would count; the converse need not hold, as the
    /// batch folds tallies alike.
    fn counts(&self, seen: &Seen<'_>) -> bool {
        let view = &self.view;
        view.client.agent == seen.agent
            && self.address == seen.address
            && seen.at >= view.at
            && self.day_ends.is_some_and(|end| seen.at < end)
            && view.viewer == seen.viewer
            && view.country == seen.country
            && view.path.as_bytes() == seen.path.as_bytes()
            && match (&view.referrer_host, seen.referrer.and_then(referrer_host)) {
                (None, None) => true,
                (Some(kept), Some(host)) => kept.as_bytes().eq_ignore_ascii_case(host.as_bytes()),
                _ => false,
            }
    }
}

/// The most views one tally counts: past it the worker starts another, so
/// that a batch's row (an `integer`) cannot overflow.
const MOST_IN_A_TALLY: u32 = 1 << 16;

/// Slots for the workers' latest tallies; a worker takes one by the order
/// in which its thread first recorded a view (two workers sharing one only
/// push each other's tallies sooner).
const WORKER_SLOTS: usize = 64;

/// The most tallies one batch takes from the ring (the workers' latest
/// ones come on top).
pub(super) const MOST_TAKEN: usize = 10_000;

const _: () = assert!(
    (MOST_TAKEN + WORKER_SLOTS) as u64 * MOST_IN_A_TALLY as u64 <= i32::MAX as u64,
    "a batch's row counts at most i32::MAX views"
);

/// A worker's latest tally, alone in its cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Latest(Mutex<Option<Tally>>);

/// The ring of page views not yet written, shared by the HTTP workers
/// (which record) and the EventLog (which drains).
pub struct PageViews {
    ring: ArrayQueue<Tally>,
    /// Each worker's latest tally, still counting (see [`PageViews::record`]).
    latest: Box<[Latest]>,
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
    /// Tallies in the ring (of `log.page_view_buffer`), each one view or
    /// more alike ones.
    pub buffered: usize,
    /// Views, not tallies.
    pub dropped: u64,
    pub written: u64,
}

impl PageViews {
    /// A ring of `capacity` tallies (at least one).
    pub fn new(capacity: usize) -> PageViews {
        PageViews {
            ring: ArrayQueue::new(capacity.max(1)),
            latest: (0..WORKER_SLOTS).map(|_| Latest::default()).collect(),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            half_full: Notify::new(),
            drain_asked: AtomicBool::new(false),
        }
    }

    /// Records a view; never waits. A view alike to the worker's latest is
    /// counted in it; another is made a tally of its own and the latest
    /// goes into the ring, where a full ring drops its oldest tally. The
    /// worker's slot is locked only by the worker and, once an interval,
    /// the EventLog taking it: a worker that finds it taken pushes its view
    /// instead of waiting.
    pub fn record(&self, seen: Seen<'_>) {
        let mut latest = match self.latest[worker_slot()].0.try_lock() {
            Ok(latest) => latest,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return self.push(Tally::new(&seen)),
        };
        match latest.as_mut() {
            Some(kept) if kept.count < MOST_IN_A_TALLY && kept.counts(&seen) => kept.count += 1,
            _ => {
                let ended = latest.replace(Tally::new(&seen));
                drop(latest);
                if let Some(ended) = ended {
                    self.push(ended);
                }
            }
        }
    }

    fn push(&self, tally: Tally) {
        if let Some(oldest) = self.ring.force_push(tally) {
            self.dropped.fetch_add(u64::from(oldest.count), Ordering::Relaxed);
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

    /// The oldest tallies, up to [`MOST_TAKEN`], taken out of the ring and
    /// folded; once the ring is empty, the workers' latest tallies too.
    pub(super) fn take(&self) -> Batch {
        self.drain_asked.store(false, Ordering::Relaxed);
        // Room for every tally (distinct visitors are a row each), the
        // workers' latest ones aside.
        let mut batch = Batch::with_capacity(self.ring.len().min(MOST_TAKEN));
        let mut taken = 0;
        for tally in std::iter::from_fn(|| self.ring.pop()).take(MOST_TAKEN) {
            batch.add(tally);
            taken += 1;
        }
        if taken < MOST_TAKEN {
            for latest in &self.latest[..] {
                // Out of the lock before it is folded.
                let kept = latest.0.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(tally) = kept {
                    batch.add(tally);
                }
            }
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

/// This thread's slot among [`WORKER_SLOTS`].
fn worker_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % WORKER_SLOTS;
    }
    SLOT.with(|slot| *slot)
}

#[cfg(test)]
mod tests {
    use super::super::unix_day;
    use super::*;

    const FIREFOX: &[u8] = b"Mozilla/5.0 Firefox";

    fn seen<'a>(path: &'a str, at: SystemTime, agent: &[u8]) -> Seen<'a> {
        Seen {
            at,
            path,
            referrer: None,
            country: None,
            viewer: ViewerClass::Anonymous,
            address: Some("192.0.2.1".parse().unwrap()),
            agent: AgentHash::of(agent),
        }
    }

    fn rows(batch: &Batch) -> Vec<(&str, i32)> {
        batch
            .rows
            .iter()
            .map(|(view, count)| (view.path.as_str(), *count))
            .collect()
    }

    #[test]
    fn a_flood_drops_the_oldest_and_counts_exactly_the_drops() {
        let views = PageViews::new(100);
        let paths: Vec<String> = (0..250).map(|n| format!("/episodes/{n}")).collect();
        for path in &paths {
            views.record(seen(path, SystemTime::now(), FIREFOX));
        }
        // The newest is still the worker's latest tally; the 249 before it
        // went into the ring, which kept the last 100.
        let stats = views.stats();
        assert_eq!((stats.buffered, stats.dropped), (100, 149));
        let batch = views.take();
        let kept: Vec<&str> = rows(&batch).iter().map(|(path, _)| *path).collect();
        assert_eq!(kept, paths[149..]);
        assert_eq!(views.stats().buffered, 0);
        assert!(views.take().is_empty());
    }

    #[test]
    fn a_batch_folds_alike_views_into_one_row_as_they_leave_the_ring() {
        let views = PageViews::new(100);
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(20_000 * 86_400);
        for _ in 0..3 {
            views.record(seen("/a", at, FIREFOX));
        }
        views.record(seen("/b", at, FIREFOX));
        views.record(seen("/a", at + std::time::Duration::from_secs(86_400), FIREFOX));
        views.record(seen("/a", at, b"Chrome"));
        views.record(seen("/a", at + std::time::Duration::from_secs(60), FIREFOX));
        let batch = views.take();
        assert_eq!(rows(&batch), [("/a", 4), ("/b", 1), ("/a", 1), ("/a", 1)]);
        assert_eq!(batch.views(), 7);
        assert_eq!(batch.rows[0].0.at, at, "a row is timed at its first view");
        assert!(views.take().is_empty());
    }

    #[test]
    fn alike_views_one_after_another_are_a_count_not_a_ring_slot_each() {
        let views = PageViews::new(4);
        let at = SystemTime::now();
        for _ in 0..MOST_IN_A_TALLY + 10 {
            views.record(seen("/a", at, FIREFOX));
        }
        // One full tally in the ring, the rest counting in the worker's.
        assert_eq!((views.stats().buffered, views.stats().dropped), (1, 0));
        let batch = views.take();
        assert_eq!(rows(&batch), [("/a", 1 << 16 | 10)]);
        assert_eq!(batch.views(), u64::from(MOST_IN_A_TALLY) + 10);
        // Another worker's views start a tally of their own, and end none.
        views.record(seen("/a", at, FIREFOX));
        std::thread::scope(|s| {
            s.spawn(|| views.record(seen("/b", at, FIREFOX)));
        });
        views.record(seen("/a", at, FIREFOX));
        assert_eq!(views.stats().buffered, 0);
        assert_eq!(rows(&views.take()), [("/a", 2), ("/b", 1)]);
    }

    #[test]
    fn a_view_joins_the_latest_tally_only_when_its_row_would_count_it() {
        let day = 20_000 * 86_400;
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(day + 86_398);
        let first = Seen {
            referrer: Some(b"https://News.Example.com/item?id=1"),
            country: Some(*b"DE"),
            ..seen("/episodes/one", at, FIREFOX)
        };
        let later = |secs| at + std::time::Duration::from_secs(secs);
        // Each view, and whether it joins the tally of `first`.
        let views = [
            (Seen { ..first }, true),
            (
                Seen {
                    at: later(1),
                    ..first
                },
                true,
            ),
            (
                Seen {
                    referrer: Some(b"http://news.example.COM:8080/"),
                    ..first
                },
                true,
            ),
            (
                Seen {
                    at: later(2),
                    ..first
                },
                false,
            ),
            (
                Seen {
                    at: at - std::time::Duration::from_secs(3600),
                    ..first
                },
                false,
            ),
            (
                Seen {
                    path: "/episodes/on",
                    ..first
                },
                false,
            ),
            (
                Seen {
                    path: "/episodes/One",
                    ..first
                },
                false,
            ),
            (
                Seen {
                    referrer: Some(b"https://news.example.org/"),
                    ..first
                },
                false,
            ),
            (
                Seen {
                    referrer: Some(b"android-app://news"),
                    ..first
                },
                false,
            ),
            (
                Seen {
                    referrer: None,
                    ..first
                },
                false,
            ),
            (
                Seen {
                    country: Some(*b"FR"),
                    ..first
                },
                false,
            ),
            (
                Seen {
                    country: None,
                    ..first
                },
                false,
            ),
            (
                Seen {
                    viewer: ViewerClass::Member,
                    ..first
                },
                false,
            ),
            (
                Seen {
                    address: Some("192.0.2.2".parse().unwrap()),
                    ..first
                },
                false,
            ),
            (
                Seen {
                    address: Some("::ffff:192.0.2.1".parse().unwrap()),
                    ..first
                },
                false,
            ),
            (
                Seen {
                    address: None,
                    ..first
                },
                false,
            ),
            (
                Seen {
                    agent: AgentHash::of(b"Chrome"),
                    ..first
                },
                false,
            ),
        ];
        let tally = Tally::new(&first);
        let row = tally.view.alike(tally.unix_day);
        for (n, (view, joins)) in views.iter().enumerate() {
            assert_eq!(tally.counts(view), *joins, "view {n}");
            if *joins {
                let own_day = unix_day(view.at);
                assert!(PageView::new(view).alike(own_day) == row, "view {n}");
            }
        }
    }

    #[test]
    fn views_recorded_while_batches_are_taken_are_each_counted_once() {
        const THREADS: u64 = 4;
        const EACH: u64 = 20_000;
        let views = PageViews::new(1 << 20);
        let paths = ["/a", "/b", "/c"];
        let taken = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            let recording: Vec<_> = (0..THREADS)
                .map(|t| {
                    let views = &views;
                    s.spawn(move || {
                        for n in 0..EACH {
                            // Runs of alike views, of uneven lengths.
                            let path = paths[usize::try_from(n * (t + 1) / 7 % 3).unwrap()];
                            views.record(seen(path, SystemTime::now(), FIREFOX));
                        }
                    })
                })
                .collect();
            while recording.iter().any(|thread| !thread.is_finished()) {
                taken.fetch_add(views.take().views(), Ordering::Relaxed);
            }
        });
        let taken = taken.into_inner() + views.take().views();
        assert_eq!((taken, views.stats().dropped), (THREADS * EACH, 0));
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
            PageView::new(&Seen {
                address: address.parse().ok(),
                ..seen("/", SystemTime::now(), agent)
            })
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
        let view = |path| PageView::new(&seen(path, SystemTime::now(), FIREFOX));
        assert_eq!(view(&long).path.as_str(), long);
        assert_eq!(view("/").path.as_str(), "/");
        let referred = |r: &str| {
            let view = PageView::new(&Seen {
                referrer: Some(r.as_bytes()),
                ..seen("/", SystemTime::now(), b"")
            });
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
