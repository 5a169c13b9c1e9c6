//! `POST /webhooks/ses`: SNS messages carrying SES bounces and complaints,
//! signed here exactly as SNS signs them, with the signing certificate
//! served by a small local server whose URL prefix the test configuration
//! trusts. The `openssl` command signs, so that the signatures Lectern's
//! ring checks come from another implementation.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use lectern_actors::mail::suppression::Reason;
use lectern_actors::mail::EmailAddress;
use reqwest::StatusCode;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::helpers::{spawn_app_with, TestApp};

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-feedback";
const SIGNING_KEY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/api/fixtures/sns-signing-key.pem"
);
const SIGNING_CERT: &str = include_str!("fixtures/sns-signing-cert.pem");

/// A stand-in for SNS's hosts: serves the signing certificate at
/// `/sns/cert.pem`, answers every other GET with 200, and remembers the
/// path of every request.
struct FakeSns {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeSns {
    async fn start() -> FakeSns {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    seen.lock().unwrap().push(path.clone());
                    let body = if path == "/sns/cert.pem" {
                        SIGNING_CERT
                    } else {
                        "<ConfirmSubscriptionResponse/>"
                    };
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        FakeSns { port, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Lectern trusting `TOPIC` and certificates under the fake's `/sns/`.
async fn spawn_trusting(sns: &FakeSns, topics: &[&str]) -> TestApp {
    let topics = serde_json::to_string(topics).unwrap();
    let prefixes = serde_json::to_string(&[sns.url("/sns/")]).unwrap();
    spawn_app_with(&[
        ("mail.sns.topic_arns", topics.as_str()),
        ("mail.sns.allowed_url_prefixes", prefixes.as_str()),
    ])
    .await
}

fn now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap()
}

fn notification(sns: &FakeSns, message: &Value) -> Value {
    json!({
        "Type": "Notification",
        "MessageId": uuid::Uuid::new_v4().to_string(),
        "TopicArn": TOPIC,
        "Message": message.to_string(),
        "Timestamp": now(),
        "SignatureVersion": "1",
        "SigningCertURL": sns.url("/sns/cert.pem"),
        "UnsubscribeURL": sns.url("/sns/unsubscribe"),
    })
}

fn confirmation(sns: &FakeSns, kind: &str) -> Value {
    json!({
        "Type": kind,
        "MessageId": uuid::Uuid::new_v4().to_string(),
        "Token": "2336412f37fb687f5d51e6e2425f004a",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic. To confirm, visit the SubscribeURL.",
        "SubscribeURL": sns.url("/sns/confirm?Action=ConfirmSubscription&Token=2336412f37fb687f5d51e6e2425f004a"),
        "Timestamp": now(),
        "SignatureVersion": "2",
        "SigningCertURL": sns.url("/sns/cert.pem"),
    })
}

/// Signs `body` as SNS does: the documented fields as `name\nvalue\n`, in
/// order, SHA1withRSA for SignatureVersion 1 and SHA256withRSA for 2.
fn sign(mut body: Value) -> Value {
    let names: &[&str] = if body["Type"] == "Notification" {
        &["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    let string_to_sign: String = names
        .iter()
        .filter_map(|name| Some(format!("{name}\n{}\n", body.get(*name)?.as_str()?)))
        .collect();
    let digest = match body["SignatureVersion"].as_str().unwrap() {
        "1" => "-sha1",
        _ => "-sha256",
    };
    let signature = openssl_sign(digest, string_to_sign.as_bytes());
    body["Signature"] = json!(base64::engine::general_purpose::STANDARD.encode(signature));
    body
}

/// RSA PKCS#1 v1.5 over `data` with `SIGNING_KEY_FILE`, by `openssl dgst`.
fn openssl_sign(digest: &str, data: &[u8]) -> Vec<u8> {
    let mut openssl = Command::new("openssl")
        .args(["dgst", digest, "-sign", SIGNING_KEY_FILE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("the SES webhook tests sign with the openssl command, which cannot be run ({e}): apt-get install openssl")
        });
    // openssl reads all its input before it writes, so this cannot deadlock.
    openssl.stdin.take().unwrap().write_all(data).unwrap();
    let output = openssl.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "openssl dgst {digest} -sign failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

async fn post(app: &TestApp, body: &str) -> reqwest::Response {
    app.client
        .post(app.url("/webhooks/ses"))
        .header("Content-Type", "text/plain; charset=UTF-8")
        .header("x-amz-sns-message-type", "Notification")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

fn bounce(bounce_type: &str, address: &str) -> Value {
    json!({
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [{
                "emailAddress": address,
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown"
            }],
            "timestamp": "2026-01-01T00:00:00.000Z",
            "feedbackId": "0000013786031775-fea503bc-7497-49e1-881b-a0379bb037d3-000000"
        },
        "mail": {"messageId": "0000013786031775-163e3910-53eb-4c8e-a04a-f29debf88a84-000000"}
    })
}

fn complaint(address: &str) -> Value {
    json!({
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": address}],
            "complaintFeedbackType": "abuse",
            "timestamp": "2026-01-01T00:00:00.000Z",
            "feedbackId": "0000013786031775-fea503bc-7497-49e1-881b-a0379bb037d3-000000"
        }
    })
}

/// A row of the suppression list, as the operator would read it.
#[derive(Debug, PartialEq, Eq)]
struct Suppression {
    reason: Reason,
    detail: String,
    created_at: OffsetDateTime,
}

async fn suppression_of(app: &TestApp, address: &str) -> Option<Suppression> {
    let client = app.pool.get().await.unwrap();
    let address = EmailAddress::parse(address).unwrap();
    let row = client
        .query_opt(
            "SELECT reason, detail, created_at FROM email_suppressions WHERE email = $1",
            &[&address.as_str()],
        )
        .await
        .unwrap()?;
    let reason = match row.get::<_, &str>(0) {
        "bounce" => Reason::Bounce,
        "complaint" => Reason::Complaint,
        other => panic!("unknown suppression reason {other:?}"),
    };
    Some(Suppression {
        reason,
        detail: row.get(1),
        created_at: row.get(2),
    })
}

async fn suppressed_count(app: &TestApp) -> i64 {
    let client = app.pool.get().await.unwrap();
    client
        .query_one("SELECT count(*) FROM email_suppressions", &[])
        .await
        .unwrap()
        .get(0)
}

#[actix_rt::test]
async fn a_permanent_bounce_suppresses_the_address_with_what_ses_said() {
    let sns = FakeSns::start().await;
    let app = spawn_trusting(&sns, &[TOPIC]).await;
    let body = sign(notification(&sns, &bounce("Permanent", "Gone@Example.com")));

    let response = post(&app, &body.to_string()).await;

    assert_eq!(response.status(), StatusCode::OK);
    let suppression = suppression_of(&app, "gone@example.com")
        .await
        .expect("suppressed");
    assert_eq!(suppression.reason, Reason::Bounce);
    assert_eq!(
        suppression.detail,
        "Permanent/General: smtp; 550 5.1.1 user unknown"
    );
    assert_eq!(sns.requests(), ["/sns/cert.pem"]);
}

#[actix_rt::test]
async fn replaying_a_bounce_changes_nothing_and_the_certificate_is_fetched_once() {
    let sns = FakeSns::start().await;
    let app = spawn_trusting(&sns, &[TOPIC]).await;
    let body = sign(notification(&sns, &bounce("Permanent", "gone@example.com"))).to_string();
    assert_eq!(post(&app, &body).await.status(), StatusCode::OK);
    let first = suppression_of(&app, "gone@example.com").await.unwrap();

    let response = post(&app, &body).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(suppressed_count(&app).await, 1);
    assert_eq!(suppression_of(&app, "gone@example.com").await.unwrap(), first);
    assert_eq!(sns.requests(), ["/sns/cert.pem"]);
}

#[actix_rt::test]
async fn a_transient_bounce_suppresses_nothing() {
    let sns = FakeSns::start().await;
    let app = spawn_trusting(&sns, &[TOPIC]).await;
    let mut body = notification(&sns, &bounce("Transient", "full@example.com"));
    body["SignatureVersion"] = json!("2");

    let response = post(&app, &sign(body).to_string()).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(suppressed_count(&app).await, 0);
}

#[actix_rt::test]
async fn a_complaint_suppresses_and_outranks_a_bounce_keeping_the_first_time() {
    let sns = FakeSns::start().await;
    let app = spawn_trusting(&sns, &[TOPIC]).await;
    let bounced = sign(notification(&sns, &bounce("Permanent", "ada@example.com")));
    assert_eq!(post(&app, &bounced.to_string()).await.status(), StatusCode::OK);
    let first = suppression_of(&app, "ada@example.com").await.unwrap();

    let mut complained = notification(&sns, &complaint("ada@example.com"));
    complained["SignatureVersion"] = json!("2");
    let response = post(&app, &sign(complained).to_string()).await;

    assert_eq!(response.status(), StatusCode::OK);
    let suppression = suppression_of(&app, "ada@example.com").await.unwrap();
    assert_eq!(suppression.reason, Reason::Complaint);
    assert_eq!(suppression.detail, "abuse");
    assert_eq!(suppression.created_at, first.created_at);

    let bounced_again = sign(notification(&sns, &bounce("Permanent", "ada@example.com")));
    assert_eq!(
        post(&app, &bounced_again.to_string()).await.status(),
        StatusCode::OK
    );
    let suppression = suppression_of(&app, "ada@example.com").await.unwrap();
    assert_eq!(
        suppression.reason,
        Reason::Complaint,
        "a bounce does not downgrade a complaint"
    );
}

#[actix_rt::test]
async fn a_tampered_message_is_refused_and_nothing_is_written() {
    let sns = FakeSns::start().await;
    let app = spawn_trusting(&sns, &[TOPIC]).await;
    let mut body = sign(notification(&sns, &bounce("Permanent", "victim@example.com")));
    body["Message"] = json!(bounce("Permanent", "someone-else@example.com").to_string());

    let response = post(&app, &body.to_string()).await;

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(suppressed_count(&app).await, 0);
}

#[actix_rt::test]
async fn a_certificate_url_outside_the_allowed_prefix_is_refused_without_fetching_it() {
    let sns = FakeSns::start().await;
    let app = spawn_trusting(&sns, &[TOPIC]).await;
    let mut body = notification(&sns, &bounce("Permanent", "gone@example.com"));
    body["SigningCertURL"] = json!(sns.url("/elsewhere/cert.pem"));

    let response = post(&app, &sign(body).to_string()).await;

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(sns.requests().is_empty(), "{:?}", sns.requests());
    assert_eq!(suppressed_count(&app).await, 0);
}

#[actix_rt::test]
async fn a_message_from_another_topic_is_refused_even_when_validly_signed() {
    let sns = FakeSns::start().await;
    let app = spawn_trusting(&sns, &[TOPIC]).await;
    let mut body = notification(&sns, &bounce("Permanent", "gone@example.com"));
    body["TopicArn"] = json!("arn:aws:sns:us-east-1:999999999999:someone-elses-topic");

    let response = post(&app, &sign(body).to_string()).await;

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(sns.requests().is_empty(), "{:?}", sns.requests());
    assert_eq!(suppressed_count(&app).await, 0);
}

#[actix_rt::test]
async fn with_no_topic_configured_every_message_is_refused_and_the_log_says_which_key() {
    let sns = FakeSns::start().await;
    let app = spawn_trusting(&sns, &[]).await;
    let body = sign(notification(&sns, &bounce("Permanent", "gone@example.com")));

    let response = app
        .client
        .post(app.url("/webhooks/ses"))
        .header("X-Request-Id", "sns-no-topics")
        .body(body.to_string())
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(suppressed_count(&app).await, 0);
    let lines = app.log_lines_for("sns-no-topics").await;
    assert!(
        lines.iter().any(|line| line["error"]
            .as_str()
            .is_some_and(|e| e.contains("mail.sns.topic_arns is empty"))),
        "{lines:?}"
    );
}

#[actix_rt::test]
async fn a_stale_message_is_refused_as_a_replay() {
    let sns = FakeSns::start().await;
    let app = spawn_trusting(&sns, &[TOPIC]).await;
    let mut body = notification(&sns, &bounce("Permanent", "gone@example.com"));
    let two_hours_ago = OffsetDateTime::now_utc() - time::Duration::hours(2);
    body["Timestamp"] = json!(two_hours_ago.format(&Rfc3339).unwrap());

    let response = post(&app, &sign(body).to_string()).await;

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(suppressed_count(&app).await, 0);
}

#[actix_rt::test]
async fn malformed_bodies_get_400_with_a_short_plain_reason() {
    let sns = FakeSns::start().await;
    let app = spawn_trusting(&sns, &[TOPIC]).await;
    let signed = sign(notification(&sns, &bounce("Permanent", "gone@example.com")));
    let mut missing = signed.clone();
    missing.as_object_mut().unwrap().remove("Signature");
    let mut mistyped = signed.clone();
    mistyped["TopicArn"] = json!(42);

    for (body, reason) in [
        ("this is not JSON".to_owned(), "the body is not JSON\n"),
        ("[\"Notification\"]".to_owned(), "the body is not a JSON object\n"),
        (missing.to_string(), "Signature is missing\n"),
        (mistyped.to_string(), "TopicArn must be a string\n"),
    ] {
        let response = post(&app, &body).await;

        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        assert_eq!(response.text().await.unwrap(), reason);
    }
    assert_eq!(suppressed_count(&app).await, 0);
    assert!(sns.requests().is_empty());
}

#[actix_rt::test]
async fn a_subscription_confirmation_visits_the_subscribe_url() {
    let sns = FakeSns::start().await;
    let app = spawn_trusting(&sns, &[TOPIC]).await;
    let body = sign(confirmation(&sns, "SubscriptionConfirmation"));

    let response = post(&app, &body.to_string()).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        sns.requests(),
        [
            "/sns/cert.pem",
            "/sns/confirm?Action=ConfirmSubscription&Token=2336412f37fb687f5d51e6e2425f004a"
        ]
    );
}

#[actix_rt::test]
async fn an_unsubscribe_confirmation_is_only_acknowledged() {
    let sns = FakeSns::start().await;
    let app = spawn_trusting(&sns, &[TOPIC]).await;
    let body = sign(confirmation(&sns, "UnsubscribeConfirmation"));

    let response = post(&app, &body.to_string()).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(sns.requests(), ["/sns/cert.pem"]);
}

#[actix_rt::test]
async fn when_the_database_is_down_sns_is_asked_to_retry() {
    let sns = FakeSns::start().await;
    let app = spawn_trusting(&sns, &[TOPIC]).await;
    app.cut_off_database().await;
    let body = sign(notification(&sns, &bounce("Permanent", "gone@example.com")));

    let response = post(&app, &body.to_string()).await;

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(response.text().await.unwrap(), "unavailable, try again later\n");
}

#[actix_rt::test]
async fn a_body_over_the_server_limit_gets_413() {
    let sns = FakeSns::start().await;
    let app = spawn_trusting(&sns, &[TOPIC]).await;

    let response = post(&app, &"x".repeat(2 * 1024 * 1024)).await;

    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(sns.requests().is_empty());
}

#[actix_rt::test]
async fn after_a_bounce_the_mailer_never_mails_the_address_and_says_why() {
    let sns = FakeSns::start().await;
    let app = spawn_trusting(&sns, &[TOPIC]).await;
    let body = sign(notification(&sns, &bounce("Permanent", "gone@example.com")));
    assert_eq!(post(&app, &body.to_string()).await.status(), StatusCode::OK);

    // Someone signs up with the bounced address: the account is made, the
    // confirmation goes to the dead letter instead of the mailbox.
    let mut visitor = crate::visitor::Visitor::new(&app);
    let page = visitor
        .submit(
            "/signup",
            "/signup",
            &[
                ("email", "gone@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(page.status, 200);
    let client = app.pool.get().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (status, error) = loop {
        let row = client
            .query_one(
                "SELECT status, last_error FROM email_outbox WHERE recipient = 'gone@example.com'",
                &[],
            )
            .await
            .unwrap();
        let status: String = row.get(0);
        if status != "pending" || std::time::Instant::now() > deadline {
            break (status, row.get::<_, Option<String>>(1));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(status, "dead");
    assert_eq!(
        error.as_deref(),
        Some("suppressed: bounce (Permanent/General: smtp; 550 5.1.1 user unknown)")
    );
    let sent: i64 = client
        .query_one("SELECT count(*) FROM email_outbox WHERE sent_at IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sent, 0);
}
