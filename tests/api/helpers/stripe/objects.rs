//! Stripe's objects, each built from Stripe's own example of it (the
//! fixtures in `tests/api/fixtures/stripe/`) with the fields this fake
//! models set, and the fixtures' placeholders that contradict them cleared.

use serde_json::{json, Map, Value};
use time::{Month, OffsetDateTime};

use super::API_VERSION;

const BILLING_PORTAL_SESSION: &str = include_str!("../../fixtures/stripe/billing_portal.session.json");
const CHARGE: &str = include_str!("../../fixtures/stripe/charge.json");
const CHECKOUT_SESSION: &str = include_str!("../../fixtures/stripe/checkout.session.json");
const COUPON: &str = include_str!("../../fixtures/stripe/coupon.json");
const CUSTOMER: &str = include_str!("../../fixtures/stripe/customer.json");
const DISCOUNT: &str = include_str!("../../fixtures/stripe/discount.json");
const EVENT: &str = include_str!("../../fixtures/stripe/event.json");
const INVOICE: &str = include_str!("../../fixtures/stripe/invoice.json");
const PAYMENT_METHOD: &str = include_str!("../../fixtures/stripe/payment_method.json");
const PRICE: &str = include_str!("../../fixtures/stripe/price.json");
const REFUND: &str = include_str!("../../fixtures/stripe/refund.json");
const SUBSCRIPTION: &str = include_str!("../../fixtures/stripe/subscription.json");
const SUBSCRIPTION_ITEM: &str = include_str!("../../fixtures/stripe/subscription_item.json");

fn fixture(json: &str) -> Value {
    serde_json::from_str(json).expect("Stripe's fixtures are JSON")
}

/// `object` with the top-level fields of `fields` in place of its own.
fn with(mut object: Value, fields: Value) -> Value {
    match (object.as_object_mut(), fields) {
        (Some(object), Value::Object(fields)) => object.extend(fields),
        _ => panic!("objects and their fields are JSON objects"),
    }
    object
}

/// A new id with Stripe's prefix for its kind (`cus`, `sub`, `cs_test`, …).
pub(super) fn new_id(prefix: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &random[..24])
}

/// Seconds since the Unix epoch, as Stripe's timestamps are.
pub(super) fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// `start` moved on `count` intervals as Stripe bills them: a month later is
/// the same day of the month, or the month's last day if it is shorter.
pub(super) fn add_interval(start: i64, interval: &str, count: i64) -> i64 {
    let start = OffsetDateTime::from_unix_timestamp(start).expect("a timestamp Stripe could give");
    let months = match interval {
        "day" => return (start + time::Duration::days(count)).unix_timestamp(),
        "week" => return (start + time::Duration::weeks(count)).unix_timestamp(),
        "month" => count,
        "year" => 12 * count,
        other => panic!("Stripe has no interval {other:?}"),
    };
    let month_index = i64::from(u8::from(start.month())) - 1 + months;
    let year = start.year() + i32::try_from(month_index.div_euclid(12)).expect("a year in range");
    let month = Month::try_from(u8::try_from(month_index.rem_euclid(12) + 1).expect("1 to 12"))
        .expect("1 to 12 is a month");
    let day = start.day().min(month.length(year));
    let date = time::Date::from_calendar_date(year, month, day).expect("a day within the month");
    start.replace_date(date).unix_timestamp()
}

/// A price's amounts after a percent-off coupon, in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Amounts {
    pub subtotal: i64,
    pub discount: i64,
    pub total: i64,
}

impl Amounts {
    /// As Stripe computes them: the discount is `percent_off` percent of the
    /// subtotal rounded half away from zero, in integers (a coupon's
    /// `percent_off` has at most two decimals).
    pub(super) fn of(unit_amount: i64, quantity: i64, percent_off: Option<f64>) -> Amounts {
        let subtotal = unit_amount * quantity;
        let discount = percent_off.map_or(0, |percent| {
            let hundredths_of_percent = (percent * 100.0).round() as i64;
            let scaled = subtotal * hundredths_of_percent;
            (scaled + scaled.signum() * 5_000) / 10_000
        });
        Amounts {
            subtotal,
            discount,
            total: subtotal - discount,
        }
    }
}

