//! The billing context: plans and the one quote function, region discounts,
//! Stripe customers, Checkout, the customer portal, subscriptions as Stripe
//! last told us, manual grants, premium access, and the Stripe events inbox.
//! Every call to Stripe is made by the BillingSupervisor's workers
//! ([`actor`]); handlers call the rest directly.

pub mod actor;
pub mod money;
pub mod stripe;
pub mod webhook;

use std::fmt;
use std::sync::Arc;

use deadpool_postgres::{Pool, Transaction};
use serde_json::json;
use sha2::{Digest, Sha256};
use slog::{info, warn, Logger};
use time::OffsetDateTime;
use tokio_postgres::NoTls;

pub use money::Money;
pub use stripe::{Stripe, StripeConfig, StripeError};
pub use webhook::StripeEvent;

use crate::events::{self, Event};
use crate::mail::{self, Email, EmailAddress, EmailKind, MailError};
use crate::store::{DbConfig, StoreError};

/// How often a plan bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Month,
    Year,
}

/// A plan as configured: its Stripe Price and what that Price charges.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// The plan's name in forms and URLs, e.g. `monthly`.
    pub id: String,
    pub name: String,
    pub price_id: String,
    pub price: Money,
    pub interval: Interval,
}

/// A two-letter country code, as the trusted proxy reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct CountryCode(String);

impl CountryCode {
    /// `in` or `IN` is India; anything else (`XX`, `T1`, garbage) is no country.
    pub fn parse(raw: &str) -> Option<CountryCode> {
        let letters = CountryCode::letters(raw.as_bytes())?;
        Some(CountryCode(letters.iter().map(|&b| char::from(b)).collect()))
    }

    /// The two upper-case letters of a code, as [`CountryCode::parse`]
    /// reads it, with nothing allocated (a page view keeps them).
    pub fn letters(raw: &[u8]) -> Option<[u8; 2]> {
        match raw.trim_ascii() {
            &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A country's discount: a percent, given at Checkout by a Stripe coupon.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RegionDiscount {
    pub country: CountryCode,
    pub percent: u32,
    pub coupon: String,
}

/// What a plan costs a visitor from a country: shown on `/pricing`, and the
/// very price and coupon Checkout is created with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Quote {
    pub plan: Plan,
    pub country: Option<CountryCode>,
    pub discount: Option<RegionDiscount>,
    /// What will be charged each period.
    pub amount: Money,
}

/// The one quote function: `/pricing` shows what it says, and Checkout is
/// created from what it says.
pub fn quote(plan: &Plan, country: Option<&CountryCode>, discount: Option<&RegionDiscount>) -> Quote {
    let discount = discount.filter(|d| Some(&d.country) == country).cloned();
    let amount = match &discount {
        Some(discount) => plan.price.less_percent(discount.percent),
        None => plan.price.clone(),
    };
    Quote {
        plan: plan.clone(),
        country: country.cloned(),
        discount,
        amount,
    }
}

/// Where Stripe sends payers back to, and where emails point: the web
/// layer's routes, handed in.
#[derive(Debug, Clone)]
pub struct BillingUrls {
    /// After a paid Checkout; `{CHECKOUT_SESSION_ID}` is Stripe's placeholder.
    pub checkout_success: String,
    pub checkout_cancel: String,
    /// The account's billing page: the portal's return address and emails' link.
    pub account_billing: String,
    pub pricing: String,
}

#[derive(Debug, Clone)]
pub struct BillingConfig {
    pub plans: Vec<Plan>,
    /// How long a `past_due` subscription keeps its access after its period ended.
    pub grace: time::Duration,
    /// None: no Stripe key is configured, and nothing can be bought.
    pub stripe: Option<StripeConfig>,
    pub urls: BillingUrls,
}

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("payments are not set up (stripe.secret_key is unset)")]
    NotConfigured,
    #[error("there is no plan {0:?}")]
    UnknownPlan(String),
    #[error("the account already has premium access")]
    AlreadySubscribed,
    #[error("the account has no subscription to change")]
    NoSubscription,
    #[error("no account has the address {0}")]
    NoAccount(String),
    #[error("a grant's note is at most 500 characters")]
    NoteTooLong,
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot enqueue the email: {0}")]
    Mail(#[from] MailError),
    #[error("unexpected value in the database: {0}")]
    StoredValue(String),
}

/// The advisory-lock class of a scheduled job's lease (its second key is
/// the hash of the job's name).
pub const JOB_LEASE_CLASS: i32 = 0x6a62; // "jb"

/// A node's hold on a scheduled job while it runs one period of it: a
/// connection of its own, holding the job's advisory lock. Should the node
/// die, PostgreSQL ends the connection and the lock with it, and the next
/// node to look takes the unfinished period over.
pub struct JobLease {
    client: tokio_postgres::Client,
}

impl From<tokio_postgres::Error> for BillingError {
    fn from(e: tokio_postgres::Error) -> Self {
        BillingError::Store(StoreError::Query(e))
    }
}

impl From<deadpool_postgres::PoolError> for BillingError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        BillingError::Store(StoreError::Checkout(e))
    }
}

impl BillingError {
    /// Worth trying again: Stripe or the database is briefly away.
    pub fn is_transient(&self) -> bool {
        match self {
            BillingError::Stripe(e) => e.is_transient(),
            BillingError::Store(_) | BillingError::Mail(_) => true,
            _ => false,
        }
    }
}

/// The premium access rule, in SQL, for the user `$1` with a grace of `$2`
/// seconds: an active or trialing subscription, a past-due one within its
/// grace, or a grant that has begun and not expired.
const PREMIUM_ACCESS: &str = "EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = $1 AND \
       (s.status IN ('active', 'trialing') OR (s.status = 'past_due' \
        AND s.current_period_end + make_interval(secs => $2::float8) > now()))) \
    OR EXISTS (SELECT 1 FROM grants g WHERE g.user_id = $1 AND g.starts_at <= now() AND g.expires_at > now())";

