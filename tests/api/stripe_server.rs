//! The fake Stripe of `helpers/stripe.rs`, checked against what Stripe does
//! before Lectern's billing tests rely on it: idempotent replays and the
//! faults that are not remembered, totals with a coupon, refusals in
//! Stripe's error shape, Checkout's outcomes, dashboard changes, renewals,
//! refunds, and events signed as Stripe signs them.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::stripe::{self, Fault, Outcome, StripeServer};

const SECRET_KEY: &str = "sk_test_lectern";
/// Form parameters, in order.
type Form = &'static [(&'static str, &'static str)];

const SUCCESS_URL: &str = "https://lectern.test/billing/welcome?session={CHECKOUT_SESSION_ID}";

/// An answer of the fake, read as Lectern's client reads Stripe's.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: Value,
    replayed: bool,
}

/// Talks to the fake as Lectern's billing code talks to Stripe: bearer key,
/// form-encoded parameters, an idempotency key on every POST.
struct StripeClient {
    api_base: String,
    http: reqwest::Client,
}

impl StripeClient {
    fn new(server: &StripeServer) -> StripeClient {
        StripeClient {
            api_base: server.api_base().to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.unwrap();
        Reply {
            status: response.status(),
            replayed: response
                .headers()
                .get("idempotent-replayed")
                .is_some_and(|v| v == "true"),
            body: response.json().await.unwrap(),
        }
    }

    async fn post(&self, path: &str, idempotency_key: &str, form: &[(&str, &str)]) -> Reply {
        let url = format!("{}{path}", self.api_base);
        let request = self.http.post(url).bearer_auth(SECRET_KEY);
        StripeClient::send(request.header("Idempotency-Key", idempotency_key).form(form)).await
    }

    async fn get(&self, path: &str) -> Reply {
        let url = format!("{}{path}", self.api_base);
        StripeClient::send(self.http.get(url).bearer_auth(SECRET_KEY)).await
    }

    async fn create_customer(&self, email: &str) -> String {
        let reply = self
            .post(
                "/v1/customers",
                &format!("customer-{email}"),
                &[("email", email), ("name", "Ada"), ("metadata[user_id]", "42")],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    async fn create_session(&self, idempotency_key: &str, customer: &str, extra: &[(&str, &str)]) -> Reply {
        let mut form = vec![
            ("mode", "subscription"),
            ("customer", customer),
            ("line_items[0][price]", "price_monthly"),
            ("line_items[0][quantity]", "1"),
            ("success_url", SUCCESS_URL),
            ("cancel_url", "https://lectern.test/pricing"),
            ("client_reference_id", "42"),
            ("metadata[user_id]", "42"),
            ("subscription_data[metadata][user_id]", "42"),
        ];
        form.extend_from_slice(extra);
        self.post("/v1/checkout/sessions", idempotency_key, &form).await
    }
}

/// A fake Stripe with a monthly price of $19.99 and a 50% coupon.
async fn stripe_with_prices() -> (StripeServer, StripeClient) {
    let server = StripeServer::start(SECRET_KEY).await;
    server.add_price("price_monthly", 1999, "usd", "month");
    server.add_coupon("ppp_50", 50);
    let client = StripeClient::new(&server);
    (server, client)
}

/// A customer who paid for the monthly price with a card from `card_country`.
async fn paying_subscriber(
    server: &StripeServer,
    client: &StripeClient,
    card_country: &str,
) -> (String, Vec<Value>) {
    let customer = client.create_customer("ada@example.com").await;
    let session = client.create_session("session-1", &customer, &[]).await.body;
    let session_id = session["id"].as_str().unwrap();
    let events = server.complete_checkout(session_id, Outcome::Paid { card_country });
    let subscription = events[0]["data"]["object"]["id"].as_str().unwrap().to_owned();
    (subscription, events)
}

fn error_of(reply: &Reply) -> (&str, &str) {
    let error = &reply.body["error"];
    (
        error["type"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error: {:#}", reply.body)),
        error["code"].as_str().unwrap_or(""),
    )
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[actix_rt::test]
async fn an_idempotent_replay_answers_as_the_first_time_and_creates_nothing() {
    let (server, client) = stripe_with_prices().await;
    let form = [
        ("email", "ada@example.com"),
        ("name", "Ada"),
        ("metadata[user_id]", "42"),
    ];

    let first = client.post("/v1/customers", "key-1", &form).await;
    let again = client.post("/v1/customers", "key-1", &form).await;

    assert_eq!(first.status, StatusCode::OK);
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    assert!(again.replayed && !first.replayed);
    assert_eq!(server.customers().len(), 1);
    let customer = &first.body;
    assert_eq!(customer["object"], "customer");
    assert_eq!(customer["email"], "ada@example.com");
    assert_eq!(customer["metadata"], json!({ "user_id": "42" }));
    let id = customer["id"].as_str().unwrap();
    assert!(id.starts_with("cus_"), "{id}");
    assert_eq!(client.get(&format!("/v1/customers/{id}")).await.body, *customer);

    let session = client.create_session("key-2", id, &[]).await;
    let session_again = client.create_session("key-2", id, &[]).await;
    assert_eq!(session.status, StatusCode::OK, "{:#}", session.body);
    assert_eq!(session_again.body["id"], session.body["id"]);
    assert_eq!(server.checkout_sessions().len(), 1);
    let recorded = server.requests_to("/v1/checkout/sessions");
    assert_eq!(recorded.len(), 2);
    assert!(recorded
        .iter()
        .all(|r| r.idempotency_key.as_deref() == Some("key-2")));
    assert_eq!(recorded[0].param("line_items[0][price]"), Some("price_monthly"));
    assert_eq!(
        recorded[0].param("subscription_data[metadata][user_id]"),
        Some("42")
    );
    let requests = server.requests();
    assert_eq!(
        requests.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(),
        ["POST", "POST", "GET", "POST", "POST"]
    );
    assert!(requests.windows(2).all(|pair| pair[0].at <= pair[1].at));
}

#[actix_rt::test]
async fn a_used_key_with_other_parameters_or_for_another_endpoint_is_refused() {
    let (server, client) = stripe_with_prices().await;
    client
        .post("/v1/customers", "key-1", &[("email", "ada@example.com")])
        .await;

    let other_parameters = client
        .post("/v1/customers", "key-1", &[("email", "bob@example.com")])
        .await;
    let other_endpoint = client
        .post("/v1/billing_portal/sessions", "key-1", &[("customer", "cus_x")])
        .await;

    for reply in [&other_parameters, &other_endpoint] {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(error_of(reply).0, "idempotency_error", "{:#}", reply.body);
    }
    assert_eq!(server.customers().len(), 1);
    // The same parameters in another order are the same request.
    let reordered = client
        .post(
            "/v1/customers",
            "key-2",
            &[("name", "Bob"), ("email", "bob@example.com")],
        )
        .await;
    let reordered_again = client
        .post(
            "/v1/customers",
            "key-2",
            &[("email", "bob@example.com"), ("name", "Bob")],
        )
        .await;
    assert!(reordered_again.replayed);
    assert_eq!(reordered_again.body, reordered.body);
}

#[actix_rt::test]
async fn an_injected_server_error_is_not_remembered_against_its_key() {
    let (server, client) = stripe_with_prices().await;
    let customer = client.create_customer("ada@example.com").await;
    server.fail_next("/v1/checkout/sessions", Fault::ServerError, 1);

    let failed = client.create_session("key-1", &customer, &[]).await;
    let retried = client.create_session("key-1", &customer, &[]).await;
    let replayed = client.create_session("key-1", &customer, &[]).await;

    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error_of(&failed).0, "api_error");
    assert_eq!(retried.status, StatusCode::OK);
    assert!(!retried.replayed && replayed.replayed);
    assert_eq!(replayed.body["id"], retried.body["id"]);
    assert_eq!(server.checkout_sessions().len(), 1);
    assert_eq!(server.requests_to("/v1/checkout/sessions").len(), 3);
}

#[actix_rt::test]
async fn rate_limits_and_hangs_are_injected_for_as_many_requests_as_asked() {
    let (server, client) = stripe_with_prices().await;
    server.fail_next("/v1/customers", Fault::RateLimited, 2);

    let limited = client
        .post("/v1/customers", "key-1", &[("email", "a@example.com")])
        .await;
    let limited_again = client
        .post("/v1/customers", "key-1", &[("email", "a@example.com")])
        .await;
    let created = client
        .post("/v1/customers", "key-1", &[("email", "a@example.com")])
        .await;

    for reply in [&limited, &limited_again] {
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(error_of(reply), ("invalid_request_error", "rate_limit"));
    }
    assert_eq!(created.status, StatusCode::OK);
    assert_eq!(server.customers().len(), 1);

    server.fail_next("/v1/prices", Fault::Hang, 1);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let hung = impatient
        .get(format!("{}/v1/prices/price_monthly", server.api_base()))
        .bearer_auth(SECRET_KEY)
        .send()
        .await;
    assert!(hung.is_err_and(|e| e.is_timeout()));
    assert_eq!(
        client.get("/v1/prices/price_monthly").await.status,
        StatusCode::OK
    );
    // Dropping the server ends the hanging answer too, or this test would last a minute.
}

#[actix_rt::test]
async fn checkout_totals_take_the_coupon_off_rounded_half_away_from_zero() {
    let (server, client) = stripe_with_prices().await;
    server.add_price("price_yearly", 1900, "eur", "year");
    server.add_coupon("ppp_25_5", 25.5);
    server.add_coupon("ppp_33", 33);
    let customer = client.create_customer("ada@example.com").await;

    let cases = [
        ("price_monthly", None, 1999, 1999),
        // 999.5 off rounds to 1000.
        ("price_monthly", Some("ppp_50"), 1999, 999),
        // 484.5 off rounds to 485.
        ("price_yearly", Some("ppp_25_5"), 1900, 1415),
        // 627 off.
        ("price_yearly", Some("ppp_33"), 1900, 1273),
    ];
    for (index, (price, coupon, subtotal, total)) in cases.into_iter().enumerate() {
        let mut form = vec![
            ("mode", "subscription"),
            ("customer", customer.as_str()),
            ("line_items[0][price]", price),
            ("line_items[0][quantity]", "1"),
            ("success_url", SUCCESS_URL),
        ];
        form.extend(coupon.map(|c| ("discounts[0][coupon]", c)));
        let session = client
            .post("/v1/checkout/sessions", &format!("key-{index}"), &form)
            .await;
        assert_eq!(session.status, StatusCode::OK, "{:#}", session.body);
        let session = session.body;
        assert_eq!(
            (
                session["amount_subtotal"].as_i64(),
                session["amount_total"].as_i64()
            ),
            (Some(subtotal), Some(total)),
            "{price} with {coupon:?}"
        );
        assert_eq!(session["total_details"]["amount_discount"], subtotal - total);
    }

    let session = client
        .create_session("key-all", &customer, &[("discounts[0][coupon]", "ppp_50")])
        .await
        .body;
    let id = session["id"].as_str().unwrap();
    assert!(id.starts_with("cs_test_"), "{id}");
    assert_eq!(session["object"], "checkout.session");
    assert_eq!(session["url"], format!("{}/c/pay/{id}", server.api_base()));
    assert_eq!(session["status"], "open");
    assert_eq!(session["mode"], "subscription");
    assert_eq!(session["customer"], customer);
    assert_eq!(session["currency"], "usd");
    assert_eq!(session["metadata"], json!({ "user_id": "42" }));
    assert_eq!(session["client_reference_id"], "42");
    assert_eq!(session["success_url"], SUCCESS_URL);
    assert_eq!(session["discounts"][0]["coupon"], "ppp_50");
    assert_eq!(
        client.get(&format!("/v1/checkout/sessions/{id}")).await.body,
        session
    );
}

#[actix_rt::test]
async fn what_stripe_refuses_is_refused_in_its_error_shape_and_not_remembered() {
    let (server, client) = stripe_with_prices().await;
    let customer = client.create_customer("ada@example.com").await;

    // The parameters changed from a good request, the error code, its `param`.
    let cases: [(Form, &str, &str); 7] = [
        (
            &[("line_items[0][price]", "price_gone")],
            "resource_missing",
            "line_items[0][price]",
        ),
        (
            &[("discounts[0][coupon]", "nope")],
            "resource_missing",
            "discounts[0][coupon]",
        ),
        (&[("customer", "cus_gone")], "resource_missing", "customer"),
        (
            &[("line_items[0][prices]", "x")],
            "parameter_unknown",
            "line_items[0][prices]",
        ),
        (
            &[("success_url", "/billing/welcome")],
            "url_invalid",
            "success_url",
        ),
        (
            &[("line_items[0][quantity]", "one")],
            "parameter_invalid_integer",
            "line_items[0][quantity]",
        ),
        (
            &[
                ("allow_promotion_codes", "true"),
                ("discounts[0][coupon]", "ppp_50"),
            ],
            "parameters_exclusive",
            "allow_promotion_codes",
        ),
    ];
    for (changes, code, param) in cases {
        let reply = client.create_session("key-1", &customer, changes).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{changes:?}: {:#}",
            reply.body
        );
        let error = &reply.body["error"];
        assert_eq!(
            (error["type"].as_str(), error["code"].as_str()),
            (Some("invalid_request_error"), Some(code))
        );
        assert_eq!(error["param"], param, "{:#}", reply.body);
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let missing = client
        .post(
            "/v1/checkout/sessions",
            "key-1",
            &[("mode", "subscription"), ("customer", &customer)],
        )
        .await;
    assert_eq!(error_of(&missing), ("invalid_request_error", "parameter_missing"));
    // Refused before running: the key still makes a session.
    assert_eq!(
        client.create_session("key-1", &customer, &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(server.checkout_sessions().len(), 1);

    let unknown = client.get("/v1/subscriptions/sub_gone").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&unknown), ("invalid_request_error", "resource_missing"));
    assert_eq!(
        client.get("/v1/customers/cus_gone").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        client.get("/v1/prices/price_gone").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(client.get("/v1/coupons/gone").await.status, StatusCode::NOT_FOUND);
    assert_eq!(client.get("/v1/invoices").await.status, StatusCode::NOT_FOUND);

    let http = reqwest::Client::new();
    let url = format!("{}/v1/customers/{customer}", server.api_base());
    let anonymous = StripeClient::send(http.get(&url)).await;
    let wrong_key = StripeClient::send(http.get(&url).bearer_auth("sk_test_other")).await;
    for reply in [&anonymous, &wrong_key] {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(error_of(reply).0, "invalid_request_error");
    }
    let json_body = http
        .post(format!("{}/v1/customers", server.api_base()))
        .bearer_auth(SECRET_KEY)
        .json(&json!({ "email": "ada@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), StatusCode::BAD_REQUEST);
}

#[actix_rt::test]
async fn a_paid_checkout_makes_an_active_subscription_and_the_events_stripe_sends() {
    let (server, client) = stripe_with_prices().await;
    let customer = client.create_customer("ada@example.com").await;
    let session = client
        .create_session("session-1", &customer, &[("discounts[0][coupon]", "ppp_50")])
        .await
        .body;
    let session_id = session["id"].as_str().unwrap();

    let events = server.complete_checkout(session_id, Outcome::Paid { card_country: "IN" });

    assert_eq!(
        kinds(&events),
        [
            "customer.subscription.created",
            "checkout.session.completed",
            "invoice.paid"
        ]
    );
    for event in &events {
        assert!(event["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(event["object"], "event");
        assert_eq!(event["api_version"], stripe::API_VERSION);
        assert_eq!(event["livemode"], false);
        assert!(event["created"].as_i64().unwrap() > 1_700_000_000);
    }
    assert_eq!(server.events(), events);
    let subscription_id = events[0]["data"]["object"]["id"].as_str().unwrap();
    let session = client
        .get(&format!("/v1/checkout/sessions/{session_id}"))
        .await
        .body;
    assert_eq!(session["status"], "complete");
    assert_eq!(session["subscription"], subscription_id);
    assert_eq!(events[1]["data"]["object"], session);
    assert_eq!(
        server.success_url(session_id),
        format!("https://lectern.test/billing/welcome?session={session_id}")
    );

    let subscription = client
        .get(&format!("/v1/subscriptions/{subscription_id}"))
        .await
        .body;
    assert_eq!(subscription["object"], "subscription");
    assert_eq!(subscription["status"], "active");
    assert_eq!(subscription["customer"], customer);
    assert_eq!(subscription["cancel_at_period_end"], false);
    assert_eq!(subscription["metadata"], json!({ "user_id": "42" }));
    let item = &subscription["items"]["data"][0];
    assert_eq!(item["price"]["id"], "price_monthly");
    assert_eq!(item["price"]["unit_amount"], 1999);
    assert_eq!(item["current_period_end"], subscription["current_period_end"]);
    let period =
        subscription["current_period_end"].as_i64().unwrap() - subscription["created"].as_i64().unwrap();
    assert!(
        (28 * 86_400..=31 * 86_400).contains(&period),
        "a month ahead: {period} s"
    );
    let payment_method = subscription["default_payment_method"].as_str().unwrap();
    assert!(payment_method.starts_with("pm_"));
    let expanded = client
        .get(&format!(
            "/v1/subscriptions/{subscription_id}?expand[]=default_payment_method"
        ))
        .await
        .body;
    assert_eq!(expanded["default_payment_method"]["id"], payment_method);
    assert_eq!(expanded["default_payment_method"]["card"]["country"], "IN");

    let invoice = &events[2]["data"]["object"];
    assert_eq!(invoice["object"], "invoice");
    assert_eq!(invoice["customer"], customer);
    assert_eq!(invoice["subscription"], subscription_id);
    assert_eq!(
        invoice["parent"]["subscription_details"]["subscription"],
        subscription_id
    );
    assert_eq!(invoice["amount_paid"], 999);
    assert_eq!(invoice["status"], "paid");
    assert_eq!(subscription["latest_invoice"], invoice["id"]);
}

#[actix_rt::test]
async fn a_declined_card_leaves_the_subscription_incomplete_and_checkout_open_for_another_try() {
    let (server, client) = stripe_with_prices().await;
    let customer = client.create_customer("ada@example.com").await;
    let session = client.create_session("session-1", &customer, &[]).await.body;
    let session_id = session["id"].as_str().unwrap();

    let declined = server.complete_checkout(session_id, Outcome::PaymentFailed);

    assert_eq!(
        kinds(&declined),
        ["customer.subscription.created", "invoice.payment_failed"]
    );
    assert_eq!(declined[0]["data"]["object"]["status"], "incomplete");
    assert_eq!(declined[1]["data"]["object"]["amount_paid"], 0);
    let subscription_id = declined[0]["data"]["object"]["id"].as_str().unwrap();
    let session = client
        .get(&format!("/v1/checkout/sessions/{session_id}"))
        .await
        .body;
    assert_eq!(
        (&session["status"], &session["subscription"]),
        (&json!("open"), &Value::Null)
    );

    let paid = server.complete_checkout(session_id, Outcome::Paid { card_country: "US" });

    assert_eq!(
        kinds(&paid),
        [
            "customer.subscription.updated",
            "checkout.session.completed",
            "invoice.paid"
        ]
    );
    assert_eq!(paid[0]["data"]["previous_attributes"]["status"], "incomplete");
    assert_eq!(paid[2]["data"]["object"]["amount_paid"], 1999);
    assert_eq!(server.subscriptions().len(), 1);
    let subscription = client
        .get(&format!("/v1/subscriptions/{subscription_id}"))
        .await
        .body;
    assert_eq!(subscription["status"], "active");
}

#[actix_rt::test]
async fn cancellations_and_status_changes_from_lectern_and_from_the_dashboard() {
    let (server, client) = stripe_with_prices().await;
    let (subscription, _) = paying_subscriber(&server, &client, "DE").await;
    let path = format!("/v1/subscriptions/{subscription}");

    let cancelled = client
        .post(&path, "cancel-1", &[("cancel_at_period_end", "true")])
        .await
        .body;

    assert_eq!(cancelled["cancel_at_period_end"], true);
    assert_eq!(cancelled["cancel_at"], cancelled["current_period_end"]);
    assert_eq!(cancelled["status"], "active");
    let update = server.events().pop().unwrap();
    assert_eq!(update["type"], "customer.subscription.updated");
    assert_eq!(
        update["data"]["previous_attributes"]["cancel_at_period_end"],
        false
    );
    assert_eq!(update["request"]["idempotency_key"], "cancel-1");
    let resumed = client
        .post(&path, "resume-1", &[("cancel_at_period_end", "false")])
        .await
        .body;
    assert_eq!(
        (&resumed["cancel_at_period_end"], &resumed["cancel_at"]),
        (&json!(false), &Value::Null)
    );

    let past_due = server.set_subscription_status(&subscription, "past_due");
    assert_eq!(past_due["type"], "customer.subscription.updated");
    assert_eq!(
        past_due["data"]["previous_attributes"],
        json!({ "status": "active" })
    );
    assert_eq!(client.get(&path).await.body["status"], "past_due");

    let deleted = server.cancel_subscription(&subscription);
    assert_eq!(deleted["type"], "customer.subscription.deleted");
    assert_eq!(deleted["data"]["object"]["status"], "canceled");
    assert_eq!(client.get(&path).await.body["status"], "canceled");
    let too_late = client
        .post(&path, "cancel-2", &[("cancel_at_period_end", "true")])
        .await;
    assert_eq!(too_late.status, StatusCode::BAD_REQUEST);
}

#[actix_rt::test]
async fn renewals_move_the_period_on_and_refunds_reach_the_charge() {
    let (server, client) = stripe_with_prices().await;
    let (subscription, _) = paying_subscriber(&server, &client, "IN").await;
    let before = client
        .get(&format!("/v1/subscriptions/{subscription}"))
        .await
        .body;

    let renewed = server.renew_subscription(&subscription, Outcome::Paid { card_country: "IN" });

    assert_eq!(kinds(&renewed), ["customer.subscription.updated", "invoice.paid"]);
    let after = &renewed[0]["data"]["object"];
    assert_eq!(after["current_period_start"], before["current_period_end"]);
    assert_eq!(
        after["items"]["data"][0]["current_period_end"],
        after["current_period_end"]
    );
    assert_eq!(after["default_payment_method"], before["default_payment_method"]);
    assert_eq!(
        renewed[1]["data"]["object"]["billing_reason"],
        "subscription_cycle"
    );

    let failed = server.renew_subscription(&subscription, Outcome::PaymentFailed);

    assert_eq!(
        kinds(&failed),
        ["invoice.payment_failed", "customer.subscription.updated"]
    );
    let invoice = &failed[0]["data"]["object"];
    assert_eq!(
        (&invoice["amount_paid"], &invoice["status"]),
        (&json!(0), &json!("open"))
    );
    assert_eq!(
        invoice["parent"]["subscription_details"]["subscription"],
        subscription
    );
    assert_eq!(failed[1]["data"]["object"]["status"], "past_due");

    let refund = server.refund(&subscription, 500);

    assert_eq!(refund["type"], "charge.refunded");
    let charge = &refund["data"]["object"];
    assert_eq!(charge["object"], "charge");
    assert_eq!(charge["invoice"], renewed[1]["data"]["object"]["id"]);
    assert_eq!(
        (&charge["amount_refunded"], &charge["refunded"]),
        (&json!(500), &json!(false))
    );
    assert_eq!(refund["data"]["previous_attributes"]["amount_refunded"], 0);
    let full = server.refund(&subscription, 1499);
    assert_eq!(full["data"]["object"]["refunded"], true);
}

#[actix_rt::test]
async fn portal_sessions_prices_coupons_and_expansions() {
    let (server, client) = stripe_with_prices().await;
    let customer = client.create_customer("ada@example.com").await;

    let portal = client
        .post(
            "/v1/billing_portal/sessions",
            "portal-1",
            &[
                ("customer", &customer),
                ("return_url", "https://lectern.test/account"),
            ],
        )
        .await
        .body;

    assert_eq!(portal["object"], "billing_portal.session");
    assert_eq!(portal["customer"], customer);
    assert!(portal["url"].as_str().unwrap().starts_with("https://"));
    assert_eq!(server.billing_portal_sessions(), [portal]);
    let price = client.get("/v1/prices/price_monthly").await.body;
    assert_eq!(
        (&price["unit_amount"], &price["currency"]),
        (&json!(1999), &json!("usd"))
    );
    assert_eq!(price["recurring"]["interval"], "month");
    let coupon = client.get("/v1/coupons/ppp_50").await.body;
    assert_eq!(
        (&coupon["object"], &coupon["percent_off"]),
        (&json!("coupon"), &json!(50.0))
    );
    let session = client.create_session("session-1", &customer, &[]).await.body;
    let expanded = client
        .get(&format!(
            "/v1/checkout/sessions/{}?expand[]=customer",
            session["id"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(expanded["customer"]["email"], "ada@example.com");
    let query = server.requests().pop().unwrap().query;
    assert_eq!(query, [("expand[]".to_owned(), "customer".to_owned())]);
    let not_expandable = client.get("/v1/prices/price_monthly?expand[]=unit_amount").await;
    assert_eq!(not_expandable.status, StatusCode::BAD_REQUEST);
}

/// HMAC-SHA256 by the `openssl` command, apart from the fake's ring.
fn openssl_hmac(secret: &str, message: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child.stdin.take().unwrap().write_all(message.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    // "SHA2-256(stdin)= 5d41…" (OpenSSL 3) or "(stdin)= 5d41…" (1.1).
    let text = String::from_utf8(output.stdout).unwrap();
    text.split_whitespace().last().unwrap().to_owned()
}

/// A webhook endpoint that keeps what it receives: headers and raw body.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<(String, String, String)>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&received);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let kept = Arc::clone(&kept);
        App::new().route(
            "/webhooks/stripe",
            web::post().to(move |request: HttpRequest, body: String| {
                let header = |name: &str| {
                    request
                        .headers()
                        .get(name)
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default()
                };
                kept.lock()
                    .unwrap()
                    .push((header("content-type"), header("stripe-signature"), body));
                async { HttpResponse::Ok().finish() }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_rt::spawn(server);
    (format!("http://127.0.0.1:{port}"), received)
}

#[actix_rt::test]
async fn events_are_signed_and_delivered_as_stripe_signs_and_delivers_them() {
    let payload = r#"{"id":"evt_1","object":"event"}"#;
    let header = stripe::sign(payload, "whsec_test", 1_700_000_000);
    assert_eq!(
        header,
        format!(
            "t=1700000000,v1={}",
            openssl_hmac("whsec_test", &format!("1700000000.{payload}"))
        )
    );
    assert_eq!(
        stripe::v1_signature(payload, "whsec_other", 1_700_000_000).len(),
        64
    );

    let server = StripeServer::start(SECRET_KEY).await;
    let event = server.event("product.created", json!({ "id": "prod_1", "object": "product" }));
    assert_eq!(event["data"]["object"]["id"], "prod_1");
    assert_eq!(event["type"], "product.created");
    let (lectern_url, received) = webhook_receiver().await;

    let status = stripe::deliver(&lectern_url, &event, "whsec_test").await;

    assert_eq!(status, StatusCode::OK);
    let (content_type, signature, body) = received.lock().unwrap().pop().unwrap();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), event);
    let (timestamp, v1) = signature
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .unwrap_or_else(|| panic!("not Stripe's header: {signature}"));
    assert_eq!(v1, openssl_hmac("whsec_test", &format!("{timestamp}.{body}")));
    // As sent, for tests of signatures Stripe would not make.
    stripe::post_webhook(&lectern_url, "{}", "t=1,v1=00").await;
    let (_, signature, body) = received.lock().unwrap().pop().unwrap();
    assert_eq!((signature.as_str(), body.as_str()), ("t=1,v1=00", "{}"));
}
