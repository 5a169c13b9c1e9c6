//! Hostile input over HTTP, in a bounded number of generated cases: query
//! strings, cookies and form bodies of arbitrary bytes, sent to every kind of
//! page and form; Stripe events signed with the endpoint's own secret but
//! cut short, malformed or mutated. Each is answered, and never with a 5xx:
//! a careless or hostile client gets a 4xx or the page, not an error of
//! Lectern's, and junk grants no premium access.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::Value;

use crate::billing::{app_with, check_out, member, session_id, stripe, PREMIUM, WEBHOOK_SECRET};
use crate::helpers::stripe::{post_webhook, sign, Outcome};
use crate::helpers::{demo_database, raw_request, spawn_app_on};
use crate::visitor::Visitor;

/// Cases generated per run: bounded, so that the suite's time is too.
const CASES: usize = 250;

const PAGES: [&str; 10] = [
    "/",
    "/episodes",
    "/episodes/building-an-actor-with-tokio",
    "/articles",
    "/tags/rust",
    "/search",
    "/login",
    "/signup",
    "/account",
    "/pricing",
];

const FORMS: [&str; 8] = [
    "/login",
    "/signup",
    "/login/link",
    "/reset",
    "/logout",
    "/account/email",
    "/webhooks/stripe",
    "/webhooks/ses",
];

#[derive(Debug, Clone)]
struct Case {
    page: &'static str,
    query: String,
    cookie: String,
    form: &'static str,
    content_type: String,
    body: Vec<u8>,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(PAGES.to_vec()),
        // What can stand in a request line: visible ASCII, and %-escapes of anything.
        prop_oneof![
            "[!-~]{0,80}",
            "(%[0-9A-Fa-f]{2}|[a-z=&]){0,40}",
            "(page|q|after|next)=[!-~]{0,30}"
        ],
        // A header value: visible ASCII and spaces, or cookie-shaped junk.
        prop_oneof![
            "[ -~]{0,120}",
            "(lectern_session|csrf|__Host-[a-z]{1,8})=[!-~]{0,80}(; [a-z]{1,5}=[!-~]{0,10}){0,3}"
        ],
        prop::sample::select(FORMS.to_vec()),
        prop_oneof![
            Just("application/x-www-form-urlencoded".to_owned()),
            Just("application/json".to_owned()),
            Just("text/plain; charset=utf-8".to_owned()),
            "[!-~]{0,40}",
        ],
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..600),
            "(csrf|email|password|token|name)=[!-~]{0,60}(&[a-z_]{1,8}=[!-~]{0,40}){0,4}"
                .prop_map(String::into_bytes),
        ],
    )
        .prop_map(|(page, query, cookie, form, content_type, body)| Case {
            page,
            query,
            cookie,
            form,
            content_type,
            body,
        })
}

#[actix_rt::test]
async fn arbitrary_query_strings_cookies_and_form_bodies_never_get_a_5xx() {
    let app = spawn_app_on(
        demo_database().await,
        // Enough searches and sign-in attempts that the limits are not all
        // these cases meet (a 429 would hide what comes after it).
        &[
            ("content.searches_per_minute", "1000000"),
            ("accounts.rate_limit.per_ip", "1000000"),
            ("accounts.rate_limit.per_email", "1000000"),
        ],
    )
    .await;
    let mut runner = TestRunner::deterministic();
    let strategy = cases();
    for _ in 0..CASES {
        let case = strategy.new_tree(&mut runner).expect("a case").current();
        let path = format!("{}?{}", case.page, case.query);
        let page = raw_request(&app, "GET", &path, &[("Cookie", &case.cookie)]).await;
        assert!(
            page.status < 500,
            "GET {path} with Cookie {:?}: {}",
            case.cookie,
            page.status
        );

        let form = app
            .client
            .post(app.url(case.form))
            .header("content-type", &case.content_type)
            .header("cookie", &case.cookie)
            .body(case.body.clone())
            .send()
            .await
            .expect("answered");
        assert!(
            form.status().as_u16() < 500,
            "POST {} ({}) with {:?}: {}",
            case.form,
            case.content_type,
            String::from_utf8_lossy(&case.body),
            form.status()
        );
    }
    // And the site is still itself.
    assert_eq!(app.get("/").await.status(), 200);
}

/// Stripe events generated per run.
const STRIPE_CASES: usize = 200;

/// The types Lectern acts on, and one it does not.
const EVENT_TYPES: [&str; 8] = [
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
    "charge.refunded",
    "customer.created",
];

/// Raw JSON text that parsers disagree on: escapes PostgreSQL's jsonb
/// refuses, numbers out of any float's range, nesting deeper than a parser's
/// recursion limit.
const RAW_VALUES: [&str; 9] = [
    r#""\u0000""#,
    r#""a\u0000b""#,
    r#""\ud800""#,
    r#""\udc00\ud800""#,
    "1e999",
    "-0",
    "123456789012345678901234567890",
    "0.000000000000000000000000000000000000000001",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
];

