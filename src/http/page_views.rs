//! Which answers are page views, and what a view keeps of its request (see
//! `lectern_actors::events::page_views` for the ring and the visitor hash).
//! A page view is an HTML page answered with 200 to a GET, from the cache's
//! front door or by a page handler (which names the viewer class with
//! [`PageSeen`]), to a client whose User-Agent is present and names no bot,
//! crawler or spider. Static files, feeds, the sitemap, `/metrics`,
//! `/healthz` and `/readyz` are not pages; a 304 (a browser revalidating a
//! page it has) is not counted either.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::SystemTime;

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpMessage, HttpRequest};
use lectern_actors::billing::CountryCode;
use lectern_actors::cache::ViewerClass;
use lectern_actors::events::{AgentHash, PageViews, Seen};

use super::extract::client_ip;
use crate::config::Settings;

/// In a request's extensions: its answer is a page, seen by this class.
#[derive(Debug, Clone, Copy)]
pub struct PageSeen(pub ViewerClass);

/// Who answered a request, as far as page views care.
#[derive(Clone, Copy)]
pub enum Answerer<'a> {
    /// The cache's front door (an anonymous visitor's page), which knows
    /// whether the page is HTML.
    FrontDoor { html: bool },
    /// A handler, whose response's headers say what it sent.
    Handler(&'a HeaderMap),
}

/// Records page views into the ring, from the middleware's `finish`.
pub struct PageViewRecorder {
    views: Arc<PageViews>,
    /// `pricing.country_header`.
    country_header: Option<HeaderName>,
    /// `server.client_ip_header`; `None` when empty.
    client_ip_header: Option<HeaderName>,
}

impl PageViewRecorder {
    /// `None` when `log.page_views` is off.
    pub fn new(settings: &Settings, views: Arc<PageViews>) -> Option<PageViewRecorder> {
        settings.log.page_views.then(|| PageViewRecorder {
            views,
            country_header: HeaderName::try_from(settings.pricing.country_header.as_str()).ok(),
            client_ip_header: HeaderName::try_from(settings.server.client_ip_header.as_str()).ok(),
        })
    }

    /// Records `req`'s answer, made at `now`, if it is a page view.
    pub fn record(&self, req: &HttpRequest, status: StatusCode, by: Answerer<'_>, now: SystemTime) {
        if status != StatusCode::OK || req.method() != Method::GET {
            return;
        }
        let (viewer, html) = match by {
            Answerer::FrontDoor { html } => (ViewerClass::Anonymous, html),
            Answerer::Handler(headers) => match req.extensions().get::<PageSeen>() {
                Some(seen) => (seen.0, headers.get(header::CONTENT_TYPE).is_some_and(is_html)),
                None => return,
            },
        };
        if !html {
            return;
        }
        let request_headers = req.headers();
        let Some(agent) = request_headers
            .get(header::USER_AGENT)
            .and_then(|user_agent| browser(user_agent.as_bytes()))
        else {
            return;
        };
        let country = self
            .country_header
            .as_ref()
            .and_then(|name| request_headers.get(name))
            .and_then(|code| CountryCode::letters(code.as_bytes()));
        self.views.record(Seen {
            at: now,
            path: req.path(),
            referrer: request_headers.get(header::REFERER).map(|r| r.as_bytes()),
            country,
            viewer,
            address: client_ip(req, self.client_ip_header.as_ref()),
            agent,
        });
    }
}

/// Whether a `Content-Type` is an HTML page's: the only answers counted.
pub fn is_html(content_type: &HeaderValue) -> bool {
    content_type.as_bytes().starts_with(b"text/html")
}

/// The hash of a browser's User-Agent; `None` for one that names a bot.
/// Browsers send few distinct User-Agents (Chrome's reduced one is the same
/// for every Windows user of a version), so each worker keeps the last one
/// it read in each of a few slots, and compares bytes before reading one
/// again: a repeated User-Agent costs a compare, not the bot check and the
/// hash (300 instructions).
fn browser(user_agent: &[u8]) -> Option<AgentHash> {
    const SLOTS: usize = 8;
    /// Longer ones are read every time rather than kept.
    const LONGEST: usize = 512;
    type Slot = Option<(Box<[u8]>, Option<AgentHash>)>;
    thread_local! {
        static SEEN: RefCell<[Slot; SLOTS]> = RefCell::new(Default::default());
    }
    let read = || (!names_a_bot(user_agent)).then(|| AgentHash::of(user_agent));
    if user_agent.len() > LONGEST {
        return read();
    }
    let last = user_agent.last().copied().unwrap_or_default();
    let slot = (user_agent.len() ^ usize::from(last)) % SLOTS;
    SEEN.with_borrow_mut(|seen| match &seen[slot] {
        Some((kept, agent)) if **kept == *user_agent => *agent,
        _ => {
            let agent = read();
            seen[slot] = Some((user_agent.into(), agent));
            agent
        }
    })
}

