//! The admin area (`/admin`): only administrators get in, every form needs
//! its token, and what each action does is what a member or the operator
//! sees: a dead letter sent, an address mailed again, a member found, a
//! session ended, a login refused, months of access given; each action an
//! audit event naming the administrator.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{conninfo, lectern_command, spawn_app, spawn_app_with, wait_for, OutboxEmail, TestApp};
use crate::visitor::{Page, Visitor};

const PASSWORD: &str = "correct horse battery";

/// Signs up as `email` and confirms through the emailed link: `visitor`
/// ends logged in. The member's id.
pub(crate) async fn member(app: &TestApp, visitor: &mut Visitor<'_>, email: &str) -> i64 {
    let fields = [("name", "Ada"), ("email", email), ("password", PASSWORD)];
    assert_eq!(visitor.submit("/signup", "/signup", &fields).await.status, 200);
    let link = app.last_link_to(email).await;
    assert_eq!(visitor.submit(&link, &link, &[]).await.status, 303);
    user_id(app, email).await
}

/// An administrator made as the operator makes one (`lectern user
/// create-admin`), logged in as `visitor` with the printed link. Their id.
pub(crate) async fn admin(app: &TestApp, visitor: &mut Visitor<'_>, email: &str) -> i64 {
    let link = admin_link(app, email);
    assert_eq!(visitor.submit(&link, &link, &[]).await.status, 303);
    user_id(app, email).await
}

/// The one-time login link `lectern user create-admin EMAIL` prints.
pub(crate) fn admin_link(app: &TestApp, email: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = lectern_command(dir.path())
        .env("DATABASE_URL", conninfo(&app.database))
        .args(["user", "create-admin", email])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.find("/login/magic/").map(|at| l[at..].trim().to_owned()))
        .unwrap_or_else(|| panic!("no link in {stdout}"))
}

async fn user_id(app: &TestApp, email: &str) -> i64 {
    app.pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT id FROM users WHERE email = $1", &[&email])
        .await
        .unwrap()
        .get(0)
}

pub(crate) async fn sql(app: &TestApp, statement: &str) {
    app.pool
        .get()
        .await
        .unwrap()
        .batch_execute(statement)
        .await
        .unwrap();
}

/// The one value `query` selects.
pub(crate) async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(app: &TestApp, query: &str) -> T {
    app.pool
        .get()
        .await
        .unwrap()
        .query_one(query, &[])
        .await
        .unwrap()
        .get(0)
}

async fn count(app: &TestApp, query: &str) -> i64 {
    scalar(app, query).await
}

