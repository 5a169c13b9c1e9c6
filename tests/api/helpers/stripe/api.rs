//! The HTTP API as Stripe answers it: every request recorded, queued
//! faults, bearer authentication, idempotency keys, the endpoints Lectern
//! uses, and Stripe's error objects.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::account::{find, Account, CheckoutSession, StoredResponse};
use super::objects::{self, EventRequest, NewCheckoutSession, NewCustomer};
use super::params::Params;
use super::{Fault, RecordedRequest};

/// How long a request with `Fault::Hang` waits before its 500.
const HANG: Duration = Duration::from_secs(60);

/// An error as Stripe reports it: a status and an `{"error": …}` object.
#[derive(Debug)]
pub(super) enum ApiError {
    NoApiKey,
    InvalidApiKey(String),
    NotForm(String),
    UnknownUrl {
        method: String,
        path: String,
    },
    /// The object the path names does not exist (404).
    NoSuchObject {
        kind: &'static str,
        id: String,
    },
    /// An object a parameter names does not exist (400).
    NoSuchReference {
        kind: &'static str,
        id: String,
        param: String,
    },
    MissingParam(String),
    UnknownParam(String),
    Exclusive(&'static [&'static str]),
    Invalid {
        param: Option<String>,
        code: Option<&'static str>,
        message: String,
    },
    KeyUsedOnOtherEndpoint {
        key: String,
        first: String,
        now: String,
    },
    KeyUsedWithOtherParams(String),
    ServerError,
    RateLimited,
}

impl ApiError {
    pub(super) fn invalid(param: &str, code: Option<&'static str>, message: String) -> ApiError {
        ApiError::Invalid {
            param: Some(param.to_owned()),
            code,
            message,
        }
    }

    fn status(&self) -> u16 {
        match self {
            ApiError::NoApiKey | ApiError::InvalidApiKey(_) => 401,
            ApiError::UnknownUrl { .. } | ApiError::NoSuchObject { .. } => 404,
            ApiError::RateLimited => 429,
            ApiError::ServerError => 500,
            _ => 400,
        }
    }

    fn body(&self) -> Value {
        const INVALID: &str = "invalid_request_error";
        let (kind, code, param, message): (&str, Option<&str>, Option<&str>, String) = match self {
            ApiError::NoApiKey => (
                INVALID,
                None,
                None,
                "You did not provide an API key. You need to provide your API key in the Authorization \
                 header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See \
                 https://stripe.com/docs/api#authentication for details, or we can help at \
                 https://support.stripe.com/."
                    .to_owned(),
            ),
            ApiError::InvalidApiKey(key) => {
                let shown: String = key.chars().take(8).collect();
                let last: String = key.chars().skip(key.chars().count().saturating_sub(4)).collect();
                (
                    INVALID,
                    None,
                    None,
                    format!("Invalid API Key provided: {shown}****{last}"),
                )
            }
            ApiError::NotForm(content_type) => (
                INVALID,
                None,
                None,
                format!(
                    "Invalid request: Stripe's API takes application/x-www-form-urlencoded parameters, \
                     not {content_type}."
                ),
            ),
            ApiError::UnknownUrl { method, path } => (
                INVALID,
                None,
                None,
                format!(
                    "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or \
                     we can help at https://support.stripe.com/."
                ),
            ),
            ApiError::NoSuchObject { kind, id } => (
                INVALID,
                Some("resource_missing"),
                Some("id"),
                format!("No such {kind}: '{id}'"),
            ),
            ApiError::NoSuchReference { kind, id, param } => (
                INVALID,
                Some("resource_missing"),
                Some(param),
                format!("No such {kind}: '{id}'"),
            ),
            ApiError::MissingParam(param) => (
                INVALID,
                Some("parameter_missing"),
                Some(param),
                format!("Missing required param: {param}."),
            ),
            ApiError::UnknownParam(param) => (
                INVALID,
                Some("parameter_unknown"),
                Some(param),
                format!(
                    "Received unknown parameter: {param}. (Stripe may take it, but the fake Stripe in \
                     tests/api/helpers/stripe.rs does not model it yet.)"
                ),
            ),
            ApiError::Exclusive(params) => (
                INVALID,
                Some("parameters_exclusive"),
                Some(params[0]),
                format!(
                    "You may only specify one of these parameters: {}.",
                    params.join(", ")
                ),
            ),
            ApiError::Invalid { param, code, message } => (INVALID, *code, param.as_deref(), message.clone()),
            ApiError::KeyUsedOnOtherEndpoint { key, first, now } => (
                "idempotency_error",
                None,
                None,
                format!(
                    "Keys for idempotent requests can only be used for the same endpoint they were first \
                     used for ('{first}' vs '{now}'). Try using a key other than '{key}' if you meant to \
                     execute a different request."
                ),
            ),
            ApiError::KeyUsedWithOtherParams(key) => (
                "idempotency_error",
                None,
                None,
                format!(
                    "Keys for idempotent requests can only be used with the same parameters they were \
                     first used with. Try using a key other than '{key}' if you meant to execute a \
                     different request."
                ),
            ),
            ApiError::ServerError => (
                "api_error",
                None,
                None,
                "Sorry, something went wrong. We've already been notified of the problem, but if you \
                 need any help, you can reach us at support.stripe.com/contact."
                    .to_owned(),
            ),
            ApiError::RateLimited => (
                INVALID,
                Some("rate_limit"),
                None,
                "Too many requests hit the API too quickly. We recommend an exponential backoff of your \
                 requests."
                    .to_owned(),
            ),
        };
        let mut error = json!({ "type": kind, "message": message });
        if let Some(code) = code {
            error["code"] = json!(code);
            error["doc_url"] = json!(format!(
                "https://stripe.com/docs/error-codes/{}",
                code.replace('_', "-")
            ));
        }
        if let Some(param) = param {
            error["param"] = json!(param);
        }
        json!({ "error": error })
    }
}

