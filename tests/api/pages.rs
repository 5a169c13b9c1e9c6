//! The visitor's pages, rendered from the demo content: what each shows,
//! what premium episodes hide, feeds that parse, and bad input that gets a
//! clean page.

use reqwest::StatusCode;

use crate::helpers::{raw_request, spawn_demo_app, TestApp};

async fn page(app: &TestApp, path: &str) -> String {
    let response = app.get(path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8",
        "{path}"
    );
    response.text().await.unwrap()
}

#[actix_rt::test]
async fn every_public_page_renders_the_demo_content() {
    let app = spawn_demo_app().await;

    let home = page(&app, "/").await;
    assert!(
        home.contains("<title>Screencasts and articles · Lectern</title>"),
        "{home}"
    );
    assert!(home.contains("/episodes/"), "the home page lists episodes");
    assert!(home.contains("Web Services with Actix Web"), "and series");

    let episodes = page(&app, "/episodes").await;
    assert!(episodes.contains("<title>Episodes · Lectern</title>"));
    assert!(episodes.contains("/episodes?page=2"), "33 episodes take 3 pages");

    let series_index = page(&app, "/series").await;
    for title in [
        "Rust from Scratch",
        "Async Rust in Practice",
        "PostgreSQL for App Developers",
    ] {
        assert!(series_index.contains(title), "{title}");
    }
    let series = page(&app, "/series/rust-from-scratch").await;
    assert!(
        series.contains("Ownership and borrowing") && series.contains("Installing Rust and meeting Cargo")
    );

    let articles = page(&app, "/articles").await;
    assert!(articles.contains("/articles/why-we-built-lectern-in-rust"));
    let article = page(&app, "/articles/why-we-built-lectern-in-rust").await;
    assert!(article.contains("<h2"), "the article body is rendered");

    let tag = page(&app, "/tags/postgres").await;
    assert!(
        tag.contains("Transactions and isolation") || tag.contains("Indexes and EXPLAIN"),
        "{tag}"
    );
}

/// The slugs of the episode cards on a listing page, in order.
fn listed_episodes(page: &str) -> Vec<String> {
    page.split("class=\"card-title\"><a href=\"/episodes/")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

#[actix_rt::test]
async fn the_episodes_are_listed_newest_first_twelve_to_a_page() {
    let app = spawn_demo_app().await;
    let newest_first: Vec<String> = app
        .pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT slug FROM episodes WHERE status = 'published' AND published_at <= now() \
             ORDER BY published_at DESC, number DESC",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(newest_first.len(), 33, "the demo content's published episodes");

    let first = page(&app, "/episodes").await;
    let second = page(&app, "/episodes?page=2").await;
    let third = page(&app, "/episodes?page=3").await;

    assert_eq!(listed_episodes(&first), newest_first[..12]);
    assert_eq!(listed_episodes(&second), newest_first[12..24]);
    assert_eq!(listed_episodes(&third), newest_first[24..]);
    assert!(
        second.contains("<title>Episodes, page 2 · Lectern</title>"),
        "{second}"
    );
    assert!(
        second.contains("href=\"/episodes?page=3\""),
        "page 2 leads on to page 3: {second}"
    );
    assert!(!third.contains("href=\"/episodes?page=4\""), "page 3 is the last");
}

#[actix_rt::test]
async fn a_free_episode_plays_and_shows_its_notes_with_highlighted_code() {
    let app = spawn_demo_app().await;

    let episode = page(&app, "/episodes/installing-rust-and-cargo").await;

    assert!(episode.contains("<title>Installing Rust and meeting Cargo · Lectern</title>"));
    assert!(episode.contains("<video") && episode.contains("installing-rust-and-cargo.mp4"));
    assert!(
        episode.contains("<pre class=\"code\">") && episode.contains("class=\"hl-"),
        "highlighted at import"
    );
    assert!(episode.contains(&format!(
        "<link rel=\"canonical\" href=\"{}/episodes/installing-rust-and-cargo\">",
        app.address
    )));
    assert!(episode.contains("property=\"og:title\""));
    assert!(
        episode.contains("/episodes/") && episode.contains("Next"),
        "previous/next in the series"
    );
}

#[actix_rt::test]
async fn a_premium_episode_shows_a_teaser_and_a_way_to_subscribe_but_no_video() {
    let app = spawn_demo_app().await;

    let episode = page(&app, "/episodes/application-state-and-configuration").await;

    assert!(episode.contains("Application state and configuration"));
    assert!(episode.contains("Handlers need things"), "the teaser is shown");
    assert!(
        !episode.contains("The per-worker trap"),
        "the rest of the notes are not"
    );
    assert!(!episode.contains("<video"), "nor is the video");
    assert!(!episode.contains("application-state-and-configuration.mp4"));
    assert!(episode.contains("href=\"/pricing\""), "a way to subscribe");
}

#[actix_rt::test]
async fn drafts_and_unknown_slugs_get_the_404_page() {
    let app = spawn_demo_app().await;

    for path in [
        "/episodes/full-text-search-in-postgres",
        "/articles/notes-on-supervision-trees",
        "/episodes/no-such-episode",
        "/series/no-such-series",
        "/tags/no-such-tag",
        "/episodes/Not_A_Slug",
        "/episodes/%ZZ",
        "/articles/..%2f..%2fetc%2fpasswd",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(
            response.text().await.unwrap().contains("Page not found"),
            "{path}"
        );
    }
}

#[actix_rt::test]
async fn absurd_page_numbers_get_a_clean_404() {
    let app = spawn_demo_app().await;

    for query in [
        "page=0",
        "page=-1",
        "page=999999999",
        "page=99999999999999999999999",
        "page=two",
        "page=%ZZ",
    ] {
        let response = app.get(&format!("/episodes?{query}")).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{query}");
        assert!(response.text().await.unwrap().contains("Page not found"));
    }
}

#[actix_rt::test]
async fn search_ranks_and_highlights_and_survives_odd_input() {
    let app = spawn_demo_app().await;

    let results = page(&app, "/search?q=borrow+checker").await;
    assert!(results.contains("<mark>"), "{results}");
    assert!(
        results.contains("/articles/why-we-built-lectern-in-rust"),
        "{results}"
    );

    let long = "a".repeat(5000);
    for query in [
        "",
        "%ZZ%",
        "\"unbalanced",
        "<script>alert(1)</script>",
        "'; DROP TABLE episodes; --",
        "!!! & | ( )",
        long.as_str(),
        "%F0%9F%A6%80 crab",
    ] {
        let response = app.get(&format!("/search?q={query}")).await;
        assert_eq!(response.status(), StatusCode::OK, "{query:.40}");
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("<script>alert(1)</script>"),
            "the query is escaped"
        );
    }
}