/// The audit events of `kind`, oldest first: subject and data.
pub(crate) async fn events(app: &TestApp, kind: &str) -> Vec<(Option<String>, Value)> {
    app.pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT subject, data FROM events WHERE kind = $1 ORDER BY id",
            &[&kind],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// An email put straight into the outbox as dead (or as any status).
async fn outbox_row(app: &TestApp, message: &str, recipient: &str, status: &str, data: Value) -> OutboxEmail {
    let id: i64 = app
        .pool
        .get()
        .await
        .unwrap()
        .query_one(
            "INSERT INTO email_outbox (message, recipient, data, status, attempts, last_error, due_at, dead_reported) \
             VALUES ($1, $2, $3, $4, 5, 'gave up after 5 attempts: timed out', now() + interval '1 day', true) \
             RETURNING id",
            &[&message, &recipient, &data, &status],
        )
        .await
        .unwrap()
        .get(0);
    OutboxEmail {
        id,
        message: message.into(),
        recipient: recipient.into(),
        data,
    }
}

async fn status_of(app: &TestApp, id: i64) -> String {
    app.pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT status FROM email_outbox WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

fn refused_as_visitor(page: &Page, path: &str) {
    // The login form for a page; a form sent without a session may fail its
    // token check first: either way, nothing runs.
    match page.status {
        303 => assert!(
            page.location().is_some_and(|l| l.starts_with("/login?next=")),
            "{path}: {:?}",
            page.location()
        ),
        403 => {}
        other => panic!("{path} answered a visitor {other}"),
    }
}

#[actix_rt::test]
async fn visitors_and_members_are_kept_out_of_every_admin_route() {
    let app = spawn_app().await;
    let mut root = Visitor::new(&app);
    admin(&app, &mut root, "root@example.org").await;
    let mut ada = Visitor::new(&app);
    let ada_id = member(&app, &mut ada, "ada@example.org").await;
    let dead = outbox_row(
        &app,
        "welcome",
        "gone@example.org",
        "dead",
        serde_json::json!({ "name": "" }),
    )
    .await;
    sql(
        &app,
        "INSERT INTO email_suppressions (email, reason) VALUES ('gone@example.org', 'bounce')",
    )
    .await;

    let member_page = format!("/admin/members/{ada_id}");
    for path in [
        "/admin",
        "/admin/mail",
        "/admin/mail?status=dead",
        "/admin/members",
        "/admin/members?q=ada",
        member_page.as_str(),
        "/admin/dashboard",
        "/admin/system",
    ] {
        let page = Visitor::new(&app).get(path).await;
        assert_eq!(page.status, 303, "{path}");
        assert_eq!(
            page.location(),
            Some(format!("/login?next={path}").replace('&', "%26").as_str())
        );
        let page = ada.get(path).await;
        assert_eq!(page.status, 403, "{path}");
        assert!(page.body.contains("Administrators only"), "{path}");
        assert!(!page.body.contains("gone@example.org"), "{path}");
        assert_eq!(root.get(path).await.status, 200, "{path}");
    }

    let retry = format!("/admin/mail/{}/retry", dead.id);
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        (retry, vec![]),
        (
            "/admin/mail/suppressions/remove".into(),
            vec![("email", "gone@example.org")],
        ),
        (format!("/admin/members/{ada_id}/disable"), vec![]),
        (format!("/admin/members/{ada_id}/enable"), vec![]),
        (format!("/admin/members/{ada_id}/confirmation"), vec![]),
        (
            format!("/admin/members/{ada_id}/grant"),
            vec![("months", "12"), ("source", "complimentary")],
        ),
    ];
    for (path, fields) in &posts {
        let mut visitor = Visitor::new(&app);
        let page = visitor.post_with_token(path, fields).await;
        refused_as_visitor(&page, path);
        // With the member's own, valid, form token.
        let page = ada.post_with_token(path, fields).await;
        assert_eq!(page.status, 403, "{path}");
        assert!(page.body.contains("Administrators only"), "{path}");
    }

    assert_eq!(ada.me().await["email"], "ada@example.org", "still logged in");
    assert_eq!(status_of(&app, dead.id).await, "dead");
    assert_eq!(count(&app, "SELECT count(*) FROM email_suppressions").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM grants").await, 0);
    assert_eq!(
        count(&app, "SELECT count(*) FROM users WHERE disabled_at IS NOT NULL").await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE kind LIKE 'admin.%' OR kind = 'billing.granted'"
        )
        .await,
        0
    );
}

#[actix_rt::test]
async fn an_admin_form_without_its_token_or_from_another_site_changes_nothing() {
    let app = spawn_app().await;
    let mut root = Visitor::new(&app);
    admin(&app, &mut root, "root@example.org").await;
    let mut ada = Visitor::new(&app);
    let ada_id = member(&app, &mut ada, "ada@example.org").await;
    let disable = format!("/admin/members/{ada_id}/disable");

    assert_eq!(root.post(&disable, &[]).await.status, 403, "no token");
    let wrong = root
        .post(&disable, &[("csrf_token", "x".repeat(43).as_str())])
        .await;
    assert_eq!(wrong.status, 403, "a wrong token");
    assert!(wrong.body.contains("Nothing was changed"));
    let token = root.get(&format!("/admin/members/{ada_id}")).await.csrf_token();
    let cookie = root
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let forged = app
        .client
        .post(app.url(&disable))
        .header("cookie", cookie)
        .header("origin", "https://evil.example")
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403, "the right token, from another site");

    assert_eq!(ada.me().await["email"], "ada@example.org", "still logged in");
    assert_eq!(
        count(&app, "SELECT count(*) FROM users WHERE disabled_at IS NOT NULL").await,
        0
    );
    assert!(events(&app, "admin.member_disabled").await.is_empty());

    // With its token, the same form works.
    let done = root.post(&disable, &[("csrf_token", token.as_str())]).await;
    assert_eq!(done.status, 303);
}