/// An HTTP request as the API reads it.
#[derive(Debug)]
pub(super) struct Call {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
    idempotency_key: Option<String>,
    authorization: Option<String>,
    content_type: Option<String>,
}

fn decode(encoded: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(encoded).into_owned().collect()
}

impl Call {
    fn read(request: &HttpRequest, body: &[u8]) -> Call {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Call {
            method: request.method().as_str().to_owned(),
            path: request.path().to_owned(),
            query: decode(request.query_string().as_bytes()),
            form: decode(body),
            idempotency_key: header("idempotency-key"),
            authorization: header("authorization"),
            content_type: header("content-type"),
        }
    }

    fn recorded(&self) -> RecordedRequest {
        RecordedRequest {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            params: self.form.clone(),
            idempotency_key: self.idempotency_key.clone(),
            at: SystemTime::now(),
        }
    }

    /// A GET's parameters are in its query string, a POST's in its body.
    fn params(&self) -> &[(String, String)] {
        if self.method == "GET" {
            &self.query
        } else {
            &self.form
        }
    }
}

/// An answer to send: its status and JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
    replayed: bool,
}

impl Answer {
    fn new(status: u16, body: &Value) -> Answer {
        Answer {
            status,
            // Stripe indents its answers.
            body: serde_json::to_string_pretty(body).expect("JSON values serialise"),
            replayed: false,
        }
    }

    fn error(error: &ApiError) -> Answer {
        Answer::new(error.status(), &error.body())
    }
}

pub(super) fn lock(account: &Mutex<Account>) -> MutexGuard<'_, Account> {
    // A test that panicked holding the lock left the state whole.
    account.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every request to the server comes here.
/// The stand-in for Checkout's payment page: what a browser sent to a
/// session's `url` sees.
pub(super) async fn checkout_page(id: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><title>Stripe Checkout</title><h1>Stripe Checkout</h1><p id=\"session\">{}</p>",
            id.replace(['<', '&'], "")
        ))
}

pub(super) async fn answer(
    request: HttpRequest,
    body: web::Bytes,
    account: web::Data<Mutex<Account>>,
) -> HttpResponse {
    let call = Call::read(&request, &body);
    let request_id = objects::new_id("req");
    let fault = {
        let mut account = lock(&account);
        account.requests.push(call.recorded());
        account.take_fault(&call.path)
    };
    let answer = match fault {
        None => lock(&account).answer(&call, &request_id),
        Some(Fault::ServerError) => Answer::error(&ApiError::ServerError),
        Some(Fault::RateLimited) => Answer::error(&ApiError::RateLimited),
        Some(Fault::Hang) => {
            tokio::time::sleep(HANG).await;
            Answer::error(&ApiError::ServerError)
        }
    };
    let mut response = HttpResponse::build(
        StatusCode::from_u16(answer.status).expect("the API answers with valid statuses"),
    );
    response
        .content_type("application/json")
        .insert_header(("Request-Id", request_id));
    if answer.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    response.body(answer.body)
}

