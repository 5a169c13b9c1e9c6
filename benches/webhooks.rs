//! How many Stripe events a second the webhook endpoint takes in on one
//! core, against a reference in the same run: the bare HMAC-SHA256 check of
//! the same signed payload (ring's, nothing else), so that figures read as
//! ratios on any machine. The endpoint's work, step by step: the
//! `Stripe-Signature` check, the envelope parsed, the event recorded in
//! PostgreSQL under its unique id (a new one, and a duplicate that changes
//! nothing). The event is Stripe's own example subscription, 5 KB as sent.
//!
//! The process pins itself to one CPU before it starts its private
//! PostgreSQL, so the server's work counts on the same core.
//!
//! Run: `cargo bench --bench webhooks`

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lectern_actors::billing::webhook::{self, StripeEvent};
use lectern_actors::billing::{Billing, BillingConfig};
use lectern_actors::store::{self, embedded::EmbeddedPostgres};
use ring::hmac;
use serde_json::json;

const SECRET: &str = "whsec_bench";

/// A `customer.subscription.updated` event as Stripe sends it.
fn event_body(id: u64) -> Vec<u8> {
    let subscription: serde_json::Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/api/fixtures/stripe/subscription.json"
    )))
    .expect("Stripe's example subscription");
    serde_json::to_vec(&json!({
        "id": format!("evt_bench_{id:016}"),
        "object": "event",
        "api_version": "2024-06-20",
        "created": 1_764_000_000,
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": "customer.subscription.updated",
        "data": { "object": subscription, "previous_attributes": { "cancel_at_period_end": true } },
    }))
    .expect("JSON")
}

/// The reference: what any webhook receiver must do at the least.
fn bare_hmac(body: &[u8], timestamp: i64, signature: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut signed = timestamp.to_string().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(body);
    hmac::verify(&key, &signed, signature).is_ok()
}

fn webhooks(c: &mut Criterion) {
    pin_to_one_cpu();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::path::PathBuf::from(format!("/tmp/lectern-bench-webhooks-{}", std::process::id()));
    let mut server =
        EmbeddedPostgres::start(&dir.join("data"), &dir.join("postgres.log")).expect("PostgreSQL starts");
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let billing = runtime.block_on(async {
        store::ensure_database(&server.config("postgres"), "bench")
            .await
            .expect("database");
        let pool = store::connect_pool(server.config("bench"), 2).expect("pool");
        store::migrate(&pool).await.expect("migrations");
        let config = BillingConfig {
            plans: Vec::new(),
            grace: time::Duration::days(7),
            stripe: None,
            urls: lectern::http::billing::urls("https://lectern.example"),
        };
        Billing::new(pool, config, log).expect("billing without Stripe")
    });
    let secrets = vec![SECRET.to_owned()];
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let body = event_body(0);
    let header = webhook::sign(&body, SECRET, now);
    let signature = hex::decode(header.split("v1=").nth(1).expect("v1")).expect("hex");
    let next_id = AtomicU64::new(1);
    // A new event each time: signed in the setup, outside the measurement.
    let fresh_event = || {
        let body = event_body(next_id.fetch_add(1, Ordering::Relaxed));
        let header = webhook::sign(&body, SECRET, now);
        (body, header)
    };

    let mut group = c.benchmark_group("webhooks");
    group.throughput(Throughput::Elements(1));
    group.bench_function(
        format!("reference: bare HMAC-SHA256 of a {} KB event", body.len() / 1024),
        |b| b.iter(|| assert!(bare_hmac(black_box(&body), now, &signature))),
    );
    group.bench_function("check the Stripe-Signature header", |b| {
        b.iter(|| webhook::verify(Some(black_box(&header)), black_box(&body), &secrets, now).expect("valid"))
    });
    group.bench_function("check and parse the envelope", |b| {
        b.iter(|| {
            webhook::verify(Some(black_box(&header)), black_box(&body), &secrets, now).expect("valid");
            StripeEvent::parse(black_box(&body)).expect("an event")
        })
    });
    group.bench_function("check, parse and record a new event in PostgreSQL", |b| {
        b.iter_batched(
            fresh_event,
            |(body, header)| {
                webhook::verify(Some(&header), &body, &secrets, now).expect("valid");
                let event = StripeEvent::parse(&body).expect("an event");
                assert!(runtime.block_on(billing.record_event(&event)).expect("recorded"));
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("check, parse and find a duplicate (no effect)", |b| {
        let event = StripeEvent::parse(&body).expect("an event");
        runtime.block_on(billing.record_event(&event)).expect("recorded");
        b.iter(|| {
            webhook::verify(Some(black_box(&header)), black_box(&body), &secrets, now).expect("valid");
            let event = StripeEvent::parse(&body).expect("an event");
            assert!(!runtime.block_on(billing.record_event(&event)).expect("looked up"));
        })
    });
    group.finish();
    drop(billing);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// This thread, and PostgreSQL started after it, run on CPU 0 alone.
fn pin_to_one_cpu() {
    let mut cpus = nix::sched::CpuSet::new();
    cpus.set(0).expect("CPU 0");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus).expect("pinned to CPU 0");
}

criterion_group!(benches, webhooks);
criterion_main!(benches);