pub(super) fn price(id: &str, unit_amount: i64, currency: &str, interval: &str) -> Value {
    with(
        fixture(PRICE),
        json!({
            "id": id,
            "created": now(),
            "currency": currency,
            "unit_amount": unit_amount,
            "unit_amount_decimal": unit_amount.to_string(),
            "product": new_id("prod"),
            "recurring": {
                "interval": interval,
                "interval_count": 1,
                "meter": null,
                "usage_type": "licensed",
                "trial_period_days": null,
            },
            "lookup_key": null,
            "nickname": null,
            "metadata": {},
            "transform_quantity": null,
            "livemode": false,
        }),
    )
}

/// The legacy `plan` that mirrors a recurring price on subscription items.
fn plan(price: &Value) -> Value {
    let item = fixture(SUBSCRIPTION_ITEM);
    with(
        item["plan"].clone(),
        json!({
            "id": price["id"],
            "created": price["created"],
            "currency": price["currency"],
            "amount": price["unit_amount"],
            "amount_decimal": price["unit_amount_decimal"],
            "billing_scheme": "per_unit",
            "interval": price["recurring"]["interval"],
            "interval_count": price["recurring"]["interval_count"],
            "product": price["product"],
            "metadata": {},
            "tiers_mode": null,
            "transform_usage": null,
            "livemode": false,
        }),
    )
}

pub(super) fn coupon(id: &str, percent_off: f64) -> Value {
    with(
        fixture(COUPON),
        json!({
            "id": id,
            "created": now(),
            "name": format!("{percent_off}% off"),
            "percent_off": percent_off,
            "amount_off": null,
            "currency": null,
            "duration": "forever",
            "duration_in_months": null,
            "max_redemptions": null,
            "redeem_by": null,
            "times_redeemed": 0,
            "valid": true,
            "metadata": {},
            "livemode": false,
        }),
    )
}

/// The fields of a new customer that its creator gives.
#[derive(Debug, Default)]
pub(super) struct NewCustomer {
    pub email: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub phone: Option<String>,
    pub metadata: Map<String, Value>,
}

pub(super) fn customer(new: NewCustomer) -> Value {
    let invoice_prefix = new_id("x")[2..10].to_uppercase();
    with(
        fixture(CUSTOMER),
        json!({
            "id": new_id("cus"),
            "created": now(),
            "email": new.email,
            "name": new.name,
            "description": new.description,
            "phone": new.phone,
            "metadata": new.metadata,
            "address": null,
            "shipping": null,
            "discount": null,
            "currency": null,
            "invoice_prefix": invoice_prefix,
            "livemode": false,
        }),
    )
}

/// What a Checkout session is made of, its references checked.
#[derive(Debug)]
pub(super) struct NewCheckoutSession<'a> {
    pub customer: Option<&'a str>,
    pub customer_email: Option<&'a str>,
    pub price: &'a Value,
    pub quantity: i64,
    pub coupon: Option<&'a Value>,
    pub success_url: &'a str,
    pub cancel_url: Option<&'a str>,
    pub client_reference_id: Option<&'a str>,
    pub metadata: Map<String, Value>,
    pub allow_promotion_codes: Option<bool>,
    pub locale: Option<&'a str>,
    pub billing_address_collection: Option<&'a str>,
    pub automatic_tax: bool,
}