impl Account {
    fn answer(&mut self, call: &Call, request_id: &str) -> Answer {
        if let Err(error) = self.admit(call) {
            return Answer::error(&error);
        }
        let endpoint = format!("{} {}", call.method, call.path);
        // Stripe ignores idempotency keys on GET: reading is idempotent.
        let key = call.idempotency_key.as_deref().filter(|_| call.method == "POST");
        let mut params = call.form.clone();
        params.sort();
        if let Some((key, stored)) = key.and_then(|k| Some((k.to_owned(), self.idempotent.get(k)?))) {
            return if stored.endpoint != endpoint {
                Answer::error(&ApiError::KeyUsedOnOtherEndpoint {
                    key,
                    first: stored.endpoint.clone(),
                    now: endpoint,
                })
            } else if stored.params != params {
                Answer::error(&ApiError::KeyUsedWithOtherParams(key))
            } else {
                Answer {
                    status: stored.status,
                    body: stored.body.clone(),
                    replayed: true,
                }
            };
        }
        let cause = EventRequest {
            id: Some(request_id.to_owned()),
            idempotency_key: key.map(str::to_owned),
        };
        let answer = match self.route(call, cause) {
            Ok(object) => Answer::new(200, &object),
            Err(error) => Answer::error(&error),
        };
        // Stripe keeps the answer of a request its endpoint ran; refused
        // parameters and missing objects are refused before, and here every
        // request that ran succeeded.
        if let (Some(key), 200) = (key, answer.status) {
            self.idempotent.insert(
                key.to_owned(),
                StoredResponse {
                    endpoint,
                    params,
                    status: answer.status,
                    body: answer.body.clone(),
                },
            );
        }
        answer
    }

