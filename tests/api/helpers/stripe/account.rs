//! The fake Stripe account: its objects, the requests it received, the
//! faults queued for the next ones and the responses it keeps against
//! idempotency keys, and the changes Stripe's side of the world makes (a
//! payer going through Checkout, renewals, the dashboard). The API's own
//! operations are in `api.rs`.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::objects::{self, Amounts, EventRequest, NewCustomer, NewInvoice, NewSubscription};
use super::{Fault, Outcome, RecordedRequest};

/// A Checkout session and what it was made of beyond its object.
#[derive(Debug)]
pub(super) struct CheckoutSession {
    pub object: Value,
    pub price: String,
    pub quantity: i64,
    pub coupon: Option<String>,
    /// `subscription_data[metadata]`, for the subscription Checkout creates.
    pub subscription_metadata: Map<String, Value>,
    /// The subscription a failed payment left `incomplete`, paid on a retry.
    pub incomplete_subscription: Option<String>,
}

/// A response kept against an idempotency key, with what it answered.
#[derive(Debug)]
pub(super) struct StoredResponse {
    /// `POST /v1/customers`
    pub endpoint: String,
    /// The request's parameters, sorted: Stripe compares them, not their order.
    pub params: Vec<(String, String)>,
    pub status: u16,
    pub body: String,
}

#[derive(Debug)]
struct QueuedFault {
    path_prefix: String,
    fault: Fault,
    remaining: usize,
}

const SUBSCRIPTION_STATUSES: [&str; 8] = [
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "canceled",
    "unpaid",
    "paused",
];

#[derive(Debug)]
pub(super) struct Account {
    pub secret_key: String,
    /// Where this server's stand-in for Checkout's payment page is.
    pub checkout_base: String,
    pub customers: Vec<Value>,
    pub checkout_sessions: Vec<CheckoutSession>,
    pub portal_sessions: Vec<Value>,
    pub subscriptions: Vec<Value>,
    pub payment_methods: Vec<Value>,
    pub discounts: Vec<Value>,
    pub invoices: Vec<Value>,
    pub charges: Vec<Value>,
    pub prices: Vec<Value>,
    pub coupons: Vec<Value>,
    pub events: Vec<Value>,
    pub requests: Vec<RecordedRequest>,
    pub idempotent: HashMap<String, StoredResponse>,
    faults: Vec<QueuedFault>,
}

/// The object with id `id` among `objects`.
pub(super) fn find<'a>(objects: &'a [Value], id: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["id"] == id)
}

fn find_mut<'a>(objects: &'a mut [Value], id: &str) -> &'a mut Value {
    objects
        .iter_mut()
        .find(|o| o["id"] == id)
        .unwrap_or_else(|| panic!("the fake Stripe has no object {id}"))
}

/// The top-level fields of `after` that differ from `before`, with their
/// values before: an `.updated` event's `previous_attributes`.
pub(super) fn previous_attributes(before: &Value, after: &Value) -> Value {
    let before = before.as_object().expect("Stripe objects are JSON objects");
    let changed: Map<String, Value> = before
        .iter()
        .filter(|(key, value)| after.get(key.as_str()) != Some(value))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    Value::Object(changed)
}

/// Sets the period on the item, where Stripe keeps it now, and on the
/// subscription, where API versions before 2025-03-31 look for it.
fn set_period(subscription: &mut Value, start: i64, end: i64) {
    for period in ["/items/data/0", ""] {
        let object = subscription
            .pointer_mut(period)
            .expect("subscriptions have an item");
        object["current_period_start"] = json!(start);
        object["current_period_end"] = json!(end);
    }
}

impl Account {
    pub(super) fn new(secret_key: &str, checkout_base: String) -> Account {
        Account {
            secret_key: secret_key.to_owned(),
            checkout_base,
            customers: Vec::new(),
            checkout_sessions: Vec::new(),
            portal_sessions: Vec::new(),
            subscriptions: Vec::new(),
            payment_methods: Vec::new(),
            discounts: Vec::new(),
            invoices: Vec::new(),
            charges: Vec::new(),
            prices: Vec::new(),
            coupons: Vec::new(),
            events: Vec::new(),
            requests: Vec::new(),
            idempotent: HashMap::new(),
            faults: Vec::new(),
        }
    }

    pub(super) fn add_price(&mut self, id: &str, unit_amount: i64, currency: &str, interval: &str) {
        assert!(
            ["day", "week", "month", "year"].contains(&interval),
            "Stripe has no interval {interval:?}"
        );
        self.prices.retain(|p| p["id"] != id);
        self.prices
            .push(objects::price(id, unit_amount, currency, interval));
    }

