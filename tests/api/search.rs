//! Search: a premium episode's paid notes are neither found nor quoted, only
//! its public teaser (also for episodes stored before search learnt that),
//! a long question is cut to a few terms and still answered, and one client
//! may run only so many searches a minute.

use std::path::Path;

use lectern_actors::content::{self, import::import_dir, markdown::MarkdownOptions};
use lectern_actors::store;
use reqwest::StatusCode;

use crate::helpers::{empty_database, spawn_app, spawn_demo_app, TestApp};

/// A premium episode whose teaser speaks of quokkas and whose paid notes, after
/// the first second-level heading, of narwhals; and a free episode whose notes
/// speak of axolotls under a heading of their own.
fn write_episodes(folder: &Path) {
    let episode = |number: u32, access: &str, notes: &str| {
        format!(
            "+++\ntitle = \"Episode {number}\"\nnumber = {number}\nduration = \"10:00\"\n\
             video = \"https://v.example/{number}.mp4\"\naccess = \"{access}\"\n\
             published_at = \"2026-01-0{number}T09:00:00Z\"\n+++\n{notes}"
        )
    };
    std::fs::create_dir(folder.join("episodes")).unwrap();
    std::fs::write(
        folder.join("episodes/paid-notes.md"),
        episode(
            1,
            "premium",
            "The teaser is about quokkas.\n\n## For subscribers\n\nOnly subscribers read about narwhals.\n",
        ),
    )
    .unwrap();
    std::fs::write(
        folder.join("episodes/free-notes.md"),
        episode(
            2,
            "free",
            "Everyone may read this.\n\n## Further down\n\nFree notes about axolotls.\n",
        ),
    )
    .unwrap();
}

/// The list of results on the search page for `query` (empty when none).
async fn results(app: &TestApp, query: &str) -> String {
    let response = app.get(&format!("/search?q={query}")).await;
    assert_eq!(response.status(), StatusCode::OK, "{query:.60}");
    let page = response.text().await.unwrap();
    match (page.find("<ol class=\"search-results\">"), page.find("</ol>")) {
        (Some(start), Some(end)) => page[start..end].to_owned(),
        _ => {
            assert!(page.contains("No results for"), "{page}");
            String::new()
        }
    }
}

#[actix_rt::test]
async fn premium_notes_are_found_and_quoted_only_up_to_their_teaser() {
    let app = spawn_app().await;
    let folder = tempfile::tempdir().unwrap();
    write_episodes(folder.path());
    import_dir(&app.pool, folder.path(), MarkdownOptions::default())
        .await
        .unwrap();

    let paid = results(&app, "narwhals").await;
    let teaser = results(&app, "quokkas").await;
    let free = results(&app, "axolotls").await;

    assert_eq!(paid, "", "a word of the paid notes finds nothing");
    assert!(teaser.contains("/episodes/paid-notes"), "{teaser}");
    assert!(teaser.contains("<mark>quokkas</mark>"), "{teaser}");
    assert!(
        !teaser.contains("narwhals") && !teaser.contains("subscribers"),
        "the snippet quotes the teaser only: {teaser}"
    );
    assert!(free.contains("/episodes/free-notes"), "{free}");
    assert!(free.contains("<mark>axolotls</mark>"), "{free}");
}

#[actix_rt::test]
async fn premium_episodes_stored_before_the_fix_are_searched_by_their_teaser() {
    let database = empty_database().await;
    let pool = store::connect_pool(database, 1).unwrap();
    let client = pool.get().await.unwrap();
    let runner = store::migrations::runner();
    let migrations = runner.get_migrations();
    for migration in migrations.iter().filter(|m| m.version() < 5) {
        client.batch_execute(migration.sql().unwrap()).await.unwrap();
    }
    client
        .execute(
            "INSERT INTO episodes (slug, number, title, body_source, body_html, teaser_html, duration_secs, \
               video_url, access, status, published_at) \
             VALUES ('paid-notes', 1, 'Episode 1', $1, '', $2, 600, 'https://v.example/1.mp4', 'premium', \
               'published', '2026-01-01T09:00:00Z')",
            &[
                &"Quokkas & more.\n\n## Paid\n\nNarwhals.",
                &"<p>Quokkas &amp; more.</p>",
            ],
        )
        .await
        .unwrap();

    let fix = migrations.iter().find(|m| m.version() == 5).unwrap();
    client.batch_execute(fix.sql().unwrap()).await.unwrap();
    drop(client);

    assert!(content::search(&pool, "narwhals").await.unwrap().is_empty());
    let hits = content::search(&pool, "quokkas").await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].slug.as_str(), "paid-notes");
    assert!(
        hits[0].snippet_html.contains("<mark>Quokkas</mark> &amp; more"),
        "{}",
        hits[0].snippet_html
    );
}

#[actix_rt::test]
async fn a_long_question_is_cut_to_a_few_terms_and_still_answered() {
    let app = spawn_demo_app().await;
    let repeated = "borrow+checker+".repeat(60);
    let many_words = (0..60).map(|i| format!("word{i}")).collect::<Vec<_>>().join("+");

    let found = results(&app, &repeated).await;
    let page = app
        .get(&format!("/search?q={repeated}"))
        .await
        .text()
        .await
        .unwrap();
    let nothing = results(&app, &many_words).await;

    assert!(
        found.contains("/articles/why-we-built-lectern-in-rust"),
        "{found}"
    );
    assert!(
        found.contains("<mark>borrow</mark> <mark>checker</mark>"),
        "{found}"
    );
    let searched = format!("“{}”", ["borrow checker"; 4].join(" "));
    assert!(page.contains(&searched), "eight words are searched: {page}");
    assert_eq!(nothing, "");
}

#[actix_rt::test]
async fn one_client_runs_a_limited_number_of_searches_a_minute_and_others_are_not_held_up() {
    let app = crate::helpers::spawn_app_with(&[
        ("content.searches_per_minute", "3"),
        ("server.client_ip_header", "\"X-Real-IP\""),
    ])
    .await;
    let search = |ip: &'static str, query: &'static str| {
        app.client
            .get(app.url(&format!("/search?q={query}")))
            .header("x-real-ip", ip)
            .send()
    };
    let mut statuses = Vec::new();
    for query in ["one", "two", "three", "four"] {
        statuses.push(search("192.0.2.1", query).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let refused = search("192.0.2.1", "five").await.unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    // Another client, and the empty search form, are not limited.
    assert_eq!(search("192.0.2.2", "six").await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        app.client
            .get(app.url("/search"))
            .header("x-real-ip", "192.0.2.1")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}
