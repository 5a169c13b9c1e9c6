//! Accounts: sign-up, confirmation, logins by password and by emailed link,
//! resets, the account page, sessions, CSRF, rate limits and `/me`.

use crate::helpers::{spawn_app, spawn_app_with, TestApp};
use crate::visitor::Visitor;

const PASSWORD: &str = "correct horse battery";

async fn sign_up(visitor: &mut Visitor<'_>, email: &str, name: &str) -> crate::visitor::Page {
    visitor
        .submit(
            "/signup",
            "/signup",
            &[("name", name), ("email", email), ("password", PASSWORD)],
        )
        .await
}

/// Signs up and confirms through the emailed link; the visitor ends logged in.
async fn confirmed_member(app: &TestApp, visitor: &mut Visitor<'_>, email: &str) {
    let page = sign_up(visitor, email, "Ada").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let link = app.last_link_to(email).await;
    let confirmed = visitor.submit(&link, &link, &[]).await;
    assert_eq!(confirmed.status, 303, "{}", confirmed.body);
}

#[actix_rt::test]
async fn a_new_member_signs_up_confirms_and_sees_the_account() {
    let app = spawn_app().await;
    let mut visitor = Visitor::new(&app);

    let page = sign_up(&mut visitor, "  Ada@Example.ORG ", "Ada").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Check your email"));
    assert!(!visitor.is_logged_in(), "signing up alone does not log in");

    let email = app.last_email_to("ada@example.org").await;
    assert_eq!(email.message, "confirm_email");
    assert_eq!(email.data["change"], false);
    let link = app.link_in(&email).await;
    assert!(link.starts_with("/confirm/"));

    // The landing page uses nothing: a mail scanner may open it first.
    for _ in 0..2 {
        let landing = visitor.get(&link).await;
        assert_eq!(landing.status, 200);
        assert!(landing.body.contains("Confirm my address"));
    }
    let confirmed = visitor.submit(&link, &link, &[]).await;
    assert_eq!(confirmed.status, 303);
    assert_eq!(confirmed.location(), Some("/account?notice=confirmed"));
    assert!(visitor.is_logged_in());
    let cookie = confirmed.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );

    let account = visitor.get("/account?notice=confirmed").await;
    assert_eq!(account.status, 200);
    assert!(account.body.contains("ada@example.org"));
    assert!(account.body.contains("Your email address is confirmed"));
    assert_eq!(app.last_email_to("ada@example.org").await.message, "welcome");

    // The access log names the user.
    let request_id = account.headers["x-request-id"].to_str().unwrap().to_owned();
    let lines = app.log_lines_for(&request_id).await;
    let client = app.pool.get().await.unwrap();
    let id: i64 = client
        .query_one("SELECT id FROM users WHERE email = 'ada@example.org'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(lines[0]["user_id"], id.to_string());

    let me = visitor.me().await;
    assert_eq!(me["name"], "Ada");
    assert_eq!(me["role"], "member");
    assert_eq!(me["subscriber"], false);

    // The link worked once.
    let again = visitor.post_with_token(&link, &[]).await;
    assert_eq!(again.status, 410);
    assert!(again.body.contains("already been used"));
}

#[actix_rt::test]
async fn signing_up_with_a_registered_address_tells_nothing_and_creates_nothing() {
    let app = spawn_app().await;
    let mut first = Visitor::new(&app);
    confirmed_member(&app, &mut first, "ada@example.org").await;
    let mut second = Visitor::new(&app);
    let again = sign_up(&mut second, "ADA@example.org", "Mallory").await;
    let mut third = Visitor::new(&app);
    let created = sign_up(&mut third, "grace@example.org", "Grace").await;
    assert_eq!(again.status, created.status);
    let strip = |body: &str, visitor: &Visitor, email: &str| {
        body.replace(&visitor.cookies["lectern_csrf"], "")
            .replace(email, "EMAIL")
    };
    assert_eq!(
        strip(&again.body, &second, "ada@example.org"),
        strip(&created.body, &third, "grace@example.org"),
        "the same page either way"
    );

    let client = app.pool.get().await.unwrap();
    let users: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 2);
    // The owner hears of it, with a way in, and their name is kept.
    let email = app.last_email_to("ada@example.org").await;
    assert_eq!(email.message, "magic_link");
    assert_eq!(email.data["signup_attempt"], true);
    assert_eq!(first.me().await["name"], "Ada");
}