#[actix_rt::test]
async fn retrying_a_dead_letter_sends_it_and_records_the_admin() {
    let app = spawn_app().await;
    let mut root = Visitor::new(&app);
    let root_id = admin(&app, &mut root, "root@example.org").await;
    let dead = outbox_row(
        &app,
        "welcome",
        "ada@example.org",
        "dead",
        serde_json::json!({ "name": "Ada" }),
    )
    .await;
    let dead_link = outbox_row(
        &app,
        "magic_link",
        "ada@example.org",
        "dead",
        serde_json::json!({ "name": "" }),
    )
    .await;
    let queued = outbox_row(
        &app,
        "password_reset",
        "grace@example.org",
        "pending",
        serde_json::json!({ "name": "", "minutes": 60, "link": "http://x/reset/SECRETTOKEN" }),
    )
    .await;

    let page = root.get("/admin/mail?status=dead").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["cache-control"], "private, no-store");
    assert_eq!(page.headers["x-cache"], "bypass");
    assert!(page.body.contains("gave up after 5 attempts: timed out"));
    assert!(page.body.contains(&format!("/admin/mail/{}/retry", dead.id)));
    assert!(
        !page.body.contains(&format!("/admin/mail/{}/retry", dead_link.id)),
        "an email whose link is gone has no retry button"
    );
    assert!(!page.body.contains("grace@example.org"), "filtered by status");
    let all = root.get("/admin/mail").await;
    assert!(all.body.contains("grace@example.org") && all.body.contains("queued"));
    assert!(!all.body.contains("SECRETTOKEN"), "an email's link never shows");

    let token = page.csrf_token();
    let retried = root
        .post(
            &format!("/admin/mail/{}/retry", dead.id),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(retried.status, 303);
    assert_eq!(retried.location(), Some("/admin/mail?notice=retried"));
    let eml = app.eml_of(&dead).await;
    assert!(eml.contains("ada@example.org"));
    let events = events(&app, "admin.mail_retried").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0.as_deref(), Some(dead.id.to_string().as_str()));
    assert_eq!(events[0].1["admin_id"], root_id);
    assert_eq!(events[0].1["error"], "gave up after 5 attempts: timed out");
    assert_eq!(events[0].1["attempts"], 5);

    let again = root
        .post(
            &format!("/admin/mail/{}/retry", dead.id),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(again.status, 409);
    assert!(again.body.contains("not a dead letter"), "{}", again.body);
    let link_gone = root
        .post(
            &format!("/admin/mail/{}/retry", dead_link.id),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(link_gone.status, 409);
    assert!(link_gone.body.contains("single-use link"));
    assert_eq!(status_of(&app, dead_link.id).await, "dead");
    assert_eq!(
        root.post(
            &format!("/admin/mail/{}/retry", queued.id),
            &[("csrf_token", &token)]
        )
        .await
        .status,
        409
    );
    for path in [
        "/admin/mail/999999/retry",
        "/admin/mail/abc/retry",
        "/admin/mail/99999999999999999999/retry",
    ] {
        let page = root.post(path, &[("csrf_token", &token)]).await;
        assert_eq!(page.status, 404, "{path}");
        assert!(page.body.contains("No such email"), "{path}");
    }
    assert_eq!(root.get("/admin/mail?status=lost").await.status, 400);
    assert_eq!(root.get("/admin/mail?before=x").await.status, 400);
}

#[actix_rt::test]
async fn removing_a_suppression_lets_mail_to_the_address_be_sent_again() {
    let app = spawn_app().await;
    let mut root = Visitor::new(&app);
    let root_id = admin(&app, &mut root, "root@example.org").await;
    let mut ada = Visitor::new(&app);
    member(&app, &mut ada, "ada@example.org").await;
    sql(
        &app,
        "INSERT INTO email_suppressions (email, reason, detail) VALUES ('ada@example.org', 'bounce', 'Permanent: General')",
    )
    .await;
    let ask_for_link = || async {
        let mut visitor = Visitor::new(&app);
        let page = visitor
            .submit("/login/magic", "/login/magic", &[("email", "ada@example.org")])
            .await;
        assert_eq!(page.status, 200);
        app.last_email_to("ada@example.org").await
    };
    let refused = ask_for_link().await;
    wait_for(
        Duration::from_secs(15),
        "the suppressed email is given up",
        || async { (status_of(&app, refused.id).await == "dead").then_some(()) },
    )
    .await;

    let page = root.get("/admin/mail").await;
    assert!(page.body.contains("Permanent: General"));
    let token = page.csrf_token();
    // A dead letter to the address would only die again.
    let welcome = outbox_row(
        &app,
        "welcome",
        "ada@example.org",
        "dead",
        serde_json::json!({ "name": "Ada" }),
    )
    .await;
    let retry = format!("/admin/mail/{}/retry", welcome.id);
    let too_soon = root.post(&retry, &[("csrf_token", &token)]).await;
    assert_eq!(too_soon.status, 409);
    assert!(too_soon.body.contains("take it off the list before retrying"));
    assert_eq!(status_of(&app, welcome.id).await, "dead");
    let removed = root
        .post(
            "/admin/mail/suppressions/remove",
            &[("csrf_token", &token), ("email", "Ada@Example.org")],
        )
        .await;
    assert_eq!(removed.status, 303);
    assert_eq!(count(&app, "SELECT count(*) FROM email_suppressions").await, 0);
    let events = events(&app, "admin.suppression_removed").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0.as_deref(), Some("ada@example.org"));
    assert_eq!(events[0].1["admin_id"], root_id);
    assert_eq!(events[0].1["reason"], "bounce");

    assert_eq!(root.post(&retry, &[("csrf_token", &token)]).await.status, 303);
    assert!(app.eml_of(&welcome).await.contains("ada@example.org"));
    let sent = ask_for_link().await;
    assert_ne!(sent.id, refused.id);
    let link = app.link_in(&sent).await;
    assert!(link.starts_with("/login/magic/"));

    for email in ["ada@example.org", "not an address"] {
        let again = root
            .post(
                "/admin/mail/suppressions/remove",
                &[("csrf_token", &token), ("email", email)],
            )
            .await;
        assert_eq!(again.status, 404, "{email}");
        assert!(again.body.contains("not on the suppression list"), "{email}");
    }
}

