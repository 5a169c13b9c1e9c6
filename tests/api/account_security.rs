//! Accounts against a hostile second user: signing up first with someone
//! else's address, open redirects, links that outlive a change, links in
//! the outbox and the log, lockouts and mail floods, a stranger's words in
//! someone's mailbox, spoofed origins, and sessions left behind.

use crate::helpers::{spawn_app, spawn_app_with, TestApp};
use crate::visitor::Visitor;

const OWNER_PASSWORD: &str = "the owner's own passphrase";
const STRANGER_PASSWORD: &str = "the stranger's passphrase";

async fn sign_up(visitor: &mut Visitor<'_>, email: &str, name: &str, password: &str) {
    let page = visitor
        .submit(
            "/signup",
            "/signup",
            &[("name", name), ("email", email), ("password", password)],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
}

async fn confirmed_member(app: &TestApp, visitor: &mut Visitor<'_>, email: &str, password: &str) {
    sign_up(visitor, email, "Ada", password).await;
    let link = app.last_link_to(email).await;
    let confirmed = visitor.submit(&link, &link, &[]).await;
    assert_eq!(confirmed.status, 303, "{}", confirmed.body);
}

async fn password_works(app: &TestApp, email: &str, password: &str) -> bool {
    let page = Visitor::new(app).log_in(email, password).await;
    assert!(
        [303, 401, 403].contains(&page.status),
        "{}: {}",
        page.status,
        page.body
    );
    page.status == 303
}

#[actix_rt::test]
async fn a_stranger_who_signed_up_first_with_your_address_keeps_nothing_after_your_sign_up() {
    let app = spawn_app().await;
    let mut stranger = Visitor::new(&app);
    sign_up(&mut stranger, "ada@example.org", "Mallory", STRANGER_PASSWORD).await;
    let strangers_link = app.last_link_to("ada@example.org").await;

    let mut owner = Visitor::new(&app);
    sign_up(&mut owner, "ada@example.org", "Ada", OWNER_PASSWORD).await;
    let owners_link = app.last_link_to("ada@example.org").await;
    let confirmed = owner.submit(&owners_link, &owners_link, &[]).await;
    assert_eq!(confirmed.status, 303, "{}", confirmed.body);

    assert!(!password_works(&app, "ada@example.org", STRANGER_PASSWORD).await);
    assert!(password_works(&app, "ada@example.org", OWNER_PASSWORD).await);
    assert_eq!(owner.me().await["name"], "Ada");
    // The stranger's confirmation link died with their sign-up.
    let stale = stranger.get(&strangers_link).await;
    assert_eq!(stale.status, 410);
    assert!(stale.body.contains("no longer valid"), "{}", stale.body);
}

#[actix_rt::test]
async fn a_stranger_who_signed_up_first_keeps_nothing_after_your_login_link() {
    let app = spawn_app().await;
    let mut stranger = Visitor::new(&app);
    sign_up(&mut stranger, "ada@example.org", "Mallory", STRANGER_PASSWORD).await;

    let mut owner = Visitor::new(&app);
    let sent = owner
        .submit("/login/magic", "/login/magic", &[("email", "ada@example.org")])
        .await;
    assert_eq!(sent.status, 200);
    let email = app.last_email_to("ada@example.org").await;
    assert_eq!(email.message, "magic_link");
    let link = app.link_in(&email).await;
    assert_eq!(owner.submit(&link, &link, &[]).await.status, 303);

    assert!(!password_works(&app, "ada@example.org", STRANGER_PASSWORD).await);
    let me = owner.me().await;
    assert_eq!(me["email"], "ada@example.org");
    assert_eq!(me["name"], "", "the stranger's name is gone too");
    let account = owner.get("/account").await;
    assert!(account.body.contains("Set a password"), "no password is left");
    // And the welcome email did not carry the stranger's name.
    let welcome = app.last_email_to("ada@example.org").await;
    assert_eq!(welcome.message, "welcome");
    assert_eq!(welcome.data["name"], "");
}

#[actix_rt::test]
async fn accounts_nobody_confirmed_are_purged_after_48_hours() {
    let app = spawn_app().await;
    sign_up(&mut Visitor::new(&app), "old@example.org", "", STRANGER_PASSWORD).await;
    sign_up(&mut Visitor::new(&app), "new@example.org", "", STRANGER_PASSWORD).await;
    let mut member = Visitor::new(&app);
    confirmed_member(&app, &mut member, "kept@example.org", OWNER_PASSWORD).await;
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE users SET updated_at = now() - interval '49 hours' \
             WHERE email IN ('old@example.org', 'kept@example.org')",
            &[],
        )
        .await
        .unwrap();

    app.sweep().await;

    let left: Vec<String> = client
        .query("SELECT email FROM users ORDER BY email", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(left, ["kept@example.org", "new@example.org"]);
}

#[actix_rt::test]
async fn the_confirmation_email_carries_no_name_and_no_false_promise() {
    let app = spawn_app().await;
    sign_up(
        &mut Visitor::new(&app),
        "ada@example.org",
        "Visit evil.example for a prize",
        OWNER_PASSWORD,
    )
    .await;
    let email = app.last_email_to("ada@example.org").await;
    assert_eq!(email.message, "confirm_email");
    assert_eq!(email.data["name"], "");
    // What the recipient reads: no stranger's words, no "no account will be made".
    let link = app.link_in(&email).await;
    assert!(link.starts_with("/confirm/"));
    let eml = std::fs::read_dir(app.mail_dirs()[0].clone())
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .find(|text| text.contains("To: <ada@example.org>"))
        .unwrap();
    let text = crate::helpers::mime_part(&eml, "text/plain");
    assert!(!text.contains("evil.example"), "{text}");
    assert!(!text.contains("no account will be made"), "{text}");
}

#[actix_rt::test]
async fn next_never_leads_off_the_site_and_never_breaks_the_response() {
    let app = spawn_app().await;
    let mut member = Visitor::new(&app);
    confirmed_member(&app, &mut member, "ada@example.org", OWNER_PASSWORD).await;
    for hostile in [
        "/\t/evil.example",
        "/%09/evil.example",
        "/\r\nSet-Cookie: stolen=1",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
    ] {
        let mut visitor = Visitor::new(&app);
        let page = visitor
            .submit(
                "/login",
                "/login",
                &[
                    ("email", "ada@example.org"),
                    ("password", OWNER_PASSWORD),
                    ("next", hostile),
                ],
            )
            .await;
        assert_eq!(page.status, 303, "{hostile:?}: {}", page.body);
        let location = page.location().unwrap();
        assert!(
            location.starts_with('/') && !location.starts_with("//") && !location.contains(['\t', '\\']),
            "{hostile:?} led to {location:?}"
        );
        assert!(page.headers.get("set-cookie").is_some());
        assert!(!page
            .headers
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().contains("stolen")));
    }
    // The query string of the login form is read the same way.
    let form = Visitor::new(&app).get("/login?next=/%09/evil.example").await;
    assert!(!form.body.contains("evil.example"), "{}", form.body);
}

