//! What a page costs Lectern, piece by piece: a cache hit, a miss (the
//! database query, the page rendered in its layout, the compression for the
//! cache; then all three as the Renderer does them for the page handler), and
//! Markdown compilation at import. The first row is a reference in the same
//! run, copying the page's body, so that figures can be read as ratios on
//! any machine. The miss path reads a real PostgreSQL: a private one is
//! started from the system's binaries, with the demo content.
//!
//! Run: `cargo bench --bench pages`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use lectern::http::layout::Meta;
use lectern_actors::cache::{CachedPage, PageKey, PageTable, ViewerClass};
use lectern_actors::content::demo::demo_files;
use lectern_actors::content::import::{import_bundle, parse_files};
use lectern_actors::content::markdown::{compile_markdown, MarkdownOptions};
use lectern_actors::content::{self, topics};
use lectern_actors::render::{compile_templates, render_page, RenderPage};
use lectern_actors::store::{self, embedded::EmbeddedPostgres};
use serde_json::json;

const EPISODE: &str = "ownership-and-borrowing";

/// The episode page's message to the Renderer, shaped as the page handler
/// (`episode` and `render` in src/http/pages.rs, with `layout_data`) shapes
/// it for an anonymous visitor's miss.
fn episode_page(episode: &content::Episode) -> RenderPage {
    let summary = &episode.summary;
    let meta = Meta::new(
        &summary.title,
        &summary.summary,
        format!("/episodes/{}", summary.slug),
    )
    .open_graph("video.episode", summary.poster_url.clone());
    let mut shows = vec![topics::episode(&summary.slug)];
    if let Some(series) = &summary.series {
        shows.push(topics::series(&series.slug));
    }
    RenderPage {
        template: "pages/episode",
        layout: Some("layouts/base"),
        content_type: "text/html; charset=utf-8",
        status: 200,
        topics: shows,
        compress: true,
        route: "/episodes/{slug}",
        data: json!({
            "site": { "name": "Lectern", "public_url": "https://lectern.example" },
            "page": meta,
            "viewer": { "class": "anonymous", "subscriber": false },
            "user": null,
            "episode": episode,
            "can_watch": true,
        }),
    }
}

/// About 20 KB of real show notes: the demo episodes' Markdown, joined.
fn large_episode_markdown() -> String {
    let mut source = String::new();
    for file in demo_files()
        .iter()
        .filter(|f| f.path.starts_with("demo/episodes"))
    {
        let body = file.text.splitn(3, "+++").nth(2).unwrap_or_default();
        source.push_str(body);
        if source.len() >= 20_000 {
            break;
        }
    }
    source
}

fn pages(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::path::PathBuf::from(format!("/tmp/lectern-bench-{}", std::process::id()));
    let mut server =
        EmbeddedPostgres::start(&dir.join("data"), &dir.join("postgres.log")).expect("PostgreSQL starts");
    let pool = runtime.block_on(async {
        store::ensure_database(&server.config("postgres"), "bench")
            .await
            .expect("database");
        let pool = store::connect_pool(server.config("bench"), 2).expect("pool");
        store::migrate(&pool).await.expect("migrations");
        let bundle = parse_files(&demo_files(), MarkdownOptions::default()).expect("demo content");
        import_bundle(&pool, &bundle).await.expect("import");
        pool
    });
    let templates = compile_templates().expect("templates");
    let slug = content::Slug::parse(EPISODE).expect("a slug");
    let episode = runtime
        .block_on(content::get_episode_by_slug(&pool, &slug))
        .expect("query")
        .expect("the episode exists");
    // The whole page as served: the episode in the site's layout.
    let uncompressed = RenderPage {
        compress: false,
        ..episode_page(&episode)
    };
    let html = String::from_utf8(
        render_page(&templates, uncompressed)
            .expect("render")
            .identity_body()
            .to_vec(),
    )
    .expect("UTF-8");
    let page = Arc::new(CachedPage::build(200, "text/html", html.clone(), Vec::new()));
    let table = PageTable::new(64 * 1024 * 1024);
    let key = PageKey {
        path: format!("/episodes/{EPISODE}"),
        viewer: ViewerClass::Anonymous,
    };
    runtime.block_on(async {
        let _ = table
            .get_or_render(&key, async { Ok::<_, ()>(Arc::clone(&page)) })
            .await;
    });
    let markdown = large_episode_markdown();

    let mut group = c.benchmark_group("pages");
    group.bench_function(
        format!("reference: copy the {} KB page", html.len() / 1024),
        |b| b.iter(|| black_box(html.as_bytes().to_vec())),
    );
    group.bench_function("hit: look up the cached entry", |b| {
        b.iter(|| table.get(black_box(key.borrowed())))
    });
    group.bench_function("miss: query the episode", |b| {
        b.iter(|| runtime.block_on(content::get_episode_by_slug(&pool, black_box(&slug))))
    });
    group.bench_function("miss: render the episode page in its layout", |b| {
        b.iter_batched(
            || RenderPage {
                compress: false,
                ..episode_page(&episode)
            },
            |message| render_page(&templates, message),
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("miss: compress for the cache (gzip and brotli)", |b| {
        b.iter(|| CachedPage::build(200, "text/html", black_box(html.clone()), Vec::new()))
    });
    group.bench_function("miss: query, render, compress", |b| {
        b.iter(|| {
            let episode = runtime
                .block_on(content::get_episode_by_slug(&pool, &slug))
                .expect("query")
                .expect("episode");
            render_page(&templates, episode_page(&episode)).expect("render")
        })
    });
    group.bench_function(
        format!("import: compile {} KB of Markdown", markdown.len() / 1024),
        |b| b.iter(|| compile_markdown(black_box(&markdown), MarkdownOptions::default())),
    );
    group.finish();
    pool.close();
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, pages);
criterion_main!(benches);