    pub(super) fn add_coupon(&mut self, id: &str, percent_off: f64) {
        assert!(
            percent_off > 0.0 && percent_off <= 100.0,
            "Stripe takes a percent_off above 0 and up to 100, not {percent_off}"
        );
        self.coupons.retain(|c| c["id"] != id);
        self.coupons.push(objects::coupon(id, percent_off));
    }

    pub(super) fn queue_fault(&mut self, path_prefix: &str, fault: Fault, times: usize) {
        self.faults.push(QueuedFault {
            path_prefix: path_prefix.to_owned(),
            fault,
            remaining: times,
        });
    }

    /// The fault queued for a request to `path`, if any, counted as used.
    pub(super) fn take_fault(&mut self, path: &str) -> Option<Fault> {
        let index = self
            .faults
            .iter()
            .position(|f| f.remaining > 0 && path.starts_with(&f.path_prefix))?;
        let queued = &mut self.faults[index];
        queued.remaining -= 1;
        let fault = queued.fault;
        if queued.remaining == 0 {
            self.faults.remove(index);
        }
        Some(fault)
    }

    /// The object `id` names, of any kind the API can expand.
    pub(super) fn object(&self, id: &str) -> Option<&Value> {
        let objects = match id.split('_').next() {
            Some("cus") => &self.customers,
            Some("sub") => &self.subscriptions,
            Some("pm") => &self.payment_methods,
            Some("in") => &self.invoices,
            Some("ch") => &self.charges,
            Some("di") => &self.discounts,
            _ => return None,
        };
        find(objects, id)
    }

    pub(super) fn checkout_session(&self, id: &str) -> &CheckoutSession {
        self.checkout_sessions
            .iter()
            .find(|s| s.object["id"] == id)
            .unwrap_or_else(|| panic!("the fake Stripe has no checkout session {id}"))
    }

    fn checkout_session_mut(&mut self, id: &str) -> &mut CheckoutSession {
        self.checkout_sessions
            .iter_mut()
            .find(|s| s.object["id"] == id)
            .unwrap_or_else(|| panic!("the fake Stripe has no checkout session {id}"))
    }

    /// Records an event (Stripe keeps every one it sends) and returns it.
    pub(super) fn emit(
        &mut self,
        kind: &str,
        object: Value,
        previous_attributes: Option<Value>,
        request: EventRequest,
    ) -> Value {
        let event = objects::event(kind, object, previous_attributes, request);
        self.events.push(event.clone());
        event
    }

    fn emit_update(&mut self, kind: &str, before: &Value, after: Value) -> Value {
        let previous = previous_attributes(before, &after);
        self.emit(kind, after, Some(previous), EventRequest::default())
    }

    fn subscription(&self, id: &str) -> &Value {
        find(&self.subscriptions, id).unwrap_or_else(|| panic!("the fake Stripe has no subscription {id}"))
    }

    /// What the subscription's next invoice comes to, and its discount.
    fn amounts_for(&self, subscription: &Value) -> (Amounts, Option<String>) {
        let item = &subscription["items"]["data"][0];
        let discount = subscription["discounts"][0].as_str().map(str::to_owned);
        let percent_off = discount
            .as_deref()
            .and_then(|d| self.object(d))
            .and_then(|d| d["source"]["coupon"].as_str())
            .and_then(|c| find(&self.coupons, c))
            .and_then(|c| c["percent_off"].as_f64());
        let unit_amount = item["price"]["unit_amount"]
            .as_i64()
            .expect("prices have a unit_amount");
        let quantity = item["quantity"].as_i64().expect("items have a quantity");
        (Amounts::of(unit_amount, quantity, percent_off), discount)
    }

    /// An open invoice for subscription `id`'s current period, made its
    /// latest invoice.
    fn invoice_subscription(&mut self, id: &str, billing_reason: &str) -> String {
        let subscription = self.subscription(id);
        let customer_id = subscription["customer"]
            .as_str()
            .expect("subscriptions have a customer")
            .to_owned();
        let (amounts, discount) = self.amounts_for(subscription);
        let number = self.next_invoice_number(&customer_id);
        let invoice = objects::invoice(NewInvoice {
            subscription: self.subscription(id),
            customer: find(&self.customers, &customer_id).expect("the customer is there"),
            amounts,
            discount: discount.as_deref(),
            billing_reason,
            number,
        });
        let invoice_id = invoice["id"].as_str().expect("objects have an id").to_owned();
        self.invoices.push(invoice);
        find_mut(&mut self.subscriptions, id)["latest_invoice"] = json!(invoice_id);
        invoice_id
    }