#[actix_rt::test]
async fn links_sent_before_a_password_change_no_longer_work() {
    let app = spawn_app().await;
    let mut member = Visitor::new(&app);
    confirmed_member(&app, &mut member, "ada@example.org", OWNER_PASSWORD).await;
    let mut thief = Visitor::new(&app);
    thief
        .submit("/login/magic", "/login/magic", &[("email", "ada@example.org")])
        .await;
    let login_link = app.last_link_to("ada@example.org").await;
    thief
        .submit("/reset", "/reset", &[("email", "ada@example.org")])
        .await;
    let reset_link = app.last_link_to("ada@example.org").await;

    let changed = member
        .submit(
            "/account",
            "/account/password",
            &[
                ("current_password", OWNER_PASSWORD),
                ("new_password", "a newer passphrase"),
            ],
        )
        .await;
    assert_eq!(changed.status, 303, "{}", changed.body);

    for link in [&login_link, &reset_link] {
        let page = thief.get(link).await;
        assert_eq!(page.status, 410, "{link}");
        assert!(page.body.contains("no longer valid"), "{link}: {}", page.body);
    }
}

#[actix_rt::test]
async fn links_sent_to_the_old_address_no_longer_work_after_a_change_of_address() {
    let app = spawn_app().await;
    let mut member = Visitor::new(&app);
    confirmed_member(&app, &mut member, "ada@example.org", OWNER_PASSWORD).await;
    let mut other = Visitor::new(&app);
    other
        .submit("/reset", "/reset", &[("email", "ada@example.org")])
        .await;
    let reset_link = app.last_link_to("ada@example.org").await;
    // Two changes asked for; the first one used voids the other.
    for new in ["ada@new.example", "ada@other.example"] {
        let asked = member
            .submit(
                "/account",
                "/account/email",
                &[("new_email", new), ("current_password", OWNER_PASSWORD)],
            )
            .await;
        assert_eq!(asked.status, 303, "{}", asked.body);
    }
    let to_other = app.last_link_to("ada@other.example").await;
    let to_new = app.last_link_to("ada@new.example").await;
    assert_eq!(member.submit(&to_new, &to_new, &[]).await.status, 303);
    assert_eq!(member.me().await["email"], "ada@new.example");

    assert_eq!(other.get(&reset_link).await.status, 410);
    assert_eq!(member.get(&to_other).await.status, 410);
}

