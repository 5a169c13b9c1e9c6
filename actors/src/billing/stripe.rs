//! Stripe's HTTP API, the few calls Lectern makes: plain HTTPS with form
//! bodies (rustls, through the reqwest client already in the tree), an
//! `Idempotency-Key` derived from what each POST does, a timeout on every
//! call, and quick retries with the same key for errors that are worth it.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// Retries of a transient failure, after these pauses, before giving up.
const RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(800)];

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// Worth trying again later: a timeout, the network, a 5xx, a 429.
    #[error("Stripe is unavailable: {0}")]
    Unavailable(String),
    #[error("Stripe has no {0}")]
    NotFound(String),
    /// Stripe refused the request: Lectern's request or configuration is wrong.
    #[error("Stripe refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("Stripe's answer could not be read: {0}")]
    Unreadable(String),
}

impl StripeError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StripeError::Unavailable(_))
    }
}

/// Where Stripe is and how to reach it.
#[derive(Clone)]
pub struct StripeConfig {
    pub api_base: String,
    pub secret_key: String,
    pub timeout: Duration,
}

impl fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeConfig")
            .field("api_base", &self.api_base)
            .field("secret_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A Stripe client; cheap to clone.
#[derive(Clone, Debug)]
pub struct Stripe {
    config: StripeConfig,
    http: reqwest::Client,
}

/// The parts of Stripe's objects that Lectern reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Customer {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    pub url: Option<String>,
    pub status: Option<String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub customer: Option<String>,
    pub subscription: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PortalSession {
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Price {
    pub id: String,
    pub unit_amount: Option<i64>,
    pub currency: String,
    #[serde(default)]
    pub recurring: Option<Recurring>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Recurring {
    pub interval: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Coupon {
    pub id: String,
    pub percent_off: Option<f64>,
    #[serde(default)]
    pub valid: Option<bool>,
}

/// A subscription as Stripe has it now.
#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub customer: String,
    pub status: String,
    #[serde(default)]
    pub cancel_at_period_end: bool,
    /// Where API versions before 2025 put it; later ones put it on the items.
    #[serde(default)]
    pub current_period_end: Option<i64>,
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    pub items: SubscriptionItems,
    /// An id, or the payment method itself when expanded.
    #[serde(default)]
    pub default_payment_method: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionItems {
    pub data: Vec<SubscriptionItem>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionItem {
    pub price: Price,
    #[serde(default)]
    pub current_period_end: Option<i64>,
    #[serde(default)]
    pub quantity: Option<i64>,
}

impl Subscription {
    pub fn price(&self) -> Option<&Price> {
        self.items.data.first().map(|item| &item.price)
    }

    pub fn period_end(&self) -> Option<i64> {
        self.items
            .data
            .first()
            .and_then(|item| item.current_period_end)
            .or(self.current_period_end)
    }

    /// The country of the card that pays, when the payment method was expanded.
    pub fn card_country(&self) -> Option<String> {
        self.default_payment_method
            .as_ref()?
            .get("card")?
            .get("country")?
            .as_str()
            .map(str::to_owned)
    }
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

impl Stripe {
    pub fn new(config: StripeConfig) -> Result<Stripe, StripeError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| StripeError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        Ok(Stripe { config, http })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.api_base.trim_end_matches('/'))
    }

    /// One call, retried with the same idempotency key while it fails in a
    /// way that a retry may cure.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeError> {
        let mut pauses = RETRY_PAUSES.iter();
        loop {
            match self.call_once(method.clone(), path, form, idempotency_key).await {
                Err(e) if e.is_transient() => match pauses.next() {
                    Some(pause) => tokio::time::sleep(*pause).await,
                    None => return Err(e),
                },
                outcome => return outcome,
            }
        }
    }

    async fn call_once<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeError> {
        let mut request = self
            .http
            .request(method.clone(), self.url(path))
            .bearer_auth(&self.config.secret_key);
        if method == reqwest::Method::GET {
            request = request.query(form);
        } else {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
                .finish();
            request = request
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| StripeError::Unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| StripeError::Unavailable(e.to_string()))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body).map_err(|e| StripeError::Unreadable(e.to_string()));
        }
        let detail = serde_json::from_slice::<ErrorBody>(&body).ok().map(|b| b.error);
        let message = detail
            .as_ref()
            .and_then(|d| d.message.clone())
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        Err(match status {
            429 | 500..=599 => StripeError::Unavailable(format!("{status}: {message}")),
            404 => StripeError::NotFound(path.to_owned()),
            _ if detail.and_then(|d| d.code).as_deref() == Some("resource_missing") => {
                StripeError::NotFound(path.to_owned())
            }
            _ => StripeError::Refused { status, message },
        })
    }

    pub async fn create_customer(
        &self,
        user_id: i64,
        email: &str,
        name: &str,
        idempotency_key: &str,
    ) -> Result<Customer, StripeError> {
        let mut form = vec![
            ("email", email.to_owned()),
            ("metadata[user_id]", user_id.to_string()),
        ];
        if !name.is_empty() {
            form.push(("name", name.to_owned()));
        }
        self.call(
            reqwest::Method::POST,
            "/v1/customers",
            &form,
            Some(idempotency_key),
        )
        .await
    }

    pub async fn create_checkout_session(
        &self,
        form: &[(&str, String)],
        idempotency_key: &str,
    ) -> Result<CheckoutSession, StripeError> {
        self.call(
            reqwest::Method::POST,
            "/v1/checkout/sessions",
            form,
            Some(idempotency_key),
        )
        .await
    }

    pub async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
        idempotency_key: &str,
    ) -> Result<PortalSession, StripeError> {
        let form = [
            ("customer", customer.to_owned()),
            ("return_url", return_url.to_owned()),
        ];
        self.call(
            reqwest::Method::POST,
            "/v1/billing_portal/sessions",
            &form,
            Some(idempotency_key),
        )
        .await
    }

    /// The subscription as Stripe has it now, with its payment method.
    pub async fn get_subscription(&self, id: &str) -> Result<Subscription, StripeError> {
        let form = [("expand[]", "default_payment_method".to_owned())];
        self.call(
            reqwest::Method::GET,
            &format!("/v1/subscriptions/{}", path_segment(id)),
            &form,
            None,
        )
        .await
    }

    pub async fn set_cancel_at_period_end(
        &self,
        id: &str,
        cancel: bool,
        idempotency_key: &str,
    ) -> Result<Subscription, StripeError> {
        let form = [
            ("cancel_at_period_end", cancel.to_string()),
            ("expand[]", "default_payment_method".to_owned()),
        ];
        self.call(
            reqwest::Method::POST,
            &format!("/v1/subscriptions/{}", path_segment(id)),
            &form,
            Some(idempotency_key),
        )
        .await
    }

    pub async fn get_price(&self, id: &str) -> Result<Price, StripeError> {
        self.call(
            reqwest::Method::GET,
            &format!("/v1/prices/{}", path_segment(id)),
            &[],
            None,
        )
        .await
    }

    pub async fn get_coupon(&self, id: &str) -> Result<Coupon, StripeError> {
        self.call(
            reqwest::Method::GET,
            &format!("/v1/coupons/{}", path_segment(id)),
            &[],
            None,
        )
        .await
    }
}