#[actix_rt::test]
async fn the_atom_feed_and_the_sitemap_are_valid_xml() {
    let app = spawn_demo_app().await;

    let feed = app.get("/feed.xml").await;
    assert_eq!(
        feed.headers()["content-type"],
        "application/atom+xml; charset=utf-8"
    );
    let feed = feed.text().await.unwrap();
    let document = roxmltree::Document::parse(&feed).expect("the feed is well-formed XML");
    let root = document.root_element();
    assert_eq!(root.tag_name().namespace(), Some("http://www.w3.org/2005/Atom"));
    assert_eq!(root.tag_name().name(), "feed");
    let entries: Vec<_> = root.children().filter(|n| n.has_tag_name("entry")).collect();
    assert_eq!(entries.len(), 20);
    for entry in &entries {
        for required in ["id", "title", "updated", "link"] {
            assert!(
                entry.children().any(|n| n.has_tag_name(required)),
                "an entry lacks <{required}>"
            );
        }
    }
    assert!(
        !feed.contains("The per-worker trap"),
        "premium episodes carry their teaser only"
    );

    let sitemap = app.get("/sitemap.xml").await.text().await.unwrap();
    let document = roxmltree::Document::parse(&sitemap).expect("the sitemap is well-formed XML");
    let urls = document
        .root_element()
        .children()
        .filter(|n| n.has_tag_name("url"))
        .count();
    assert!(urls >= 33 + 12 + 5, "{urls} URLs");
    assert!(sitemap.contains(&format!("{}/episodes/ownership-and-borrowing", app.address)));
    assert!(
        !sitemap.contains("full-text-search-in-postgres"),
        "drafts are not listed"
    );
}

/// Headers that differ from one response to the next whatever the method.
const PER_RESPONSE: [&str; 3] = ["date", "x-request-id", "x-cache"];

#[actix_rt::test]
async fn head_requests_get_the_headers_of_get_and_no_body() {
    let app = spawn_demo_app().await;

    for path in [
        "/",
        "/episodes",
        "/episodes/ownership-and-borrowing",
        "/feed.xml",
        "/search?q=rust",
        "/static/css/lectern.css",
    ] {
        for (head_first, label) in [(true, "HEAD first"), (false, "GET first")] {
            let (get, head) = if head_first {
                let head = raw_request(&app, "HEAD", path, &[]).await;
                (raw_request(&app, "GET", path, &[]).await, head)
            } else {
                let get = raw_request(&app, "GET", path, &[]).await;
                (get, raw_request(&app, "HEAD", path, &[]).await)
            };
            assert_eq!(get.status, 200, "{path}");
            assert_eq!(head.status, 200, "{path}, {label}");
            let compared = |response: &crate::helpers::RawResponse| {
                let mut headers: Vec<(String, String)> = response
                    .headers
                    .iter()
                    .filter(|(name, _)| !PER_RESPONSE.contains(&name.as_str()))
                    .cloned()
                    .collect();
                headers.sort();
                headers
            };
            assert_eq!(compared(&head), compared(&get), "{path}, {label}");
            for name in ["content-type", "content-length", "cache-control"] {
                assert!(get.header(name).is_some(), "{path}: GET has no {name}");
            }
            assert_eq!(
                get.header("content-length").unwrap(),
                get.body.len().to_string(),
                "{path}"
            );
            assert!(!get.body.is_empty(), "{path}");
            assert!(
                head.body.is_empty(),
                "{path}, {label}: {} bytes after the headers of HEAD",
                head.body.len()
            );
        }
    }
}
