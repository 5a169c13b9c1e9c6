//! The admin's content editor (`/admin/content`): an episode written,
//! previewed as its public page will look and published, then shown on the
//! very next request by both nodes sharing the database; a stale edit
//! refused with both texts; bad fields sent back with every character and
//! what to fix; series and articles written alike; nobody but an
//! administrator gets in; and what the editor saves exports and imports as
//! the same files.

use std::time::{Duration, Instant};

use crate::admin::{admin, events, member, scalar};
use crate::content_export::round_trip;
use crate::helpers::{demo_database, spawn_app_on, TestApp};
use crate::visitor::{form_field, Page, Visitor};

/// The fields of a new premium episode, with a Rust code fence (which
/// must come out highlighted) and notes past the teaser.
fn new_episode<'a>(slug: &'a str, title: &'a str, action: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("slug", slug),
        ("title", title),
        ("summary", "Futures, wakers and the executor, from the ground up."),
        ("number", "35"),
        ("video", "https://media.lectern.example/episodes/pinning.mp4"),
        ("poster", ""),
        ("duration", "18:30"),
        ("premium", "on"),
        ("series", "async-rust"),
        ("position", "9"),
        ("tags", "rust, async"),
        ("published_at", ""),
        (
            "body",
            "Why a future may not move.\r\n\r\n```rust\r\nfn main() { let x = 1; }\r\n```\r\n\r\n\
             ## The paid part\r\n\r\nSelf-referential structs and `Pin<&mut Self>`.\r\n",
        ),
        ("revision", ""),
        ("action", action),
    ]
}