/// An id as one path segment: Stripe's ids are plain, but one read from a
/// webhook must not be able to name another path.
fn path_segment(id: &str) -> String {
    form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_step_out_of_their_path_segment() {
        assert_eq!(path_segment("sub_123"), "sub_123");
        assert_eq!(path_segment("../v1/customers"), "..%2Fv1%2Fcustomers");
        assert_eq!(path_segment("a?b=c"), "a%3Fb%3Dc");
    }

    #[test]
    fn the_period_end_is_read_where_either_api_version_puts_it() {
        let item = |end: Option<i64>| SubscriptionItem {
            price: Price {
                id: "price_1".into(),
                unit_amount: Some(1900),
                currency: "usd".into(),
                recurring: None,
            },
            current_period_end: end,
            quantity: Some(1),
        };
        let subscription = |top: Option<i64>, on_item: Option<i64>| Subscription {
            id: "sub_1".into(),
            customer: "cus_1".into(),
            status: "active".into(),
            cancel_at_period_end: false,
            current_period_end: top,
            metadata: Default::default(),
            items: SubscriptionItems {
                data: vec![item(on_item)],
            },
            default_payment_method: Some(serde_json::json!({ "card": { "country": "IN" } })),
        };
        assert_eq!(subscription(None, Some(7)).period_end(), Some(7));
        assert_eq!(subscription(Some(5), None).period_end(), Some(5));
        assert_eq!(subscription(None, None).card_country().as_deref(), Some("IN"));
    }
}
