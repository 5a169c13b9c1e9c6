//! Stripe's webhooks, as they arrive: the `Stripe-Signature` check
//! (HMAC-SHA256 over `timestamp.body`, any `v1` that matches any of the
//! configured secrets, within a tolerance of the clock) and the event's
//! envelope, parsed before anything is written.

use ring::hmac;
use serde::de::IgnoredAny;
use serde::Deserialize;
use time::OffsetDateTime;

/// How far a signature's timestamp may be from now (Stripe's own default).
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("the Stripe-Signature header has no timestamp or no v1 signature")]
    Malformed,
    #[error("the signature's timestamp is {0} s away from now")]
    Stale(i64),
    #[error("no v1 signature matches a configured secret")]
    Mismatch,
    #[error("no webhook secret is configured (stripe.webhook_secret)")]
    NoSecret,
}

/// Checks `header` against `body` with each of `secrets` (several while a
/// secret is rotated), at time `now` (Unix seconds).
pub fn verify(header: Option<&str>, body: &[u8], secrets: &[String], now: i64) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => {
                if let Ok(signature) = hex::decode(value) {
                    signatures.push(signature);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let age = now.saturating_sub(timestamp);
    if age.abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale(age));
    }
    let mut signed = Vec::with_capacity(body.len() + 12);
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let matches = secrets.iter().any(|secret| {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        // `verify` compares in constant time.
        signatures
            .iter()
            .any(|signature| hmac::verify(&key, &signed, signature).is_ok())
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// A Stripe event's envelope: what Lectern records before acting on it.
/// The event itself is kept as the text Stripe sent, checked to be JSON
/// with the envelope's fields, and read again only when it is handled.
#[derive(Debug, Clone)]
pub struct StripeEvent {
    pub id: String,
    pub kind: String,
    pub created: OffsetDateTime,
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Stripe event: {0}")]
pub struct MalformedEvent(pub String);

impl StripeEvent {
    pub fn parse(body: &[u8]) -> Result<StripeEvent, MalformedEvent> {
        #[derive(Deserialize)]
        struct Envelope {
            id: String,
            #[serde(rename = "type")]
            kind: String,
            created: i64,
            // Required, and checked to be JSON; read when the event is handled.
            #[serde(rename = "data")]
            _data: Data,
        }
        #[derive(Deserialize)]
        struct Data {
            #[serde(rename = "object")]
            _object: IgnoredAny,
        }
        let text = std::str::from_utf8(body).map_err(|e| MalformedEvent(e.to_string()))?;
        // Read whole, as the event is read when it is handled: a number beyond
        // a float's range, nesting past serde_json's limit or a lone surrogate
        // is refused here, and so is a NUL, which PostgreSQL's jsonb cannot hold.
        let whole: serde_json::Value =
            serde_json::from_str(text).map_err(|e| MalformedEvent(e.to_string()))?;
        if holds_nul(&whole) {
            return Err(MalformedEvent("a string holds a NUL character".into()));
        }
        let envelope = Envelope::deserialize(&whole).map_err(|e| MalformedEvent(e.to_string()))?;
        let plain = |s: &str| !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic());
        if !envelope.id.starts_with("evt_") || !plain(&envelope.id) || !plain(&envelope.kind) {
            return Err(MalformedEvent("the id or type is not Stripe's".into()));
        }
        let created = OffsetDateTime::from_unix_timestamp(envelope.created)
            .map_err(|e| MalformedEvent(format!("created: {e}")))?;
        Ok(StripeEvent {
            id: envelope.id,
            kind: envelope.kind,
            created,
            payload: text.to_owned(),
        })
    }
}

fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, field)| key.contains('\0') || holds_nul(field)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// The `Stripe-Signature` value Stripe would send for `body` at `timestamp`
/// (for tests and for `lectern` itself signing nothing else).
pub fn sign(body: &[u8], secret: &str, timestamp: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = timestamp.to_string().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(hmac::sign(&key, &signed).as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "whsec_test_secret";

    #[test]
    fn a_signature_of_this_body_within_the_tolerance_passes() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(body, SECRET, 1_000);
        assert_eq!(verify(Some(&header), body, &[SECRET.into()], 1_100), Ok(()));
        // Rotation: the old secret first, the new one second.
        assert_eq!(
            verify(Some(&header), body, &["whsec_old".into(), SECRET.into()], 1_000),
            Ok(())
        );
        // Stripe may send several v1 values and a v0.
        let several = format!("{header},v1=00ff,v0=abcd");
        assert_eq!(verify(Some(&several), body, &[SECRET.into()], 1_000), Ok(()));
    }

    #[test]
    fn anything_else_is_refused() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(body, SECRET, 1_000);
        let secrets = [SECRET.to_owned()];
        assert_eq!(verify(None, body, &secrets, 1_000), Err(SignatureError::Missing));
        assert_eq!(
            verify(Some("v1=00"), body, &secrets, 1_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some("t=1000"), body, &secrets, 1_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some(&header), body, &secrets, 1_301),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            verify(Some(&header), body, &secrets, 699),
            Err(SignatureError::Stale(-301))
        );
        assert_eq!(
            verify(Some(&header), br#"{"id":"evt_2"}"#, &secrets, 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), body, &["whsec_other".into()], 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), body, &[], 1_000),
            Err(SignatureError::NoSecret)
        );
    }

    proptest! {
        #[test]
        fn no_header_makes_the_check_panic(header in ".{0,200}", body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = verify(Some(&header), &body, &[SECRET.into()], 1_000);
        }

        #[test]
        fn only_the_exact_body_verifies(body in proptest::collection::vec(any::<u8>(), 1..64), flip in 0usize..64) {
            let header = sign(&body, SECRET, 5_000);
            prop_assert_eq!(verify(Some(&header), &body, &[SECRET.into()], 5_000), Ok(()));
            let mut changed = body.clone();
            let at = flip % changed.len();
            changed[at] ^= 1;
            prop_assert_eq!(verify(Some(&header), &changed, &[SECRET.into()], 5_000), Err(SignatureError::Mismatch));
        }
    }

    #[test]
    fn events_are_parsed_or_refused_whole() {
        let event = StripeEvent::parse(
            br#"{"id":"evt_1","type":"invoice.paid","created":1700000000,"data":{"object":{"id":"in_1"}}}"#,
        )
        .unwrap();
        assert_eq!(
            (event.id.as_str(), event.kind.as_str()),
            ("evt_1", "invoice.paid")
        );
        assert!(event.payload.contains(r#""object":{"id":"in_1"}"#));
        for bad in [
            &b"not json"[..],
            br#"{"id":"evt_1"}"#,
            br#"{"id":"evt_1","type":"invoice.paid","created":1700000000,"data":{}}"#,
            br#"{"id":"evt_1","type":"invoice.paid","created":1700000000,"data":{"object":{}}"#,
            br#"{"id":"x","type":"t","created":1,"data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":"t t","created":1,"data":{"object":{}}}"#,
            // What PostgreSQL's jsonb or serde_json cannot read back.
            br#"{"id":"evt_1","type":"t","created":1,"data":{"object":{"name":"a\u0000b"}}}"#,
            br#"{"id":"evt_1","type":"t","created":1,"data":{"object":{}},"x":"\ud800"}"#,
            br#"{"id":"evt_1","type":"t","created":1,"data":{"object":{"amount":1e999}}}"#,
        ] {
            assert!(
                StripeEvent::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