    /// The customer's next invoice number, `PREFIX-0001` on.
    fn next_invoice_number(&mut self, customer_id: &str) -> String {
        let customer = find_mut(&mut self.customers, customer_id);
        let sequence = customer["next_invoice_sequence"].as_i64().unwrap_or(1);
        customer["next_invoice_sequence"] = json!(sequence + 1);
        format!(
            "{}-{sequence:04}",
            customer["invoice_prefix"].as_str().unwrap_or("INV")
        )
    }

    /// Pays open invoice `id` with `payment_method`: a charge for it.
    fn pay_invoice(&mut self, id: &str, payment_method: &str) {
        let paid_at = objects::now();
        let invoice = find_mut(&mut self.invoices, id);
        invoice["status"] = json!("paid");
        invoice["attempted"] = json!(true);
        invoice["attempt_count"] = json!(invoice["attempt_count"].as_i64().unwrap_or(0) + 1);
        invoice["amount_paid"] = invoice["amount_due"].clone();
        invoice["amount_remaining"] = json!(0);
        invoice["status_transitions"]["paid_at"] = json!(paid_at);
        invoice["auto_advance"] = json!(false);
        invoice["next_payment_attempt"] = Value::Null;
        let payment_method = find(&self.payment_methods, payment_method).expect("a payment method of ours");
        let invoice = find(&self.invoices, id).expect("the invoice is there");
        let charge = objects::charge(invoice, payment_method);
        let charge_id = charge["id"].clone();
        self.charges.push(charge);
        // Where API versions before 2025-03-31 name the charge.
        find_mut(&mut self.invoices, id)["charge"] = charge_id;
    }

    /// A declined attempt to pay open invoice `id`; a renewal's invoice is
    /// tried again in three days, as Stripe's retries do.
    fn fail_invoice(&mut self, id: &str) {
        let invoice = find_mut(&mut self.invoices, id);
        invoice["attempted"] = json!(true);
        invoice["attempt_count"] = json!(invoice["attempt_count"].as_i64().unwrap_or(0) + 1);
        if invoice["billing_reason"] == "subscription_cycle" {
            invoice["next_payment_attempt"] = json!(objects::now() + 3 * 24 * 60 * 60);
        }
    }

    fn new_payment_method(&mut self, customer: &str, card_country: &str) -> String {
        let customer = find(&self.customers, customer).expect("the customer is there");
        let payment_method = objects::payment_method(customer, card_country);
        let id = payment_method["id"]
            .as_str()
            .expect("objects have an id")
            .to_owned();
        self.payment_methods.push(payment_method);
        id
    }

    fn event_about(&mut self, kind: &str, id: &str) -> Value {
        let object = self.object(id).expect("an object of ours").clone();
        self.emit(kind, object, None, EventRequest::default())
    }

    pub(super) fn complete_checkout(&mut self, session_id: &str, outcome: Outcome<'_>) -> Vec<Value> {
        let session = self.checkout_session(session_id);
        assert_eq!(
            session.object["status"], "open",
            "checkout session {session_id} is no longer open"
        );
        let incomplete_subscription = session.incomplete_subscription.clone();
        let customer_id = match session.object["customer"].as_str() {
            Some(customer) => customer.to_owned(),
            None => self.customer_from_checkout(session_id),
        };
        let mut events = Vec::new();
        let subscription_id = match incomplete_subscription {
            Some(id) => {
                if let Outcome::Paid { card_country } = outcome {
                    events.push(self.activate_incomplete(&id, &customer_id, card_country));
                }
                id
            }
            None => {
                let id = self.start_subscription(session_id, &customer_id, outcome);
                events.push(self.event_about("customer.subscription.created", &id));
                id
            }
        };
        let invoice = self.subscription(&subscription_id)["latest_invoice"]
            .as_str()
            .expect("a started subscription has an invoice")
            .to_owned();
        match outcome {
            Outcome::Paid { card_country } => {
                self.complete_session(session_id, &customer_id, &subscription_id, &invoice, card_country);
                let session = self.checkout_session(session_id).object.clone();
                events.push(self.emit(
                    "checkout.session.completed",
                    session,
                    None,
                    EventRequest::default(),
                ));
                events.push(self.event_about("invoice.paid", &invoice));
            }
            Outcome::PaymentFailed => {
                self.checkout_session_mut(session_id).incomplete_subscription = Some(subscription_id);
                self.fail_invoice(&invoice);
                events.push(self.event_about("invoice.payment_failed", &invoice));
            }
        }
        events
    }