pub(super) fn checkout_session(new: &NewCheckoutSession<'_>) -> Value {
    let id = new_id("cs_test");
    let created = now();
    let amounts = Amounts::of(
        new.price["unit_amount"]
            .as_i64()
            .expect("prices have a unit_amount"),
        new.quantity,
        new.coupon.and_then(|c| c["percent_off"].as_f64()),
    );
    let discounts: Vec<Value> = new
        .coupon
        .map(|c| json!({ "coupon": c["id"], "promotion_code": null }))
        .into_iter()
        .collect();
    with(
        fixture(CHECKOUT_SESSION),
        json!({
            "id": id,
            "created": created,
            "expires_at": created + 24 * 60 * 60,
            // The account puts its own address here (see `checkout_page`).
            "url": format!("/c/pay/{id}"),
            "mode": "subscription",
            "status": "open",
            "payment_status": "unpaid",
            "customer": new.customer,
            "customer_email": new.customer_email,
            "customer_creation": if new.customer.is_some() { Value::Null } else { json!("always") },
            "customer_details": null,
            "client_reference_id": new.client_reference_id,
            "success_url": new.success_url,
            "cancel_url": new.cancel_url,
            "metadata": new.metadata,
            "currency": new.price["currency"],
            "amount_subtotal": amounts.subtotal,
            "amount_total": amounts.total,
            "total_details": {
                "amount_discount": amounts.discount,
                "amount_shipping": 0,
                "amount_tax": 0,
            },
            "discounts": discounts,
            "allow_promotion_codes": new.allow_promotion_codes,
            "locale": new.locale,
            "billing_address_collection": new.billing_address_collection,
            "automatic_tax": {
                "enabled": new.automatic_tax,
                "liability": if new.automatic_tax { json!({ "type": "self" }) } else { Value::Null },
                "provider": null,
                "status": if new.automatic_tax { json!("requires_location_inputs") } else { Value::Null },
            },
            "subscription": null,
            "invoice": null,
            "invoice_creation": null,
            "payment_intent": null,
            "payment_method_collection": "always",
            "after_expiration": null,
            "shipping_address_collection": null,
            "shipping_cost": null,
            "currency_conversion": null,
            "collected_information": null,
            "custom_text": {
                "after_submit": null,
                "shipping_address": null,
                "submit": null,
                "terms_of_service_acceptance": null,
            },
            "payment_method_configuration_details": null,
            "ui_mode": "hosted",
            "livemode": false,
        }),
    )
}

pub(super) fn billing_portal_session(
    customer: &str,
    return_url: Option<&str>,
    locale: Option<&str>,
) -> Value {
    let id = new_id("bps");
    with(
        fixture(BILLING_PORTAL_SESSION),
        json!({
            "id": id,
            "created": now(),
            "customer": customer,
            "return_url": return_url,
            "locale": locale,
            "url": format!("https://billing.stripe.test/p/session/{id}"),
            "flow": null,
            "livemode": false,
        }),
    )
}

/// An address of which only the country is known, as a card gives it.
pub(super) fn address(country: &str) -> Value {
    json!({
        "city": null,
        "country": country,
        "line1": null,
        "line2": null,
        "postal_code": null,
        "state": null,
    })
}

pub(super) fn payment_method(customer: &Value, card_country: &str) -> Value {
    let fixture = fixture(PAYMENT_METHOD);
    let card = with(
        fixture["card"].clone(),
        json!({ "country": card_country, "generated_from": null, "wallet": null }),
    );
    with(
        fixture,
        json!({
            "id": new_id("pm"),
            "created": now(),
            "customer": customer["id"],
            "card": card,
            "billing_details": {
                "address": address(card_country),
                "email": customer["email"],
                "name": customer["name"],
                "phone": null,
                "tax_id": null,
            },
            "metadata": {},
            "livemode": false,
        }),
    )
}

pub(super) fn discount(coupon: &Value, customer: &str, subscription: &str, checkout_session: &str) -> Value {
    with(
        fixture(DISCOUNT),
        json!({
            "id": new_id("di"),
            "start": now(),
            "end": null,
            "customer": customer,
            "subscription": subscription,
            "checkout_session": checkout_session,
            "source": { "coupon": coupon["id"], "type": "coupon" },
        }),
    )
}

/// What a subscription is made of when the payer first pays (or tries to).
#[derive(Debug)]
pub(super) struct NewSubscription<'a> {
    pub id: &'a str,
    pub customer: &'a str,
    pub price: &'a Value,
    pub quantity: i64,
    pub metadata: Map<String, Value>,
    pub status: &'a str,
    pub default_payment_method: Option<&'a str>,
    pub discount: Option<&'a str>,
}

