//! Billing routes: `/pricing` (every plan quoted for the visitor's country),
//! `POST /checkout` (on to Stripe Checkout), and `/account/billing` (status,
//! the customer portal, cancel and resume). Every call to Stripe goes
//! through the BillingSupervisor; a handler waits for its answer, and a slow
//! or failing Stripe shows as a "try again" page, never as a slow site.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use lectern_actors::billing::actor::{Ask, Done, Job};
use lectern_actors::billing::{BillingError, BillingUrls, CountryCode, StripeError};
use lectern_actors::cache::ViewerClass;
use serde::Deserialize;
use serde_json::json;
use slog::info;

use super::errors::{ErrorPage, RETRY_AFTER_SECS};
use super::extract::{see_other, AccessError, CsrfForm, Member, Viewer};
use super::layout::PrivatePage;
use super::{get_or_head, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/pricing", get_or_head().to(pricing))
        .route("/checkout", web::post().to(checkout))
        .route("/account/billing", get_or_head().to(account_billing))
        .route("/account/billing/portal", web::post().to(portal))
        .route("/account/billing/cancel", web::post().to(cancel))
        .route("/account/billing/resume", web::post().to(resume));
}

/// The URLs the billing context hands to Stripe and puts in emails.
pub fn urls(public_url: &str) -> BillingUrls {
    BillingUrls {
        checkout_success: format!("{public_url}/account/billing?notice=welcome"),
        checkout_cancel: format!("{public_url}/pricing"),
        account_billing: format!("{public_url}/account/billing"),
        pricing: format!("{public_url}/pricing"),
    }
}

/// What can go wrong on a billing page, as the member is told it.
#[derive(Debug, thiserror::Error)]
pub enum BillingPageError {
    #[error(transparent)]
    Billing(#[from] BillingError),
    #[error(transparent)]
    Viewer(#[from] AccessError),
}

impl BillingPageError {
    fn page(&self) -> ErrorPage {
        let problem = |status, title, template| ErrorPage::new(status, title, template);
        match self {
            BillingPageError::Viewer(_) => ErrorPage::unavailable(),
            BillingPageError::Billing(e) => match e {
                BillingError::NotConfigured => problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Subscriptions are not open yet",
                    "pages/billing/not_open",
                ),
                BillingError::UnknownPlan(_) => ErrorPage::not_found(),
                BillingError::Stripe(StripeError::Unavailable(_)) => problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Please try again",
                    "pages/billing/try_again",
                )
                .retry_after(RETRY_AFTER_SECS),
                BillingError::Stripe(_) => problem(
                    StatusCode::BAD_GATEWAY,
                    "The payment service refused",
                    "pages/billing/provider_refused",
                ),
                BillingError::Store(_) | BillingError::Mail(_) => ErrorPage::unavailable(),
                _ => ErrorPage::server_error(),
            },
        }
    }
}

impl ResponseError for BillingPageError {
    fn status_code(&self) -> StatusCode {
        self.page().status()
    }

    fn error_response(&self) -> HttpResponse {
        self.page().response()
    }
}

type Answer = Result<HttpResponse, BillingPageError>;

/// The visitor's country, from the header the trusted proxy sets.
fn country(req: &HttpRequest, state: &AppState) -> Option<CountryCode> {
    req.headers()
        .get(state.settings.pricing.country_header.as_str())
        .and_then(|v| v.to_str().ok())
        .and_then(CountryCode::parse)
}

/// Asks the BillingSupervisor to do `job`.
async fn ask(state: &AppState, job: Job) -> Result<Done, BillingError> {
    state.actors.billing.send(Ask(job)).await.unwrap_or_else(|e| {
        Err(BillingError::Stripe(StripeError::Unavailable(format!(
            "the BillingSupervisor does not answer: {e}"
        ))))
    })
}

