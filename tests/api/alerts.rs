//! Alerts to the operator: each condition is emailed at most once an hour
//! across nodes, with the repeats counted and told with the next email;
//! without `alerts.email` they are only logged; and each watched condition
//! fires from its real source (a dead letter, a restart storm and the exit
//! that follows it, a database outage, a TLS certificate near its end).
//! Billing drift is in `billing`, backup failures in `backup_schedule`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures_util::future::join_all;
use lectern_actors::alerts::watch::CheckCertificate;
use lectern_actors::alerts::{Alert, Condition, Raised};
use lectern_actors::mail::{enqueue, Email, EmailAddress, EmailKind};

use crate::helpers::{
    fresh_database, mime_part, spawn_app_on, spawn_app_with, wait_for, OutboxEmail, TestApp,
};

const OPERATOR: &str = "ops@example.com";
const TO_OPERATOR: (&str, &str) = ("alerts.email", "\"ops@example.com\"");

/// The alert emails in the outbox, oldest first.
async fn alert_emails(app: &TestApp) -> Vec<OutboxEmail> {
    let emails = app.outbox().await.into_iter().filter(|e| e.message == "alert");
    emails.inspect(|e| assert_eq!(e.recipient, OPERATOR)).collect()
}

/// Waits for the first alert email about `condition` (30 s at most).
async fn alert_email(app: &TestApp, condition: &str) -> OutboxEmail {
    wait_for(
        Duration::from_secs(30),
        &format!("a {condition} alert"),
        || async {
            alert_emails(app)
                .await
                .into_iter()
                .find(|e| e.data["condition"] == condition)
        },
    )
    .await
}

fn drift(n: usize) -> Alert {
    Alert::new(Condition::BillingDrift, format!("drift number {n}"), "")
}

#[actix_rt::test]
async fn twenty_raises_at_once_on_two_nodes_email_once_and_the_next_hour_tells_the_repeats() {
    let database = fresh_database().await;
    let first = spawn_app_on(database.clone(), &[TO_OPERATOR]).await;
    let second = spawn_app_on(database, &[TO_OPERATOR]).await;

    let raises = (0..20).map(|n| {
        let node = if n % 2 == 0 { &first } else { &second };
        node.actors().alerts.raise(drift(n))
    });
    let raised: Vec<Raised> = join_all(raises).await.into_iter().map(Result::unwrap).collect();
    let told = raised.iter().filter(|r| matches!(r, Raised::Told { .. })).count();
    assert_eq!(told, 1, "{raised:?}");
    let emails = alert_emails(&first).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert_eq!(emails[0].data["condition"], "billing_drift");
    assert_eq!(emails[0].data["repeats_before"], 0);
    assert_eq!(
        first.scalar("SELECT repeats::bigint FROM alerts").await,
        19,
        "the suppressed raises are counted"
    );
    assert_eq!(
        first
            .scalar("SELECT count(*) FROM events WHERE kind = 'alert.raised'")
            .await,
        20
    );
    // Another condition is not held back by this one.
    let backup = Alert::new(Condition::BackupFailed, "The backup daily/x failed.", "disk full");
    assert!(matches!(
        second.actors().alerts.raise(backup).await.unwrap(),
        Raised::Told { .. }
    ));

    // An hour later the next raise is emailed, and says how many came
    // after the previous email.
    first
        .pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE alerts SET raised_at = raised_at - interval '61 minutes'",
            &[],
        )
        .await
        .unwrap();
    let again = first.actors().alerts.raise(drift(20)).await.unwrap();
    assert!(matches!(again, Raised::Told { .. }), "{again:?}");
    let emails = alert_emails(&first).await;
    let last = emails.last().unwrap();
    assert_eq!(emails.len(), 3, "{emails:?}");
    assert_eq!(
        (&last.data["summary"], &last.data["repeats_before"]),
        (&serde_json::json!("drift number 20"), &serde_json::json!(19))
    );

    // The operator reads it: the subject names the condition, the text
    // tells the repeats.
    let eml = first.eml_of(last).await;
    assert!(
        eml.contains("Subject: Lectern alert: billing drifted from Stripe"),
        "{eml}"
    );
    let text = mime_part(&eml, "text/plain");
    assert!(text.contains("drift number 20"), "{text}");
    assert!(
        text.contains("it was raised 19 more time(s) without an email"),
        "{text}"
    );
}

