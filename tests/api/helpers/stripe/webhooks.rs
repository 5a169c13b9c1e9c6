//! Stripe's webhooks: the `Stripe-Signature` header as Stripe computes it,
//! and events posted to Lectern as Stripe posts them.

use reqwest::StatusCode;
use ring::hmac;
use serde_json::Value;

use super::objects;

/// The hex HMAC-SHA256 of `TIMESTAMP.PAYLOAD` under the endpoint's signing
/// secret: one `v1=` signature.
pub fn v1_signature(payload: &str, secret: &str, timestamp: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hex::encode(hmac::sign(&key, format!("{timestamp}.{payload}").as_bytes()))
}

/// The `Stripe-Signature` header for `payload` signed with `secret` at
/// `timestamp` (Unix seconds): `t=TIMESTAMP,v1=SIGNATURE`. (While a secret
/// is being rolled Stripe adds a `v1=` per secret, and in test mode it may
/// add a `v0=`: a verifier must look for its own among them.)
pub fn sign(payload: &str, secret: &str, timestamp: i64) -> String {
    format!("t={timestamp},v1={}", v1_signature(payload, secret, timestamp))
}

/// POSTs `event` to `{lectern_url}/webhooks/stripe` as Stripe delivers it:
/// indented JSON, signed now with `secret`; the status Lectern answers.
pub async fn deliver(lectern_url: &str, event: &Value, secret: &str) -> StatusCode {
    let payload = serde_json::to_string_pretty(event).expect("JSON values serialise");
    let signature = sign(&payload, secret, objects::now());
    post_webhook(lectern_url, &payload, &signature).await
}

/// POSTs `payload` with `signature` as its `Stripe-Signature` header to
/// `{lectern_url}/webhooks/stripe`, for tests of what is not Stripe's own
/// (a wrong or old signature, a payload changed after signing).
pub async fn post_webhook(lectern_url: &str, payload: &str, signature: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{lectern_url}/webhooks/stripe"))
        .header("Content-Type", "application/json; charset=utf-8")
        .header("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
        .header("Stripe-Signature", signature)
        .body(payload.to_owned())
        .send()
        .await
        .expect("Lectern answers the webhook")
        .status()
}