#[actix_rt::test]
async fn the_outbox_keeps_no_link_once_sent_and_forgets_old_emails() {
    let app = spawn_app().await;
    sign_up(&mut Visitor::new(&app), "ada@example.org", "", OWNER_PASSWORD).await;
    let email = app.last_email_to("ada@example.org").await;
    app.link_in(&email).await; // waits until it is sent
    let client = app.pool.get().await.unwrap();
    let data: serde_json::Value = client
        .query_one("SELECT data FROM email_outbox WHERE id = $1", &[&email.id])
        .await
        .unwrap()
        .get(0);
    assert!(data.get("link").is_none(), "{data}");

    client
        .execute(
            "UPDATE email_outbox SET created_at = now() - interval '31 days'",
            &[],
        )
        .await
        .unwrap();
    app.sweep().await;
    assert!(app.outbox().await.is_empty());
}

#[actix_rt::test]
async fn the_log_never_holds_the_token_of_a_link() {
    let app = spawn_app().await;
    sign_up(&mut Visitor::new(&app), "ada@example.org", "", OWNER_PASSWORD).await;
    let link = app.last_link_to("ada@example.org").await;
    let token = link.rsplit('/').next().unwrap().to_owned();
    let page = Visitor::new(&app).get(&link).await;
    let request_id = page.headers["x-request-id"].to_str().unwrap().to_owned();
    let lines = app.log_lines_for(&request_id).await;
    assert_eq!(lines[0]["path"], "/confirm/{token}");
    let log = std::fs::read_to_string(&app.log_file).unwrap();
    assert!(!log.contains(&token), "the token is in the log");
}