/// What a signed Stripe event can be made of, from a real event (chosen by
/// index among those the test has).
#[derive(Debug, Clone)]
enum StripeJunk {
    /// Arbitrary bytes.
    Bytes(Vec<u8>),
    /// The event's JSON cut short at a byte (modulo its length).
    Truncated { event: usize, at: usize },
    /// One of the event's values (chosen by index among all of them,
    /// the whole event included) replaced.
    Replaced { event: usize, at: usize, value: Value },
    /// A field added with raw JSON text, to the event or to its object.
    RawField {
        event: usize,
        in_object: bool,
        text: &'static str,
    },
    /// The event as it is, with another type.
    Retyped { event: usize, kind: &'static str },
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        // Any characters, control characters and NUL among them.
        ".{0,24}".prop_map(Value::from),
        prop::sample::select(vec!["active", "trialing", "sub_", "cus_", "in_", "1", "-1", ""])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn stripe_junk(events: usize) -> impl Strategy<Value = StripeJunk> {
    let event = 0..events;
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400).prop_map(StripeJunk::Bytes),
        (event.clone(), any::<usize>()).prop_map(|(event, at)| StripeJunk::Truncated { event, at }),
        (event.clone(), any::<usize>(), json_value()).prop_map(|(event, at, value)| StripeJunk::Replaced {
            event,
            at,
            value
        }),
        (
            event.clone(),
            any::<bool>(),
            prop::sample::select(RAW_VALUES.to_vec())
        )
            .prop_map(|(event, in_object, text)| StripeJunk::RawField {
                event,
                in_object,
                text
            }),
        (event, prop::sample::select(EVENT_TYPES.to_vec()))
            .prop_map(|(event, kind)| StripeJunk::Retyped { event, kind }),
    ]
}

/// Every JSON pointer in `value`, its own ("") first.
fn pointers(value: &Value, at: String, found: &mut Vec<String>) {
    found.push(at.clone());
    let escape = |key: &str| key.replace('~', "~0").replace('/', "~1");
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                pointers(field, format!("{at}/{}", escape(key)), found);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{index}"), found);
            }
        }
        _ => {}
    }
}

/// The body of `junk`, from `events`, each given the id `id` first so that
/// every case is recorded as an event of its own.
fn junk_body(junk: &StripeJunk, events: &[Value], id: &str) -> Vec<u8> {
    let event = |index: &usize| {
        let mut event = events[*index].clone();
        event["id"] = Value::from(id);
        event
    };
    match junk {
        StripeJunk::Bytes(bytes) => bytes.clone(),
        StripeJunk::Truncated { event: index, at } => {
            let text = serde_json::to_vec_pretty(&event(index)).expect("JSON");
            text[..at % text.len()].to_vec()
        }
        StripeJunk::Replaced {
            event: index,
            at,
            value,
        } => {
            let mut event = event(index);
            let mut found = Vec::new();
            pointers(&event, String::new(), &mut found);
            let pointer = &found[at % found.len()];
            *event.pointer_mut(pointer).expect("a pointer found in it") = value.clone();
            serde_json::to_vec(&event).expect("JSON")
        }
        StripeJunk::RawField {
            event: index,
            in_object,
            text,
        } => {
            let event = event(index);
            let plain = serde_json::to_string(&event).expect("JSON");
            let raw = format!("{{\"fuzz\":{text},");
            let body = if *in_object {
                plain.replacen("\"object\":{", &format!("\"object\":{raw}"), 1)
            } else {
                plain.replacen('{', &raw, 1)
            };
            body.into_bytes()
        }
        StripeJunk::Retyped { event: index, kind } => {
            let mut event = event(index);
            event["type"] = Value::from(*kind);
            serde_json::to_vec(&event).expect("JSON")
        }
    }
}

/// Stripe events with a valid signature but junk inside (bytes, events cut
/// short, real events with a value replaced, a raw field added or another
/// type) are answered 2xx or 4xx, never 5xx; what is recorded is handled
/// without the BillingSupervisor falling over; and a member whose payment
/// failed gets no premium access from any of it.
#[actix_rt::test]
async fn signed_stripe_events_with_junk_inside_never_get_a_5xx_or_grant_access() {
    let stripe = stripe().await;
    let app = app_with(&stripe, &[]).await;
    let mut visitor = Visitor::new(&app);
    member(&app, &mut visitor, "ada@example.org").await;
    let session = session_id(&check_out(&mut visitor, "monthly").await);
    // Real shapes that name a real member, checkout, customer and
    // subscription: the payment failed, so none of them gives access.
    let mut events = stripe.complete_checkout(&session, Outcome::PaymentFailed);
    let subscription = stripe.subscriptions()[0].clone();
    events.push(stripe.event(
        "checkout.session.completed",
        stripe.checkout_sessions()[0].clone(),
    ));
    events.push(stripe.event("customer.subscription.updated", subscription));

    let mut runner = TestRunner::deterministic();
    let strategy = stripe_junk(events.len());
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for n in 0..STRIPE_CASES {
        let junk = strategy.new_tree(&mut runner).expect("a case").current();
        let body = junk_body(&junk, &events, &format!("evt_fuzz_{n}"));
        let payload = String::from_utf8_lossy(&body).into_owned();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let status = post_webhook(&app.address, &payload, &sign(&payload, WEBHOOK_SECRET, now))
            .await
            .as_u16();
        assert!(status < 500, "{status} for {junk:?}:\n{payload}");
        *statuses.entry(status).or_default() += 1;
    }
    println!("{STRIPE_CASES} signed junk events: {statuses:?}");

    // Every event recorded is handled, or set aside for a later retry.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let due = app
            .scalar("SELECT count(*) FROM stripe_events WHERE processed_at IS NULL AND due_at <= now()")
            .await;
        if due == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{due} events still due");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(visitor.me().await["subscriber"], false);
    let premium = visitor.get(PREMIUM).await;
    assert_eq!(premium.status, 200);
    assert!(!premium.body.contains("<video"), "the premium video is not shown");
    let readiness: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(readiness["status"], "ready", "{readiness}");
}