/// A subscription as the account page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubscriptionView {
    pub id: String,
    pub status: String,
    /// The plan's name, as configured.
    pub plan: Option<String>,
    /// What each period costs, as people write it (`19.00 USD`).
    pub amount: String,
    pub current_period_end: Option<String>,
    pub cancel_at_period_end: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GrantView {
    pub source: String,
    pub months: i32,
    pub starts_at: String,
    pub expires_at: String,
    pub note: String,
}

/// What `/account/billing` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BillingStatus {
    pub access: bool,
    pub subscription: Option<SubscriptionView>,
    pub grants: Vec<GrantView>,
}

/// A Checkout Session made for a member: where to send them.
#[derive(Debug, Clone)]
pub struct CheckoutStarted {
    pub session_id: String,
    pub url: String,
    pub quote: Quote,
}

/// What reconciliation found and fixed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReconcileReport {
    pub checked: usize,
    pub fixes: Vec<String>,
    pub problems: Vec<String>,
}

impl fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} subscription(s) checked, {} fixed, {} problem(s)",
            self.checked,
            self.fixes.len(),
            self.problems.len()
        )?;
        for fix in &self.fixes {
            write!(f, "\nfixed: {fix}")?;
        }
        for problem in &self.problems {
            write!(f, "\nproblem: {problem}")?;
        }
        Ok(())
    }
}

/// Who gives a grant, for its audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantedBy {
    /// `lectern billing grant` on the server.
    Command,
    /// An administrator (their user id), in the admin area.
    Admin(i64),
}

/// Something billing flagged for the operator to look at (a card from
/// another country than the one quoted, say); never a block.
#[derive(Debug, Clone)]
pub struct MemberFlag {
    pub kind: String,
    pub detail: String,
    pub created_at: OffsetDateTime,
}

/// A grant as made.
#[derive(Debug, Clone)]
pub struct Grant {
    pub user_id: i64,
    pub starts_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// The billing context, with its pool, configuration and Stripe client.
#[derive(Clone)]
pub struct Billing {
    pool: Pool,
    config: Arc<BillingConfig>,
    stripe: Option<Stripe>,
    log: Logger,
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A date as emails write it: `4 March 2026`.
fn long_date(at: OffsetDateTime) -> String {
    at.format(time::macros::format_description!(
        "[day padding:none] [month repr:long] [year]"
    ))
    .unwrap_or_default()
}

fn from_unix(secs: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(secs).ok()
}

/// An idempotency key for a POST to Stripe, from what the POST does: the
/// same action retried gets the same key, so Stripe does it once.
fn idempotency_key(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    format!("lectern-{}", hex::encode(&hasher.finalize()[..16]))
}

impl Billing {
    pub fn new(pool: Pool, config: BillingConfig, log: Logger) -> Result<Billing, BillingError> {
        let stripe = config.stripe.clone().map(Stripe::new).transpose()?;
        Ok(Billing {
            pool,
            config: Arc::new(config),
            stripe,
            log,
        })
    }

    pub fn plans(&self) -> &[Plan] {
        &self.config.plans
    }

    pub fn is_configured(&self) -> bool {
        self.stripe.is_some()
    }

    fn stripe(&self) -> Result<&Stripe, BillingError> {
        self.stripe.as_ref().ok_or(BillingError::NotConfigured)
    }

    fn plan(&self, id: &str) -> Result<&Plan, BillingError> {
        self.config
            .plans
            .iter()
            .find(|plan| plan.id == id)
            .ok_or_else(|| BillingError::UnknownPlan(id.to_owned()))
    }

    fn grace_secs(&self) -> f64 {
        self.config.grace.as_seconds_f64()
    }

    pub async fn region_discount(
        &self,
        country: Option<&CountryCode>,
    ) -> Result<Option<RegionDiscount>, BillingError> {
        let Some(country) = country else {
            return Ok(None);
        };
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached("SELECT percent, coupon FROM region_discounts WHERE country = $1")
            .await?;
        Ok(client
            .query_opt(&statement, &[&country.as_str()])
            .await?
            .map(|row| RegionDiscount {
                country: country.clone(),
                percent: u32::try_from(row.get::<_, i32>(0)).unwrap_or(0),
                coupon: row.get(1),
            }))
    }

