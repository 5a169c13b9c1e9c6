//! The Renderer's costs: compiling every template (once per worker, at
//! start) and rendering one whole page. The first row is a reference in the
//! same run, `format!` of a small fixed page, so that figures can be read as
//! ratios on any machine.
//!
//! Run: `cargo bench --bench render`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use lectern_actors::render::compile_templates;

fn renderer(c: &mut Criterion) {
    let registry = compile_templates().expect("the templates compile");
    let data = serde_json::json!({ "path": "/episodes/no-such-episode" });
    let mut group = c.benchmark_group("renderer");
    group.bench_function("reference: format! a fixed page", |b| {
        b.iter(|| {
            format!(
                "<!doctype html><title>{}</title><p>{}</p>",
                black_box("Not found"),
                black_box("/x")
            )
        })
    });
    group.bench_function("render the 404 page", |b| {
        b.iter(|| registry.render("pages/not_found", black_box(&data)))
    });
    group.bench_function("compile every template", |b| b.iter(compile_templates));
    group.finish();
}

criterion_group!(benches, renderer);
criterion_main!(benches);
