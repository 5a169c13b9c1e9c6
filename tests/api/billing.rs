//! Billing against a Stripe-shaped server on loopback: the price shown is the
//! price charged, Checkout and its retries, webhooks (signatures, duplicates,
//! order), premium access following payment, reconciliation, grants, and
//! what members are mailed.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::stripe::{deliver, post_webhook, sign, Fault, Outcome, StripeServer};
use crate::helpers::{demo_database, lectern_command, spawn_app_on, TestApp};
use crate::visitor::Visitor;

const KEY: &str = "sk_test_lectern";
pub const WEBHOOK_SECRET: &str = "whsec_test_lectern";
const PASSWORD: &str = "correct horse battery";
pub const PREMIUM: &str = "/episodes/lifetimes-demystified";

/// A Stripe that knows Lectern's default plans and the region coupons.
pub async fn stripe() -> StripeServer {
    let stripe = StripeServer::start(KEY).await;
    stripe.add_price("price_monthly", 1900, "usd", "month");
    stripe.add_price("price_yearly", 19000, "usd", "year");
    for (coupon, percent) in [("region-25", 25), ("region-40", 40), ("region-50", 50)] {
        stripe.add_coupon(coupon, percent);
    }
    stripe
}

fn stripe_settings(stripe: &StripeServer) -> Vec<(&'static str, String)> {
    vec![
        ("stripe.api_base", format!("{:?}", stripe.api_base())),
        ("stripe.secret_key", format!("{KEY:?}")),
        ("stripe.webhook_secret", format!("{WEBHOOK_SECRET:?}")),
        ("stripe.timeout_secs", "2".to_owned()),
    ]
}

/// Lectern on the demo content, talking to `stripe`.
pub async fn app_with(stripe: &StripeServer, more: &[(&str, &str)]) -> TestApp {
    let settings = stripe_settings(stripe);
    let mut overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    overrides.extend_from_slice(more);
    spawn_app_on(demo_database().await, &overrides).await
}