    /// Every region discount, by country.
    pub async fn list_region_discounts(&self) -> Result<Vec<RegionDiscount>, BillingError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT country, percent, coupon FROM region_discounts ORDER BY country",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let country: String = row.get(0);
                Ok(RegionDiscount {
                    country: CountryCode::parse(&country).ok_or(BillingError::StoredValue(country))?,
                    percent: u32::try_from(row.get::<_, i32>(1)).unwrap_or(0),
                    coupon: row.get(2),
                })
            })
            .collect()
    }

    /// Every plan, quoted for `country`.
    pub async fn pricing(&self, country: Option<&CountryCode>) -> Result<Vec<Quote>, BillingError> {
        let discount = self.region_discount(country).await?;
        Ok(self
            .config
            .plans
            .iter()
            .map(|plan| quote(plan, country, discount.as_ref()))
            .collect())
    }

    /// Whether `user_id` may watch premium episodes now.
    pub async fn has_premium_access(&self, user_id: i64) -> Result<bool, BillingError> {
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(&format!("SELECT {PREMIUM_ACCESS}")).await?;
        Ok(client
            .query_one(&statement, &[&user_id, &self.grace_secs()])
            .await?
            .get(0))
    }

    /// What `/account/billing` shows for `user_id`.
    pub async fn status(&self, user_id: i64) -> Result<BillingStatus, BillingError> {
        let access = self.has_premium_access(user_id).await?;
        let client = self.pool.get().await?;
        let subscription = client
            .query_opt(
                "SELECT id, status, plan, amount, currency, current_period_end, cancel_at_period_end \
                 FROM subscriptions WHERE user_id = $1 \
                 ORDER BY (status IN ('active', 'trialing', 'past_due')) DESC, updated_at DESC LIMIT 1",
                &[&user_id],
            )
            .await?
            .map(|row| SubscriptionView {
                id: row.get(0),
                status: row.get(1),
                plan: row
                    .get::<_, Option<String>>(2)
                    .map(|id| self.plan(&id).map_or(id.clone(), |plan| plan.name.clone())),
                amount: Money::new(i64::from(row.get::<_, i32>(3)), row.get(4)).to_string(),
                current_period_end: row.get::<_, Option<OffsetDateTime>>(5).map(rfc3339),
                cancel_at_period_end: row.get(6),
            });
        let grants = client
            .query(
                "SELECT source, months, starts_at, expires_at, note FROM grants \
                 WHERE user_id = $1 AND expires_at > now() ORDER BY starts_at",
                &[&user_id],
            )
            .await?
            .iter()
            .map(|row| GrantView {
                source: row.get(0),
                months: row.get(1),
                starts_at: rfc3339(row.get(2)),
                expires_at: rfc3339(row.get(3)),
                note: row.get(4),
            })
            .collect();
        Ok(BillingStatus {
            access,
            subscription,
            grants,
        })
    }

    /// The account's Stripe customer, made once however many checkouts
    /// race for it: the account's row is locked while it is made, and the
    /// idempotency key makes a retried creation return the same customer.
    async fn ensure_customer(&self, user_id: i64) -> Result<String, BillingError> {
        let stripe = self.stripe()?;
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let user = txn
            .query_opt(
                "SELECT email, name FROM users WHERE id = $1 FOR UPDATE",
                &[&user_id],
            )
            .await?
            .ok_or_else(|| BillingError::NoAccount(user_id.to_string()))?;
        if let Some(row) = txn
            .query_opt(
                "SELECT customer_id FROM billing_customers WHERE user_id = $1",
                &[&user_id],
            )
            .await?
        {
            return Ok(row.get(0));
        }
        let key = idempotency_key(&["customer", &user_id.to_string()]);
        let customer = stripe
            .create_customer(user_id, user.get(0), user.get(1), &key)
            .await?;
        txn.execute(
            "INSERT INTO billing_customers (user_id, customer_id) VALUES ($1, $2)",
            &[&user_id, &customer.id],
        )
        .await?;
        txn.commit().await?;
        info!(self.log, "Stripe customer created"; "user_id" => user_id, "customer" => &customer.id);
        Ok(customer.id)
    }

    /// Creates a Checkout Session in subscription mode (Stripe handles SCA)
    /// for `plan`, quoted for `country`, and records what was quoted.
    pub async fn start_checkout(
        &self,
        user_id: i64,
        plan_id: &str,
        country: Option<&CountryCode>,
    ) -> Result<CheckoutStarted, BillingError> {
        let stripe = self.stripe()?;
        let plan = self.plan(plan_id)?.clone();
        if self.has_premium_access(user_id).await? {
            return Err(BillingError::AlreadySubscribed);
        }
        let customer = self.ensure_customer(user_id).await?;
        let discount = self.region_discount(country).await?;
        let quote = quote(&plan, country, discount.as_ref());
        let urls = &self.config.urls;
        let country_text = country.map(CountryCode::to_string).unwrap_or_default();
        let mut form = vec![
            ("mode", "subscription".to_owned()),
            ("customer", customer.clone()),
            ("line_items[0][price]", plan.price_id.clone()),
            ("line_items[0][quantity]", "1".to_owned()),
            ("success_url", urls.checkout_success.clone()),
            ("cancel_url", urls.checkout_cancel.clone()),
            ("client_reference_id", user_id.to_string()),
            ("metadata[user_id]", user_id.to_string()),
            ("metadata[plan]", plan.id.clone()),
            ("metadata[country]", country_text.clone()),
            ("metadata[quoted_amount]", quote.amount.amount.to_string()),
            ("subscription_data[metadata][user_id]", user_id.to_string()),
            ("subscription_data[metadata][plan]", plan.id.clone()),
            ("subscription_data[metadata][country]", country_text.clone()),
        ];
        if let Some(discount) = &quote.discount {
            form.push(("discounts[0][coupon]", discount.coupon.clone()));
        }
        // The same checkout asked for again within the hour (a double
        // click, a retry after an error) is the same session; a session
        // already finished or expired is not handed out again.
        let hour = (OffsetDateTime::now_utc().unix_timestamp() / 3600).to_string();
        let coupon = quote.discount.as_ref().map_or("", |d| d.coupon.as_str());
        let mut session = None;
        for attempt in ["1", "2", "3"] {
            let key = idempotency_key(&[
                "checkout",
                &user_id.to_string(),
                &plan.price_id,
                coupon,
                &country_text,
                &hour,
                attempt,
            ]);
            let made = stripe.create_checkout_session(&form, &key).await?;
            if made.status.as_deref().is_none_or(|status| status == "open") {
                session = Some(made);
                break;
            }
        }
        let session = session.ok_or_else(|| {
            BillingError::Stripe(StripeError::Unreadable("no open Checkout Session".into()))
        })?;
        let url = session
            .url
            .clone()
            .ok_or_else(|| BillingError::Stripe(StripeError::Unreadable("a session without a url".into())))?;
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO checkouts (session_id, user_id, plan, country, amount, currency, coupon) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (session_id) DO NOTHING",
                &[
                    &session.id,
                    &user_id,
                    &plan.id,
                    &country.map(CountryCode::as_str),
                    &i32::try_from(quote.amount.amount).unwrap_or(i32::MAX),
                    &quote.amount.currency,
                    &quote.discount.as_ref().map(|d| d.coupon.as_str()),
                ],
            )
            .await?;
        let started = Event::new(
            "checkout.started",
            Some(session.id.clone()),
            json!({ "user_id": user_id, "plan": plan.id, "country": country_text,
                    "amount": quote.amount.amount, "currency": quote.amount.currency }),
        );
        events::record_in(&client, &started).await?;
        info!(self.log, "checkout started"; "user_id" => user_id, "plan" => &plan.id,
            "session" => &session.id, "amount" => %quote.amount);
        Ok(CheckoutStarted {
            session_id: session.id,
            url,
            quote,
        })
    }

    /// A customer portal session for the account's customer.
    pub async fn portal_url(&self, user_id: i64) -> Result<String, BillingError> {
        let stripe = self.stripe()?;
        let client = self.pool.get().await?;
        let customer: String = client
            .query_opt(
                "SELECT customer_id FROM billing_customers WHERE user_id = $1",
                &[&user_id],
            )
            .await?
            .ok_or(BillingError::NoSubscription)?
            .get(0);
        // A portal session lives minutes: a new one per minute at most.
        let minute = (OffsetDateTime::now_utc().unix_timestamp() / 60).to_string();
        let key = idempotency_key(&["portal", &customer, &minute]);
        Ok(stripe
            .create_portal_session(&customer, &self.config.urls.account_billing, &key)
            .await?
            .url)
    }

    /// Cancels the account's subscription at the end of its period, or
    /// resumes it; the local row follows Stripe's answer at once (and the
    /// webhook that follows changes nothing more).
    pub async fn set_cancel_at_period_end(&self, user_id: i64, cancel: bool) -> Result<(), BillingError> {
        let stripe = self.stripe()?;
        let client = self.pool.get().await?;
        let id: String = client
            .query_opt(
                "SELECT id FROM subscriptions WHERE user_id = $1 \
                 AND status IN ('active', 'trialing', 'past_due') ORDER BY updated_at DESC LIMIT 1",
                &[&user_id],
            )
            .await?
            .ok_or(BillingError::NoSubscription)?
            .get(0);
        drop(client);
        let key = idempotency_key(&["cancel_at_period_end", &id, &cancel.to_string()]);
        let subscription = stripe.set_cancel_at_period_end(&id, cancel, &key).await?;
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        self.store_subscription(&txn, &subscription, Some(user_id))
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Records a verified Stripe event once; false when it was seen before.
    pub async fn record_event(&self, event: &StripeEvent) -> Result<bool, BillingError> {
        let client = self.pool.get().await?;
        // One statement, one commit: the row and the wake-up, or neither.
        let inserted = client
            .query(
                "WITH inserted AS (\
                     INSERT INTO stripe_events (id, type, created, payload) \
                     VALUES ($1, $2, $3, $4::text::jsonb) \
                     ON CONFLICT (id) DO NOTHING RETURNING id) \
                 SELECT pg_notify($5, '') FROM inserted",
                &[
                    &event.id,
                    &event.kind,
                    &event.created,
                    &event.payload,
                    &actor::NOTIFY_CHANNEL,
                ],
            )
            .await?;
        Ok(inserted.len() == 1)
    }

    /// Handles the longest-due unhandled event, if any: its effects and its
    /// mark as handled commit together. A transient failure (Stripe or the
    /// database away) leaves it for later, with a backoff.
    pub async fn process_next_event(&self) -> Result<Option<(String, String)>, BillingError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let Some(row) = txn
            .query_opt(
                "SELECT id, type, payload, attempts FROM stripe_events \
                 WHERE processed_at IS NULL AND due_at <= now() \
                 ORDER BY created, received_at FOR UPDATE SKIP LOCKED LIMIT 1",
                &[],
            )
            .await?
        else {
            return Ok(None);
        };
        let id: String = row.get(0);
        let kind: String = row.get(1);
        let attempts: i32 = row.get(3);
        // A payload PostgreSQL holds but serde_json cannot read back (a
        // number beyond a float's range, nesting past its limit) would fail
        // the same way every time: it is set aside like any other failure.
        let handled = match row.try_get::<_, serde_json::Value>(2) {
            Ok(payload) => self.handle_event(&txn, &kind, &payload["data"]["object"]).await,
            Err(e) => Err(BillingError::StoredValue(format!("the event's payload: {e}"))),
        };
        match handled {
            Ok(outcome) => {
                txn.execute(
                    "UPDATE stripe_events SET processed_at = now(), attempts = attempts + 1, \
                     outcome = $2, last_error = NULL WHERE id = $1",
                    &[&id, &outcome],
                )
                .await?;
                txn.commit().await?;
                Ok(Some((id, outcome)))
            }
            Err(e) if e.is_transient() => {
                drop(txn);
                let delay = f64::from(30 * (1 << attempts.clamp(0, 7)));
                let client = self.pool.get().await?;
                client
                    .execute(
                        "UPDATE stripe_events SET attempts = attempts + 1, last_error = $2, \
                         due_at = now() + make_interval(secs => $3) WHERE id = $1",
                        &[&id, &e.to_string(), &delay],
                    )
                    .await?;
                warn!(self.log, "Stripe event to retry"; "event" => &id, "type" => &kind, "error" => %e);
                Err(e)
            }
            Err(e) => {
                drop(txn);
                let client = self.pool.get().await?;
                client
                    .execute(
                        "UPDATE stripe_events SET processed_at = now(), attempts = attempts + 1, \
                         outcome = 'failed', last_error = $2 WHERE id = $1",
                        &[&id, &e.to_string()],
                    )
                    .await?;
                warn!(self.log, "Stripe event could not be handled"; "event" => &id, "type" => &kind, "error" => %e);
                Ok(Some((id, format!("failed: {e}"))))
            }
        }
    }

    async fn handle_event(
        &self,
        txn: &Transaction<'_>,
        kind: &str,
        object: &serde_json::Value,
    ) -> Result<String, BillingError> {
        let text = |key: &str| object.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let user_hint = object
            .get("metadata")
            .and_then(|m| m.get("user_id"))
            .and_then(|v| v.as_str())
            .or_else(|| object.get("client_reference_id").and_then(|v| v.as_str()))
            .and_then(|v| v.parse::<i64>().ok());
        match kind {
            "checkout.session.completed" => {
                if let (Some(user_id), Some(customer)) = (user_hint, text("customer")) {
                    txn.execute(
                        "INSERT INTO billing_customers (user_id, customer_id) \
                         SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM users WHERE id = $1) \
                         ON CONFLICT DO NOTHING",
                        &[&user_id, &customer],
                    )
                    .await?;
                }
                if let Some(session) = text("id") {
                    txn.execute(
                        "UPDATE checkouts SET completed_at = coalesce(completed_at, now()) WHERE session_id = $1",
                        &[&session],
                    )
                    .await?;
                }
                match text("subscription") {
                    Some(subscription) => self.sync_subscription(txn, &subscription, user_hint).await,
                    None => Ok("checkout without a subscription".into()),
                }
            }
            "customer.subscription.created"
            | "customer.subscription.updated"
            | "customer.subscription.deleted" => match text("id") {
                Some(subscription) => self.sync_subscription(txn, &subscription, user_hint).await,
                None => Ok("subscription without an id".into()),
            },
            "invoice.paid" | "invoice.payment_failed" => {
                let subscription = text("subscription").or_else(|| {
                    object
                        .pointer("/parent/subscription_details/subscription")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                });
                let mut outcome = match &subscription {
                    Some(subscription) => self.sync_subscription(txn, subscription, None).await?,
                    None => "invoice without a subscription".into(),
                };
                if kind == "invoice.paid" {
                    if let (Some(id), Some(amount)) =
                        (text("id"), object.get("amount_paid").and_then(|v| v.as_i64()))
                    {
                        self.record_payment(txn, &id, "invoice", amount, object).await?;
                    }
                } else if let Some(subscription) = &subscription {
                    if self
                        .mail_subscriber(txn, subscription, EmailKind::PaymentFailed)
                        .await?
                    {
                        outcome.push_str("; payment failure mailed");
                    }
                }
                Ok(outcome)
            }
            "charge.refunded" => {
                if let (Some(id), Some(amount)) =
                    (text("id"), object.get("amount_refunded").and_then(|v| v.as_i64()))
                {
                    self.record_payment(txn, &format!("refund:{id}"), "refund", -amount, object)
                        .await?;
                }
                Ok("refund recorded".into())
            }
            _ => Ok("recorded; nothing to do".into()),
        }
    }

    async fn record_payment(
        &self,
        txn: &Transaction<'_>,
        id: &str,
        kind: &str,
        amount: i64,
        object: &serde_json::Value,
    ) -> Result<(), BillingError> {
        let customer = object
            .get("customer")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let currency = object.get("currency").and_then(|v| v.as_str()).unwrap_or("usd");
        let created = object
            .get("created")
            .and_then(|v| v.as_i64())
            .and_then(from_unix)
            .unwrap_or_else(OffsetDateTime::now_utc);
        txn.execute(
            "INSERT INTO payments (id, user_id, kind, amount, currency, occurred_at) \
             VALUES ($1, (SELECT user_id FROM billing_customers WHERE customer_id = $2), $3, $4, $5, $6) \
             ON CONFLICT (id) DO NOTHING",
            &[
                &id,
                &customer,
                &kind,
                &i32::try_from(amount).unwrap_or(i32::MAX),
                &currency,
                &created,
            ],
        )
        .await?;
        Ok(())
    }

    /// Re-reads a subscription from Stripe and stores what Stripe says: the
    /// order events arrive in does not matter, and an event about a
    /// subscription Lectern has not seen yet creates its row.
    async fn sync_subscription(
        &self,
        txn: &Transaction<'_>,
        id: &str,
        user_hint: Option<i64>,
    ) -> Result<String, BillingError> {
        let stripe = self.stripe()?;
        let subscription = match stripe.get_subscription(id).await {
            Ok(subscription) => subscription,
            Err(StripeError::NotFound(_)) => return Ok(format!("{id} is unknown to Stripe")),
            Err(e) => return Err(e.into()),
        };
        self.store_subscription(txn, &subscription, user_hint).await
    }

    /// Stores Stripe's view of a subscription, with what its changes cause:
    /// the "started" email once, the "cancellation" email when it is set to
    /// end, a flag when the card's country is not the one quoted.
    async fn store_subscription(
        &self,
        txn: &Transaction<'_>,
        subscription: &stripe::Subscription,
        user_hint: Option<i64>,
    ) -> Result<String, BillingError> {
        // One writer per subscription at a time, so that an older read
        // cannot overwrite a newer one.
        txn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&subscription.id])
            .await?;
        let metadata_user = subscription
            .metadata
            .get("user_id")
            .and_then(|v| v.parse::<i64>().ok());
        let user_id: Option<i64> = txn
            .query_opt(
                "SELECT id FROM users WHERE id = coalesce($1, $2, \
                   (SELECT user_id FROM billing_customers WHERE customer_id = $3))",
                &[&metadata_user, &user_hint, &subscription.customer],
            )
            .await?
            .map(|row| row.get(0));
        let price = subscription.price();
        let price_id = price.map(|p| p.id.clone()).unwrap_or_default();
        let plan = self.config.plans.iter().find(|plan| plan.price_id == price_id);
        let list = price
            .map(|p| Money::new(p.unit_amount.unwrap_or(0), &p.currency))
            .unwrap_or_else(|| Money::new(0, "usd"));
        // What the member was quoted at Checkout for this plan, if Lectern made it.
        let quoted = match user_id {
            Some(user_id) => txn
                .query_opt(
                    "SELECT amount, currency, country FROM checkouts WHERE user_id = $1 AND plan = $2 \
                     ORDER BY completed_at DESC NULLS LAST, created_at DESC LIMIT 1",
                    &[&user_id, &plan.map(|p| p.id.as_str()).unwrap_or_default()],
                )
                .await?
                .map(|row| {
                    (
                        Money::new(i64::from(row.get::<_, i32>(0)), row.get(1)),
                        row.get::<_, Option<String>>(2),
                    )
                }),
            None => None,
        };
        let amount = quoted.as_ref().map_or(list, |(money, _)| money.clone());
        let period_end = subscription.period_end().and_then(from_unix);
        let card_country = subscription.card_country();
        let before = txn
            .query_opt(
                "SELECT status, cancel_at_period_end, started_at IS NOT NULL FROM subscriptions WHERE id = $1",
                &[&subscription.id],
            )
            .await?;
        let row = txn
            .query_one(
                "INSERT INTO subscriptions (id, user_id, customer_id, status, plan, price_id, amount, currency, \
                   current_period_end, cancel_at_period_end, card_country) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (id) DO UPDATE SET user_id = coalesce(EXCLUDED.user_id, subscriptions.user_id), \
                   status = EXCLUDED.status, plan = EXCLUDED.plan, price_id = EXCLUDED.price_id, \
                   amount = EXCLUDED.amount, currency = EXCLUDED.currency, \
                   current_period_end = EXCLUDED.current_period_end, \
                   cancel_at_period_end = EXCLUDED.cancel_at_period_end, \
                   card_country = coalesce(EXCLUDED.card_country, subscriptions.card_country), updated_at = now() \
                 RETURNING user_id",
                &[
                    &subscription.id,
                    &user_id,
                    &subscription.customer,
                    &subscription.status,
                    &plan.map(|p| p.id.as_str()),
                    &price_id,
                    &i32::try_from(amount.amount).unwrap_or(i32::MAX),
                    &amount.currency,
                    &period_end,
                    &subscription.cancel_at_period_end,
                    &card_country,
                ],
            )
            .await
            .map_err(|e| {
                if e.code() == Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION) {
                    BillingError::StoredValue(format!("subscription status {:?}", subscription.status))
                } else {
                    e.into()
                }
            })?;
        let user_id: Option<i64> = row.get(0);
        let mut outcome = format!("{} is {}", subscription.id, subscription.status);
        let Some(user_id) = user_id else {
            return Ok(format!(
                "{outcome}; no account known for {}",
                subscription.customer
            ));
        };
        let was_started = before.as_ref().is_some_and(|row| row.get::<_, bool>(2));
        let was_cancelling = before.as_ref().is_some_and(|row| row.get::<_, bool>(1));
        let live = matches!(subscription.status.as_str(), "active" | "trialing");
        if live && !was_started {
            txn.execute(
                "UPDATE subscriptions SET started_at = now() WHERE id = $1",
                &[&subscription.id],
            )
            .await?;
            self.mail_user(
                txn,
                user_id,
                EmailKind::SubscriptionStarted,
                json!({
                    "plan": plan.map_or("Premium", |p| p.name.as_str()),
                    "amount": amount.to_string(),
                    "next_charge": period_end.map(long_date),
                    "billing_url": self.config.urls.account_billing,
                }),
            )
            .await?;
            let started = json!({ "user_id": user_id, "plan": plan.map(|p| &p.id), "amount": amount.amount,
                                  "currency": amount.currency });
            events::record_in(
                txn,
                &Event::new("subscription.started", Some(subscription.id.clone()), started),
            )
            .await?;
            outcome.push_str("; started, welcome mailed");
        }
        if subscription.cancel_at_period_end && !was_cancelling && subscription.status != "canceled" {
            self.mail_user(
                txn,
                user_id,
                EmailKind::CancellationConfirmed,
                json!({ "access_until": period_end.map(long_date), "billing_url": self.config.urls.account_billing }),
            )
            .await?;
            let cancelled = json!({ "user_id": user_id, "access_until": period_end.map(long_date) });
            events::record_in(
                txn,
                &Event::new("subscription.cancelled", Some(subscription.id.clone()), cancelled),
            )
            .await?;
            outcome.push_str("; cancellation mailed");
        }
        if let (Some(card), Some((_, Some(quoted_country)))) = (&card_country, &quoted) {
            if !card.eq_ignore_ascii_case(quoted_country) {
                let flagged = txn
                    .execute(
                        "INSERT INTO member_flags (user_id, kind, detail) VALUES ($1, 'card_country_mismatch', $2) \
                         ON CONFLICT DO NOTHING",
                        &[&user_id, &format!("quoted for {quoted_country}, card from {card}")],
                    )
                    .await?;
                if flagged == 1 {
                    outcome.push_str("; card country flagged");
                }
            }
        }
        Ok(outcome)
    }

    async fn mail_user(
        &self,
        txn: &Transaction<'_>,
        user_id: i64,
        kind: EmailKind,
        mut data: serde_json::Value,
    ) -> Result<(), BillingError> {
        let Some(row) = txn
            .query_opt("SELECT email, name FROM users WHERE id = $1", &[&user_id])
            .await?
        else {
            return Ok(());
        };
        let email: String = row.get(0);
        let to = EmailAddress::parse(&email).map_err(|_| BillingError::StoredValue(email.clone()))?;
        if let Some(map) = data.as_object_mut() {
            map.insert("name".into(), json!(row.get::<_, String>(1)));
        }
        mail::enqueue(txn, Email { to, kind, data }).await?;
        Ok(())
    }

    /// Mails the account behind `subscription`, if there is one.
    async fn mail_subscriber(
        &self,
        txn: &Transaction<'_>,
        subscription: &str,
        kind: EmailKind,
    ) -> Result<bool, BillingError> {
        let user: Option<i64> = txn
            .query_opt(
                "SELECT user_id FROM subscriptions WHERE id = $1",
                &[&subscription],
            )
            .await?
            .and_then(|row| row.get(0));
        match user {
            Some(user_id) => {
                let data = json!({ "billing_url": self.config.urls.account_billing });
                self.mail_user(txn, user_id, kind, data).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Compares every subscription Lectern believes live with Stripe, fixes
    /// what drifted, and checks that the plans' prices and the region
    /// coupons in Stripe say what Lectern charges.
    pub async fn reconcile(&self) -> Result<ReconcileReport, BillingError> {
        let stripe = self.stripe()?;
        let mut report = ReconcileReport::default();
        let local = {
            let client = self.pool.get().await?;
            client
                .query(
                    "SELECT id, user_id, status, cancel_at_period_end, current_period_end FROM subscriptions \
                     WHERE status NOT IN ('canceled', 'incomplete_expired') ORDER BY id",
                    &[],
                )
                .await?
        };
        for row in &local {
            let id: String = row.get(0);
            report.checked += 1;
            let remote = match stripe.get_subscription(&id).await {
                Ok(remote) => remote,
                Err(StripeError::NotFound(_)) => {
                    report.problems.push(format!("{id} is unknown to Stripe"));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let status: String = row.get(2);
            let cancelling: bool = row.get(3);
            let period_end: Option<OffsetDateTime> = row.get(4);
            let remote_end = remote.period_end().and_then(from_unix);
            if remote.status != status
                || remote.cancel_at_period_end != cancelling
                || remote_end != period_end
            {
                let mut client = self.pool.get().await?;
                let txn = client.transaction().await?;
                self.store_subscription(&txn, &remote, row.get(1)).await?;
                txn.commit().await?;
                report.fixes.push(format!(
                    "{id}: status {status} → {}, cancel at period end {cancelling} → {}",
                    remote.status, remote.cancel_at_period_end
                ));
            }
        }
        for plan in &self.config.plans {
            match stripe.get_price(&plan.price_id).await {
                Ok(price)
                    if price.unit_amount == Some(plan.price.amount)
                        && price.currency.eq_ignore_ascii_case(&plan.price.currency) => {}
                Ok(price) => report.problems.push(format!(
                    "plan {}: Stripe's price {} charges {:?} {}, the configuration says {}",
                    plan.id, price.id, price.unit_amount, price.currency, plan.price
                )),
                Err(StripeError::NotFound(_)) => report
                    .problems
                    .push(format!("plan {}: Stripe has no price {}", plan.id, plan.price_id)),
                Err(e) => return Err(e.into()),
            }
        }
        let mut coupons: Vec<(String, u32)> = self
            .list_region_discounts()
            .await?
            .into_iter()
            .map(|d| (d.coupon, d.percent))
            .collect();
        coupons.sort();
        coupons.dedup();
        for (coupon, percent) in coupons {
            match stripe.get_coupon(&coupon).await {
                Ok(found)
                    if found
                        .percent_off
                        .is_some_and(|p| (p - f64::from(percent)).abs() < 0.001) => {}
                Ok(found) => report.problems.push(format!(
                    "coupon {coupon}: Stripe takes {:?}% off, the region table says {percent}%",
                    found.percent_off
                )),
                Err(StripeError::NotFound(_)) => report
                    .problems
                    .push(format!("coupon {coupon} is missing in Stripe")),
                Err(e) => return Err(e.into()),
            }
        }
        for fix in &report.fixes {
            warn!(self.log, "billing drift fixed"; "fix" => fix);
        }
        for problem in &report.problems {
            warn!(self.log, "billing problem found by reconciliation"; "problem" => problem);
        }
        Ok(report)
    }

    /// Claims `job`'s run for `period` for `node`, unless the period's run
    /// finished, or another node is running the job (it holds the job's
    /// lease). A claim left by a node that died while running the job is
    /// taken over: the period is run again, here.
    pub async fn claim_job(
        &self,
        database: &DbConfig,
        job: &str,
        period: OffsetDateTime,
        node: &str,
    ) -> Result<Option<JobLease>, BillingError> {
        let finished = self
            .pool
            .get()
            .await?
            .query_opt(
                "SELECT 1 FROM job_runs WHERE job = $1 AND period = $2 AND finished_at IS NOT NULL",
                &[&job, &period],
            )
            .await?;
        if finished.is_some() {
            return Ok(None);
        }
        let (client, connection) = database.connect(NoTls).await?;
        tokio::spawn(connection);
        let leased: bool = client
            .query_one(
                &format!("SELECT pg_try_advisory_lock({JOB_LEASE_CLASS}, hashtext($1))"),
                &[&job],
            )
            .await?
            .get(0);
        // Under the lease, a row that is not finished was left by a node
        // that died: it is this node's now.
        let claimed = leased
            && client
                .execute(
                    "INSERT INTO job_runs (job, period, node) VALUES ($1, $2, $3) \
                     ON CONFLICT (job, period) DO UPDATE SET node = excluded.node, started_at = now() \
                     WHERE job_runs.finished_at IS NULL",
                    &[&job, &period, &node],
                )
                .await?
                == 1;
        Ok(claimed.then_some(JobLease { client }))
    }

    /// Records the period's run as finished, and gives up the job's lease.
    pub async fn finish_job(
        &self,
        lease: JobLease,
        job: &str,
        period: OffsetDateTime,
        report: serde_json::Value,
    ) -> Result<(), BillingError> {
        lease
            .client
            .execute(
                "UPDATE job_runs SET finished_at = now(), report = $3 WHERE job = $1 AND period = $2",
                &[&job, &period, &report],
            )
            .await?;
        Ok(())
    }

    /// Gives `email` `months` of premium access, after any grant it has;
    /// the `billing.granted` event says who gave it.
    pub async fn grant(
        &self,
        email: &EmailAddress,
        months: u32,
        source: &str,
        note: &str,
        granted_by: GrantedBy,
    ) -> Result<Grant, BillingError> {
        if note.chars().count() > 500 {
            return Err(BillingError::NoteTooLong);
        }
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let user_id: i64 = txn
            .query_opt(
                "SELECT id FROM users WHERE email = $1 FOR UPDATE",
                &[&email.as_str()],
            )
            .await?
            .ok_or_else(|| BillingError::NoAccount(email.to_string()))?
            .get(0);
        let row = txn
            .query_one(
                "WITH start AS (SELECT greatest(now(), coalesce((SELECT max(expires_at) FROM grants \
                   WHERE user_id = $1), now())) AS at) \
                 INSERT INTO grants (user_id, source, months, note, starts_at, expires_at) \
                 SELECT $1, $2, $3, $4, at, at + make_interval(months => $3) FROM start \
                 RETURNING starts_at, expires_at",
                &[
                    &user_id,
                    &source,
                    &i32::try_from(months).unwrap_or(i32::MAX),
                    &note,
                ],
            )
            .await?;
        let grant = Grant {
            user_id,
            starts_at: row.get(0),
            expires_at: row.get(1),
        };
        let data = json!({
            "months": months,
            "source": source,
            "note": note,
            "expires_at": rfc3339(grant.expires_at),
        });
        let event = match granted_by {
            GrantedBy::Command => Event::new("billing.granted", Some(user_id.to_string()), data),
            GrantedBy::Admin(admin_id) => {
                Event::by_admin("billing.granted", user_id.to_string(), admin_id, data)
            }
        };
        events::record_in(&txn, &event).await?;
        txn.commit().await?;
        Ok(grant)
    }

    /// What billing flagged about `user_id`, newest first.
    pub async fn list_flags(&self, user_id: i64) -> Result<Vec<MemberFlag>, BillingError> {
        let client = self.pool.get().await?;
        let list = client
            .prepare_cached(
                "SELECT kind, detail, created_at FROM member_flags WHERE user_id = $1 ORDER BY created_at DESC",
            )
            .await?;
        Ok(client
            .query(&list, &[&user_id])
            .await?
            .iter()
            .map(|row| MemberFlag {
                kind: row.get(0),
                detail: row.get(1),
                created_at: row.get(2),
            })
            .collect())
    }

    /// Mails each member whose last grant ends within a week (and who has
    /// no subscription to carry on), once per grant.
    pub async fn remind_expiring_grants(&self) -> Result<usize, BillingError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let rows = txn
            .query(
                "SELECT g.id, g.user_id, g.expires_at FROM grants g \
                 WHERE g.reminded_at IS NULL AND g.expires_at > now() \
                   AND g.expires_at <= now() + interval '7 days' \
                   AND NOT EXISTS (SELECT 1 FROM grants later WHERE later.user_id = g.user_id \
                                   AND later.expires_at > g.expires_at) \
                   AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = g.user_id \
                                   AND s.status IN ('active', 'trialing')) \
                 FOR UPDATE OF g SKIP LOCKED",
                &[],
            )
            .await?;
        for row in &rows {
            let id: i64 = row.get(0);
            let expires_at: OffsetDateTime = row.get(2);
            self.mail_user(
                &txn,
                row.get(1),
                EmailKind::GrantExpiring,
                json!({ "expires_at": long_date(expires_at), "pricing_url": self.config.urls.pricing }),
            )
            .await?;
            txn.execute("UPDATE grants SET reminded_at = now() WHERE id = $1", &[&id])
                .await?;
        }
        txn.commit().await?;
        Ok(rows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plan(amount: i64) -> Plan {
        Plan {
            id: "monthly".into(),
            name: "Monthly".into(),
            price_id: "price_monthly".into(),
            price: Money::new(amount, "usd"),
            interval: Interval::Month,
        }
    }

    #[test]
    fn country_codes_are_two_letters() {
        assert_eq!(CountryCode::parse(" in ").unwrap().as_str(), "IN");
        for bad in ["", "I", "IND", "1N", "T1", "XX1", "é!"] {
            assert!(CountryCode::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_discount_applies_only_to_its_own_country() {
        let india = CountryCode::parse("IN");
        let discount = RegionDiscount {
            country: CountryCode::parse("IN").unwrap(),
            percent: 50,
            coupon: "region-50".into(),
        };
        let quoted = quote(&plan(1900), india.as_ref(), Some(&discount));
        assert_eq!(quoted.amount.amount, 950);
        assert_eq!(quoted.discount.as_ref().unwrap().coupon, "region-50");
        let elsewhere = quote(&plan(1900), CountryCode::parse("FR").as_ref(), Some(&discount));
        assert_eq!((elsewhere.amount.amount, elsewhere.discount), (1900, None));
        assert_eq!(quote(&plan(1900), None, None).amount.amount, 1900);
    }

    #[test]
    fn idempotency_keys_follow_what_is_done() {
        let a = idempotency_key(&["checkout", "1", "price_a"]);
        assert_eq!(a, idempotency_key(&["checkout", "1", "price_a"]));
        assert_ne!(a, idempotency_key(&["checkout", "1", "price_b"]));
        // Parts are delimited: moving a character between parts changes the key.
        assert_ne!(idempotency_key(&["ab", "c"]), idempotency_key(&["a", "bc"]));
    }

    proptest! {
        #[test]
        fn the_quote_is_the_list_price_less_the_percent_rounded_as_stripe_rounds(
            amount in 1i64..1_000_000, percent in 1u32..=90,
        ) {
            let discount = RegionDiscount { country: CountryCode::parse("BR").unwrap(), percent, coupon: "c".into() };
            let quoted = quote(&plan(amount), CountryCode::parse("BR").as_ref(), Some(&discount));
            // Stripe: the discount is the percent of the amount, rounded half away from zero.
            let off = (amount as f64 * f64::from(percent) / 100.0).round() as i64;
            prop_assert_eq!(quoted.amount.amount, amount - off);
        }
    }
}