    /// Without a customer, Checkout makes one from the payer's email.
    fn customer_from_checkout(&mut self, session_id: &str) -> String {
        let session = &self.checkout_session(session_id).object;
        let customer = objects::customer(NewCustomer {
            email: session["customer_email"].as_str().map(str::to_owned),
            ..NewCustomer::default()
        });
        let id = customer["id"].as_str().expect("objects have an id").to_owned();
        self.customers.push(customer);
        self.checkout_session_mut(session_id).object["customer"] = json!(id);
        id
    }

    /// The payer's new try pays the subscription a declined card left
    /// incomplete; the `customer.subscription.updated` event.
    fn activate_incomplete(&mut self, id: &str, customer_id: &str, card_country: &str) -> Value {
        let before = self.subscription(id).clone();
        let payment_method = self.new_payment_method(customer_id, card_country);
        let invoice = before["latest_invoice"]
            .as_str()
            .expect("an incomplete subscription has an invoice");
        self.pay_invoice(invoice, &payment_method);
        let subscription = find_mut(&mut self.subscriptions, id);
        subscription["status"] = json!("active");
        subscription["default_payment_method"] = json!(payment_method);
        let after = subscription.clone();
        self.emit_update("customer.subscription.updated", &before, after)
    }

    /// The subscription Checkout creates when the payer submits: active and
    /// paid, or incomplete with its first invoice open.
    fn start_subscription(&mut self, session_id: &str, customer_id: &str, outcome: Outcome<'_>) -> String {
        let session = self.checkout_session(session_id);
        let price = find(&self.prices, &session.price)
            .expect("the session's price")
            .clone();
        let coupon = session
            .coupon
            .as_deref()
            .and_then(|c| find(&self.coupons, c))
            .cloned();
        let quantity = session.quantity;
        let metadata = session.subscription_metadata.clone();
        let id = objects::new_id("sub");
        let discount = coupon.map(|coupon| {
            let discount = objects::discount(&coupon, customer_id, &id, session_id);
            let discount_id = discount["id"].as_str().expect("objects have an id").to_owned();
            self.discounts.push(discount);
            discount_id
        });
        let payment_method = match outcome {
            Outcome::Paid { card_country } => Some(self.new_payment_method(customer_id, card_country)),
            Outcome::PaymentFailed => None,
        };
        self.subscriptions.push(objects::subscription(NewSubscription {
            id: &id,
            customer: customer_id,
            price: &price,
            quantity,
            metadata,
            status: if payment_method.is_some() {
                "active"
            } else {
                "incomplete"
            },
            default_payment_method: payment_method.as_deref(),
            discount: discount.as_deref(),
        }));
        let invoice = self.invoice_subscription(&id, "subscription_create");
        if let Some(payment_method) = payment_method {
            self.pay_invoice(&invoice, &payment_method);
        }
        id
    }

    fn complete_session(
        &mut self,
        session_id: &str,
        customer_id: &str,
        subscription_id: &str,
        invoice_id: &str,
        card_country: &str,
    ) {
        let customer = find(&self.customers, customer_id)
            .expect("the customer is there")
            .clone();
        let session = self.checkout_session(session_id);
        let currency = find(&self.prices, &session.price).expect("the session's price")["currency"].clone();
        if let Some(coupon) = session.coupon.clone() {
            let coupon = find_mut(&mut self.coupons, &coupon);
            coupon["times_redeemed"] = json!(coupon["times_redeemed"].as_i64().unwrap_or(0) + 1);
        }
        find_mut(&mut self.customers, customer_id)["currency"] = currency;
        let session = &mut self.checkout_session_mut(session_id).object;
        session["status"] = json!("complete");
        session["payment_status"] = json!("paid");
        session["subscription"] = json!(subscription_id);
        session["invoice"] = json!(invoice_id);
        session["customer_details"] = json!({
            "address": objects::address(card_country),
            "email": customer["email"],
            "name": customer["name"],
            "phone": null,
            "tax_exempt": "none",
            "tax_ids": [],
            "business_name": null,
            "individual_name": null,
        });
    }

    pub(super) fn set_subscription_status(&mut self, id: &str, status: &str) -> Value {
        assert!(
            SUBSCRIPTION_STATUSES.contains(&status),
            "Stripe has no subscription status {status:?}"
        );
        if status == "canceled" {
            return self.cancel_subscription(id);
        }
        let before = self.subscription(id).clone();
        let subscription = find_mut(&mut self.subscriptions, id);
        subscription["status"] = json!(status);
        let after = subscription.clone();
        self.emit_update("customer.subscription.updated", &before, after)
    }