pub(super) fn subscription(new: NewSubscription<'_>) -> Value {
    let start = now();
    let end = add_interval(
        start,
        new.price["recurring"]["interval"].as_str().expect("prices recur"),
        new.price["recurring"]["interval_count"].as_i64().unwrap_or(1),
    );
    let item = with(
        fixture(SUBSCRIPTION_ITEM),
        json!({
            "id": new_id("si"),
            "created": start,
            "subscription": new.id,
            "price": new.price,
            "plan": plan(new.price),
            "quantity": new.quantity,
            "current_period_start": start,
            "current_period_end": end,
            "metadata": {},
            "discounts": [],
            "tax_rates": [],
            "billing_thresholds": null,
        }),
    );
    with(
        fixture(SUBSCRIPTION),
        json!({
            "id": new.id,
            "created": start,
            "start_date": start,
            "billing_cycle_anchor": start,
            "billing_cycle_anchor_config": null,
            "customer": new.customer,
            "status": new.status,
            "currency": new.price["currency"],
            "metadata": new.metadata,
            "items": {
                "object": "list",
                "data": [item],
                "has_more": false,
                "total_count": 1,
                "url": format!("/v1/subscription_items?subscription={}", new.id),
            },
            // Where API versions before 2025-03-31 keep the period.
            "current_period_start": start,
            "current_period_end": end,
            "cancel_at_period_end": false,
            "cancel_at": null,
            "canceled_at": null,
            "ended_at": null,
            "cancellation_details": { "comment": null, "feedback": null, "reason": null },
            "trial_start": null,
            "trial_end": null,
            "default_payment_method": new.default_payment_method,
            "discounts": new.discount.into_iter().collect::<Vec<_>>(),
            "latest_invoice": null,
            "next_pending_invoice_item_invoice": null,
            "pending_invoice_item_interval": null,
            "pending_update": null,
            "pause_collection": null,
            "transfer_data": null,
            "billing_thresholds": null,
            "billing_schedules": [],
            "livemode": false,
        }),
    )
}

/// What an invoice for a subscription's current period is made of; it
/// starts open, before any attempt to pay it.
#[derive(Debug)]
pub(super) struct NewInvoice<'a> {
    pub subscription: &'a Value,
    pub customer: &'a Value,
    pub amounts: Amounts,
    pub discount: Option<&'a str>,
    pub billing_reason: &'a str,
    pub number: String,
}

pub(super) fn invoice(new: NewInvoice<'_>) -> Value {
    let id = new_id("in");
    let created = now();
    let subscription = new.subscription;
    let item = &subscription["items"]["data"][0];
    let price = &item["price"];
    let discount_amounts: Vec<Value> = new
        .discount
        .map(|d| json!({ "amount": new.amounts.discount, "discount": d }))
        .into_iter()
        .collect();
    let discounts: Vec<&str> = new.discount.into_iter().collect();
    let fixture = fixture(INVOICE);
    let line = with(
        fixture["lines"]["data"][0].clone(),
        json!({
            "id": new_id("il"),
            "invoice": id,
            "amount": new.amounts.subtotal,
            "subtotal": new.amounts.subtotal,
            "currency": price["currency"],
            "description": null,
            "discount_amounts": discount_amounts,
            "discounts": discounts,
            "metadata": subscription["metadata"],
            "period": { "start": item["current_period_start"], "end": item["current_period_end"] },
            "quantity": item["quantity"],
            "subscription": subscription["id"],
            "parent": {
                "type": "subscription_item_details",
                "subscription_item_details": {
                    "invoice_item": null,
                    "proration": false,
                    "proration_details": { "credited_items": null },
                    "subscription": subscription["id"],
                    "subscription_item": item["id"],
                },
                "invoice_item_details": null,
            },
            "pricing": {
                "type": "price_details",
                "price_details": { "price": price["id"], "product": price["product"] },
                "unit_amount_decimal": price["unit_amount_decimal"],
            },
        }),
    );
    with(
        fixture,
        json!({
            "id": id,
            "created": created,
            "number": new.number,
            "customer": new.customer["id"],
            "customer_email": new.customer["email"],
            "customer_name": new.customer["name"],
            "currency": price["currency"],
            // Where API versions before 2025-03-31 name the subscription.
            "subscription": subscription["id"],
            "parent": {
                "type": "subscription_details",
                "subscription_details": {
                    "subscription": subscription["id"],
                    "metadata": subscription["metadata"],
                },
                "quote_details": null,
            },
            "billing_reason": new.billing_reason,
            "status": "open",
            "status_transitions": {
                "finalized_at": created,
                "paid_at": null,
                "marked_uncollectible_at": null,
                "voided_at": null,
            },
            "subtotal": new.amounts.subtotal,
            "subtotal_excluding_tax": new.amounts.subtotal,
            "total": new.amounts.total,
            "total_excluding_tax": new.amounts.total,
            "total_discount_amounts": discount_amounts,
            "discounts": discounts,
            "amount_due": new.amounts.total,
            "amount_paid": 0,
            "amount_remaining": new.amounts.total,
            "amount_overpaid": 0,
            "attempted": false,
            "attempt_count": 0,
            "auto_advance": true,
            "next_payment_attempt": null,
            "charge": null,
            "lines": {
                "object": "list",
                "data": [line],
                "has_more": false,
                "total_count": 1,
                "url": format!("/v1/invoices/{id}/lines"),
            },
            "period_start": created,
            "period_end": created,
            "effective_at": created,
            "due_date": null,
            "hosted_invoice_url": format!("https://invoice.stripe.test/i/{id}"),
            "invoice_pdf": format!("https://pay.stripe.test/invoice/{id}/pdf"),
            "from_invoice": null,
            "last_finalization_error": null,
            "customer_shipping": null,
            "shipping_cost": null,
            "shipping_details": null,
            "webhooks_delivered_at": null,
            "livemode": false,
        }),
    )
}

