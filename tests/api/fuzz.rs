//! Hostile input over HTTP, in a bounded number of generated cases: query
//! strings, cookies and form bodies of arbitrary bytes, sent to every kind of
//! page and form. Each is answered, and never with a 5xx: a careless or
//! hostile client gets a 4xx or the page, not an error of Lectern's.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use crate::helpers::{demo_database, raw_request, spawn_app_on};

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