/// `text` as the pages escape it.
fn escaped(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#x27;".to_owned(),
            '`' => "&#x60;".to_owned(),
            '=' => "&#x3D;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

fn invalidations(app: &TestApp) -> u64 {
    app.actors().pages.stats().invalidations
}

#[actix_rt::test]
async fn an_admin_publishes_an_episode_and_both_nodes_show_it_on_their_next_request() {
    let database = demo_database().await;
    let first = spawn_app_on(database.clone(), &[]).await;
    let second = spawn_app_on(database.clone(), &[]).await;
    let mut editor = Visitor::new(&first);
    let admin_id = admin(&first, &mut editor, "editor@lectern.example").await;
    // Both nodes have the listings cached.
    for node in [&first, &second] {
        for path in ["/episodes", "/series/async-rust"] {
            node.get(path).await;
            assert_eq!(node.get(path).await.headers()["x-cache"], "hit", "{path}");
        }
    }

    // The preview is the public page as a subscriber will see it: the
    // layout, the highlighted code, the notes past the teaser.
    let fields = new_episode("pinning-explained", "Pinning, explained", "preview");
    let preview = editor
        .submit("/admin/content/new/episodes", "/admin/content/episodes", &fields)
        .await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert_eq!(preview.headers["cache-control"], "private, no-store");
    assert!(
        preview.body.contains("<title>Pinning, explained"),
        "{}",
        preview.body
    );
    assert!(preview
        .body
        .contains("<pre class=\"code\"><code class=\"language-rust\"><span class=\""));
    assert!(preview.body.contains("Self-referential structs"));
    assert_eq!(
        scalar::<i64>(
            &first,
            "SELECT count(*) FROM episodes WHERE slug = 'pinning-explained'"
        )
        .await,
        0,
        "a preview saves nothing"
    );

    let before = [invalidations(&first), invalidations(&second)];
    let fields = new_episode("pinning-explained", "Pinning, explained", "publish");
    let saved = editor
        .submit("/admin/content/new/episodes", "/admin/content/episodes", &fields)
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(
        saved.location(),
        Some("/admin/content/episodes/pinning-explained?notice=published")
    );

    // The saving node, at once: no waiting for the database's notification.
    let mut visitor = Visitor::new(&first);
    let page = visitor.get("/episodes/pinning-explained").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Why a future may not move."));
    assert!(
        !page.body.contains("Self-referential structs"),
        "a visitor reads the teaser of a premium episode only"
    );
    for path in ["/episodes", "/series/async-rust"] {
        let listing = visitor.get(path).await;
        assert_eq!(listing.headers["x-cache"], "miss", "{path}");
        assert!(listing.body.contains("Pinning, explained"), "{path}");
    }
    assert!(invalidations(&first) > before[0]);

    // The other node, on its first request after the notification arrived.
    let deadline = Instant::now() + Duration::from_secs(10);
    while invalidations(&second) == before[1] {
        assert!(
            Instant::now() < deadline,
            "the second node never heard of the change"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for path in ["/episodes", "/series/async-rust"] {
        let body = second.get(path).await.text().await.unwrap();
        assert!(
            body.contains("Pinning, explained"),
            "second node: {path} is stale"
        );
    }

    // Compiled once, on save: the stored HTML is highlighted.
    let html: String = scalar(
        &first,
        "SELECT body_html FROM episodes WHERE slug = 'pinning-explained'",
    )
    .await;
    assert!(html.contains("<span class=\""), "{html}");
    let audit = events(&first, "admin.content_saved").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0.as_deref(), Some("episodes/pinning-explained"));
    assert_eq!(audit[0].1["admin_id"], admin_id);
    assert_eq!(audit[0].1["status"], "published");

    // The editor shows what was saved, as typed.
    let page = editor.get(saved.location().unwrap()).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Saved and published"));
    assert!(page.body.contains("value=\"async, rust\""));
    assert!(page.body.contains(&escaped(
        "## The paid part\n\nSelf-referential structs and `Pin<&mut Self>`."
    )));

    // One model with the content folder: exported and imported, nothing changes.
    let files = round_trip(&database).await;
    let file = String::from_utf8(files["episodes/pinning-explained.md"].clone()).unwrap();
    assert!(file.contains("access = \"premium\""), "{file}");
    assert!(file.contains("series = \"async-rust\""), "{file}");
}

/// The revision field of an editor page.
fn revision(page: &Page) -> String {
    form_field(&page.body, "revision").expect("the editor has a revision")
}

/// The fields of the demo's `traits-and-generics` episode as its editor
/// shows them, with `title` and `body` changed.
fn edited(page: &Page, title: &str, body: &str) -> Vec<(String, String)> {
    let field = |name: &str| form_field(&page.body, name).unwrap_or_default();
    [
        "slug",
        "summary",
        "number",
        "video",
        "poster",
        "duration",
        "series",
        "position",
        "tags",
        "published_at",
    ]
    .into_iter()
    .map(|name| (name.to_owned(), field(name)))
    .chain([
        ("premium".to_owned(), "on".to_owned()),
        ("title".to_owned(), title.to_owned()),
        ("body".to_owned(), body.to_owned()),
        ("revision".to_owned(), revision(page)),
        ("action".to_owned(), "publish".to_owned()),
    ])
    .collect()
}

async fn post(visitor: &mut Visitor<'_>, path: &str, fields: &[(String, String)]) -> Page {
    let token = visitor.get("/admin/content/new/episodes").await.csrf_token();
    let mut all: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.push(("csrf_token", &token));
    visitor.post(path, &all).await
}

#[actix_rt::test]
async fn a_stale_edit_is_refused_with_both_texts_and_loses_neither() {
    let database = demo_database().await;
    let app = spawn_app_on(database, &[]).await;
    let mut ada = Visitor::new(&app);
    let mut bob = Visitor::new(&app);
    admin(&app, &mut ada, "ada@lectern.example").await;
    admin(&app, &mut bob, "bob@lectern.example").await;
    let path = "/admin/content/episodes/traits-and-generics";
    let ada_page = ada.get(path).await;
    let bob_page = bob.get(path).await;
    assert_eq!(revision(&ada_page), revision(&bob_page));

    let bob_fields = edited(&bob_page, "Traits, by Bob", "Bob's notes.\n");
    assert_eq!(
        post(&mut bob, "/admin/content/episodes", &bob_fields)
            .await
            .status,
        303
    );

    // Ada saves from the version she opened: refused, both texts shown.
    let ada_fields = edited(&ada_page, "Traits, by Ada", "Ada's <notes> & more.\n");
    let refused = post(&mut ada, "/admin/content/episodes", &ada_fields).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains("changed by someone else"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("value=\"Traits, by Ada\""));
    assert!(refused.body.contains(&escaped("Ada's <notes> & more.")));
    assert!(refused.body.contains("Traits, by Bob"));
    assert!(refused.body.contains(&escaped("Bob's notes.")));
    let stored: String = scalar(
        &app,
        "SELECT title FROM episodes WHERE slug = 'traits-and-generics'",
    )
    .await;
    assert_eq!(stored, "Traits, by Bob", "nothing of Ada's was saved");

    // Having read Bob's, Ada saves over it on purpose: the page she got
    // carries the newer revision.
    assert_ne!(revision(&refused), revision(&ada_page));
    let again = edited(&refused, "Traits, by Ada", "Ada's notes, with Bob's.\n");
    assert_eq!(
        post(&mut ada, "/admin/content/episodes", &again).await.status,
        303
    );
    let stored: String = scalar(
        &app,
        "SELECT title FROM episodes WHERE slug = 'traits-and-generics'",
    )
    .await;
    assert_eq!(stored, "Traits, by Ada");

    // A new item under a slug that exists is the same conflict, not an overwrite.
    let mut fields: Vec<(String, String)> = new_episode("traits-and-generics", "Impostor", "publish")
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    fields.retain(|(k, _)| k != "number");
    fields.push(("number".into(), "36".into()));
    let clash = post(&mut bob, "/admin/content/episodes", &fields).await;
    assert_eq!(clash.status, 409, "{}", clash.body);
    assert!(clash
        .body
        .contains("there is already an item episodes/traits-and-generics"));
    let stored: String = scalar(
        &app,
        "SELECT title FROM episodes WHERE slug = 'traits-and-generics'",
    )
    .await;
    assert_eq!(stored, "Traits, by Ada");
}

#[actix_rt::test]
async fn bad_fields_come_back_as_typed_with_what_to_fix_and_nothing_is_saved() {
    let database = demo_database().await;
    let app = spawn_app_on(database, &[]).await;
    let mut editor = Visitor::new(&app);
    admin(&app, &mut editor, "editor@lectern.example").await;
    let before: i64 = scalar(&app, "SELECT count(*) FROM episodes").await;

    let mut fields = new_episode("Not A Slug", "<script>alert(1)</script>", "publish");
    for (name, value) in &mut fields {
        match *name {
            "duration" => *value = "twelve minutes",
            "number" => *value = "9", // the demo's traits-and-generics has it
            "published_at" => *value = "next tuesday",
            _ => {}
        }
    }
    let page = editor
        .submit("/admin/content/new/episodes", "/admin/content/episodes", &fields)
        .await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert!(page.body.contains(&escaped("`slug`: a slug is")), "{}", page.body);
    assert!(page
        .body
        .contains(&escaped("`published_at` = \"next tuesday\" is not a date")));
    assert!(page
        .body
        .contains(&escaped("`duration` = \"twelve minutes\" must be MM:SS")));
    assert!(!page.body.contains("<script>alert(1)</script>"));
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page
        .body
        .contains(&escaped("Self-referential structs and `Pin<&mut Self>`.")));

    // Fixed but for the duration and a number another episode has.
    let mut fields = new_episode("fixed-slug", "Pinning", "publish");
    for (name, value) in &mut fields {
        if *name == "duration" {
            *value = "twelve minutes";
        }
    }
    let page = editor
        .submit("/admin/content/new/episodes", "/admin/content/episodes", &fields)
        .await;
    assert_eq!(page.status, 422);
    assert!(page.body.contains(&escaped(
        "`duration` = \"twelve minutes\" must be MM:SS or H:MM:SS"
    )));
    for (name, value) in &mut fields {
        match *name {
            "duration" => *value = "12:00",
            "number" => *value = "9",
            _ => {}
        }
    }
    let page = editor
        .submit("/admin/content/new/episodes", "/admin/content/episodes", &fields)
        .await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert!(
        page.body
            .contains("episode number 9 would be used by more than one episode"),
        "{}",
        page.body
    );
    assert_eq!(scalar::<i64>(&app, "SELECT count(*) FROM episodes").await, before);

    // A kind or an item that is not there.
    assert_eq!(editor.get("/admin/content/new/podcasts").await.status, 404);
    assert_eq!(
        editor.get("/admin/content/episodes/no-such-episode").await.status,
        404
    );
    assert_eq!(editor.get("/admin/content/episodes/..%2Fetc").await.status, 404);
}

#[actix_rt::test]
async fn drafts_and_schedules_stay_hidden_until_their_time() {
    let database = demo_database().await;
    let app = spawn_app_on(database, &[]).await;
    let mut editor = Visitor::new(&app);
    admin(&app, &mut editor, "editor@lectern.example").await;

    let mut fields = new_episode("pinning-explained", "Pinning, explained", "draft");
    let page = editor
        .submit("/admin/content/new/episodes", "/admin/content/episodes", &fields)
        .await;
    assert_eq!(
        page.location(),
        Some("/admin/content/episodes/pinning-explained?notice=draft")
    );
    assert_eq!(app.get("/episodes/pinning-explained").await.status(), 404);

    let edit = editor.get("/admin/content/episodes/pinning-explained").await;
    for (name, value) in &mut fields {
        match *name {
            "published_at" => *value = "2999-01-01T09:00",
            "action" => *value = "publish",
            _ => {}
        }
    }
    let token = edit.csrf_token();
    let rev = revision(&edit);
    fields.retain(|(k, _)| *k != "revision");
    fields.extend([("revision", rev.as_str()), ("csrf_token", token.as_str())]);
    let page = editor.post("/admin/content/episodes", &fields).await;
    assert_eq!(
        page.location(),
        Some("/admin/content/episodes/pinning-explained?notice=scheduled")
    );
    assert_eq!(app.get("/episodes/pinning-explained").await.status(), 404);
    let listed = editor.get("/admin/content").await;
    assert!(listed.body.contains("scheduled"), "{}", listed.body);
    assert!(listed.body.contains("2999-01-01 09:00 UTC"), "{}", listed.body);
}

#[actix_rt::test]
async fn only_administrators_get_in_and_every_save_needs_the_form_token() {
    let database = demo_database().await;
    let app = spawn_app_on(database, &[]).await;
    let mut somebody = Visitor::new(&app);
    let page = somebody.get("/admin/content").await;
    assert_eq!(page.status, 303);
    member(&app, &mut somebody, "member@lectern.example").await;
    assert_eq!(somebody.get("/admin/content").await.status, 403);
    assert_eq!(
        somebody
            .get("/admin/content/episodes/traits-and-generics")
            .await
            .status,
        403
    );
    let fields = new_episode("by-a-member", "By a member", "publish");
    let token = somebody.get("/account").await.csrf_token();
    let mut all = fields.clone();
    all.push(("csrf_token", &token));
    assert_eq!(somebody.post("/admin/content/episodes", &all).await.status, 403);

    let mut editor = Visitor::new(&app);
    admin(&app, &mut editor, "editor@lectern.example").await;
    let forged = editor.post("/admin/content/episodes", &fields).await;
    assert_eq!(forged.status, 403, "no token, no save");
    assert_eq!(
        scalar::<i64>(&app, "SELECT count(*) FROM episodes WHERE slug = 'by-a-member'").await,
        0
    );
}

/// The `<main>` element of a page: what is the page's own, without the
/// layout's header (which differs between viewers).
fn main_of(body: &str) -> &str {
    let start = body.find("<main").expect("a <main>");
    let end = body.find("</main>").expect("a </main>");
    &body[start..end]
}

#[actix_rt::test]
async fn the_preview_is_the_public_page_to_the_byte() {
    let database = demo_database().await;
    let app = spawn_app_on(database, &[]).await;
    let mut editor = Visitor::new(&app);
    admin(&app, &mut editor, "editor@lectern.example").await;
    let mut fields = new_episode("pinning-explained", "Pinning, explained", "preview");
    for (name, value) in &mut fields {
        match *name {
            "premium" => *value = "",
            "published_at" => *value = "2026-01-05T09:00:00Z",
            _ => {}
        }
    }
    fields.retain(|(name, value)| *name != "premium" || !value.is_empty());
    let preview = editor
        .submit("/admin/content/new/episodes", "/admin/content/episodes", &fields)
        .await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    // Its neighbour in the series, linked as the public page links it.
    assert!(
        preview.body.contains("rel=\"prev\""),
        "{}",
        main_of(&preview.body)
    );

    for (name, value) in &mut fields {
        if *name == "action" {
            *value = "publish";
        }
    }
    let saved = editor
        .submit("/admin/content/new/episodes", "/admin/content/episodes", &fields)
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let public = app.get("/episodes/pinning-explained").await.text().await.unwrap();
    assert_eq!(main_of(&preview.body), main_of(&public));
}

#[actix_rt::test]
async fn series_and_articles_are_written_the_same_way() {
    let database = demo_database().await;
    let app = spawn_app_on(database, &[]).await;
    let mut editor = Visitor::new(&app);
    admin(&app, &mut editor, "editor@lectern.example").await;
    for path in ["/series", "/series/async-rust", "/articles"] {
        app.get(path).await;
        assert_eq!(app.get(path).await.headers()["x-cache"], "hit", "{path}");
    }

    // A series renamed: its page and the listing of series show it at once.
    let page = editor.get("/admin/content/series/async-rust").await;
    assert_eq!(page.status, 200);
    let fields = [
        ("slug", "async-rust".to_owned()),
        ("title", "Async Rust, revised".to_owned()),
        ("summary", "Futures, tasks and runtimes.".to_owned()),
        ("position", form_field(&page.body, "position").unwrap()),
        ("body", "An introduction to **async** Rust.".to_owned()),
        ("revision", revision(&page)),
        ("action", "publish".to_owned()),
        ("csrf_token", page.csrf_token()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let saved = editor.post("/admin/content/series", &fields).await;
    assert_eq!(
        saved.location(),
        Some("/admin/content/series/async-rust?notice=listed")
    );
    for path in ["/series", "/series/async-rust"] {
        let body = app.get(path).await.text().await.unwrap();
        assert!(body.contains("Async Rust, revised"), "{path}");
    }
    assert!(app
        .get("/series/async-rust")
        .await
        .text()
        .await
        .unwrap()
        .contains("An introduction to <strong>async</strong> Rust."));

    // A new article, published now, heads the listing of articles.
    let fields = [
        ("slug", "why-pin"),
        ("title", "Why Pin exists"),
        ("summary", ""),
        ("tags", "rust"),
        ("published_at", ""),
        ("body", "Because futures borrow from themselves."),
        ("revision", ""),
        ("action", "publish"),
    ];
    let saved = editor
        .submit("/admin/content/new/articles", "/admin/content/articles", &fields)
        .await;
    assert_eq!(
        saved.location(),
        Some("/admin/content/articles/why-pin?notice=published")
    );
    let listing = app.get("/articles").await.text().await.unwrap();
    assert!(listing.contains("Why Pin exists"));
    let tagged = app.get("/tags/rust").await.text().await.unwrap();
    assert!(tagged.contains("Why Pin exists"));
}