#[actix_rt::test]
async fn a_search_finds_members_by_part_of_their_address() {
    let app = spawn_app().await;
    let mut root = Visitor::new(&app);
    admin(&app, &mut root, "root@example.org").await;
    for email in ["ada@example.org", "grace@example.com", "a_b@example.net"] {
        // A name is whatever whoever signed up typed.
        let name = "<script>alert(1)</script>";
        let fields = [("name", name), ("email", email), ("password", PASSWORD)];
        assert_eq!(
            Visitor::new(&app)
                .submit("/signup", "/signup", &fields)
                .await
                .status,
            200
        );
    }
    let ada_id = user_id(&app, "ada@example.org").await;

    let found = root.get("/admin/members?q=ADA").await;
    assert_eq!(found.status, 200);
    assert!(found.body.contains(&format!("href=\"/admin/members/{ada_id}\"")));
    assert!(!found.body.contains("grace@example.com"));
    assert!(!found.body.contains("<script>alert"));
    assert!(found.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let both = root.get("/admin/members?q=%40example.").await;
    assert!(["ada@example.org", "grace@example.com", "a_b@example.net"]
        .iter()
        .all(|email| both.body.contains(email)));
    // LIKE's characters are taken as typed.
    let underscore = root.get("/admin/members?q=a_").await;
    assert!(underscore.body.contains("a_b@example.net") && !underscore.body.contains("ada@example.org"));
    let percent = root.get("/admin/members?q=%25").await;
    assert_eq!(percent.status, 200);
    assert!(percent.body.contains("No member"));

    for (query, problem) in [
        ("q=", "type part of an email address"),
        ("q=+++", "type part of an email address"),
        (&*format!("q={}", "a".repeat(300)), "at most 254 characters"),
    ] {
        let page = root.get(&format!("/admin/members?{query}")).await;
        assert_eq!(page.status, 422, "{query}");
        assert!(page.body.contains(problem), "{query}");
    }

    let page = root.get(&format!("/admin/members/{ada_id}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("ada@example.org"));
    assert!(
        page.body.contains("Send the confirmation link again"),
        "unconfirmed"
    );
    for path in [
        "/admin/members/999999",
        "/admin/members/abc",
        "/admin/members/99999999999999999999",
        "/admin/members/-1",
    ] {
        let page = root.get(path).await;
        assert_eq!(page.status, 404, "{path}");
        assert!(page.body.contains("No such member"), "{path}");
    }
}

#[actix_rt::test]
async fn disabling_a_member_ends_their_session_and_refuses_every_login_until_enabled() {
    let app = spawn_app().await;
    let mut root = Visitor::new(&app);
    let root_id = admin(&app, &mut root, "root@example.org").await;
    let mut ada = Visitor::new(&app);
    let ada_id = member(&app, &mut ada, "ada@example.org").await;
    // A login link asked for before the account is disabled.
    let mut other = Visitor::new(&app);
    other
        .submit("/login/magic", "/login/magic", &[("email", "ada@example.org")])
        .await;
    let earlier_link = app.last_link_to("ada@example.org").await;

    let page = root.get(&format!("/admin/members/{ada_id}")).await;
    let token = page.csrf_token();
    let disabled = root
        .post(
            &format!("/admin/members/{ada_id}/disable"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(disabled.status, 303);
    assert_eq!(
        disabled.location(),
        Some(format!("/admin/members/{ada_id}?notice=disabled").as_str())
    );
    assert!(root
        .get(disabled.location().unwrap())
        .await
        .body
        .contains("The account is disabled"));

    // Her next request is logged out.
    let account = ada.get("/account").await;
    assert_eq!(account.status, 303);
    assert_eq!(account.location(), Some("/login?next=/account"));
    assert!(ada.me().await.is_null());

    let mut again = Visitor::new(&app);
    let login = again.log_in("ada@example.org", PASSWORD).await;
    assert_eq!(login.status, 403);
    assert!(login.body.contains("This account is disabled"));
    assert!(!again.is_logged_in());
    let used = again.post_with_token(&earlier_link, &[]).await;
    assert!(used.status >= 400, "the earlier link: {}", used.status);
    assert!(!again.is_logged_in());
    let emails = app.outbox().await.len();
    again
        .submit("/login/magic", "/login/magic", &[("email", "ada@example.org")])
        .await;
    assert_eq!(
        app.outbox().await.len(),
        emails,
        "no login link for a disabled account"
    );

    let events_of = events(&app, "admin.member_disabled").await;
    assert_eq!(events_of.len(), 1);
    assert_eq!(events_of[0].0.as_deref(), Some(ada_id.to_string().as_str()));
    assert_eq!(events_of[0].1["admin_id"], root_id);

    let own = root
        .post(
            &format!("/admin/members/{root_id}/disable"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(own.status, 422);
    assert!(own.body.contains("cannot disable their own account"));
    assert!(root.me().await.is_object());

    let enabled = root
        .post(
            &format!("/admin/members/{ada_id}/enable"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(
        enabled.location(),
        Some(format!("/admin/members/{ada_id}?notice=enabled").as_str())
    );
    let login = again.log_in("ada@example.org", PASSWORD).await;
    assert_eq!(login.status, 303);
    assert_eq!(again.me().await["email"], "ada@example.org");
    let enabled_events = events(&app, "admin.member_enabled").await;
    assert_eq!(enabled_events.len(), 1);
    assert_eq!(enabled_events[0].1["admin_id"], root_id);
}

#[actix_rt::test]
async fn granting_months_opens_premium_access_and_refuses_bad_numbers() {
    let app = spawn_app().await;
    let mut root = Visitor::new(&app);
    let root_id = admin(&app, &mut root, "root@example.org").await;
    let mut ada = Visitor::new(&app);
    let ada_id = member(&app, &mut ada, "ada@example.org").await;
    assert_eq!(ada.me().await["subscriber"], false);
    let path = format!("/admin/members/{ada_id}");
    let token = root.get(&path).await.csrf_token();
    let grant = format!("{path}/grant");

    for months in ["0", "37", "x", "", "-1", "99999999999", "2.5"] {
        let page = root
            .post(
                &grant,
                &[
                    ("csrf_token", &token),
                    ("months", months),
                    ("source", "complimentary"),
                ],
            )
            .await;
        assert_eq!(page.status, 422, "{months:?}");
        assert!(page.body.contains("from 1 to 36"), "{months:?}");
    }
    let kept = root
        .post(
            &grant,
            &[
                ("csrf_token", &token),
                ("months", "99"),
                ("source", "paypal"),
                ("note", "PayPal 7XK12"),
            ],
        )
        .await;
    assert!(kept.body.contains("value=\"99\"") && kept.body.contains("value=\"PayPal 7XK12\""));
    assert!(
        kept.body.contains("<option value=\"paypal\" selected>"),
        "the form keeps what was typed"
    );
    let bad_source = root
        .post(
            &grant,
            &[("csrf_token", &token), ("months", "3"), ("source", "gift")],
        )
        .await;
    assert_eq!(bad_source.status, 422);
    assert_eq!(count(&app, "SELECT count(*) FROM grants").await, 0);

    let granted = root
        .post(
            &grant,
            &[
                ("csrf_token", &token),
                ("months", "3"),
                ("source", "complimentary"),
                ("note", "speaker at the meetup"),
            ],
        )
        .await;
    assert_eq!(granted.status, 303);
    assert_eq!(ada.me().await["subscriber"], true, "access follows at once");
    let page = root.get(&path).await;
    assert!(page.body.contains("speaker at the meetup") && page.body.contains("complimentary"));

    let more = root
        .post(
            &grant,
            &[("csrf_token", &token), ("months", "2"), ("source", "paypal")],
        )
        .await;
    assert_eq!(more.status, 303);
    let extended = count(
        &app,
        "SELECT count(*) FROM grants a JOIN grants b ON b.starts_at = a.expires_at \
         WHERE a.months = 3 AND b.months = 2",
    )
    .await;
    assert_eq!(extended, 1, "the second grant starts when the first ends");
    let events = events(&app, "billing.granted").await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|(subject, data)| {
        subject.as_deref() == Some(ada_id.to_string().as_str()) && data["admin_id"] == root_id
    }));
}

#[actix_rt::test]
async fn a_confirmation_link_is_sent_again_through_the_outbox_within_the_daily_share() {
    let app = spawn_app_with(&[("accounts.emails_per_address_per_day", "2")]).await;
    let mut root = Visitor::new(&app);
    let root_id = admin(&app, &mut root, "root@example.org").await;
    let mut ada = Visitor::new(&app);
    let fields = [
        ("name", "Ada"),
        ("email", "ada@example.org"),
        ("password", PASSWORD),
    ];
    assert_eq!(ada.submit("/signup", "/signup", &fields).await.status, 200);
    let ada_id = user_id(&app, "ada@example.org").await;
    let path = format!("/admin/members/{ada_id}");
    let token = root.get(&path).await.csrf_token();
    let resend = format!("{path}/confirmation");

    let sent = root.post(&resend, &[("csrf_token", &token)]).await;
    assert_eq!(sent.status, 303);
    let emails: Vec<_> = app
        .outbox()
        .await
        .into_iter()
        .filter(|e| e.recipient == "ada@example.org")
        .collect();
    assert_eq!(emails.len(), 2);
    assert!(emails.iter().all(|e| e.message == "confirm_email"));
    let events_of = events(&app, "admin.confirmation_resent").await;
    assert_eq!(events_of.len(), 1);
    assert_eq!(events_of[0].1["admin_id"], root_id);

    let capped = root.post(&resend, &[("csrf_token", &token)]).await;
    assert_eq!(capped.status, 422);
    assert!(capped.body.contains("share of emails today"));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM email_outbox WHERE recipient = 'ada@example.org'"
        )
        .await,
        2
    );
    assert_eq!(events(&app, "admin.confirmation_resent").await.len(), 1);

    let link = app.link_in(&emails[1]).await;
    assert_eq!(
        ada.submit(&link, &link, &[]).await.status,
        303,
        "the new link confirms"
    );
    let confirmed = root.post(&resend, &[("csrf_token", &token)]).await;
    assert_eq!(confirmed.status, 422);
    assert!(confirmed.body.contains("already confirmed"));
}

#[actix_rt::test]
async fn a_member_page_shows_billing_flags_and_emails_but_never_a_link() {
    let app = spawn_app().await;
    let mut root = Visitor::new(&app);
    admin(&app, &mut root, "root@example.org").await;
    let mut ada = Visitor::new(&app);
    let ada_id = member(&app, &mut ada, "ada@example.org").await;
    sql(
        &app,
        &format!(
            "INSERT INTO member_flags (user_id, kind, detail) \
             VALUES ({ada_id}, 'card_country_mismatch', 'quoted for IN, card from US')"
        ),
    )
    .await;
    outbox_row(
        &app,
        "magic_link",
        "ada@example.org",
        "pending",
        serde_json::json!({ "name": "", "minutes": 15, "link": "http://x/login/magic/SECRETTOKEN" }),
    )
    .await;

    let page = root.get(&format!("/admin/members/{ada_id}")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["cache-control"], "private, no-store");
    assert_eq!(page.headers["x-cache"], "bypass");
    assert!(page.body.contains("card country mismatch"));
    assert!(page.body.contains("quoted for IN, card from US"));
    for message in ["confirm_email", "welcome", "magic_link"] {
        assert!(page.body.contains(message), "{message}");
    }
    assert!(!page.body.contains("SECRETTOKEN"));
    assert!(
        !page.body.contains("Send the confirmation link again"),
        "confirmed"
    );
}

#[actix_rt::test]
async fn the_outbox_is_listed_newest_first_fifty_at_a_time() {
    let app = spawn_app().await;
    let mut root = Visitor::new(&app);
    admin(&app, &mut root, "root@example.org").await;
    sql(
        &app,
        "INSERT INTO email_outbox (message, recipient, status, last_error) \
         SELECT 'welcome', 'reader' || i || '@example.org', 'dead', 'gave up' FROM generate_series(1, 55) i",
    )
    .await;

    let first = root.get("/admin/mail?status=dead").await;
    assert_eq!(first.status, 200);
    let newest = first
        .body
        .find("reader55@example.org")
        .expect("the newest is shown");
    let older = first
        .body
        .find("reader6@example.org")
        .expect("the 50th newest is shown");
    assert!(newest < older, "newest first");
    assert!(!first.body.contains("reader5@example.org"), "one page holds 50");
    let sixth: i64 = count(
        &app,
        "SELECT id FROM email_outbox WHERE recipient = 'reader6@example.org'",
    )
    .await;
    let next = format!("/admin/mail?status=dead&before={sixth}");
    let unescaped = first.body.replace("&amp;", "&").replace("&#x3D;", "=");
    assert!(
        unescaped.contains(&format!("href=\"{next}\"")),
        "a link to older emails"
    );
    let second = root.get(&next).await;
    assert_eq!(second.status, 200);
    for n in 1..=5 {
        assert!(second.body.contains(&format!("reader{n}@example.org")), "{n}");
    }
    assert!(!second.body.contains("reader6@example.org"));
}
