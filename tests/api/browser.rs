//! End to end in headless Chromium over WebDriver: a new member signs up,
//! confirms, logs out, logs in with a password and with an emailed link,
//! resets the password and deletes the account; a member subscribes and
//! watches a premium episode until the subscription ends; an administrator
//! writes and publishes an episode that a visitor sees at once. Links come from
//! the delivered emails, payments from a Stripe-shaped server.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{spawn_app, TestApp};

const PASSWORD: &str = "correct horse battery";

/// chromedriver on a free loopback port, stopped on drop.
struct ChromeDriver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_program(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

async fn browser() -> (Client, ChromeDriver) {
    let missing = "headless Chromium is needed: run `tests/run` (as root it installs Debian's \
                   chromium and chromium-driver) or `apt-get install chromium chromium-driver`";
    let driver = find_program("chromedriver").unwrap_or_else(|| panic!("chromedriver not found; {missing}"));
    let chromium = find_program("chromium").unwrap_or_else(|| panic!("chromium not found; {missing}"));
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let driver = ChromeDriver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: profile,
    };
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1200,900",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ]
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connected = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.as_object().unwrap().clone())
            .connect(&driver.url)
            .await;
        match connected {
            Ok(client) => return (client, driver),
            Err(e) if Instant::now() > deadline => panic!("cannot start headless Chromium: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Fills the fields of the form whose action is `action`, then presses its button.
async fn fill_and_submit(browser: &Client, action: &str, fields: &[(&str, &str)]) {
    let form = format!("form[action='{action}']");
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(&form))
        .await
        .unwrap_or_else(|e| panic!("no form for {action}: {e}"));
    for (name, value) in fields {
        let input = browser
            .find(Locator::Css(&format!("{form} input[name='{name}']")))
            .await
            .unwrap_or_else(|e| panic!("no field {name} in the form for {action}: {e}"));
        input.send_keys(value).await.unwrap();
    }
    browser
        .find(Locator::Css(&format!("{form} button[type='submit']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits for a page whose first heading is `heading`.
async fn wait_for_heading(browser: &Client, heading: &str) {
    let xpath = format!("//h1[normalize-space()='{heading}']");
    let found = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(&xpath))
        .await;
    if found.is_err() {
        let source = browser.source().await.unwrap_or_default();
        panic!("expected a page titled {heading:?}, got:\n{source}");
    }
}

/// Logs out from the account page and waits for the home page.
async fn log_out(browser: &Client) {
    fill_and_submit(browser, "/logout", &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while browser.current_url().await.unwrap().path() != "/" {
        assert!(
            Instant::now() < deadline,
            "logging out never reached the home page"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("[data-me='anonymous']"))
        .await
        .unwrap();
}

/// The newest emailed link to `email`, on the test server.
async fn emailed_link(app: &TestApp, email: &str, message: &str) -> String {
    let sent = app.last_email_to(email).await;
    assert_eq!(sent.message, message);
    app.url(&app.link_in(&sent).await)
}

#[actix_rt::test]
async fn a_member_signs_up_confirms_logs_in_three_ways_and_leaves() {
    let app = spawn_app().await;
    let (browser, _driver) = browser().await;
    let email = "ada@example.org";

    // Sign up, and confirm from the email.
    browser.goto(&app.url("/")).await.unwrap();
    browser
        .find(Locator::LinkText("Sign up"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    fill_and_submit(
        &browser,
        "/signup",
        &[("name", "Ada"), ("email", email), ("password", PASSWORD)],
    )
    .await;
    wait_for_heading(&browser, "Check your email").await;
    let link = emailed_link(&app, email, "confirm_email").await;
    browser.goto(&link).await.unwrap();
    fill_and_submit(&browser, &link[app.address.len()..], &[]).await;
    wait_for_heading(&browser, "Your account").await;
    assert!(browser.source().await.unwrap().contains(email));

    // A cached page learns who is here from /me.
    browser.goto(&app.url("/episodes")).await.unwrap();
    let account_link = browser.find(Locator::Css("[data-me='member']")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !account_link.is_displayed().await.unwrap() {
        assert!(Instant::now() < deadline, "the Account link never appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(account_link.text().await.unwrap(), "Ada");

    // Log out, then in with the password.
    browser.goto(&app.url("/account")).await.unwrap();
    log_out(&browser).await;
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::LinkText("Log in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    fill_and_submit(&browser, "/login", &[("email", email), ("password", PASSWORD)]).await;
    wait_for_heading(&browser, "Your account").await;

    // Log out, then in with an emailed link.
    log_out(&browser).await;
    browser.goto(&app.url("/login")).await.unwrap();
    browser
        .find(Locator::LinkText("Email me a login link instead"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    fill_and_submit(&browser, "/login/magic", &[("email", email)]).await;
    wait_for_heading(&browser, "Check your email").await;
    let link = emailed_link(&app, email, "magic_link").await;
    browser.goto(&link).await.unwrap();
    let path = &link[app.address.len()..];
    fill_and_submit(&browser, path, &[]).await;
    wait_for_heading(&browser, "Your account").await;

    // Log out, forget the password, reset it.
    log_out(&browser).await;
    browser.goto(&app.url("/login")).await.unwrap();
    browser
        .find(Locator::LinkText("Forgot your password?"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    fill_and_submit(&browser, "/reset", &[("email", email)]).await;
    wait_for_heading(&browser, "Check your email").await;
    let link = emailed_link(&app, email, "password_reset").await;
    browser.goto(&link).await.unwrap();
    let path = &link[app.address.len()..];
    fill_and_submit(&browser, path, &[("password", "a brand new passphrase")]).await;
    wait_for_heading(&browser, "Your account").await;
    assert!(browser
        .source()
        .await
        .unwrap()
        .contains("Your password is changed"));

    // Delete the account.
    fill_and_submit(
        &browser,
        "/account/delete",
        &[
            ("confirm_email", email),
            ("current_password", "a brand new passphrase"),
        ],
    )
    .await;
    wait_for_heading(&browser, "Your account is deleted").await;
    browser.goto(&app.url("/account")).await.unwrap();
    wait_for_heading(&browser, "Log in").await;

    browser.close().await.unwrap();
}

#[actix_rt::test]
async fn a_member_subscribes_watches_a_premium_episode_and_loses_it_when_cancelled() {
    use crate::billing::{app_with, stripe, PREMIUM};
    use crate::helpers::stripe::Outcome;

    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let (browser, _driver) = browser().await;
    let email = "ada@example.org";
    browser.goto(&app.url("/signup")).await.unwrap();
    fill_and_submit(
        &browser,
        "/signup",
        &[("name", "Ada"), ("email", email), ("password", PASSWORD)],
    )
    .await;
    wait_for_heading(&browser, "Check your email").await;
    let link = emailed_link(&app, email, "confirm_email").await;
    browser.goto(&link).await.unwrap();
    fill_and_submit(&browser, &link[app.address.len()..], &[]).await;
    wait_for_heading(&browser, "Your account").await;

    // A premium episode shows its teaser and the way to subscribe.
    browser.goto(&app.url(PREMIUM)).await.unwrap();
    assert!(browser.find(Locator::Css("video")).await.is_err());
    browser
        .find(Locator::LinkText("Subscribe to watch"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_heading(&browser, "Pricing").await;
    fill_and_submit(&browser, "/checkout", &[]).await;

    // Lectern sent the browser on to Stripe Checkout; Stripe's side of the
    // payment follows.
    let deadline = Instant::now() + Duration::from_secs(10);
    let session = loop {
        if let Some(session) = stripe.checkout_sessions().first() {
            break session["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no Checkout Session was made");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    wait_for_heading(&browser, "Stripe Checkout").await;
    assert!(browser
        .current_url()
        .await
        .unwrap()
        .as_str()
        .ends_with(&format!("/c/pay/{session}")));
    app.deliver_all(&stripe.complete_checkout(&session, Outcome::Paid { card_country: "US" }))
        .await;
    browser.goto(&stripe.success_url(&session)).await.unwrap();
    wait_for_heading(&browser, "Billing").await;

    browser.goto(&app.url(PREMIUM)).await.unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(".player video"))
        .await
        .expect("a subscriber sees the video");

    // Cancelled in Stripe: the next visit shows the teaser again.
    let subscription = stripe.subscriptions()[0]["id"].as_str().unwrap().to_owned();
    app.deliver_all(&[stripe.cancel_subscription(&subscription)])
        .await;
    browser.goto(&app.url(PREMIUM)).await.unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::LinkText("Subscribe to watch"))
        .await
        .unwrap();
    assert!(browser.find(Locator::Css("video")).await.is_err());
    browser.close().await.unwrap();
}

/// Saves a screenshot of the whole page as `name`.png in `LECTERN_SCREENSHOTS`,
/// when that names a folder (for the operator's eyes; tests assert on text).
async fn screenshot(browser: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("LECTERN_SCREENSHOTS") {
        // The whole page, as tall as it is (within reason).
        let height = browser
            .execute("return document.documentElement.scrollHeight", Vec::new())
            .await
            .unwrap()
            .as_u64()
            .map_or(900, |h| h.clamp(900, 4000));
        let height = u32::try_from(height).unwrap_or(4000);
        browser.set_window_size(1200, height + 150).await.unwrap();
        let png = browser.screenshot().await.unwrap();
        browser.set_window_size(1200, 900).await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

#[actix_rt::test]
async fn an_admin_writes_and_publishes_an_episode_and_a_visitor_sees_it_at_once() {
    let app = crate::helpers::spawn_demo_app().await;
    let (browser, _driver) = browser().await;
    let link = crate::admin::admin_link(&app, "editor@example.org");
    browser.goto(&app.url(&link)).await.unwrap();
    fill_and_submit(&browser, &link, &[]).await;
    wait_for_heading(&browser, "Your account").await;
    // A visitor has the listing cached.
    app.get("/episodes").await;
    assert_eq!(app.get("/episodes").await.headers()["x-cache"], "hit");

    browser.goto(&app.url("/admin/content")).await.unwrap();
    browser
        .find(Locator::LinkText("an episode"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_heading(&browser, "New episode").await;
    let fields = [
        ("slug", "pinning-explained"),
        ("title", "Pinning, explained"),
        ("number", "35"),
        ("video", "https://media.lectern.example/episodes/pinning.mp4"),
        ("duration", "18:30"),
        ("tags", "rust, async"),
    ];
    for (name, value) in fields {
        let input = browser
            .find(Locator::Css(&format!("#editor [name='{name}']")))
            .await
            .unwrap_or_else(|e| panic!("no field {name}: {e}"));
        input.send_keys(value).await.unwrap();
    }
    browser
        .find(Locator::Css("#editor textarea[name='summary']"))
        .await
        .unwrap()
        .send_keys("Why a future may not move.")
        .await
        .unwrap();
    browser
        .find(Locator::Css("#editor textarea[name='body']"))
        .await
        .unwrap()
        .send_keys("A future that borrows from itself.\n\n```rust\nlet pinned = Box::pin(future);\n```\n")
        .await
        .unwrap();
    browser
        .find(Locator::Css("#editor button[value='publish']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_heading(&browser, "Edit episode “Pinning, explained”").await;
    let source = browser.source().await.unwrap();
    assert!(source.contains("Saved and published"), "{source}");
    screenshot(&browser, "admin-edit").await;

    // A visitor, at once: the page and the listing that was cached.
    let page = app.get("/episodes/pinning-explained").await;
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(body.contains("A future that borrows from itself."));
    assert!(
        body.contains("<code class=\"language-rust\"><span class=\""),
        "highlighted"
    );
    let listing = app.get("/episodes").await;
    assert_eq!(listing.headers()["x-cache"], "miss");
    assert!(listing.text().await.unwrap().contains("Pinning, explained"));

    // The dashboard over a month of traffic, sign-ups and payments; drawn
    // without a script, so what the browser shows is the served SVG.
    app.pool
        .get()
        .await
        .unwrap()
        .batch_execute(
            "INSERT INTO page_views (day, viewed_at, path, referrer_host, country, viewer, visitor, views) \
             SELECT (now() AT TIME ZONE 'UTC')::date - d, now() - d * interval '1 day', \
                    (ARRAY['/', '/episodes', '/episodes/ownership-and-borrowing', '/articles'])[1 + v % 4], \
                    (ARRAY[NULL, 'news.ycombinator.com', 'www.reddit.com'])[1 + v % 3], \
                    (ARRAY['DE', 'US', 'IN', 'BR'])[1 + (v + d) % 4], 'anonymous', v, 1 + (d * v) % 5 \
             FROM generate_series(1, 29) d, generate_series(1, 20 + (d * 7) % 25) v; \
             INSERT INTO events (kind, subject, data, occurred_at) \
             SELECT 'account.signed_up', d::text, '{}', now() - d * interval '1 day' - n * interval '1 minute' \
             FROM generate_series(1, 29) d, generate_series(1, d % 4) n; \
             INSERT INTO payments (id, user_id, kind, amount, currency, occurred_at) \
             SELECT 'in_' || d, NULL, 'invoice', 1900 * (1 + d % 3), 'usd', now() - d * interval '1 day' \
             FROM generate_series(1, 29) d;",
        )
        .await
        .unwrap();
    app.actors()
        .event_log
        .send(lectern_actors::events::Flush)
        .await
        .unwrap()
        .unwrap();
    browser.goto(&app.url("/admin/dashboard")).await.unwrap();
    wait_for_heading(&browser, "Dashboard").await;
    let bars = browser.find_all(Locator::Css("svg [data-value]")).await.unwrap();
    assert!(bars.len() >= 29, "{} bars", bars.len());
    screenshot(&browser, "dashboard").await;
    browser.goto(&app.url("/admin/system")).await.unwrap();
    wait_for_heading(&browser, "System").await;
    screenshot(&browser, "system").await;
}