    pub(super) fn cancel_subscription(&mut self, id: &str) -> Value {
        let now = objects::now();
        let subscription = find_mut(&mut self.subscriptions, id);
        assert_ne!(
            subscription["status"], "canceled",
            "subscription {id} is already canceled"
        );
        subscription["status"] = json!("canceled");
        subscription["canceled_at"] = json!(now);
        subscription["ended_at"] = json!(now);
        subscription["cancellation_details"]["reason"] = json!("cancellation_requested");
        let after = subscription.clone();
        self.emit(
            "customer.subscription.deleted",
            after,
            None,
            EventRequest::default(),
        )
    }

    pub(super) fn renew_subscription(&mut self, id: &str, outcome: Outcome<'_>) -> Vec<Value> {
        let before = self.subscription(id).clone();
        let status = before["status"].as_str().unwrap_or_default();
        assert!(
            ["active", "past_due", "unpaid", "trialing"].contains(&status),
            "a {status} subscription does not renew"
        );
        let price = &before["items"]["data"][0]["price"]["recurring"];
        let start = before["current_period_end"]
            .as_i64()
            .expect("subscriptions have a period");
        let end = objects::add_interval(
            start,
            price["interval"].as_str().expect("prices recur"),
            price["interval_count"].as_i64().unwrap_or(1),
        );
        set_period(find_mut(&mut self.subscriptions, id), start, end);
        let invoice = self.invoice_subscription(id, "subscription_cycle");
        match outcome {
            Outcome::Paid { card_country } => {
                let payment_method = self.card_for_renewal(id, card_country);
                let subscription = find_mut(&mut self.subscriptions, id);
                subscription["status"] = json!("active");
                subscription["default_payment_method"] = json!(payment_method);
                let after = subscription.clone();
                self.pay_invoice(&invoice, &payment_method);
                vec![
                    self.emit_update("customer.subscription.updated", &before, after),
                    self.event_about("invoice.paid", &invoice),
                ]
            }
            Outcome::PaymentFailed => {
                self.fail_invoice(&invoice);
                let subscription = find_mut(&mut self.subscriptions, id);
                subscription["status"] = json!("past_due");
                let after = subscription.clone();
                vec![
                    self.event_about("invoice.payment_failed", &invoice),
                    self.emit_update("customer.subscription.updated", &before, after),
                ]
            }
        }
    }

    /// The subscription's card if it is from `card_country`, else a new one
    /// from there (as if the payer had changed cards).
    fn card_for_renewal(&mut self, id: &str, card_country: &str) -> String {
        let subscription = self.subscription(id);
        let current = subscription["default_payment_method"]
            .as_str()
            .and_then(|pm| find(&self.payment_methods, pm))
            .filter(|pm| pm["card"]["country"] == card_country);
        match current {
            Some(payment_method) => payment_method["id"]
                .as_str()
                .expect("objects have an id")
                .to_owned(),
            None => {
                let customer = subscription["customer"].as_str().expect("a customer").to_owned();
                self.new_payment_method(&customer, card_country)
            }
        }
    }

    pub(super) fn refund(&mut self, subscription_id: &str, amount: i64) -> Value {
        let charge_id = self
            .invoices
            .iter()
            .rev()
            .find(|i| i["subscription"] == subscription_id && i["status"] == "paid")
            .and_then(|i| i["charge"].as_str())
            .unwrap_or_else(|| panic!("subscription {subscription_id} has no paid invoice"))
            .to_owned();
        let charge = find_mut(&mut self.charges, &charge_id);
        let before = charge.clone();
        let charged = charge["amount"].as_i64().expect("charges have an amount");
        let refunded = charge["amount_refunded"].as_i64().unwrap_or(0) + amount;
        assert!(
            amount > 0 && refunded <= charged,
            "cannot refund {amount} of a charge of {charged} with {} refunded",
            refunded - amount
        );
        let refund = objects::refund(charge, amount);
        charge["amount_refunded"] = json!(refunded);
        charge["refunded"] = json!(refunded == charged);
        let refunds = &mut charge["refunds"];
        refunds["total_count"] = json!(refunds["total_count"].as_i64().unwrap_or(0) + 1);
        refunds["data"].as_array_mut().expect("a list").insert(0, refund);
        let after = charge.clone();
        self.emit_update("charge.refunded", &before, after)
    }
}