/// A member who signed up and confirmed, logged in as `visitor`.
pub async fn member(app: &TestApp, visitor: &mut Visitor<'_>, email: &str) {
    let page = visitor
        .submit(
            "/signup",
            "/signup",
            &[("name", "Ada"), ("email", email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let link = app.last_link_to(email).await;
    assert_eq!(visitor.submit(&link, &link, &[]).await.status, 303);
}

/// The id of the Checkout Session a member was sent to.
pub fn session_id(checkout: &crate::visitor::Page) -> String {
    let location = checkout
        .location()
        .unwrap_or_else(|| panic!("{}: {}", checkout.status, checkout.body));
    location.rsplit('/').next().unwrap().to_owned()
}

/// Pushes the button for `plan` on /pricing; answers Lectern's response.
pub async fn check_out(visitor: &mut Visitor<'_>, plan: &str) -> crate::visitor::Page {
    visitor.submit("/pricing", "/checkout", &[("plan", plan)]).await
}

impl TestApp {
    /// Waits until every Stripe event recorded is handled.
    async fn events_handled(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let client = self.pool.get().await.unwrap();
            let left: i64 = client
                .query_one(
                    "SELECT count(*) FROM stripe_events WHERE processed_at IS NULL",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if left == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "{left} Stripe events still unhandled");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn deliver_all(&self, events: &[Value]) {
        for event in events {
            assert_eq!(
                deliver(&self.address, event, WEBHOOK_SECRET).await.as_u16(),
                200,
                "{event}"
            );
        }
        self.events_handled().await;
    }

    /// Runs the scheduled billing jobs whose period `now` is in.
    async fn run_billing_schedule(&self, now: time::OffsetDateTime) {
        use lectern_actors::billing::actor::RunSchedule;
        self.actors()
            .billing
            .send(RunSchedule(now))
            .await
            .unwrap()
            .unwrap();
    }

    pub(crate) async fn scalar(&self, sql: &str) -> i64 {
        self.pool
            .get()
            .await
            .unwrap()
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    async fn subscription_status(&self) -> Option<String> {
        self.pool
            .get()
            .await
            .unwrap()
            .query_opt(
                "SELECT status FROM subscriptions ORDER BY updated_at DESC LIMIT 1",
                &[],
            )
            .await
            .unwrap()
            .map(|row| row.get(0))
    }
}

/// The amount on the plan's card of the pricing page, as text.
fn shown_amount(pricing: &str, plan: &str) -> String {
    let card = pricing
        .split(&format!("data-plan=\"{plan}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no {plan} on the pricing page"));
    let start = card.find("data-amount>").unwrap() + "data-amount>".len();
    card[start..start + card[start..].find('<').unwrap()].to_owned()
}

/// "9.50 USD" in minor units.
fn minor_units(shown: &str) -> i64 {
    let number = shown.split_whitespace().next().unwrap().replace(',', "");
    let (whole, cents) = number.split_once('.').unwrap();
    whole.parse::<i64>().unwrap() * 100 + cents.parse::<i64>().unwrap()
}

#[actix_rt::test]
async fn pricing_shows_every_plan_to_everyone_and_a_checkout_form_to_members() {
    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let mut visitor = Visitor::new(&app);
    let page = visitor.get("/pricing").await;
    assert_eq!(page.status, 200);
    assert_eq!(shown_amount(&page.body, "monthly"), "19.00 USD");
    assert_eq!(shown_amount(&page.body, "yearly"), "190.00 USD");
    assert!(page.body.contains("Sign up to subscribe"));
    assert!(!page.body.contains("action=\"/checkout\""));

    member(&app, &mut visitor, "ada@example.org").await;
    let page = visitor.get("/pricing").await;
    assert!(page.body.contains("action=\"/checkout\""));
    // A visitor who is not logged in cannot check out.
    let anonymous = Visitor::new(&app)
        .post_with_token("/checkout", &[("plan", "monthly")])
        .await;
    assert_eq!(anonymous.status, 303);
    assert!(anonymous.location().unwrap().starts_with("/login"));
    assert!(stripe.requests_to("/v1/").is_empty(), "nothing reached Stripe");
}

#[actix_rt::test]
async fn for_every_country_and_plan_the_amount_shown_is_the_amount_checkout_charges() {
    let stripe = stripe().await;
    // Some sixty members sign up from this one address.
    let app = app_with(&stripe, &[("accounts.rate_limit.per_ip", "1000")]).await;
    let client = app.pool.get().await.unwrap();
    let mut countries: Vec<Option<String>> = client
        .query("SELECT country FROM region_discounts ORDER BY country", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| Some(row.get(0)))
        .collect();
    // Countries without a discount, and no country at all.
    countries.extend([Some("FR".to_owned()), Some("US".to_owned()), None]);
    for (n, country) in countries.iter().enumerate() {
        for plan in ["monthly", "yearly"] {
            let mut visitor = Visitor::new(&app);
            if let Some(country) = country {
                visitor.headers.push(("CF-IPCountry".into(), country.clone()));
            }
            member(&app, &mut visitor, &format!("payer{n}-{plan}@example.org")).await;
            let shown = minor_units(&shown_amount(&visitor.get("/pricing").await.body, plan));
            let checkout = check_out(&mut visitor, plan).await;
            assert_eq!(checkout.status, 303, "{country:?} {plan}: {}", checkout.body);
            let session = stripe
                .checkout_sessions()
                .into_iter()
                .find(|s| s["id"] == session_id(&checkout))
                .unwrap();
            assert_eq!(
                session["amount_total"].as_i64(),
                Some(shown),
                "{country:?} {plan}: Stripe charges what the page showed"
            );
        }
    }
}

#[actix_rt::test]
async fn a_paid_checkout_opens_premium_episodes_and_a_cancellation_closes_them() {
    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let mut visitor = Visitor::new(&app);
    member(&app, &mut visitor, "ada@example.org").await;
    let before = visitor.get(PREMIUM).await;
    assert!(!before.body.contains("<video"), "no video before paying");
    assert_eq!(visitor.me().await["subscriber"], false);

    let checkout = check_out(&mut visitor, "monthly").await;
    let session = session_id(&checkout);
    let request = &stripe.requests_to("/v1/checkout/sessions")[0];
    assert_eq!(request.param("mode"), Some("subscription"));
    assert_eq!(request.param("line_items[0][price]"), Some("price_monthly"));
    assert!(request.idempotency_key.is_some());

    let events = stripe.complete_checkout(&session, Outcome::Paid { card_country: "US" });
    app.deliver_all(&events).await;
    assert_eq!(app.subscription_status().await.as_deref(), Some("active"));
    assert_eq!(visitor.me().await["subscriber"], true);
    assert!(
        visitor.get(PREMIUM).await.body.contains("<video"),
        "the video once paid"
    );
    // Another visitor still gets the teaser.
    assert!(!Visitor::new(&app).get(PREMIUM).await.body.contains("<video"));
    let started = app.last_email_to("ada@example.org").await;
    assert_eq!(started.message, "subscription_started");

    let billing = visitor.get("/account/billing").await;
    assert!(
        billing.body.contains("data-status=\"active\""),
        "{}",
        billing.body
    );
    assert!(billing.body.contains("19.00 USD"), "{}", billing.body);

    // Cancelled in Stripe (the dashboard): access ends with the next request.
    let subscription = stripe.subscriptions()[0]["id"].as_str().unwrap().to_owned();
    let deleted = stripe.cancel_subscription(&subscription);
    app.deliver_all(&[deleted]).await;
    assert_eq!(app.subscription_status().await.as_deref(), Some("canceled"));
    assert!(!visitor.get(PREMIUM).await.body.contains("<video"));
    assert_eq!(visitor.me().await["subscriber"], false);
}

#[actix_rt::test]
async fn cancel_at_the_period_end_and_resume_from_the_billing_page() {
    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let mut visitor = Visitor::new(&app);
    member(&app, &mut visitor, "ada@example.org").await;
    let session = session_id(&check_out(&mut visitor, "yearly").await);
    app.deliver_all(&stripe.complete_checkout(&session, Outcome::Paid { card_country: "US" }))
        .await;

    let cancelled = visitor
        .submit("/account/billing", "/account/billing/cancel", &[])
        .await;
    assert_eq!(cancelled.location(), Some("/account/billing?notice=cancelled"));
    assert_eq!(stripe.subscriptions()[0]["cancel_at_period_end"], true);
    let page = visitor.get("/account/billing").await;
    assert!(page.body.contains("Resume the subscription"));
    assert!(
        visitor.get(PREMIUM).await.body.contains("<video"),
        "access until the period's end"
    );
    assert_eq!(
        app.last_email_to("ada@example.org").await.message,
        "cancellation_confirmed"
    );

    let resumed = visitor
        .submit("/account/billing", "/account/billing/resume", &[])
        .await;
    assert_eq!(resumed.location(), Some("/account/billing?notice=resumed"));
    assert_eq!(stripe.subscriptions()[0]["cancel_at_period_end"], false);

    let portal = visitor
        .submit("/account/billing", "/account/billing/portal", &[])
        .await;
    assert_eq!(portal.status, 303);
    assert_eq!(
        Some(portal.location().unwrap()),
        stripe.billing_portal_sessions()[0]["url"].as_str()
    );
}

#[actix_rt::test]
async fn bad_and_stale_signatures_get_400_and_change_nothing() {
    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let event = stripe.event(
        "invoice.paid",
        serde_json::json!({ "id": "in_x", "object": "invoice" }),
    );
    let payload = event.to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for signature in [
        sign(&payload, "whsec_someone_else", now),
        // Well past the 300 s tolerance either way, however long the request
        // takes to arrive (the boundary itself is unit-tested at a fixed time).
        sign(&payload, WEBHOOK_SECRET, now - 600),
        sign(&payload, WEBHOOK_SECRET, now + 600),
        "t=1,v1=00".to_owned(),
        String::new(),
    ] {
        assert_eq!(
            post_webhook(&app.address, &payload, &signature).await.as_u16(),
            400,
            "{signature}"
        );
    }
    let tampered = payload.replace("in_x", "in_y");
    assert_eq!(
        post_webhook(&app.address, &tampered, &sign(&payload, WEBHOOK_SECRET, now))
            .await
            .as_u16(),
        400
    );
    assert_eq!(app.scalar("SELECT count(*) FROM stripe_events").await, 0);
    // Two secrets while rotating: the new one works too.
    let app = app_with(&stripe, &[("stripe.webhook_secret", "\"whsec_old, whsec_new\"")]).await;
    assert_eq!(
        post_webhook(&app.address, &payload, &sign(&payload, "whsec_new", now))
            .await
            .as_u16(),
        200
    );
}

#[actix_rt::test]
async fn one_event_delivered_twenty_times_at_once_has_one_effect() {
    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let mut visitor = Visitor::new(&app);
    member(&app, &mut visitor, "ada@example.org").await;
    let session = session_id(&check_out(&mut visitor, "monthly").await);
    let events = stripe.complete_checkout(&session, Outcome::Paid { card_country: "US" });
    for event in &events {
        let copies = (0..20).map(|_| deliver(&app.address, event, WEBHOOK_SECRET));
        let statuses = futures_util::future::join_all(copies).await;
        assert!(statuses.iter().all(|s| s.as_u16() == 200), "{statuses:?}");
    }
    app.events_handled().await;
    assert_eq!(
        app.scalar("SELECT count(*) FROM stripe_events").await,
        events.len() as i64
    );
    assert_eq!(app.scalar("SELECT count(*) FROM subscriptions").await, 1);
    assert_eq!(
        app.scalar("SELECT count(*) FROM email_outbox WHERE message = 'subscription_started'")
            .await,
        1
    );
    assert_eq!(app.scalar("SELECT count(*) FROM payments").await, 1);
}

#[actix_rt::test]
async fn events_out_of_order_still_end_in_the_right_state() {
    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let mut visitor = Visitor::new(&app);
    member(&app, &mut visitor, "ada@example.org").await;
    let session = session_id(&check_out(&mut visitor, "monthly").await);
    let mut events = stripe.complete_checkout(&session, Outcome::Paid { card_country: "US" });
    // The subscription's events before the checkout's: no row is missing.
    events.reverse();
    app.deliver_all(&events).await;
    assert_eq!(app.subscription_status().await.as_deref(), Some("active"));
    let subscription = stripe.subscriptions()[0]["id"].as_str().unwrap().to_owned();
    let updated = stripe.set_subscription_status(&subscription, "past_due");
    let deleted = stripe.cancel_subscription(&subscription);
    // Deleted first, then the older update.
    app.deliver_all(&[deleted, updated]).await;
    assert_eq!(app.subscription_status().await.as_deref(), Some("canceled"));
    assert_eq!(visitor.me().await["subscriber"], false);
}

#[actix_rt::test]
async fn stripe_failing_once_is_retried_with_the_same_key_and_charges_once() {
    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let mut visitor = Visitor::new(&app);
    member(&app, &mut visitor, "ada@example.org").await;
    stripe.fail_next("/v1/customers", Fault::ServerError, 1);
    stripe.fail_next("/v1/checkout/sessions", Fault::RateLimited, 1);
    let checkout = check_out(&mut visitor, "monthly").await;
    assert_eq!(checkout.status, 303, "{}", checkout.body);
    for path in ["/v1/customers", "/v1/checkout/sessions"] {
        let requests = stripe.requests_to(path);
        assert_eq!(requests.len(), 2, "{path}");
        assert_eq!(requests[0].idempotency_key, requests[1].idempotency_key, "{path}");
    }
    assert_eq!(stripe.customers().len(), 1);
    assert_eq!(stripe.checkout_sessions().len(), 1);
}

#[actix_rt::test]
async fn stripe_down_shows_try_again_with_nothing_charged_and_pages_keep_their_speed() {
    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let mut visitor = Visitor::new(&app);
    member(&app, &mut visitor, "ada@example.org").await;
    stripe.fail_next("/v1/customers", Fault::ServerError, 3);
    let refused = check_out(&mut visitor, "monthly").await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.body.contains("Nothing was charged"));
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(app.scalar("SELECT count(*) FROM billing_customers").await, 0);
    assert_eq!(app.scalar("SELECT count(*) FROM checkouts").await, 0);

    // Stripe hangs: the member is answered within the client's timeouts,
    // and pages are served meanwhile.
    // No stopwatch: the page must be answered while the checkout still
    // waits for Stripe (three attempts of 2 s each), however slow the machine.
    stripe.fail_next("/v1/customers", Fault::Hang, 3);
    let checkout_answered = std::cell::Cell::new(false);
    let slow = async {
        let page = check_out(&mut visitor, "monthly").await;
        checkout_answered.set(true);
        page
    };
    let page = async {
        let home = Visitor::new(&app).get("/").await;
        (home.status, checkout_answered.get())
    };
    let (refused, (home, checkout_first)) = tokio::join!(slow, page);
    assert_eq!(refused.status, 503);
    assert_eq!(home, 200);
    assert!(!checkout_first, "a page waited for Stripe");

    // Once Stripe is back, the same checkout goes through, with one customer.
    let checkout = check_out(&mut visitor, "monthly").await;
    assert_eq!(checkout.status, 303, "{}", checkout.body);
    assert_eq!(stripe.customers().len(), 1);
}

#[actix_rt::test]
async fn two_checkouts_at_once_make_one_customer() {
    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let mut visitor = Visitor::new(&app);
    member(&app, &mut visitor, "ada@example.org").await;
    let pricing = visitor.get("/pricing").await;
    let token = pricing.csrf_token();
    let mut tabs: Vec<Visitor> = (0..2)
        .map(|_| {
            let mut tab = Visitor::new(&app);
            tab.cookies = visitor.cookies.clone();
            tab
        })
        .collect();
    let answers =
        futures_util::future::join_all(tabs.iter_mut().zip(["monthly", "yearly"]).map(|(tab, plan)| {
            let token = token.clone();
            async move {
                tab.post("/checkout", &[("plan", plan), ("csrf_token", &token)])
                    .await
            }
        }))
        .await;
    assert!(
        answers.iter().all(|a| a.status == 303),
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_eq!(stripe.customers().len(), 1);
    assert_eq!(app.scalar("SELECT count(*) FROM billing_customers").await, 1);
}

#[actix_rt::test]
async fn a_failed_first_payment_does_not_block_a_second_checkout() {
    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let mut visitor = Visitor::new(&app);
    member(&app, &mut visitor, "ada@example.org").await;
    let first = session_id(&check_out(&mut visitor, "monthly").await);
    app.deliver_all(&stripe.complete_checkout(&first, Outcome::PaymentFailed))
        .await;
    assert_eq!(app.subscription_status().await.as_deref(), Some("incomplete"));
    assert_eq!(visitor.me().await["subscriber"], false);

    let pricing = visitor.get("/pricing").await;
    assert!(pricing.body.contains("action=\"/checkout\""), "{}", pricing.body);
    let second = check_out(&mut visitor, "yearly").await;
    assert_eq!(second.status, 303, "{}", second.body);
    let session = session_id(&second);
    app.deliver_all(&stripe.complete_checkout(&session, Outcome::Paid { card_country: "US" }))
        .await;
    assert_eq!(visitor.me().await["subscriber"], true);
    // Already subscribed: the page offers no checkout, and a forced one is turned away.
    assert!(!visitor
        .get("/pricing")
        .await
        .body
        .contains("action=\"/checkout\""));
    let third = visitor.post_with_token("/checkout", &[("plan", "monthly")]).await;
    assert_eq!(third.location(), Some("/account/billing?notice=already"));
}

#[actix_rt::test]
async fn a_payment_failure_is_mailed_and_access_lasts_the_grace_period() {
    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let mut visitor = Visitor::new(&app);
    member(&app, &mut visitor, "ada@example.org").await;
    let session = session_id(&check_out(&mut visitor, "monthly").await);
    app.deliver_all(&stripe.complete_checkout(&session, Outcome::Paid { card_country: "US" }))
        .await;
    let subscription = stripe.subscriptions()[0]["id"].as_str().unwrap().to_owned();
    app.deliver_all(&stripe.renew_subscription(&subscription, Outcome::PaymentFailed))
        .await;
    assert_eq!(app.subscription_status().await.as_deref(), Some("past_due"));
    assert_eq!(visitor.me().await["subscriber"], true, "within the grace period");
    let mail = app.last_email_to("ada@example.org").await;
    assert_eq!(mail.message, "payment_failed");
    assert!(mail.data["billing_url"]
        .as_str()
        .unwrap()
        .ends_with("/account/billing"));
    // Past the grace period, the access ends.
    app.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE subscriptions SET current_period_end = now() - interval '8 days'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(visitor.me().await["subscriber"], false);
}

#[actix_rt::test]
async fn a_card_from_another_country_than_quoted_is_flagged_not_blocked() {
    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let mut visitor = Visitor::new(&app);
    visitor.headers.push(("CF-IPCountry".into(), "IN".into()));
    member(&app, &mut visitor, "ada@example.org").await;
    let session = session_id(&check_out(&mut visitor, "monthly").await);
    app.deliver_all(&stripe.complete_checkout(&session, Outcome::Paid { card_country: "DE" }))
        .await;
    assert_eq!(visitor.me().await["subscriber"], true);
    let client = app.pool.get().await.unwrap();
    let flag: String = client
        .query_one(
            "SELECT detail FROM member_flags WHERE kind = 'card_country_mismatch'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(flag, "quoted for IN, card from DE");
}

/// A member who subscribed, logged in as `visitor`, whose subscription was
/// then cancelled in Stripe without the webhook arriving; its id.
async fn drifted_subscriber(app: &TestApp, stripe: &StripeServer, visitor: &mut Visitor<'_>) -> String {
    member(app, visitor, "ada@example.org").await;
    let session = session_id(&check_out(visitor, "monthly").await);
    app.deliver_all(&stripe.complete_checkout(&session, Outcome::Paid { card_country: "US" }))
        .await;
    let subscription = stripe.subscriptions()[0]["id"].as_str().unwrap().to_owned();
    let _ = stripe.cancel_subscription(&subscription);
    subscription
}

#[actix_rt::test]
async fn reconciliation_fixes_a_subscription_cancelled_in_stripe_and_says_so() {
    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let mut visitor = Visitor::new(&app);
    let subscription = drifted_subscriber(&app, &stripe, &mut visitor).await;
    assert_eq!(visitor.me().await["subscriber"], true, "drifted");

    let data = tempfile::tempdir().unwrap();
    let output = lectern_command(data.path())
        .env("DATABASE_URL", crate::helpers::conninfo(&app.database))
        .env("LECTERN__STRIPE__API_BASE", stripe.api_base())
        .env("LECTERN__STRIPE__SECRET_KEY", KEY)
        .args(["billing", "reconcile"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("fixed: {subscription}: status active → canceled")),
        "{stdout}"
    );
    assert_eq!(visitor.me().await["subscriber"], false, "fixed");
}

#[actix_rt::test]
async fn scheduled_reconciliation_that_fixes_drift_alerts_the_operator() {
    let stripe = stripe().await;
    let app = app_with(&stripe, &[("alerts.email", "\"ops@example.com\"")]).await;
    let subscription = drifted_subscriber(&app, &stripe, &mut Visitor::new(&app)).await;

    app.run_billing_schedule(time::OffsetDateTime::now_utc() + time::Duration::days(365))
        .await;
    let alert = crate::helpers::wait_for(Duration::from_secs(10), "a drift alert", || async {
        app.outbox()
            .await
            .into_iter()
            .find(|e| e.message == "alert" && e.recipient == "ops@example.com")
    })
    .await;
    assert_eq!(alert.data["condition"], "billing_drift");
    assert_eq!(
        alert.data["summary"],
        "Billing reconciliation: 1 subscription(s) checked, 1 fixed, 0 problem(s)."
    );
    let detail = alert.data["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("fixed: {subscription}: status active → canceled")),
        "{detail}"
    );
}

#[actix_rt::test]
async fn scheduled_reconciliation_runs_on_one_node_per_period() {
    let stripe = stripe().await;
    let first = app_with(&stripe, &[]).await;
    let settings = stripe_settings(&stripe);
    let overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let second = spawn_app_on(first.database.clone(), &overrides).await;
    let now = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    for app in [&first, &second] {
        app.run_billing_schedule(now).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while first
        .scalar("SELECT count(*) FROM job_runs WHERE job = 'billing.reconcile' AND finished_at IS NOT NULL")
        .await
        == 0
    {
        assert!(Instant::now() < deadline, "no reconciliation finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        first
            .scalar("SELECT count(*) FROM job_runs WHERE job = 'billing.reconcile'")
            .await,
        1
    );
}

#[actix_rt::test]
async fn a_reconciliation_cut_short_by_a_dead_node_is_run_by_another_in_the_same_period() {
    use lectern_actors::billing::actor::RunSchedule;

    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let mut visitor = Visitor::new(&app);
    drifted_subscriber(&app, &stripe, &mut visitor).await;
    assert_eq!(visitor.me().await["subscriber"], true, "drifted");

    // What a node SIGKILLed while reconciling leaves: the period claimed,
    // never finished. The period is the 3-hour one (billing's default)
    // that `now` falls in, counted from the epoch as every node counts it.
    let now = time::OffsetDateTime::now_utc();
    let every = 3 * 3600;
    let period = time::OffsetDateTime::from_unix_timestamp(
        now.unix_timestamp() - now.unix_timestamp().rem_euclid(every),
    )
    .unwrap();
    app.pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO job_runs (job, period, node) VALUES ('billing.reconcile', $1, 'gone:1')",
            &[&period],
        )
        .await
        .unwrap();

    app.actors()
        .billing
        .send(RunSchedule(now))
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app
        .scalar("SELECT count(*) FROM job_runs WHERE job = 'billing.reconcile' AND finished_at IS NOT NULL")
        .await
        == 0
    {
        assert!(Instant::now() < deadline, "the period's reconciliation never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(visitor.me().await["subscriber"], false, "fixed");
}

#[actix_rt::test]
async fn a_grant_opens_premium_episodes_and_its_end_is_announced_a_week_ahead() {
    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let mut visitor = Visitor::new(&app);
    member(&app, &mut visitor, "ada@example.org").await;
    let data = tempfile::tempdir().unwrap();
    let grant = |months: &str| {
        lectern_command(data.path())
            .env("DATABASE_URL", crate::helpers::conninfo(&app.database))
            .args(["billing", "grant", "ada@example.org", "--months", months])
            .args(["--source", "paypal", "--note", "PayPal 7XK12"])
            .output()
            .unwrap()
    };
    let output = grant("3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("has premium access (paypal, 3 months)"));
    assert!(visitor.get(PREMIUM).await.body.contains("<video"));
    for bad in ["0", "121", "x"] {
        assert_eq!(grant(bad).status.code(), Some(2), "--months {bad}");
    }

    app.pool
        .get()
        .await
        .unwrap()
        .execute("UPDATE grants SET expires_at = now() + interval '6 days'", &[])
        .await
        .unwrap();
    use lectern_actors::billing::actor::RunSchedule;
    app.actors()
        .billing
        .send(RunSchedule(time::OffsetDateTime::now_utc()))
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app
        .scalar("SELECT count(*) FROM email_outbox WHERE message = 'grant_expiring'")
        .await
        == 0
    {
        assert!(Instant::now() < deadline, "no reminder");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE grants SET starts_at = now() - interval '3 months', expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    assert!(!visitor.get(PREMIUM).await.body.contains("<video"), "expired");
}

#[actix_rt::test]
async fn without_a_stripe_key_pricing_says_subscriptions_are_not_open() {
    let app = spawn_app_on(demo_database().await, &[]).await;
    let mut visitor = Visitor::new(&app);
    let page = visitor.get("/pricing").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Subscriptions are not open yet"));
    member(&app, &mut visitor, "ada@example.org").await;
    let refused = visitor.post_with_token("/checkout", &[("plan", "monthly")]).await;
    assert_eq!(refused.status, 503);
    assert!(refused.body.contains("does not take payments yet"));
}
