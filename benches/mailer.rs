//! How fast the Mailer drains the outbox, against a reference in the same
//! run: the same emails, rendered beforehand, sent straight through one SES
//! client with the same concurrency (no database, no rate limit), so that the
//! figure reads as the Mailer's overhead on any machine. SES is moto's
//! server from `target/test-venv` (run `tests/run` once to install it);
//! PostgreSQL is a private server started from the system's binaries.
//!
//! Run: `cargo bench --bench mailer` (`MAILER_BENCH_EMAILS` sets how many).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lectern_actors::alerts::watch::WatchConfig;
use lectern_actors::backup::scheduler::BackupPlan;
use lectern_actors::backup::{Backups, DirStorage};
use lectern_actors::billing::actor::BillingSchedule;
use lectern_actors::billing::{Billing, BillingConfig};
use lectern_actors::cache::PageTable;
use lectern_actors::mail::backend::{ses_client, SesBackend};
use lectern_actors::mail::templates::MailTemplates;
use lectern_actors::mail::{BackendConfig, MailerConfig};
use lectern_actors::store::{self, embedded::EmbeddedPostgres, DbPool};
use lectern_actors::supervisor::restarts::{RestartPolicy, StormPolicy};
use lectern_actors::supervisor::{AlertsConfig, RootSupervisor, SupervisorConfig};
use serde_json::json;

const SENDER: &str = "hello@lectern.test";
/// The configuration's default.
const CONCURRENCY: usize = 4;

fn main() {
    let emails: usize = std::env::var("MAILER_BENCH_EMAILS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    // Before any thread starts: the SDK reads its credentials from here.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");

    let dir = std::path::PathBuf::from(format!("/tmp/lectern-bench-mailer-{}", std::process::id()));
    let mut postgres =
        EmbeddedPostgres::start(&dir.join("data"), &dir.join("postgres.log")).expect("PostgreSQL starts");
    let moto_binary =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/moto_server");
    assert!(
        moto_binary.exists(),
        "{} is missing: run `tests/run` once (it installs moto's server)",
        moto_binary.display()
    );
    let mut moto = Command::new(&moto_binary)
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("moto_server runs");
    let stderr = moto.stderr.take().expect("piped");
    let (address_sender, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut address_sender = Some(address_sender);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(address) = line.split("Running on http://").nth(1) {
                if let Some(sender) = address_sender.take() {
                    let _ = sender.send(address.trim().to_owned());
                }
            }
        }
    });
    let endpoint = format!(
        "http://{}",
        address
            .recv_timeout(Duration::from_secs(30))
            .expect("moto listens")
    );

    let (mailer, reference) = actix_rt::System::new().block_on(async {
        store::ensure_database(&postgres.config("postgres"), "bench")
            .await
            .expect("database");
        let database = postgres.config("bench");
        let pool = store::connect_pool(database.clone(), 2).expect("pool");
        store::migrate(&pool).await.expect("migrations");
        let client = ses_client(Some(endpoint.clone()), "us-east-1".to_owned()).await;
        client
            .create_email_identity()
            .email_identity(SENDER)
            .send()
            .await
            .expect("moto verifies the sender");
        let ses = SesBackend::new(Some(endpoint.clone()), "us-east-1".to_owned());
        // Warm moto and the connections up before either run.
        send_directly(&ses, 50).await;

        enqueue(&pool, emails).await;
        let started = Instant::now();
        let actors = RootSupervisor::start(
            &SupervisorConfig {
                policy: RestartPolicy::default(),
                render_threads: 1,
                live_templates: false,
                schedule_check: Duration::from_secs(3600),
                events_flush: Duration::from_secs(1),
                page_view_buffer: 16,
                mail: MailerConfig {
                    backend: BackendConfig::Ses {
                        endpoint: Some(endpoint.clone()),
                        region: "us-east-1".to_owned(),
                    },
                    from: format!("Lectern <{SENDER}>"),
                    site_name: "Lectern".to_owned(),
                    site_url: "https://lectern.example".to_owned(),
                    max_per_second: 100_000,
                    concurrency: CONCURRENCY,
                    poll: Duration::from_secs(1),
                    max_attempts: 8,
                    retry_base: Duration::from_secs(30),
                },
                housekeeping_every: Duration::from_secs(3600),
                keep_mail: Duration::from_secs(86_400),
                billing: BillingSchedule {
                    reconcile_every: Duration::from_secs(3 * 3600),
                    node: "bench".to_owned(),
                },
                backup: BackupPlan {
                    daily: None,
                    weekly: None,
                    keep_daily: 7,
                    keep_weekly: 5,
                },
                alerts: AlertsConfig {
                    to: None,
                    storm: StormPolicy {
                        restarts: 3,
                        within: Duration::from_secs(60),
                    },
                    watch: WatchConfig {
                        dead_letters_every: Duration::from_secs(60),
                        database_down_after: Duration::from_secs(60),
                        certificate: None,
                        digest: None,
                    },
                },
            },
            pool.clone(),
            database.clone(),
            PageTable::new(1024 * 1024),
            // No Stripe key: the billing actors start and stay idle.
            Arc::new(
                Billing::new(
                    pool.clone(),
                    BillingConfig {
                        plans: Vec::new(),
                        grace: time::Duration::days(7),
                        stripe: None,
                        urls: lectern::http::billing::urls("https://lectern.example"),
                    },
                    slog::Logger::root(slog::Discard, slog::o!()),
                )
                .expect("billing without Stripe"),
            ),
            // No schedule: the BackupScheduler starts and stays idle.
            Arc::new(Backups::new(
                pool.clone(),
                database.clone(),
                Arc::new(DirStorage::new(
                    std::env::temp_dir().join("lectern-bench-backups"),
                )),
            )),
            slog::Logger::root(slog::Discard, slog::o!()),
        )
        .expect("the actors start");
        while sent(&pool).await < emails as i64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mailer = started.elapsed();
        let dead: i64 = pool
            .get()
            .await
            .expect("connection")
            .query_one("SELECT count(*) FROM email_outbox WHERE status <> 'sent'", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(dead, 0, "every email is sent");
        // Last: stopping the actors' arbiters also ends the pool connections
        // that were opened on them.
        actors.shutdown().await;

        let started = Instant::now();
        send_directly(&ses, emails).await;
        (mailer, started.elapsed())
    });
    let _ = moto.kill();
    let _ = moto.wait();
    postgres.stop();
    let _ = std::fs::remove_dir_all(&dir);

    let rate = |elapsed: Duration| emails as f64 / elapsed.as_secs_f64();
    println!("{emails} emails to SES (moto), concurrency {CONCURRENCY}");
    println!("| path | seconds | emails/s | vs reference |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| one SES client, straight (reference) | {:.2} | {:.0} | 1.00x |",
        reference.as_secs_f64(),
        rate(reference)
    );
    println!(
        "| Mailer: claim, render, send, record | {:.2} | {:.0} | {:.2}x |",
        mailer.as_secs_f64(),
        rate(mailer),
        rate(mailer) / rate(reference)
    );
}

