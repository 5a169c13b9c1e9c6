//! Which answers are page views, and what a view keeps of its request (see
//! `lectern_actors::events::page_views` for the ring and the visitor hash).
//! A page view is an HTML page answered with 200 to a GET, from the cache's
//! front door or by a page handler (which names the viewer class with
//! [`PageSeen`]), to a client whose User-Agent is present and names no bot,
//! crawler or spider. Static files, feeds, the sitemap, `/metrics`,
//! `/healthz` and `/readyz` are not pages; a 304 (a browser revalidating a
//! page it has) is not counted either.

use std::sync::Arc;

use actix_web::http::header::{self, HeaderMap, HeaderName};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpMessage, HttpRequest};
use lectern_actors::billing::CountryCode;
use lectern_actors::cache::ViewerClass;
use lectern_actors::events::{PageView, PageViews};
use memchr::memchr3_iter;

use super::extract::client_ip;
use crate::config::Settings;

/// In a request's extensions: its answer is a page, seen by this class.
#[derive(Debug, Clone, Copy)]
pub struct PageSeen(pub ViewerClass);

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

    /// Records `req`'s answer if it is a page view; `at_front_door` says
    /// the cache's front door answered it (an anonymous visitor's page).
    pub fn record(&self, req: &HttpRequest, status: StatusCode, headers: &HeaderMap, at_front_door: bool) {
        if status != StatusCode::OK || req.method() != Method::GET {
            return;
        }
        let viewer = if at_front_door {
            ViewerClass::Anonymous
        } else {
            match req.extensions().get::<PageSeen>() {
                Some(seen) => seen.0,
                None => return,
            }
        };
        let html = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"text/html"));
        let request_headers = req.headers();
        let Some(user_agent) = request_headers.get(header::USER_AGENT).map(|ua| ua.as_bytes()) else {
            return;
        };
        if !html || names_a_bot(user_agent) {
            return;
        }
        let country = self
            .country_header
            .as_ref()
            .and_then(|name| request_headers.get(name))
            .and_then(|code| CountryCode::letters(code.as_bytes()));
        self.views.record(PageView::new(
            req.path(),
            request_headers.get(header::REFERER).map(|r| r.as_bytes()),
            country,
            viewer,
            client_ip(req, self.client_ip_header.as_ref()),
            user_agent,
        ));
    }
}

/// Whether a User-Agent says it is a bot, crawler or spider, as the big
/// search engines' and most monitors' do: the words, in any case, looked
/// for only where one of their first letters is (found with memchr).
fn names_a_bot(user_agent: &[u8]) -> bool {
    let word_at = |i: usize| {
        [&b"bot"[..], b"crawl", b"spider"].iter().any(|word| {
            user_agent
                .get(i..i + word.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(word))
        })
    };
    memchr3_iter(b'b', b'c', b's', user_agent).any(word_at)
        || memchr3_iter(b'B', b'C', b'S', user_agent).any(word_at)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for browser in [
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Safari/604.1",
            "bo",
            "",
        ] {
            assert!(!names_a_bot(browser.as_bytes()), "{browser}");
        }
    }
}