/// Every plan at the price this visitor pays: never cached, since it
/// depends on the country and, for members, carries a form token.
async fn pricing(req: HttpRequest, state: web::Data<AppState>, viewer: Viewer) -> Answer {
    let class = viewer.class(&state).await?;
    let country = country(&req, &state);
    let quotes = state.billing.pricing(country.as_ref()).await?;
    let plans: Vec<_> = quotes
        .iter()
        .map(|quote| {
            json!({
                "id": quote.plan.id,
                "name": quote.plan.name,
                "interval": quote.plan.interval,
                "price": quote.amount.to_string(),
                "list_price": quote.plan.price.to_string(),
                "discount": quote.discount.as_ref().map(|d| d.percent),
                "country": quote.country,
            })
        })
        .collect();
    Ok(PrivatePage::new(
        "Pricing",
        "pages/billing/pricing",
        json!({
            "plans": plans,
            "open": state.billing.is_configured(),
            "subscriber": class == ViewerClass::Subscriber,
            "member": class != ViewerClass::Anonymous,
        }),
    )
    .viewer(class)
    .render(&req, &state, &viewer)
    .await)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CheckoutForm {
    plan: String,
}

/// On to Stripe Checkout for the plan, at the price `/pricing` showed.
async fn checkout(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    CsrfForm(form): CsrfForm<CheckoutForm>,
) -> Answer {
    let job = Job::StartCheckout {
        user_id: member.user().id,
        plan: form.plan,
        country: country(&req, &state),
    };
    match ask(&state, job).await {
        Ok(Done::Checkout(started)) => {
            info!(state.log, "on to Stripe Checkout"; "user_id" => member.user().id,
                "session" => &started.session_id, "amount" => %started.quote.amount);
            Ok(see_other(&started.url))
        }
        Err(BillingError::AlreadySubscribed) => Ok(see_other("/account/billing?notice=already")),
        Ok(_) => Err(BillingError::Stripe(StripeError::Unreadable("an unexpected answer".into())).into()),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NoticeQuery {
    notice: String,
}

const NOTICES: &[(&str, &str)] = &[
    (
        "welcome",
        "Thank you for subscribing! Your access starts as soon as Stripe confirms the payment, usually within seconds.",
    ),
    ("already", "You already have premium access: there is nothing to buy."),
    ("cancelled", "Your subscription is cancelled: nothing more will be charged."),
    ("resumed", "Your subscription continues."),
];

/// The member's subscription: status, plan, next charge, and what they can do.
async fn account_billing(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    query: web::Query<NoticeQuery>,
) -> Answer {
    let status = state.billing.status(member.user().id).await?;
    let notice = NOTICES
        .iter()
        .find(|(key, _)| *key == query.notice)
        .map(|(_, text)| *text);
    let class = if status.access {
        ViewerClass::Subscriber
    } else {
        ViewerClass::Member
    };
    Ok(PrivatePage::new(
        "Billing",
        "pages/billing/account",
        json!({ "billing": status, "notice": notice, "open": state.billing.is_configured() }),
    )
    .viewer(class)
    .render(&req, &state, &Viewer::from(member))
    .await)
}

/// A form that is only its token (a button).
#[derive(Deserialize, Default)]
struct ButtonForm {}

/// On to Stripe's customer portal (cards, invoices, plan changes).
async fn portal(state: web::Data<AppState>, member: Member, _: CsrfForm<ButtonForm>) -> Answer {
    match ask(
        &state,
        Job::OpenPortal {
            user_id: member.user().id,
        },
    )
    .await
    {
        Ok(Done::Url(url)) => Ok(see_other(&url)),
        Err(BillingError::NoSubscription) => Ok(see_other("/pricing")),
        Ok(_) => Err(BillingError::Stripe(StripeError::Unreadable("an unexpected answer".into())).into()),
        Err(e) => Err(e.into()),
    }
}

async fn set_cancel(state: &AppState, member: &Member, cancel: bool) -> Answer {
    let job = Job::SetCancelAtPeriodEnd {
        user_id: member.user().id,
        cancel,
    };
    match ask(state, job).await {
        Ok(_) => {
            info!(state.log, "subscription changed"; "user_id" => member.user().id, "cancel_at_period_end" => cancel);
            Ok(see_other(if cancel {
                "/account/billing?notice=cancelled"
            } else {
                "/account/billing?notice=resumed"
            }))
        }
        Err(BillingError::NoSubscription) => Ok(see_other("/account/billing")),
        Err(e) => Err(e.into()),
    }
}

/// Cancels at the end of the period: access continues until then.
async fn cancel(state: web::Data<AppState>, member: Member, _: CsrfForm<ButtonForm>) -> Answer {
    set_cancel(&state, &member, true).await
}

async fn resume(state: web::Data<AppState>, member: Member, _: CsrfForm<ButtonForm>) -> Answer {
    set_cancel(&state, &member, false).await
}
