//! The Mailer as a user meets it: every message arrives (through SES, here
//! moto, or as an .eml file), only committed emails are sent, failures are
//! retried or dead-lettered, suppressed addresses are never mailed, the
//! send rate is kept, and an email cut short by a crash is sent once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lectern_actors::mail::templates::MailTemplates;
use lectern_actors::mail::{enqueue, Email, EmailAddress, EmailKind};
use lectern_actors::store::{DbConfig, DbPool};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::moto::{use_test_credentials, MotoServer};
use crate::helpers::{fresh_database, mime_part, spawn_app_on, spawn_app_with, LecternProcess, TestApp};

const SENDER: &str = "hello@lectern.test";
const FROM: &str = "\"Lectern <hello@lectern.test>\"";
const PUBLIC_URL: &str = "http://127.0.0.1:4000";
const PUBLIC_URL_TOML: &str = "\"http://127.0.0.1:4000\"";

/// Each message with data shaped as the accounts code shapes it.
fn every_message() -> Vec<(EmailKind, Value)> {
    vec![
        (
            EmailKind::ConfirmEmail,
            json!({ "name": "Ada", "link": "http://127.0.0.1:4000/confirm/t0k3n", "change": false }),
        ),
        (
            EmailKind::MagicLink,
            json!({ "name": "", "link": "http://127.0.0.1:4000/login/m4g1c", "minutes": 15, "signup_attempt": false }),
        ),
        (
            EmailKind::PasswordReset,
            json!({ "name": "Grace", "link": "http://127.0.0.1:4000/reset/r3s3t", "minutes": 30 }),
        ),
        (
            EmailKind::EmailChanged,
            json!({ "name": "Ada", "old_email": "ada@old.example", "new_email": "ada@new.example" }),
        ),
        (
            EmailKind::Welcome,
            json!({ "name": "Ada", "site_url": PUBLIC_URL }),
        ),
    ]
}

fn address(raw: &str) -> EmailAddress {
    EmailAddress::parse(raw).unwrap()
}

/// Enqueues `email` in a transaction of its own, committed.
async fn enqueue_committed(pool: &DbPool, email: Email) -> i64 {
    let mut client = pool.get().await.unwrap();
    let transaction = client.transaction().await.unwrap();
    let id = enqueue(&transaction, email).await.unwrap();
    transaction.commit().await.unwrap();
    id
}

#[derive(Debug)]
struct OutboxRow {
    status: String,
    attempts: i32,
    last_error: Option<String>,
    provider_id: Option<String>,
}

async fn outbox_row(pool: &DbPool, id: i64) -> OutboxRow {
    let row = pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT status, attempts, last_error, provider_id FROM email_outbox WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    OutboxRow {
        status: row.get(0),
        attempts: row.get(1),
        last_error: row.get(2),
        provider_id: row.get(3),
    }
}

