//! A Stripe-shaped HTTP server on loopback for the integration tests.
//! Lectern talks to it over real HTTP as to api.stripe.com (form-encoded
//! parameters, a bearer key, idempotency keys, JSON answers with the shapes
//! of Stripe's own example objects), and the test plays Stripe's side of the
//! world: prices and coupons, payers going through Checkout, changes made in
//! Stripe's dashboard, injected faults, and the signed webhook events Stripe
//! would send.

mod account;
mod api;
mod objects;
mod params;
mod webhooks;

use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::SystemTime;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use serde_json::Value;

use account::Account;
pub use webhooks::{deliver, post_webhook, sign, v1_signature};

/// The API version of the events this server builds: the first in which a
/// subscription's period lives on its items and an invoice names its
/// subscription under `parent` (the objects also keep the older places).
pub const API_VERSION: &str = "2025-03-31.basil";

/// What the next requests to a path get instead of their answer. They
/// stand for failures before Stripe's idempotency layer (the network, a load
/// balancer, the rate limiter), so none is remembered against the request's
/// `Idempotency-Key`: a retry with the same key runs. (A 500 from inside one
/// of Stripe's endpoints is remembered, and replayed, by Stripe.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 with Stripe's `api_error`.
    ServerError,
    /// 429 with Stripe's `rate_limit` error.
    RateLimited,
    /// No answer for a minute (then a 500), longer than any client timeout.
    Hang,
}

/// How a payer's attempt to pay ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Paid with a card issued in `card_country` (ISO 3166-1 alpha-2).
    Paid { card_country: &'a str },
    /// The card was declined.
    PaymentFailed,
}

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The query string's parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// The form body's parameters, decoded, in order.
    pub params: Vec<(String, String)>,
    pub idempotency_key: Option<String>,
    pub at: SystemTime,
}