#[actix_rt::test]
async fn without_alerts_email_an_alert_is_only_logged() {
    let app = spawn_app_with(&[]).await;
    let raised = app.actors().alerts.raise(drift(1)).await.unwrap();
    assert!(
        matches!(raised, Raised::Told { email_id: None, .. }),
        "{raised:?}"
    );
    assert!(app.outbox().await.is_empty(), "nothing is queued");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("lectern_alerts_raised_total{condition=\"billing_drift\"} 1\n"),
        "{metrics}"
    );
    wait_for(Duration::from_secs(10), "the alert logged", || async {
        let log = std::fs::read_to_string(&app.log_file).unwrap();
        log.lines()
            .any(|l| l.contains("alert: billing drifted from Stripe") && l.contains("drift number 1"))
            .then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn a_dead_letter_is_alerted_with_the_error() {
    let app = spawn_app_with(&[TO_OPERATOR, ("alerts.dead_letters_check_secs", "1")]).await;
    {
        let mut client = app.pool.get().await.unwrap();
        client
            .execute(
                "INSERT INTO email_suppressions (email, reason, detail) VALUES ('gone@reader.example', 'bounce', 'mailbox does not exist')",
                &[],
            )
            .await
            .unwrap();
        let transaction = client.transaction().await.unwrap();
        let email = Email {
            to: EmailAddress::parse("gone@reader.example").unwrap(),
            kind: EmailKind::Welcome,
            data: serde_json::json!({ "name": "Gone", "site_url": "http://127.0.0.1" }),
        };
        enqueue(&transaction, email).await.unwrap();
        transaction.commit().await.unwrap();
    }
    let alert = alert_email(&app, "dead_letters").await;
    assert_eq!(
        alert.data["summary"],
        "1 email(s) were given up on since the last check."
    );
    let detail = alert.data["detail"].as_str().unwrap();
    assert!(
        detail.contains("welcome") && detail.contains("mailbox does not exist"),
        "{detail}"
    );
    // Told once: later checks find nothing new.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        app.scalar("SELECT count(*) FROM events WHERE kind = 'alert.raised'")
            .await,
        1
    );
}

#[cfg(debug_assertions)]
#[actix_rt::test]
async fn a_restart_storm_is_alerted_and_so_is_the_exit_it_leads_to() {
    let app = spawn_app_with(&[
        TO_OPERATOR,
        ("alerts.restart_storm_restarts", "2"),
        ("supervisor.max_restarts", "4"),
    ])
    .await;
    let panic = || async {
        app.client
            .post(app.url("/debug/panic/housekeeper"))
            .send()
            .await
            .map(|r| r.status())
    };
    for _ in 0..3 {
        assert_eq!(panic().await.unwrap(), 200);
    }
    let alert = alert_email(&app, "restart_storm").await;
    assert_eq!(
        alert.data["summary"],
        "The actor housekeeper restarted 3 times within 60 s."
    );
    let detail = alert.data["detail"].as_str().unwrap();
    assert!(detail.contains("test hook"), "{detail}");

    // Two more: the tree escalates, and the exit is alerted (counted on
    // the storm's alert, which went out within the hour).
    for _ in 0..2 {
        let _ = panic().await;
    }
    wait_for(Duration::from_secs(30), "the exit alerted", || async {
        let summary = "Lectern exited: actors restarted more often than supervisor.max_restarts allows.";
        let found = app
            .scalar(&format!(
                "SELECT count(*) FROM events WHERE kind = 'alert.raised' AND data->>'summary' = '{summary}'"
            ))
            .await;
        (found == 1).then_some(())
    })
    .await;
    assert_eq!(alert_emails(&app).await.len(), 1, "once an hour");
}

#[actix_rt::test]
async fn a_database_unreachable_for_the_threshold_is_logged_then_and_alerted_once_back() {
    let app = spawn_app_with(&[TO_OPERATOR, ("alerts.database_down_secs", "2")]).await;
    app.cut_off_database().await;
    let log = wait_for(Duration::from_secs(15), "the outage logged", || async {
        let log = std::fs::read_to_string(&app.log_file).unwrap();
        log.contains("the database has been unreachable for 2 s")
            .then_some(log)
    })
    .await;
    assert!(
        !log.contains("\"condition\":\"database_unreachable\""),
        "not yet told"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    app.restore_database().await;

    let alert = alert_email(&app, "database_unreachable").await;
    let summary = alert.data["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("The database was unreachable from ") && summary.contains(" UTC to "),
        "{summary}"
    );
    let seconds: u64 = summary
        .rsplit('(')
        .next()
        .and_then(|s| s.strip_suffix(" s)."))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {summary}"));
    assert!((2..30).contains(&seconds), "{summary}");
}

/// A self-signed certificate valid for `days` days, as `openssl req` makes one.
fn certificate(dir: &Path, days: u32) -> std::path::PathBuf {
    let path = dir.join(format!("fullchain-{days}.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-subj", "/CN=lectern.test", "-days", &days.to_string()])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl command (apt-get install openssl)");
    assert!(status.success(), "openssl req failed");
    path
}

/// An app watching `certificate`, after its check at start has run.
async fn watching(certificate: &Path) -> TestApp {
    let path = format!("{:?}", certificate.display().to_string());
    let app = spawn_app_with(&[TO_OPERATOR, ("alerts.tls_certificate", path.as_str())]).await;
    app.actors()
        .alert_watch
        .send(CheckCertificate)
        .await
        .unwrap()
        .unwrap();
    app
}

#[actix_rt::test]
async fn a_tls_certificate_near_its_end_or_unreadable_is_alerted_and_a_fresh_one_is_not() {
    let dir = tempfile::tempdir().unwrap();

    let near = watching(&certificate(dir.path(), 3)).await;
    let alert = alert_email(&near, "tls_certificate").await;
    let summary = alert.data["summary"].as_str().unwrap();
    assert!(
        summary.contains("fullchain-3.pem expires on ") && summary.ends_with("in 2 day(s)."),
        "{summary}"
    );

    let far = watching(&certificate(dir.path(), 365)).await;
    assert!(alert_emails(&far).await.is_empty(), "a year left is fine");

    let missing = watching(&dir.path().join("nothing.pem")).await;
    let alert = alert_email(&missing, "tls_certificate").await;
    assert!(
        alert.data["summary"]
            .as_str()
            .unwrap()
            .ends_with("nothing.pem cannot be checked."),
        "{:?}",
        alert.data
    );
    assert!(
        alert.data["detail"].as_str().unwrap().contains("No such file"),
        "{:?}",
        alert.data
    );
}