/// The charge that paid `invoice` with `payment_method`.
pub(super) fn charge(invoice: &Value, payment_method: &Value) -> Value {
    let id = new_id("ch");
    let fixture = fixture(CHARGE);
    let amount = &invoice["amount_paid"];
    let card = with(
        fixture["payment_method_details"]["card"].clone(),
        json!({
            "country": payment_method["card"]["country"],
            "last4": payment_method["card"]["last4"],
            "overcapture": { "maximum_amount_capturable": amount, "status": "unavailable" },
            "wallet": null,
        }),
    );
    with(
        fixture,
        json!({
            "id": id,
            "created": now(),
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": 0,
            "captured": true,
            "paid": true,
            "refunded": false,
            "status": "succeeded",
            "currency": invoice["currency"],
            "customer": invoice["customer"],
            "description": if invoice["billing_reason"] == "subscription_create" {
                "Subscription creation"
            } else {
                "Subscription update"
            },
            // Where API versions before 2025-03-31 name the invoice.
            "invoice": invoice["id"],
            "payment_method": payment_method["id"],
            "payment_method_details": { "card": card, "type": "card" },
            "billing_details": payment_method["billing_details"],
            "balance_transaction": new_id("txn"),
            "outcome": {
                "advice_code": null,
                "network_advice_code": null,
                "network_decline_code": null,
                "network_status": "approved_by_network",
                "reason": null,
                "risk_level": "normal",
                "seller_message": "Payment complete.",
                "type": "authorized",
            },
            "receipt_url": null,
            "refunds": {
                "object": "list",
                "data": [],
                "has_more": false,
                "total_count": 0,
                "url": format!("/v1/charges/{id}/refunds"),
            },
            "source": null,
            "transfer_data": null,
            "livemode": false,
        }),
    )
}

pub(super) fn refund(charge: &Value, amount: i64) -> Value {
    with(
        fixture(REFUND),
        json!({
            "id": new_id("re"),
            "created": now(),
            "amount": amount,
            "charge": charge["id"],
            "currency": charge["currency"],
            "customer": charge["customer"],
            "payment_method": charge["payment_method"],
            "balance_transaction": new_id("txn"),
            "status": "succeeded",
        }),
    )
}

/// Who caused an event: the API request (its id and idempotency key), or
/// nobody for changes on Stripe's side.
#[derive(Debug, Clone, Default)]
pub(super) struct EventRequest {
    pub id: Option<String>,
    pub idempotency_key: Option<String>,
}

pub(super) fn event(
    kind: &str,
    object: Value,
    previous_attributes: Option<Value>,
    request: EventRequest,
) -> Value {
    let mut data = json!({ "object": object });
    if let Some(previous) = previous_attributes {
        data["previous_attributes"] = previous;
    }
    with(
        fixture(EVENT),
        json!({
            "id": new_id("evt"),
            "created": now(),
            "type": kind,
            "api_version": API_VERSION,
            "data": data,
            "request": { "id": request.id, "idempotency_key": request.idempotency_key },
            "pending_webhooks": 1,
            "livemode": false,
        }),
    )
}