/// Whether a User-Agent says it is a bot, crawler or spider, as the big
/// search engines' and most monitors' do: the words, in any case. A byte
/// with 0x20 set is its letter's lower case, and only a letter's two cases
/// fold to a lower-case letter, so the User-Agent is read eight bytes at a
/// time, folded, and the words are looked for only where a `b`, `c` or `s`
/// is (found in each eight bytes at once; the browsers' own User-Agents
/// have a dozen such letters and no word).
fn names_a_bot(user_agent: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    // The top bit of each byte of `word` that is `letter` (and perhaps of
    // a byte above one: each is checked).
    let marks = |word: u64, letter: u8| {
        let x = word ^ (ONES * u64::from(letter));
        x.wrapping_sub(ONES) & !x & (ONES << 7)
    };
    let word_at = |at: usize| {
        let word: &[u8] = match user_agent[at] | 0x20 {
            b'b' => b"bot",
            b'c' => b"crawl",
            _ => b"spider",
        };
        user_agent
            .get(at..at + word.len())
            .is_some_and(|w| w.iter().zip(word).all(|(&b, &letter)| b | 0x20 == letter))
    };
    let has_word = |n: usize, eight: [u8; 8]| {
        let folded = u64::from_le_bytes(eight) | (ONES * 0x20);
        let mut found = marks(folded, b'b') | marks(folded, b'c') | marks(folded, b's');
        while found != 0 {
            let at = n * 8 + (found.trailing_zeros() / 8) as usize;
            if at < user_agent.len() && word_at(at) {
                return true;
            }
            found &= found - 1;
        }
        false
    };
    let chunks = user_agent.chunks_exact(8);
    let (tail, rest) = (chunks.len(), chunks.remainder());
    let mut last = [0; 8];
    last[..rest.len()].copy_from_slice(rest);
    chunks
        .enumerate()
        .any(|(n, chunk)| chunk.try_into().is_ok_and(|eight| has_word(n, eight)))
        || has_word(tail, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_user_agent_reads_as_a_fresh_one() {
        let firefox = b"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
        // Same length and last byte as Firefox's: the same slot.
        let mut bot = *firefox;
        bot[..3].copy_from_slice(b"bot");
        let long_bot = format!("{}bot", "x".repeat(600));
        for _ in 0..3 {
            assert_eq!(browser(firefox), Some(AgentHash::of(firefox)));
            assert_eq!(browser(&bot), None);
            assert_eq!(browser(long_bot.as_bytes()), None);
            assert_eq!(browser(b""), Some(AgentHash::of(b"")));
            assert_eq!(browser(b"Safari"), Some(AgentHash::of(b"Safari")));
        }
    }

    #[test]
    fn bots_crawlers_and_spiders_are_not_visitors() {
        for bot in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0)",
            "Baiduspider",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php) crawler",
            "BOT",
        ] {
            assert!(names_a_bot(bot.as_bytes()), "{bot}");
        }
        for at in 0..20 {
            for word in ["bot", "Bot", "CRAWL", "sPiDeR"] {
                let agent = format!("{}{word}", "x".repeat(at));
                assert!(names_a_bot(agent.as_bytes()), "{agent}");
                assert!(names_a_bot(format!("{agent}/2.1 more").as_bytes()), "{agent}");
                // One letter short, or one letter changed: no word.
                let short = &agent[..agent.len() - 1];
                assert!(!names_a_bot(short.as_bytes()), "{short}");
                let changed = format!("{short}_");
                assert!(!names_a_bot(changed.as_bytes()), "{changed}");
            }
        }
        for browser in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "b\u{0}ot c\u{0}rawl s\u{40}pider \u{42}\u{2}t",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Safari/604.1",
            "bo",
            "",
        ] {
            assert!(!names_a_bot(browser.as_bytes()), "{browser}");
        }
    }
}