#[actix_rt::test]
async fn simultaneous_sign_ups_for_one_address_make_one_account_and_one_working_link() {
    let app = spawn_app().await;
    let mut visitors: Vec<Visitor> = (0..6).map(|_| Visitor::new(&app)).collect();
    let pages = futures_util::future::join_all(
        visitors
            .iter_mut()
            .map(|visitor| sign_up(visitor, "ada@example.org", "Ada")),
    )
    .await;
    assert!(pages.iter().all(|page| page.status == 200));
    let client = app.pool.get().await.unwrap();
    let users: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 1);
    // Each sign-up of the unconfirmed address voids the links before it.
    let emails = app.outbox().await;
    assert_eq!(emails.len(), 6);
    assert!(emails.iter().all(|e| e.message == "confirm_email"));
    let mut working = 0;
    for email in &emails {
        let link = app.link_in(email).await;
        if Visitor::new(&app).get(&link).await.status == 200 {
            working += 1;
        }
    }
    assert_eq!(working, 1);
}

#[actix_rt::test]
async fn logging_in_and_out_with_a_password() {
    let app = spawn_app().await;
    let mut visitor = Visitor::new(&app);
    confirmed_member(&app, &mut visitor, "ada@example.org").await;

    let logout_form = visitor.get("/logout").await;
    let token = logout_form.csrf_token();
    let out = visitor.post("/logout", &[("csrf_token", &token)]).await;
    assert_eq!(out.status, 303);
    assert!(!visitor.is_logged_in());
    assert!(visitor.me().await.is_null());
    assert_eq!(
        visitor.get("/account").await.location(),
        Some("/login?next=/account")
    );
    assert_eq!(
        visitor.get("/account?notice=x&y=1").await.location(),
        Some("/login?next=/account?notice=x%26y=1")
    );

    let wrong = visitor.log_in("ada@example.org", "not the password").await;
    let unknown = visitor.log_in("bob@example.org", "not the password").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert!(wrong
        .body
        .contains("that email address and password do not match"));
    assert!(unknown
        .body
        .contains("that email address and password do not match"));

    let login = visitor
        .submit(
            "/login?next=/episodes",
            "/login",
            &[
                ("email", "Ada@Example.org"),
                ("password", PASSWORD),
                ("next", "/episodes"),
            ],
        )
        .await;
    assert_eq!(login.status, 303);
    assert_eq!(login.location(), Some("/episodes"));
    assert_eq!(visitor.me().await["email"], "ada@example.org");

    // Elsewhere than this site is never a destination.
    visitor.cookies.remove("lectern_session");
    let offsite = visitor
        .submit(
            "/login",
            "/login",
            &[
                ("email", "ada@example.org"),
                ("password", PASSWORD),
                ("next", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(offsite.location(), Some("/account"));
}

#[actix_rt::test]
async fn logging_out_everywhere_ends_every_session() {
    let app = spawn_app().await;
    let mut laptop = Visitor::new(&app);
    confirmed_member(&app, &mut laptop, "ada@example.org").await;
    let mut phone = Visitor::new(&app);
    phone.log_in("ada@example.org", PASSWORD).await;
    assert!(phone.me().await.is_object());
    let out = laptop.post_with_token("/logout", &[("everywhere", "1")]).await;
    assert_eq!(out.status, 303);
    assert!(laptop.me().await.is_null());
    assert!(phone.me().await.is_null());
}

#[actix_rt::test]
async fn an_unconfirmed_account_gets_a_new_link_instead_of_a_session() {
    let app = spawn_app().await;
    let mut visitor = Visitor::new(&app);
    sign_up(&mut visitor, "ada@example.org", "").await;
    let before = app.outbox().await.len();
    let login = visitor.log_in("ada@example.org", PASSWORD).await;
    assert_eq!(login.status, 403);
    assert!(login.body.contains("not confirmed yet"));
    assert!(!visitor.is_logged_in());
    assert_eq!(app.outbox().await.len(), before + 1);
    assert_eq!(
        app.last_email_to("ada@example.org").await.message,
        "confirm_email"
    );
}

#[actix_rt::test]
async fn a_login_link_survives_a_scanner_and_works_once() {
    let app = spawn_app().await;
    let mut member = Visitor::new(&app);
    confirmed_member(&app, &mut member, "ada@example.org").await;

    let mut visitor = Visitor::new(&app);
    let sent = visitor
        .submit("/login/magic", "/login/magic", &[("email", "ada@example.org")])
        .await;
    assert_eq!(sent.status, 200);
    assert!(sent.body.contains("a login link is on its way"));
    let email = app.last_email_to("ada@example.org").await;
    assert_eq!(email.message, "magic_link");
    assert_eq!(email.data["signup_attempt"], false);
    let link = app.link_in(&email).await;

    let mut scanner = Visitor::new(&app);
    assert_eq!(scanner.get(&link).await.status, 200);
    assert!(!scanner.is_logged_in());

    let used = visitor.submit(&link, &link, &[]).await;
    assert_eq!(used.status, 303);
    assert_eq!(visitor.me().await["email"], "ada@example.org");
    let replay = visitor.post_with_token(&link, &[]).await;
    assert_eq!(replay.status, 410);

    // An address without an account gets the same answer, and no email.
    let before = app.outbox().await.len();
    let nobody = Visitor::new(&app)
        .submit("/login/magic", "/login/magic", &[("email", "nobody@example.org")])
        .await;
    assert_eq!(nobody.status, 200);
    assert!(nobody.body.contains("a login link is on its way"));
    assert_eq!(app.outbox().await.len(), before);
}

#[actix_rt::test]
async fn expired_and_made_up_links_are_refused_clearly() {
    let app = spawn_app().await;
    let mut visitor = Visitor::new(&app);
    sign_up(&mut visitor, "ada@example.org", "").await;
    let link = app.last_link_to("ada@example.org").await;
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE user_tokens SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let expired = visitor.get(&link).await;
    assert_eq!(expired.status, 410);
    assert!(expired.body.contains("this link has expired"));

    for path in [
        "/confirm/not-a-token",
        "/login/magic/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &format!("/reset/{}", "x".repeat(500)),
    ] {
        let page = visitor.get(path).await;
        assert_eq!(page.status, 410, "{path}");
        assert!(page.body.contains("this link is not valid"), "{path}");
    }
    // A confirmation link is not a reset link.
    let reset_with_confirm = visitor.get(&link.replace("/confirm/", "/reset/")).await;
    assert_eq!(reset_with_confirm.status, 410);
}

#[actix_rt::test]
async fn a_password_reset_logs_out_everyone_else() {
    let app = spawn_app().await;
    let mut laptop = Visitor::new(&app);
    confirmed_member(&app, &mut laptop, "ada@example.org").await;

    let mut phone = Visitor::new(&app);
    let sent = phone
        .submit("/reset", "/reset", &[("email", "ada@example.org")])
        .await;
    assert!(sent
        .body
        .contains("a link to choose a new password is on its way"));
    let email = app.last_email_to("ada@example.org").await;
    assert_eq!(email.message, "password_reset");
    assert_eq!(email.data["minutes"], 60);
    let link = app.link_in(&email).await;

    let short = phone.submit(&link, &link, &[("password", "short")]).await;
    assert_eq!(short.status, 422);
    assert!(short.body.contains("use at least 10 characters"));

    let reset = phone
        .submit(&link, &link, &[("password", "a brand new passphrase")])
        .await;
    assert_eq!(reset.status, 303);
    assert_eq!(reset.location(), Some("/account?notice=password_reset"));
    assert!(phone.me().await.is_object());
    assert!(laptop.me().await.is_null(), "the other session has ended");

    let old = Visitor::new(&app).log_in("ada@example.org", PASSWORD).await;
    assert_eq!(old.status, 401);
    let new = Visitor::new(&app)
        .log_in("ada@example.org", "a brand new passphrase")
        .await;
    assert_eq!(new.status, 303);
    let replay = phone
        .post_with_token(&link, &[("password", "yet another passphrase")])
        .await;
    assert_eq!(replay.status, 410);
}

#[actix_rt::test]
async fn changing_the_password_ends_other_sessions_but_this_one() {
    let app = spawn_app().await;
    let mut laptop = Visitor::new(&app);
    confirmed_member(&app, &mut laptop, "ada@example.org").await;
    let mut phone = Visitor::new(&app);
    phone.log_in("ada@example.org", PASSWORD).await;
    assert!(phone.me().await.is_object());

    let wrong = laptop
        .submit(
            "/account",
            "/account/password",
            &[
                ("current_password", "not it at all"),
                ("new_password", "another good passphrase"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert!(wrong.body.contains("your current password is not right"));

    let changed = laptop
        .submit(
            "/account",
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "another good passphrase"),
            ],
        )
        .await;
    assert_eq!(changed.location(), Some("/account?notice=password_changed"));
    assert!(laptop.me().await.is_object());
    assert!(phone.me().await.is_null());
}

#[actix_rt::test]
async fn changing_the_address_takes_a_confirmation_and_tells_the_old_one() {
    let app = spawn_app().await;
    let mut visitor = Visitor::new(&app);
    confirmed_member(&app, &mut visitor, "ada@example.org").await;
    let asked = visitor
        .submit(
            "/account",
            "/account/email",
            &[
                ("new_email", "ada@lovelace.example"),
                ("current_password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(asked.location(), Some("/account?notice=email_change_sent"));
    assert_eq!(
        visitor.me().await["email"],
        "ada@example.org",
        "not changed until confirmed"
    );

    let email = app.last_email_to("ada@lovelace.example").await;
    assert_eq!(email.message, "confirm_email");
    assert_eq!(email.data["change"], true);
    let link = app.link_in(&email).await;
    let confirmed = visitor.submit(&link, &link, &[]).await;
    assert_eq!(confirmed.location(), Some("/account?notice=email_changed"));
    assert_eq!(visitor.me().await["email"], "ada@lovelace.example");
    let notice = app.last_email_to("ada@example.org").await;
    assert_eq!(notice.message, "email_changed");
    assert_eq!(notice.data["new_email"], "ada@lovelace.example");
}

#[actix_rt::test]
async fn deleting_the_account_removes_it_and_logs_out() {
    let app = spawn_app().await;
    let mut visitor = Visitor::new(&app);
    confirmed_member(&app, &mut visitor, "ada@example.org").await;
    let unconfirmed = visitor
        .submit(
            "/account",
            "/account/delete",
            &[
                ("confirm_email", "someone@example.org"),
                ("current_password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(unconfirmed.status, 422);
    let deleted = visitor
        .submit(
            "/account",
            "/account/delete",
            &[
                ("confirm_email", "ada@example.org"),
                ("current_password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(deleted.status, 200);
    assert!(deleted.body.contains("Your account is deleted"));
    assert!(!visitor.is_logged_in());
    let client = app.pool.get().await.unwrap();
    let left: i64 = client
        .query_one("SELECT count(*) FROM users WHERE email = 'ada@example.org'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    let login = Visitor::new(&app).log_in("ada@example.org", PASSWORD).await;
    assert_eq!(login.status, 401);
}

#[actix_rt::test]
async fn forms_without_the_token_or_from_elsewhere_change_nothing() {
    let app = spawn_app().await;
    let mut visitor = Visitor::new(&app);
    // No token at all.
    let bare = visitor
        .post("/signup", &[("email", "ada@example.org"), ("password", PASSWORD)])
        .await;
    assert_eq!(bare.status, 403);
    assert!(bare.body.contains("Nothing was changed"));
    // The right token, sent from another site.
    let form = visitor.get("/signup").await;
    let token = form.csrf_token();
    let forged = app
        .client
        .post(app.url("/signup"))
        .header(
            "cookie",
            format!("lectern_csrf={}", visitor.cookies["lectern_csrf"]),
        )
        .header("origin", "https://evil.example")
        .form(&[
            ("email", "ada@example.org"),
            ("password", PASSWORD),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    assert!(app.outbox().await.is_empty());

    // A logged-in form needs the session's token, not the visitor cookie's.
    confirmed_member(&app, &mut visitor, "ada@example.org").await;
    let stale = visitor
        .post(
            "/account/delete",
            &[
                ("confirm_email", "ada@example.org"),
                ("current_password", PASSWORD),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(stale.status, 403);
    assert!(visitor.me().await.is_object());
}

#[actix_rt::test]
async fn cached_pages_carry_no_token_and_no_name() {
    let app = spawn_app().await;
    let mut visitor = Visitor::new(&app);
    confirmed_member(&app, &mut visitor, "ada@example.org").await;
    let first = visitor.get("/").await;
    assert_eq!(first.status, 200);
    let home = visitor.get("/").await;
    assert_eq!(
        home.headers.get("x-cache").unwrap(),
        "hit",
        "a member's second visit is served from the cache"
    );
    assert!(!home.body.contains("csrf_token"));
    assert!(!home.body.contains("Ada"));
    let me = visitor.get("/me").await;
    assert_eq!(me.headers.get("cache-control").unwrap(), "private, no-store");
}

#[actix_rt::test]
async fn bad_input_gets_a_clear_answer() {
    let app = spawn_app().await;
    let mut visitor = Visitor::new(&app);
    let invalid = visitor
        .submit(
            "/signup",
            "/signup",
            &[
                ("email", "ada at example.org"),
                ("password", "short"),
                ("name", "Ada\nBcc: x"),
            ],
        )
        .await;
    assert_eq!(invalid.status, 422);
    assert!(invalid.body.contains("does not look like an email address"));
    assert!(invalid.body.contains("use at least 10 characters"));
    assert!(invalid.body.contains("on one line"));
    let long = "p".repeat(129);
    let too_long = visitor
        .submit(
            "/signup",
            "/signup",
            &[("email", "ada@example.org"), ("password", &long)],
        )
        .await;
    assert!(too_long.body.contains("use at most 128 characters"));

    let not_a_form = app
        .client
        .post(app.url("/login"))
        .header("content-type", "application/json")
        .body("{\"email\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_form.status().as_u16(), 415);
    assert!(not_a_form
        .text()
        .await
        .unwrap()
        .contains("The form could not be read"));

    let huge = app
        .client
        .post(app.url("/signup"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("email={}", "a".repeat(2 * 1024 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status().as_u16(), 413);
    assert!(app.outbox().await.is_empty());
}

/// What a visitor sees of an answer: its status and its text, with the
/// address they typed and the form's per-visitor token taken out.
fn as_seen(page: &crate::visitor::Page, email: &str) -> (u16, String) {
    let mut body = page.body.replace(email, "ADDRESS");
    let marker = "name=\"csrf_token\" value=\"";
    let mut from = 0;
    while let Some(found) = body[from..].find(marker) {
        let start = from + found + marker.len();
        let end = start + body[start..].find('"').unwrap();
        body.replace_range(start..end, "TOKEN");
        from = start;
    }
    (page.status, body)
}

#[actix_rt::test]
async fn too_many_requests_get_429_whether_or_not_the_address_exists() {
    let app = spawn_app_with(&[("accounts.rate_limit.per_email", "2")]).await;
    let mut member = Visitor::new(&app);
    confirmed_member(&app, &mut member, "ada@example.org").await;
    // Two addresses of one length: one with a confirmed account, one without.
    let (registered, unregistered) = ("ada@example.org", "bob@example.org");
    for (path, message) in [("/login/magic", "magic_link"), ("/reset", "password_reset")] {
        let mut answers = Vec::new();
        for email in [registered, unregistered] {
            let mut visitor = Visitor::new(&app);
            let mut seen = Vec::new();
            for _ in 0..3 {
                let page = visitor.submit(path, path, &[("email", email)]).await;
                if page.status == 429 {
                    let retry: u32 = page.headers["retry-after"].to_str().unwrap().parse().unwrap();
                    assert!((1..=900).contains(&retry), "{retry}");
                    assert!(page.body.contains("Too many attempts"));
                }
                seen.push(as_seen(&page, email));
            }
            let statuses: Vec<u16> = seen.iter().map(|(status, _)| *status).collect();
            assert_eq!(statuses, [200, 200, 429], "{path} {email}");
            answers.push(seen);
        }
        for (n, (known, unknown)) in answers[0].iter().zip(&answers[1]).enumerate() {
            let request = n + 1;
            assert_eq!(
                known.0, unknown.0,
                "{path}, request {request}: the status differs"
            );
            if let Some((registered_line, unregistered_line)) =
                known.1.lines().zip(unknown.1.lines()).find(|(a, b)| a != b)
            {
                panic!(
                    "{path}, request {request}: the answer tells a registered address from an \
                     unregistered one:\n  registered:   {registered_line}\n  unregistered: {unregistered_line}"
                );
            }
            assert_eq!(known.1, unknown.1, "{path}, request {request}");
        }
        let sent: Vec<_> = app
            .outbox()
            .await
            .into_iter()
            .filter(|e| e.message == message)
            .map(|e| e.recipient)
            .collect();
        assert_eq!(
            sent,
            [registered, registered],
            "{path}: only the account's owner gets mail"
        );
    }
    // Per client address too.
    let app = spawn_app_with(&[("accounts.rate_limit.per_ip", "2")]).await;
    let mut visitor = Visitor::new(&app);
    let mut last = 0;
    for n in 0..3 {
        let email = format!("person{n}@example.org");
        last = visitor
            .submit("/reset", "/reset", &[("email", &email)])
            .await
            .status;
    }
    assert_eq!(last, 429);
}

#[actix_rt::test]
async fn create_admin_prints_a_one_time_link_that_logs_in_as_admin() {
    use crate::helpers::{conninfo, fresh_database, lectern_command, spawn_app_on};

    let database = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let output = lectern_command(dir.path())
        .env("DATABASE_URL", conninfo(&database))
        .args(["user", "create-admin", " Grace@Example.org "])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("grace@example.org is an administrator"),
        "{stdout}"
    );
    let link = stdout
        .lines()
        .find(|l| l.contains("/login/magic/"))
        .expect("the output has the link");
    let path = &link[link.find("/login/magic/").unwrap()..];

    let app = spawn_app_on(database, &[]).await;
    let mut visitor = Visitor::new(&app);
    assert_eq!(visitor.submit(path, path, &[]).await.status, 303);
    assert_eq!(visitor.me().await["role"], "admin");
    assert_eq!(visitor.post_with_token(path, &[]).await.status, 410);

    let bad = lectern_command(dir.path())
        .args(["user", "create-admin", "not an address"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("does not look like an email address"));
}

#[actix_rt::test]
async fn the_session_cookie_is_secure_when_configured() {
    let app = spawn_app_with(&[("accounts.secure_cookies", "true")]).await;
    let mut visitor = Visitor::new(&app);
    sign_up(&mut visitor, "ada@example.org", "").await;
    let link = app.last_link_to("ada@example.org").await;
    let confirmed = visitor.submit(&link, &link, &[]).await;
    let cookie = confirmed.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("lectern_session="), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
}

#[actix_rt::test]
async fn a_session_opened_on_one_node_is_read_and_ended_on_another() {
    use crate::helpers::spawn_app_on;

    let first = spawn_app().await;
    let second = spawn_app_on(first.database.clone(), &[]).await;
    let mut on_first = Visitor::new(&first);
    confirmed_member(&first, &mut on_first, "ada@example.org").await;

    let mut on_second = Visitor::new(&second);
    on_second.cookies = on_first.cookies.clone();
    assert_eq!(on_second.me().await["email"], "ada@example.org");
    let out = on_second.post_with_token("/logout", &[]).await;
    assert_eq!(out.status, 303);
    assert!(on_first.me().await.is_null(), "logged out on the other node too");
}

/// The one session's expiry, as seconds from now (negative: in the past).
async fn session_expires_in_secs(app: &TestApp) -> f64 {
    app.pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT extract(epoch FROM expires_at - now())::float8 FROM sessions",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Makes the one session look last used `idle` ago, expiring in `left`.
async fn age_session(app: &TestApp, idle: &str, left: &str) {
    app.pool
        .get()
        .await
        .unwrap()
        .execute(
            &format!(
                "UPDATE sessions SET last_seen_at = now() - interval '{idle}', \
                 expires_at = now() + interval '{left}'"
            ),
            &[],
        )
        .await
        .unwrap();
}

#[actix_rt::test]
async fn a_session_lasts_while_it_is_used_and_ends_when_it_expires() {
    const DAY: f64 = 86_400.0;
    let app = spawn_app().await;
    let mut visitor = Visitor::new(&app);
    confirmed_member(&app, &mut visitor, "ada@example.org").await;
    let fresh = session_expires_in_secs(&app).await;
    assert!((29.9 * DAY..=30.0 * DAY).contains(&fresh), "{fresh}");

    // Used ten minutes ago: the session is read, its expiry not written again.
    age_session(&app, "10 minutes", "1 day").await;
    assert_eq!(visitor.me().await["email"], "ada@example.org");
    let unchanged = session_expires_in_secs(&app).await;
    assert!(
        (0.9 * DAY..=DAY).contains(&unchanged),
        "written at most once an hour: {unchanged}"
    );

    // Idle for two hours, a day left: using it gives it 30 days again.
    age_session(&app, "2 hours", "1 day").await;
    assert_eq!(visitor.get("/account").await.status, 200);
    let extended = session_expires_in_secs(&app).await;
    assert!(
        (29.9 * DAY..=30.0 * DAY).contains(&extended),
        "use moves the expiry forward: {extended}"
    );
    assert_eq!(visitor.me().await["email"], "ada@example.org");

    // Idle for 30 days: expired, refused, and not brought back by the visit.
    age_session(&app, "30 days 1 second", "-1 second").await;
    assert!(visitor.me().await.is_null(), "/me knows no user");
    let account = visitor.get("/account").await;
    assert_eq!(account.status, 303);
    assert_eq!(account.location(), Some("/login?next=/account"));
    let expired = session_expires_in_secs(&app).await;
    assert!(expired < 0.0, "an expired session is not extended: {expired}");
}

/// The shared rate limiter (GCRA in PostgreSQL), driven through its row
/// rather than the clock: with four requests in about 116 days, one comes
/// back every 29 days, so no run of this test is slow enough for the limit
/// to refill by itself, and no clock window is ever crossed.
#[actix_rt::test]
async fn the_rate_limiter_allows_a_burst_then_one_request_a_step() {
    use lectern_actors::accounts::rate_limit::{hit, Rate};
    use lectern_actors::accounts::RetryAfter;
    use std::time::Instant;

    const STEP: u32 = 2_500_000;
    let rate = Rate {
        limit: 4,
        window_secs: 4 * STEP,
    };
    let key = "test:ada@example.org";
    let app = spawn_app().await;
    let client = app.pool.get().await.unwrap();
    let tat = || async {
        let tat: time::OffsetDateTime = client
            .query_one("SELECT tat FROM rate_limits WHERE key = $1", &[&key])
            .await
            .unwrap()
            .get(0);
        tat
    };

    let burst_began = Instant::now();
    for n in 1..=4 {
        assert_eq!(hit(&app.pool, key, rate).await.unwrap(), Ok(()), "request {n}");
    }
    let held = tat().await;
    let refused = hit(&app.pool, key, rate).await.unwrap();
    // One step, less the time since the burst began (rounded up).
    let elapsed = burst_began.elapsed().as_secs_f64().ceil();
    let Err(RetryAfter(retry)) = refused else {
        panic!("the fifth request of four was allowed")
    };
    assert!(
        retry <= STEP && f64::from(retry) >= f64::from(STEP) - elapsed,
        "retry after {retry}s, not one step ({STEP}s) less {elapsed}s"
    );
    assert_eq!(tat().await, held, "a refused request is not counted");
    assert_eq!(
        hit(&app.pool, "test:bob@example.org", rate).await.unwrap(),
        Ok(()),
        "another key has its own limit"
    );

    // One step passes: one more request, and no second.
    client
        .execute(
            "UPDATE rate_limits SET tat = tat - make_interval(secs => $2) WHERE key = $1",
            &[&key, &f64::from(STEP)],
        )
        .await
        .unwrap();
    assert_eq!(hit(&app.pool, key, rate).await.unwrap(), Ok(()));
    assert!(hit(&app.pool, key, rate).await.unwrap().is_err());

    // Long enough for the whole window: the full burst again.
    client
        .execute(
            "UPDATE rate_limits SET tat = now() - interval '1 second' WHERE key = $1",
            &[&key],
        )
        .await
        .unwrap();
    for n in 1..=4 {
        assert_eq!(
            hit(&app.pool, key, rate).await.unwrap(),
            Ok(()),
            "request {n} after the window"
        );
    }
    assert!(hit(&app.pool, key, rate).await.unwrap().is_err());
}

/// A session lives in the database, not in the process: when `lectern
/// serve` is killed with SIGKILL and started again, a member logged in
/// before is still logged in with the same cookie.
#[actix_rt::test]
async fn a_session_outlives_a_sigkill_of_lectern_serve() {
    use std::sync::Arc;

    use crate::helpers::{conninfo, fresh_database, lectern_command, LecternProcess};
    use crate::visitor::form_field;

    let database = fresh_database().await;
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let output = lectern_command(data_dir.path())
        .env("DATABASE_URL", conninfo(&database))
        .args(["user", "create-admin", "grace@example.org"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let link = stdout
        .lines()
        .find(|l| l.contains("/login/magic/"))
        .unwrap_or_else(|| panic!("no link in {stdout}"));
    let path = &link[link.find("/login/magic/").unwrap()..];
    let cookie_named = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find(|value| value.starts_with(&format!("{name}=")))
            .and_then(|value| value.split(';').next())
            .map(str::to_owned)
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let mut first = LecternProcess::start(Arc::clone(&data_dir), Some(&database));
    let landing = client.get(first.url(path)).send().await.unwrap();
    let csrf = cookie_named(&landing, "lectern_csrf").expect("a form token cookie");
    let token = form_field(&landing.text().await.unwrap(), "csrf_token").expect("a form");
    let login = client
        .post(first.url(path))
        .header("cookie", &csrf)
        .form(&[("csrf_token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let session = cookie_named(&login, "lectern_session").expect("logged in");
    let account = |url: String| client.get(url).header("cookie", &session).send();
    assert_eq!(account(first.url("/account")).await.unwrap().status(), 200);

    first.signal(nix::sys::signal::Signal::SIGKILL);
    let status = first.child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));

    let second = LecternProcess::start(data_dir, Some(&database));
    let after = account(second.url("/account")).await.unwrap();
    assert_eq!(after.status(), 200, "the old cookie is still a login");
    assert!(after.text().await.unwrap().contains("grace@example.org"));
}