/// Waits up to `within` for the row to leave `pending`; the row then.
async fn wait_until_settled(pool: &DbPool, id: i64, within: Duration) -> OutboxRow {
    let deadline = Instant::now() + within;
    loop {
        let row = outbox_row(pool, id).await;
        if row.status != "pending" || Instant::now() > deadline {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn spawn_ses_app(endpoint: &str, more: &[(&str, &str)]) -> TestApp {
    spawn_ses_app_on(fresh_database().await, endpoint, more).await
}

/// `spawn_ses_app` on the given database (two apps on one are two nodes).
async fn spawn_ses_app_on(database: DbConfig, endpoint: &str, more: &[(&str, &str)]) -> TestApp {
    use_test_credentials();
    let endpoint = format!("{endpoint:?}");
    let mut overrides = vec![
        ("mail.backend", "\"ses\""),
        ("mail.ses.endpoint", endpoint.as_str()),
        ("mail.from", FROM),
        ("mail.poll_secs", "1"),
        ("mail.retry_base_secs", "1"),
        ("server.public_url", PUBLIC_URL_TOML),
    ];
    overrides.extend_from_slice(more);
    spawn_app_on(database, &overrides).await
}

/// moto, with Lectern's sender verified.
async fn moto() -> MotoServer {
    let moto = MotoServer::start().await;
    moto.verify_sender(SENDER).await;
    moto
}

#[actix_rt::test]
async fn every_message_reaches_ses_with_its_recipient_subject_and_text() {
    let moto = moto().await;
    let app = spawn_ses_app(&moto.endpoint, &[]).await;
    let templates = MailTemplates::compile("Lectern", PUBLIC_URL).unwrap();

    let mut expected = Vec::new();
    for (message, data) in every_message() {
        let to = format!("{}@reader.example", message.name());
        let id = enqueue_committed(
            &app.pool,
            Email {
                to: address(&to),
                kind: message,
                data: data.clone(),
            },
        )
        .await;
        expected.push((id, to, templates.render(message.name(), &data).unwrap()));
    }

    let emails = moto
        .wait_for_emails(expected.len(), Duration::from_secs(20))
        .await;
    assert_eq!(emails.len(), expected.len(), "{emails:#?}");
    for (id, to, rendered) in expected {
        let row = wait_until_settled(&app.pool, id, Duration::from_secs(5)).await;
        assert_eq!(row.status, "sent", "{row:?}");
        let sent = emails
            .iter()
            .find(|e| e.to == [to.clone()])
            .unwrap_or_else(|| panic!("nothing reached {to}"));
        assert_eq!(sent.from, "Lectern <hello@lectern.test>");
        assert_eq!(sent.subject, rendered.subject);
        assert_eq!(sent.body, rendered.html);
        assert_eq!(row.provider_id.as_deref(), Some(sent.message_id.as_str()));
        assert_eq!(row.attempts, 1);
    }
}

#[actix_rt::test]
async fn the_file_backend_writes_an_eml_with_text_and_html() {
    let data_dir = tempfile::tempdir().unwrap();
    let data_dir_value = format!("{:?}", data_dir.path().display().to_string());
    let app = spawn_app_with(&[
        ("server.data_dir", data_dir_value.as_str()),
        ("mail.backend", "\"file\""),
        ("mail.from", FROM),
        ("server.public_url", PUBLIC_URL_TOML),
    ])
    .await;
    let data = json!({ "name": "Grace", "link": "http://127.0.0.1:4000/reset/r3s3t", "minutes": 30 });
    let id = enqueue_committed(
        &app.pool,
        Email {
            to: address("grace@reader.example"),
            kind: EmailKind::PasswordReset,
            data: data.clone(),
        },
    )
    .await;

    let row = wait_until_settled(&app.pool, id, Duration::from_secs(10)).await;
    assert_eq!(row.status, "sent", "{row:?}");
    let file = data_dir.path().join("mail").join(row.provider_id.unwrap());
    let eml = std::fs::read_to_string(&file).unwrap();
    let rendered = MailTemplates::compile("Lectern", PUBLIC_URL)
        .unwrap()
        .render("password_reset", &data)
        .unwrap();
    assert!(
        eml.contains("From: \"Lectern\" <hello@lectern.test>\r\n"),
        "{eml}"
    );
    assert!(eml.contains("To: <grace@reader.example>\r\n"), "{eml}");
    assert!(
        eml.contains(&format!("Subject: {}\r\n", rendered.subject)),
        "{eml}"
    );
    assert!(eml.contains("Content-Type: multipart/alternative"), "{eml}");
    assert_eq!(mime_part(&eml, "text/plain").trim_end(), rendered.text.trim_end());
    assert_eq!(mime_part(&eml, "text/html").trim_end(), rendered.html.trim_end());
    // Written whole and renamed into place: no temporary file is left.
    let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[actix_rt::test]
async fn an_email_whose_transaction_rolls_back_is_never_sent() {
    let moto = moto().await;
    let app = spawn_ses_app(&moto.endpoint, &[]).await;
    let (message, data) = every_message().remove(0);

    let mut client = app.pool.get().await.unwrap();
    let transaction = client.transaction().await.unwrap();
    let rolled_back = enqueue(
        &transaction,
        Email {
            to: address("never@reader.example"),
            kind: message,
            data: data.clone(),
        },
    )
    .await
    .unwrap();
    transaction.rollback().await.unwrap();
    let committed = enqueue_committed(
        &app.pool,
        Email {
            to: address("later@reader.example"),
            kind: message,
            data,
        },
    )
    .await;

    assert_eq!(
        wait_until_settled(&app.pool, committed, Duration::from_secs(10))
            .await
            .status,
        "sent"
    );
    // Time for a poll or two past the committed email.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let emails = moto.emails().await;
    assert_eq!(emails.len(), 1, "{emails:#?}");
    assert_eq!(emails[0].to, ["later@reader.example"]);
    let rows: i64 = client
        .query_one("SELECT count(*) FROM email_outbox WHERE id = $1", &[&rolled_back])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
}

/// Inserts an outbox row as another node (or version) would, optionally
/// with the NOTIFY that wakes every Mailer.
async fn insert_as_another_node(pool: &DbPool, recipient: &str, notify: bool) -> i64 {
    let mut client = pool.get().await.unwrap();
    let transaction = client.transaction().await.unwrap();
    let id: i64 = transaction
        .query_one(
            "INSERT INTO email_outbox (message, recipient, data) VALUES ('welcome', $1, $2) RETURNING id",
            &[&recipient, &json!({ "name": "", "site_url": PUBLIC_URL })],
        )
        .await
        .unwrap()
        .get(0);
    if notify {
        transaction.batch_execute("NOTIFY lectern_mail").await.unwrap();
    }
    transaction.commit().await.unwrap();
    id
}

#[actix_rt::test]
async fn a_row_written_with_notify_is_sent_without_waiting_for_the_poll() {
    let moto = moto().await;
    // Polling once an hour: only the notification can wake the Mailer in time.
    let app = spawn_ses_app(&moto.endpoint, &[("mail.poll_secs", "3600")]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listening = mailers_listening(&app.pool).await;
        if listening > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the Mailer never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let id = insert_as_another_node(&app.pool, "notified@reader.example", true).await;

    assert_eq!(
        wait_until_settled(&app.pool, id, Duration::from_secs(10))
            .await
            .status,
        "sent"
    );
    assert_eq!(moto.emails().await[0].to, ["notified@reader.example"]);
}

#[actix_rt::test]
async fn a_row_written_without_notify_is_found_by_polling() {
    let moto = moto().await;
    let app = spawn_ses_app(&moto.endpoint, &[]).await;

    let id = insert_as_another_node(&app.pool, "polled@reader.example", false).await;

    assert_eq!(
        wait_until_settled(&app.pool, id, Duration::from_secs(10))
            .await
            .status,
        "sent"
    );
    assert_eq!(moto.emails().await[0].to, ["polled@reader.example"]);
}

/// An SES stand-in on a loopback port that answers from a script, one
/// answer per request (the last one repeats), and counts the requests.
struct ScriptedSes {
    endpoint: String,
    requests: Arc<AtomicUsize>,
}

impl ScriptedSes {
    async fn start(script: Vec<(u16, &'static str, &'static str)>) -> ScriptedSes {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        let script = Arc::new(script);
        actix_rt::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let counter = Arc::clone(&counter);
                let script = Arc::clone(&script);
                actix_rt::spawn(async move {
                    while read_request(&mut socket).await.is_some() {
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        let (status, error_type, body) = script[n.min(script.len() - 1)];
                        let response = format!(
                            "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\n\
                             x-amzn-errortype: {error_type}\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if socket.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        ScriptedSes { endpoint, requests }
    }
}

/// Reads one HTTP request (headers and a `content-length` body).
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let headers = String::from_utf8_lossy(&request[..end]).to_lowercase();
            let length: usize = headers
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if request.len() >= end + 4 + length {
                return Some(request);
            }
        }
        let n = socket.read(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        request.extend_from_slice(&buffer[..n]);
    }
}

#[actix_rt::test]
async fn a_transient_failure_is_retried_then_sent() {
    let ses = ScriptedSes::start(vec![
        (
            429,
            "TooManyRequestsException",
            r#"{"message":"Maximum sending rate exceeded."}"#,
        ),
        (503, "ServiceUnavailable", r#"{"message":"Service unavailable"}"#),
        (200, "", r#"{"MessageId":"scripted-3"}"#),
    ])
    .await;
    let app = spawn_ses_app(&ses.endpoint, &[]).await;
    let (message, data) = every_message().remove(2);

    let id = enqueue_committed(
        &app.pool,
        Email {
            to: address("grace@reader.example"),
            kind: message,
            data,
        },
    )
    .await;

    // Retries wait at most 1 s, then 2 s (retry_base_secs = 1, full jitter).
    let row = wait_until_settled(&app.pool, id, Duration::from_secs(15)).await;
    assert_eq!(row.status, "sent", "{row:?}");
    assert_eq!(row.attempts, 3);
    assert_eq!(row.provider_id.as_deref(), Some("scripted-3"));
    assert_eq!(ses.requests.load(Ordering::SeqCst), 3);
}

#[actix_rt::test]
async fn transient_failures_past_max_attempts_go_to_the_dead_letter() {
    let ses = ScriptedSes::start(vec![(
        503,
        "ServiceUnavailable",
        r#"{"message":"Service unavailable"}"#,
    )])
    .await;
    let app = spawn_ses_app(&ses.endpoint, &[("mail.max_attempts", "2")]).await;
    let (message, data) = every_message().remove(0);

    let id = enqueue_committed(
        &app.pool,
        Email {
            to: address("ada@reader.example"),
            kind: message,
            data,
        },
    )
    .await;

    let row = wait_until_settled(&app.pool, id, Duration::from_secs(10)).await;
    assert_eq!(row.status, "dead", "{row:?}");
    assert_eq!(row.attempts, 2);
    let error = row.last_error.unwrap();
    assert!(error.starts_with("gave up after 2 attempts"), "{error}");
    assert_eq!(ses.requests.load(Ordering::SeqCst), 2);
}

#[actix_rt::test]
async fn a_permanent_error_goes_to_the_dead_letter_at_once() {
    // moto refuses mail from a sender that was never verified, as SES does.
    let moto = MotoServer::start().await;
    let app = spawn_ses_app(&moto.endpoint, &[]).await;
    let (message, data) = every_message().remove(1);

    let id = enqueue_committed(
        &app.pool,
        Email {
            to: address("ada@reader.example"),
            kind: message,
            data,
        },
    )
    .await;

    let row = wait_until_settled(&app.pool, id, Duration::from_secs(10)).await;
    assert_eq!(row.status, "dead", "{row:?}");
    assert_eq!(row.attempts, 1);
    let error = row.last_error.unwrap();
    assert!(
        error.contains("MessageRejected") && error.contains("not verified"),
        "{error}"
    );
    assert!(moto.emails().await.is_empty());
}

#[actix_rt::test]
async fn a_suppressed_recipient_is_dead_lettered_and_never_mailed() {
    let moto = moto().await;
    let app = spawn_ses_app(&moto.endpoint, &[]).await;
    app.pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO email_suppressions (email, reason, detail) VALUES ($1, 'bounce', $2)",
            &[&"gone@reader.example", &"Permanent: General"],
        )
        .await
        .unwrap();
    let (message, data) = every_message().remove(1);

    let id = enqueue_committed(
        &app.pool,
        Email {
            to: address("Gone@Reader.example"),
            kind: message,
            data,
        },
    )
    .await;

    let row = wait_until_settled(&app.pool, id, Duration::from_secs(10)).await;
    assert_eq!(row.status, "dead", "{row:?}");
    assert_eq!(row.attempts, 0);
    assert_eq!(
        row.last_error.as_deref(),
        Some("suppressed: bounce (Permanent: General)")
    );
    assert!(moto.emails().await.is_empty());
}

#[actix_rt::test]
async fn sends_are_spread_to_keep_under_max_per_second() {
    let moto = moto().await;
    let app = spawn_ses_app(&moto.endpoint, &[("mail.max_per_second", "2")]).await;
    let (message, data) = every_message().remove(4);

    let mut client = app.pool.get().await.unwrap();
    let transaction = client.transaction().await.unwrap();
    for n in 0..6 {
        let email = Email {
            to: address(&format!("reader{n}@reader.example")),
            kind: message,
            data: data.clone(),
        };
        enqueue(&transaction, email).await.unwrap();
    }
    transaction.commit().await.unwrap();

    assert_eq!(moto.wait_for_emails(6, Duration::from_secs(20)).await.len(), 6);
    // Seconds from the enqueueing (before any send began) to each email's
    // recorded sending, earliest first.
    let deadline = Instant::now() + Duration::from_secs(5);
    let sent_after: Vec<f64> = loop {
        let sent_after: Vec<f64> = client
            .query(
                "SELECT extract(epoch FROM sent_at - min(created_at) OVER ())::float8 \
                 FROM email_outbox WHERE status = 'sent' ORDER BY sent_at",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        if sent_after.len() == 6 || Instant::now() > deadline {
            break sent_after;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sent_after.len(), 6);
    // Two a second: the limiter lets the n-th send (from 0) start no sooner
    // than n half-seconds after the first, which started after the
    // enqueueing. A row is marked sent after its send started, so the n-th
    // earliest mark comes no sooner either; a slow send or database only
    // makes it later. (The clocks are one machine's; 5 ms of leeway for
    // the wall clock against the limiter's monotonic one.)
    for (n, after) in sent_after.iter().enumerate() {
        let earliest = n as f64 * 0.5 - 0.005;
        assert!(
            *after >= earliest,
            "send {n} marked {after:.3}s after the enqueueing, before {earliest:.3}s: {sent_after:?}"
        );
    }
}

#[actix_rt::test]
async fn two_nodes_draining_one_outbox_through_ses_send_each_email_once() {
    const EMAILS: usize = 60;
    let moto = moto().await;
    let database = fresh_database().await;
    // Each node may send 100 a second with 4 workers: 8 workers in all,
    // each taking the longest-due row, so that they contend for the same rows.
    let fast = [("mail.max_per_second", "100")];
    let nodes = [
        spawn_ses_app_on(database.clone(), &moto.endpoint, &fast).await,
        spawn_ses_app_on(database, &moto.endpoint, &fast).await,
    ];
    let (message, data) = every_message().remove(4);
    let mut client = nodes[0].pool.get().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listening = mailers_listening(&nodes[0].pool).await;
        if listening == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{listening} of 2 Mailers listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // One transaction, one NOTIFY: both Mailers wake at its commit.
    let transaction = client.transaction().await.unwrap();
    for n in 0..EMAILS {
        let email = Email {
            to: address(&format!("reader{n}@reader.example")),
            kind: message,
            data: data.clone(),
        };
        enqueue(&transaction, email).await.unwrap();
    }
    transaction.commit().await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending: i64 = client
            .query_one("SELECT count(*) FROM email_outbox WHERE status = 'pending'", &[])
            .await
            .unwrap()
            .get(0);
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} emails still pending after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both Mailers finish their sends in flight: moto then holds every send there was.
    for node in &nodes {
        node.actors().shutdown().await;
    }

    let rows: Vec<(String, String, Option<String>)> = client
        .query(
            "SELECT recipient, status, provider_id FROM email_outbox ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(rows.len(), EMAILS);
    for (recipient, status, provider_id) in &rows {
        assert!(
            status == "sent" && provider_id.is_some(),
            "{recipient}: {status}, {provider_id:?}"
        );
    }
    let provider_ids: std::collections::BTreeSet<&str> =
        rows.iter().filter_map(|(_, _, id)| id.as_deref()).collect();
    assert_eq!(provider_ids.len(), EMAILS, "provider ids are not unique");

    let emails = moto.emails().await;
    let mut sends_per_recipient = std::collections::BTreeMap::<&str, usize>::new();
    for email in &emails {
        for to in &email.to {
            *sends_per_recipient.entry(to.as_str()).or_default() += 1;
        }
    }
    let twice: Vec<_> = sends_per_recipient.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(
        emails.len(),
        EMAILS,
        "moto received {} emails for {EMAILS} rows; sent more than once: {twice:?}",
        emails.len()
    );
    let received: std::collections::BTreeSet<&str> = emails.iter().map(|e| e.message_id.as_str()).collect();
    assert_eq!(received, provider_ids, "the outbox records the ids moto gave");
    let recipients: std::collections::BTreeSet<&str> = rows.iter().map(|(to, _, _)| to.as_str()).collect();
    assert_eq!(
        sends_per_recipient
            .keys()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        recipients
    );

    // Both nodes took part, and neither sent what the other did.
    let [first, second] = [&nodes[0], &nodes[1]].map(|node| node.log_file.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    let (by_first, by_second) = loop {
        let (by_first, by_second) = (sent_in_log(&first), sent_in_log(&second));
        if by_first.len() + by_second.len() >= EMAILS || Instant::now() > deadline {
            break (by_first, by_second);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        !by_first.is_empty() && !by_second.is_empty(),
        "one node sent everything: {} and {}",
        by_first.len(),
        by_second.len()
    );
    assert!(by_first.is_disjoint(&by_second), "{by_first:?} {by_second:?}");
    assert_eq!(by_first.len() + by_second.len(), EMAILS);
}

/// The outbox ids of the emails a node logged as sent.
fn sent_in_log(log_file: &std::path::Path) -> std::collections::BTreeSet<i64> {
    std::fs::read_to_string(log_file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["msg"] == "email sent")
        .filter_map(|line| line["outbox_id"].as_i64())
        .collect()
}

/// An SES stand-in that reads requests and answers each after `answer`'s
/// delay with a MessageId, or never when `answer` is `None`; says when the
/// first request has arrived whole.
async fn slow_server(answer: Option<Duration>) -> (String, tokio::sync::oneshot::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (arrived, first_request) = tokio::sync::oneshot::channel();
    let arrived = Arc::new(std::sync::Mutex::new(Some(arrived)));
    actix_rt::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let arrived = Arc::clone(&arrived);
            actix_rt::spawn(async move {
                while let Some(request) = read_request(&mut socket).await {
                    if let Some(arrived) = arrived.lock().unwrap().take() {
                        let _ = arrived.send(String::from_utf8_lossy(&request).into_owned());
                    }
                    let Some(delay) = answer else {
                        // Hold the connection open, unanswered.
                        std::future::pending::<()>().await;
                        return;
                    };
                    tokio::time::sleep(delay).await;
                    let body = r#"{"MessageId":"slow-1"}"#;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (endpoint, first_request)
}

/// `lectern serve` on `database`, sending through SES at `endpoint`.
fn start_lectern(database: &lectern_actors::store::DbConfig, endpoint: &str) -> LecternProcess {
    use_test_credentials();
    LecternProcess::start_with_env(
        Arc::new(tempfile::tempdir().unwrap()),
        Some(database),
        &[
            ("LECTERN__MAIL__BACKEND", "ses"),
            ("LECTERN__MAIL__SES__ENDPOINT", endpoint),
            ("LECTERN__MAIL__FROM", "Lectern <hello@lectern.test>"),
            ("LECTERN__MAIL__POLL_SECS", "1"),
        ],
    )
}

#[actix_rt::test]
async fn an_email_cut_short_by_a_crash_is_sent_once_after_a_restart() {
    let moto = moto().await;
    let (silent, first_request) = slow_server(None).await;
    let database = fresh_database().await;
    let pool = lectern_actors::store::connect_pool(database.clone(), 2).unwrap();

    let mut first = start_lectern(&database, &silent);
    let (message, data) = every_message().remove(2);
    let id = enqueue_committed(
        &pool,
        Email {
            to: address("grace@reader.example"),
            kind: message,
            data,
        },
    )
    .await;
    let request = tokio::time::timeout(Duration::from_secs(20), first_request)
        .await
        .expect("the Mailer sent the email to SES")
        .unwrap();
    assert!(request.starts_with("POST /v2/email/outbound-emails"), "{request}");
    first.signal(nix::sys::signal::Signal::SIGKILL);
    let status = first.child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));

    let row = outbox_row(&pool, id).await;
    assert_eq!((row.status.as_str(), row.attempts), ("pending", 0), "{row:?}");
    assert!(moto.emails().await.is_empty());

    let _second = start_lectern(&database, &moto.endpoint);
    let row = wait_until_settled(&pool, id, Duration::from_secs(20)).await;
    assert_eq!(row.status, "sent", "{row:?}");
    // Time for a second send, were there one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let emails = moto.emails().await;
    assert_eq!(emails.len(), 1, "{emails:#?}");
    assert_eq!(emails[0].to, ["grace@reader.example"]);
    assert_eq!(row.provider_id.as_deref(), Some(emails[0].message_id.as_str()));
}

#[test]
fn every_message_renders_as_its_snapshot() {
    let templates = MailTemplates::compile("Lectern", "https://lectern.example").unwrap();
    let mut cases: Vec<(String, EmailKind, Value)> = every_message()
        .into_iter()
        .map(|(message, data)| (message.name().to_owned(), message, data))
        .collect();
    cases.push((
        "confirm_email_change".to_owned(),
        EmailKind::ConfirmEmail,
        json!({ "name": "", "link": "https://lectern.example/confirm/n3w", "change": true }),
    ));
    cases.push((
        "magic_link_signup_attempt".to_owned(),
        EmailKind::MagicLink,
        json!({ "name": "Ada <Lovelace>", "link": "https://lectern.example/login/s1gn", "minutes": 15, "signup_attempt": true }),
    ));
    for (name, repeats_before, previous_at) in [
        ("alert", 0, ""),
        ("alert_after_repeats", 12, "2026-12-02 09:14 UTC"),
    ] {
        cases.push((
            name.to_owned(),
            EmailKind::Alert,
            json!({
                "condition": "backup_failed",
                "title": "a backup failed",
                "summary": "The backup daily/2026-12-02T03-00-00Z.dump failed.",
                "detail": "pg_restore: error: could not extend file: No space left on device",
                "advice": "The failure is recorded (lectern backup list shows it).",
                "repeats_before": repeats_before,
                "previous_at": previous_at,
            }),
        ));
    }
    cases.push((
        "digest".to_owned(),
        EmailKind::Digest,
        json!({
            "from": "2026-11-23", "to": "2026-11-29",
            "views": "12,480", "visitors": "3,105", "signups": "41",
            "started": "6", "ended": "2", "subscribers": "318",
            "revenue": ["2,519.00 USD", "190.00 EUR"],
            "backups_succeeded": "8", "backups_verified": "8", "backups_failed": "0",
            "alerts": [{ "condition": "dead_letters", "count": "2" }],
            "pages": [
                { "path": "/episodes/actors-<and>-supervision", "views": "1,204" },
                { "path": "/", "views": "990" },
            ],
            "restarts": [{ "actor": "Renderer", "restarts": 1, "last_error": "panic while handling Render: boom" }],
            "slowest": [
                { "route": "/search", "mean_ms": "41.3", "requests": "1,022" },
                { "route": "/admin/members/{id}", "mean_ms": "12.0", "requests": "14" },
            ],
        }),
    ));
    cases.push((
        "digest_quiet_week".to_owned(),
        EmailKind::Digest,
        json!({
            "from": "2026-11-23", "to": "2026-11-29",
            "views": "0", "visitors": "0", "signups": "0",
            "started": "0", "ended": "0", "subscribers": "0",
            "revenue": [], "backups_succeeded": "0", "backups_verified": "0", "backups_failed": "0",
            "alerts": [], "pages": [], "restarts": [], "slowest": [],
        }),
    ));
    for (name, message, data) in cases {
        let email = templates.render(message.name(), &data).unwrap();
        insta::assert_snapshot!(
            format!("email_{name}"),
            format!(
                "Subject: {}\n\n--- text ---\n{}\n--- html ---\n{}",
                email.subject, email.text, email.html
            )
        );
    }
}

#[actix_rt::test]
async fn sigterm_lets_the_send_in_flight_finish() {
    let (slow, first_request) = slow_server(Some(Duration::from_millis(1500))).await;
    let database = fresh_database().await;
    let pool = lectern_actors::store::connect_pool(database.clone(), 2).unwrap();
    let mut lectern = start_lectern(&database, &slow);
    let (message, data) = every_message().remove(3);
    let id = enqueue_committed(
        &pool,
        Email {
            to: address("ada@reader.example"),
            kind: message,
            data,
        },
    )
    .await;
    tokio::time::timeout(Duration::from_secs(20), first_request)
        .await
        .expect("the Mailer sent the email to SES")
        .unwrap();

    lectern.signal(nix::sys::signal::Signal::SIGTERM);

    // Waiting without blocking this thread, which runs the stand-in's answer.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = lectern.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "lectern did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
    let row = outbox_row(&pool, id).await;
    assert_eq!(row.status, "sent", "{row:?}");
    assert_eq!(row.provider_id.as_deref(), Some("slow-1"));
}

/// How many Mailers (of every node on the database) listen for new mail.
async fn mailers_listening(pool: &lectern_actors::store::DbPool) -> i64 {
    pool.get()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND query = 'LISTEN lectern_mail'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}