#[actix_rt::test]
async fn a_strangers_wrong_passwords_slow_the_owner_down_but_never_lock_them_out() {
    let app = spawn_app_with(&[("server.client_ip_header", "\"X-Real-IP\"")]).await;
    let mut member = Visitor::new(&app);
    confirmed_member(&app, &mut member, "ada@example.org", OWNER_PASSWORD).await;
    // A stranger tries six wrong passwords, from six addresses.
    for n in 0..6 {
        let page = app
            .client
            .post(app.url("/login"))
            .header("x-real-ip", format!("192.0.2.{n}"))
            .header(
                "cookie",
                "lectern_csrf=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            )
            .form(&[
                ("email", "ada@example.org"),
                ("password", "a wrong guess"),
                ("csrf_token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            ])
            .send()
            .await
            .unwrap();
        assert!([401, 429].contains(&page.status().as_u16()));
    }
    // The owner is told to wait seconds, not a quarter of an hour, and then gets in.
    let mut owner = Visitor::new(&app);
    let mut answer = owner.log_in("ada@example.org", OWNER_PASSWORD).await;
    if answer.status == 429 {
        let wait: u64 = answer.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(wait <= 4, "told to wait {wait} s");
        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        answer = owner.log_in("ada@example.org", OWNER_PASSWORD).await;
    }
    assert_eq!(answer.status, 303, "{}", answer.body);
}

#[actix_rt::test]
async fn one_address_gets_a_few_emails_a_day_however_often_it_is_entered() {
    let app = spawn_app_with(&[
        ("accounts.emails_per_address_per_day", "3"),
        ("accounts.rate_limit.per_email", "100"),
        ("accounts.rate_limit.per_ip", "100"),
    ])
    .await;
    let mut member = Visitor::new(&app);
    confirmed_member(&app, &mut member, "ada@example.org", OWNER_PASSWORD).await;
    let before = app.outbox().await.len();
    assert_eq!(before, 2, "the confirmation and the welcome");
    let mut flooder = Visitor::new(&app);
    for path in ["/login/magic", "/reset", "/login/magic", "/reset"] {
        let page = flooder.submit(path, path, &[("email", "ada@example.org")]).await;
        assert_eq!(page.status, 200, "the same page, sent or not");
    }
    assert_eq!(app.outbox().await.len(), 3, "one more email, then the cap");
}

#[actix_rt::test]
async fn forms_are_accepted_only_from_the_public_url_whatever_the_forwarded_headers_say() {
    let app = spawn_app_with(&[("server.public_url", "\"https://lectern.example\"")]).await;
    let mut visitor = Visitor::new(&app);
    let form = visitor.get("/signup").await;
    let token = form.csrf_token();
    let cookie = format!("lectern_csrf={}", visitor.cookies["lectern_csrf"]);
    let post = |origin: &'static str| {
        app.client
            .post(app.url("/login/magic"))
            .header("cookie", cookie.clone())
            .header("origin", origin)
            .header("x-forwarded-host", "evil.example")
            .header("forwarded", "host=evil.example;proto=https")
            .form(&[("email", "ada@example.org"), ("csrf_token", token.as_str())])
            .send()
    };
    assert_eq!(post("https://evil.example").await.unwrap().status(), 403);
    assert_eq!(post("https://lectern.example").await.unwrap().status(), 200);
}

#[actix_rt::test]
async fn logging_in_as_someone_else_ends_the_session_you_had() {
    let app = spawn_app().await;
    let mut visitor = Visitor::new(&app);
    confirmed_member(&app, &mut visitor, "ada@example.org", OWNER_PASSWORD).await;
    let old_cookie = visitor.cookies["lectern_session"].clone();
    let mut grace = Visitor::new(&app);
    confirmed_member(&app, &mut grace, "grace@example.org", OWNER_PASSWORD).await;

    let login = visitor.log_in("grace@example.org", OWNER_PASSWORD).await;
    assert_eq!(login.status, 303);
    assert_eq!(visitor.me().await["email"], "grace@example.org");
    let mut old = Visitor::new(&app);
    old.cookies.insert("lectern_session".into(), old_cookie);
    assert!(old.me().await.is_null(), "Ada's session on this browser ended");
}

#[actix_rt::test]
async fn readyz_tells_outsiders_only_the_status() {
    let app = spawn_app_with(&[
        ("server.client_ip_header", "\"X-Real-IP\""),
        ("server.metrics_token", "\"s3cret-token\""),
    ])
    .await;
    let ask = |ip: &'static str, token: Option<&'static str>| {
        let mut request = app.client.get(app.url("/readyz")).header("x-real-ip", ip);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let outsider = ask("203.0.113.9", None).await;
    assert_eq!(outsider, serde_json::json!({ "status": "ready" }));
    assert_eq!(ask("203.0.113.9", Some("wrong")).await, outsider);
    assert!(ask("203.0.113.9", Some("s3cret-token")).await["actors"].is_array());
    assert!(ask("127.0.0.1", None).await["checks"]["database"]["ok"] == true);
}