    /// What Stripe checks before its idempotency layer: the API key, and
    /// that the parameters are form-encoded.
    fn admit(&self, call: &Call) -> Result<(), ApiError> {
        let key = call
            .authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::NoApiKey)?;
        if key != self.secret_key {
            return Err(ApiError::InvalidApiKey(key.to_owned()));
        }
        match call.content_type.as_deref() {
            _ if call.form.is_empty() => Ok(()),
            Some(form) if form.starts_with("application/x-www-form-urlencoded") => Ok(()),
            other => Err(ApiError::NotForm(other.unwrap_or("no Content-Type").to_owned())),
        }
    }

    fn route(&mut self, call: &Call, cause: EventRequest) -> Result<Value, ApiError> {
        let segments: Vec<&str> = call.path.trim_start_matches('/').split('/').collect();
        let params = call.params();
        const GET: &[&str] = &["expand"];
        match (call.method.as_str(), segments.as_slice()) {
            ("POST", ["v1", "customers"]) => self.create_customer(Params::accepted_by(
                params,
                &["email", "name", "description", "phone", "metadata", "expand"],
            )?),
            ("GET", ["v1", "customers", id]) => {
                self.retrieve(Params::accepted_by(params, GET)?, "customer", id, &self.customers)
            }
            ("POST", ["v1", "checkout", "sessions"]) => self.create_checkout_session(Params::accepted_by(
                params,
                &[
                    "mode",
                    "customer",
                    "customer_email",
                    "line_items[*][price]",
                    "line_items[*][quantity]",
                    "discounts[*][coupon]",
                    "success_url",
                    "cancel_url",
                    "client_reference_id",
                    "metadata",
                    "subscription_data[metadata]",
                    "allow_promotion_codes",
                    "locale",
                    "billing_address_collection",
                    "automatic_tax[enabled]",
                    "expand",
                ],
            )?),
            ("GET", ["v1", "checkout", "sessions", id]) => {
                let params = Params::accepted_by(params, GET)?;
                let session = self
                    .checkout_sessions
                    .iter()
                    .find(|s| s.object["id"] == *id)
                    .ok_or_else(|| ApiError::NoSuchObject {
                        kind: "checkout.session",
                        id: (*id).to_owned(),
                    })?;
                self.expanded(session.object.clone(), params)
            }
            ("POST", ["v1", "billing_portal", "sessions"]) => self.create_portal_session(
                Params::accepted_by(params, &["customer", "return_url", "locale", "expand"])?,
            ),
            ("GET", ["v1", "subscriptions", id]) => self.retrieve(
                Params::accepted_by(params, GET)?,
                "subscription",
                id,
                &self.subscriptions,
            ),
            ("POST", ["v1", "subscriptions", id]) => self.update_subscription(
                id,
                Params::accepted_by(params, &["cancel_at_period_end", "metadata", "expand"])?,
                cause,
            ),
            ("GET", ["v1", "prices", id]) => {
                self.retrieve(Params::accepted_by(params, GET)?, "price", id, &self.prices)
            }
            ("GET", ["v1", "coupons", id]) => {
                self.retrieve(Params::accepted_by(params, GET)?, "coupon", id, &self.coupons)
            }
            _ => Err(ApiError::UnknownUrl {
                method: call.method.clone(),
                path: call.path.clone(),
            }),
        }
    }

    fn retrieve(
        &self,
        params: Params<'_>,
        kind: &'static str,
        id: &str,
        objects: &[Value],
    ) -> Result<Value, ApiError> {
        let object = find(objects, id).ok_or_else(|| ApiError::NoSuchObject {
            kind,
            id: id.to_owned(),
        })?;
        self.expanded(object.clone(), params)
    }

    /// `object` with the fields named by `expand[]` replaced by the objects
    /// their ids name.
    fn expanded(&self, mut object: Value, params: Params<'_>) -> Result<Value, ApiError> {
        for field in params.list("expand") {
            let cannot = || {
                ApiError::invalid(
                    "expand",
                    None,
                    format!("This property cannot be expanded ({field})."),
                )
            };
            match object.get(field) {
                Some(Value::Null) => {}
                Some(Value::String(id)) => {
                    let expanded = self.object(id).ok_or_else(cannot)?.clone();
                    object[field] = expanded;
                }
                _ => return Err(cannot()),
            }
        }
        Ok(object)
    }

    fn create_customer(&mut self, params: Params<'_>) -> Result<Value, ApiError> {
        let owned = |v: Option<&str>| v.map(str::to_owned);
        let customer = objects::customer(NewCustomer {
            email: owned(params.email("email")?),
            name: owned(params.get("name")),
            description: owned(params.get("description")),
            phone: owned(params.get("phone")),
            metadata: params.metadata("metadata")?,
        });
        self.customers.push(customer.clone());
        self.expanded(customer, params)
    }

    /// The object of kind `kind` that parameter `param` names, if it is given.
    fn reference<'a>(
        objects: &'a [Value],
        params: Params<'_>,
        kind: &'static str,
        param: &str,
    ) -> Result<Option<&'a Value>, ApiError> {
        params
            .get(param)
            .map(|id| {
                find(objects, id).ok_or_else(|| ApiError::NoSuchReference {
                    kind,
                    id: id.to_owned(),
                    param: param.to_owned(),
                })
            })
            .transpose()
    }

    fn create_checkout_session(&mut self, params: Params<'_>) -> Result<Value, ApiError> {
        match params.required("mode")? {
            "subscription" => {}
            mode @ ("payment" | "setup") => {
                return Err(ApiError::invalid(
                    "mode",
                    None,
                    format!("The fake Stripe models `subscription` mode only, not `{mode}`."),
                ))
            }
            other => {
                return Err(ApiError::invalid(
                    "mode",
                    None,
                    format!("Invalid mode: must be one of payment, setup, or subscription (got {other})."),
                ))
            }
        }
        match params.indices("line_items").as_slice() {
            [] => return Err(ApiError::MissingParam("line_items".to_owned())),
            ["0"] => {}
            _ => {
                return Err(ApiError::invalid(
                    "line_items",
                    None,
                    "The fake Stripe takes one line item, line_items[0].".to_owned(),
                ))
            }
        }
        if !matches!(params.indices("discounts").as_slice(), [] | ["0"]) {
            return Err(ApiError::invalid(
                "discounts",
                None,
                "You may only specify one discount, discounts[0].".to_owned(),
            ));
        }
        let price = Self::reference(&self.prices, params, "price", "line_items[0][price]")?
            .ok_or_else(|| ApiError::MissingParam("line_items[0][price]".to_owned()))?;
        let quantity = params
            .integer("line_items[0][quantity]")?
            .ok_or_else(|| ApiError::MissingParam("line_items[0][quantity]".to_owned()))?;
        if quantity < 1 {
            return Err(ApiError::invalid(
                "line_items[0][quantity]",
                None,
                "This value must be greater than or equal to 1.".to_owned(),
            ));
        }
        let coupon = Self::reference(&self.coupons, params, "coupon", "discounts[0][coupon]")?;
        let customer = Self::reference(&self.customers, params, "customer", "customer")?;
        let customer_email = params.email("customer_email")?;
        if customer.is_some() && customer_email.is_some() {
            return Err(ApiError::Exclusive(&["customer", "customer_email"]));
        }
        let allow_promotion_codes = params.boolean("allow_promotion_codes")?;
        if allow_promotion_codes.is_some() && coupon.is_some() {
            return Err(ApiError::Exclusive(&["allow_promotion_codes", "discounts"]));
        }
        let success_url = params
            .url("success_url")?
            .ok_or_else(|| ApiError::MissingParam("success_url".to_owned()))?;
        let client_reference_id = params.get("client_reference_id");
        if client_reference_id.is_some_and(|id| id.chars().count() > 200) {
            return Err(ApiError::invalid(
                "client_reference_id",
                None,
                "client_reference_id can be up to 200 characters long.".to_owned(),
            ));
        }
        let mut object = objects::checkout_session(&NewCheckoutSession {
            customer: customer.and_then(|c| c["id"].as_str()),
            customer_email,
            price,
            quantity,
            coupon,
            success_url,
            cancel_url: params.url("cancel_url")?,
            client_reference_id,
            metadata: params.metadata("metadata")?,
            allow_promotion_codes,
            locale: params.get("locale"),
            billing_address_collection: params.get("billing_address_collection"),
            automatic_tax: params.boolean("automatic_tax[enabled]")?.unwrap_or(false),
        });
        // The payer's page is served by this server, so that a browser in
        // the tests can follow Lectern's redirect to it.
        let id = object["id"].as_str().expect("objects have an id").to_owned();
        object["url"] = json!(format!("{}/c/pay/{id}", self.checkout_base));
        self.checkout_sessions.push(CheckoutSession {
            object: object.clone(),
            price: price["id"].as_str().expect("objects have an id").to_owned(),
            quantity,
            coupon: coupon.and_then(|c| c["id"].as_str()).map(str::to_owned),
            subscription_metadata: params.metadata("subscription_data[metadata]")?,
            incomplete_subscription: None,
        });
        self.expanded(object, params)
    }

    fn create_portal_session(&mut self, params: Params<'_>) -> Result<Value, ApiError> {
        let customer = Self::reference(&self.customers, params, "customer", "customer")?
            .ok_or_else(|| ApiError::MissingParam("customer".to_owned()))?;
        let session = objects::billing_portal_session(
            customer["id"].as_str().expect("objects have an id"),
            params.url("return_url")?,
            params.get("locale"),
        );
        self.portal_sessions.push(session.clone());
        self.expanded(session, params)
    }

    fn update_subscription(
        &mut self,
        id: &str,
        params: Params<'_>,
        cause: EventRequest,
    ) -> Result<Value, ApiError> {
        let before = find(&self.subscriptions, id)
            .ok_or_else(|| ApiError::NoSuchObject {
                kind: "subscription",
                id: id.to_owned(),
            })?
            .clone();
        let cancel_at_period_end = params.boolean("cancel_at_period_end")?;
        if before["status"] == "canceled" && cancel_at_period_end.is_some() {
            return Err(ApiError::Invalid {
                param: None,
                code: None,
                message: "A canceled subscription can only update its cancellation_details and metadata."
                    .to_owned(),
            });
        }
        let metadata = params.metadata("metadata")?;
        let clear_metadata = params.get("metadata") == Some("");
        let mut after = before.clone();
        if let Some(cancel) = cancel_at_period_end {
            after["cancel_at_period_end"] = json!(cancel);
            after["cancel_at"] = if cancel {
                before["current_period_end"].clone()
            } else {
                Value::Null
            };
            after["canceled_at"] = if cancel {
                json!(objects::now())
            } else {
                Value::Null
            };
            after["cancellation_details"]["reason"] = if cancel {
                json!("cancellation_requested")
            } else {
                Value::Null
            };
        }
        let merged = after["metadata"]
            .as_object_mut()
            .expect("subscriptions have metadata");
        if clear_metadata {
            merged.clear();
        }
        for (key, value) in metadata {
            // An empty value removes the key, as in Stripe.
            if value == "" {
                merged.remove(&key);
            } else {
                merged.insert(key, value);
            }
        }
        if after != before {
            let subscription = self
                .subscriptions
                .iter_mut()
                .find(|s| s["id"] == id)
                .expect("found above");
            *subscription = after.clone();
            let previous = super::account::previous_attributes(&before, &after);
            self.emit(
                "customer.subscription.updated",
                after.clone(),
                Some(previous),
                cause,
            );
        }
        self.expanded(after, params)
    }
}