fn welcome_data(n: usize) -> serde_json::Value {
    json!({ "name": format!("Reader {n}"), "site_url": "https://lectern.example" })
}

/// `count` welcome emails in the outbox, in one transaction.
async fn enqueue(pool: &DbPool, count: usize) {
    let mut client = pool.get().await.expect("connection");
    let transaction = client.transaction().await.expect("transaction");
    for n in 0..count {
        let email = lectern_actors::mail::Email {
            to: lectern_actors::mail::EmailAddress::parse(&format!("reader{n}@reader.example"))
                .expect("address"),
            kind: lectern_actors::mail::EmailKind::Welcome,
            data: welcome_data(n),
        };
        lectern_actors::mail::enqueue(&transaction, email)
            .await
            .expect("enqueue");
    }
    transaction.commit().await.expect("commit");
}

async fn sent(pool: &DbPool) -> i64 {
    pool.get()
        .await
        .expect("connection")
        .query_one("SELECT count(*) FROM email_outbox WHERE status = 'sent'", &[])
        .await
        .expect("count")
        .get(0)
}

/// The reference: `count` rendered emails through one SES client (the
/// one the Mailer's backend wraps), `CONCURRENCY` at a time.
async fn send_directly(ses: &SesBackend, count: usize) {
    let templates = MailTemplates::compile("Lectern", "https://lectern.example").expect("templates");
    let rendered: Vec<_> = (0..count)
        .map(|n| templates.render("welcome", &welcome_data(n)).expect("render"))
        .collect();
    let from = format!("Lectern <{SENDER}>");
    futures_util::stream::iter(rendered.iter().enumerate())
        .map(|(n, email)| {
            let from = from.as_str();
            async move {
                ses.send(from, &format!("reader{n}@reader.example"), email)
                    .await
                    .expect("moto accepts the email");
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
}