impl RecordedRequest {
    /// The value of body parameter `key` (`"metadata[user_id]"`).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The fake Stripe, listening on a loopback port until dropped.
pub struct StripeServer {
    api_base: String,
    account: Arc<Mutex<Account>>,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl StripeServer {
    /// Starts the server on a free loopback port, on a thread of its own, so
    /// that it answers whatever runtime the test and Lectern run on. Only
    /// requests bearing `secret_key` get past authentication.
    pub async fn start(secret_key: &str) -> StripeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = listener.local_addr().expect("a bound port").port();
        let account = Arc::new(Mutex::new(Account::new(
            secret_key,
            format!("http://127.0.0.1:{port}"),
        )));
        let state = web::Data::from(Arc::clone(&account));
        let (handle_sender, handle_receiver) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .route("/c/pay/{id}", web::get().to(api::checkout_page))
                        .default_service(web::to(api::answer))
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(0)
                .listen(listener)
                .expect("the fake Stripe listens")
                .run();
                handle_sender
                    .send(server.handle())
                    .expect("start() waits for the handle");
                server.await.expect("the fake Stripe runs");
            });
        });
        StripeServer {
            api_base: format!("http://127.0.0.1:{port}"),
            account,
            handle: handle_receiver.recv().expect("the fake Stripe starts"),
            thread: Some(thread),
        }
    }

    /// What Lectern's `stripe.api_base` should be: `http://127.0.0.1:PORT`.
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    fn account(&self) -> MutexGuard<'_, Account> {
        api::lock(&self.account)
    }

    /// Makes a recurring price of `unit_amount` minor units of `currency`
    /// every `interval` (`day`, `week`, `month` or `year`).
    pub fn add_price(&self, id: &str, unit_amount: i64, currency: &str, interval: &str) {
        self.account().add_price(id, unit_amount, currency, interval);
    }

    /// Makes a coupon for `percent_off` percent off, forever.
    pub fn add_coupon(&self, id: &str, percent_off: impl Into<f64>) {
        self.account().add_coupon(id, percent_off.into());
    }

    /// The next `times` requests whose path starts with `path_prefix` get
    /// `fault` instead of their answer.
    pub fn fail_next(&self, path_prefix: &str, fault: Fault, times: usize) {
        self.account().queue_fault(path_prefix, fault, times);
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.account().requests.clone()
    }

    /// The requests whose path starts with `path_prefix`, oldest first.
    pub fn requests_to(&self, path_prefix: &str) -> Vec<RecordedRequest> {
        let account = self.account();
        account
            .requests
            .iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    /// The customers created, oldest first, as they are now.
    pub fn customers(&self) -> Vec<Value> {
        self.account().customers.clone()
    }

    /// The Checkout sessions created, oldest first, as they are now.
    pub fn checkout_sessions(&self) -> Vec<Value> {
        self.account()
            .checkout_sessions
            .iter()
            .map(|s| s.object.clone())
            .collect()
    }

    /// The billing portal sessions created, oldest first.
    pub fn billing_portal_sessions(&self) -> Vec<Value> {
        self.account().portal_sessions.clone()
    }

    /// The subscriptions, oldest first, as they are now.
    pub fn subscriptions(&self) -> Vec<Value> {
        self.account().subscriptions.clone()
    }

    /// Every event built so far, oldest first, whether a test delivered it or not.
    pub fn events(&self) -> Vec<Value> {
        self.account().events.clone()
    }

    /// The payer completes Checkout session `session_id`. Paid: the
    /// subscription is created `active` with the session's
    /// `subscription_data[metadata]`, a period of one interval and the card
    /// as its default payment method, its first invoice paid, the session
    /// `complete`. Failed: the subscription is `incomplete` with an open
    /// invoice and the session stays open, for the payer to try again.
    /// Returns the events Stripe sends, in its usual order: paid,
    /// `customer.subscription.created` (or `.updated` after a failed try),
    /// `checkout.session.completed`, `invoice.paid`; failed,
    /// `customer.subscription.created` (on the first try) and
    /// `invoice.payment_failed`.
    pub fn complete_checkout(&self, session_id: &str, outcome: Outcome<'_>) -> Vec<Value> {
        self.account().complete_checkout(session_id, outcome)
    }

    /// Where Checkout sends the payer of session `session_id` after paying:
    /// its `success_url` with `{CHECKOUT_SESSION_ID}` filled in.
    pub fn success_url(&self, session_id: &str) -> String {
        let account = self.account();
        let session = &account.checkout_session(session_id).object;
        session["success_url"]
            .as_str()
            .expect("a session has a success_url")
            .replace("{CHECKOUT_SESSION_ID}", session_id)
    }

    /// Sets subscription `id`'s status as Stripe's dashboard or its dunning
    /// would (`past_due`, `unpaid`, `active`, …), without telling Lectern;
    /// returns the `customer.subscription.updated` event (`canceled` cancels,
    /// as `cancel_subscription` does).
    pub fn set_subscription_status(&self, id: &str, status: &str) -> Value {
        self.account().set_subscription_status(id, status)
    }

    /// Cancels subscription `id` at once, as from Stripe's dashboard,
    /// without telling Lectern; returns the `customer.subscription.deleted`
    /// event.
    pub fn cancel_subscription(&self, id: &str) -> Value {
        self.account().cancel_subscription(id)
    }

    /// Subscription `id` reaches the end of its period and Stripe bills the
    /// next one. Paid (by a card from `card_country`, which becomes the
    /// default payment method if it is another card): the period moves on
    /// one interval and the subscription is `active`; returns
    /// `customer.subscription.updated` and `invoice.paid`. Failed: the
    /// period moves on too and the subscription is `past_due`; returns
    /// `invoice.payment_failed` and `customer.subscription.updated`.
    pub fn renew_subscription(&self, id: &str, outcome: Outcome<'_>) -> Vec<Value> {
        self.account().renew_subscription(id, outcome)
    }

    /// Refunds `amount` of the charge that paid subscription
    /// `subscription_id`'s latest paid invoice, as from Stripe's dashboard
    /// (the subscription stays as it is); returns the `charge.refunded`
    /// event.
    pub fn refund(&self, subscription_id: &str, amount: i64) -> Value {
        self.account().refund(subscription_id, amount)
    }

    /// An event of type `kind` about `object`, of any type, in Stripe's shape.
    pub fn event(&self, kind: &str, object: Value) -> Value {
        self.account()
            .emit(kind, object, None, objects::EventRequest::default())
    }
}

impl Drop for StripeServer {
    fn drop(&mut self) {
        // stop() sends its command when called; the future only waits for
        // the end, which joining the thread waits for too. Not graceful:
        // a hanging answer would otherwise hold the test for a minute.
        drop(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
