//! `/admin/members`: a search by part of an address, and one member's page
//! (`/admin/members/{id}`): the account, billing as it stands (subscription,
//! grants, flags), the emails sent to them, and what an administrator can
//! do: send the confirmation link again, disable or enable the account,
//! grant months of premium access.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use lectern_actors::accounts::{AccountsError, EmailFragment, MemberAccount};
use lectern_actors::billing::{BillingError, GrantedBy, MemberFlag};
use lectern_actors::mail::{self, EmailAddress, OutboxFilter};
use serde::Deserialize;
use serde_json::{json, Value};
use slog::info;

use super::mail::email_row;
use super::{notice, parse_id, render, when, AdminError, Answer, ButtonForm, NoticeQuery};
use crate::http::extract::{see_other, Admin, CsrfForm};
use crate::http::layout::PrivatePage;
use crate::http::{get_or_head, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/members", get_or_head().to(search))
        .route("/admin/members/{id}", get_or_head().to(member))
        .route(
            "/admin/members/{id}/confirmation",
            web::post().to(resend_confirmation),
        )
        .route("/admin/members/{id}/disable", web::post().to(disable))
        .route("/admin/members/{id}/enable", web::post().to(enable))
        .route("/admin/members/{id}/grant", web::post().to(grant));
}

/// Members a search shows at most.
const SEARCH_LIMIT: i64 = 50;
/// Emails to a member their page shows, newest first.
const EMAILS_SHOWN: i64 = 50;
/// Months one grant from the admin area may give (the command line allows more).
const GRANT_MONTHS: std::ops::RangeInclusive<u32> = 1..=36;

const NOTICES: &[(&str, &str)] = &[
    (
        "confirmation_sent",
        "A new confirmation link is on its way to the member.",
    ),
    (
        "disabled",
        "The account is disabled: its sessions ended and it cannot log in.",
    ),
    ("already_disabled", "The account was already disabled."),
    ("enabled", "The account is enabled: the member can log in again."),
    ("already_enabled", "The account was not disabled."),
    ("granted", "The months are granted."),
];

fn account_row(account: &MemberAccount) -> Value {
    let user = &account.user;
    json!({
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "confirmed": user.confirmed,
        "confirmed_at": account.confirmed_at.map(when),
        "has_password": user.has_password,
        "created": when(account.created_at),
        "disabled": user.disabled,
        "disabled_at": account.disabled_at.map(when),
    })
}

fn flag_row(flag: &MemberFlag) -> Value {
    json!({ "kind": flag.kind.replace('_', " "), "detail": flag.detail, "since": when(flag.created_at) })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SearchQuery {
    q: Option<String>,
}

async fn search(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: Admin,
    query: web::Query<SearchQuery>,
) -> Answer {
    let typed = query.q.as_deref();
    let (members, errors) = match typed.map(EmailFragment::parse) {
        None => (None, Vec::new()),
        Some(Ok(fragment)) => {
            let found = state.accounts.search_members(&fragment, SEARCH_LIMIT).await?;
            (Some(found), Vec::new())
        }
        Some(Err(problem)) => (None, vec![problem.to_string()]),
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = PrivatePage::new(
        "Members",
        "pages/admin/members",
        json!({
            // What was typed goes back into the field, cut to the field's size.
            "q": typed.map(|q| q.chars().take(254).collect::<String>()),
            "searched": members.is_some(),
            "members": members.iter().flatten().map(account_row).collect::<Vec<_>>(),
            "limited": members.as_ref().is_some_and(|m| m.len() as i64 == SEARCH_LIMIT),
            "limit": SEARCH_LIMIT,
            "errors": errors,
        }),
    )
    .status(status);
    Ok(render(&req, &state, &admin, page).await)
}

/// The member a path names, or the "no such member" page.
async fn find_member(state: &AppState, raw_id: &str) -> Result<MemberAccount, AdminError> {
    let id = parse_id("member", raw_id)?;
    state
        .accounts
        .get_member(id)
        .await?
        .ok_or(AccountsError::NoSuchAccount(id).into())
}

/// What a member page's forms sent, to show again with its problem.
#[derive(Default)]
struct Problem {
    errors: Vec<String>,
    months: String,
    source: String,
    note: String,
}

/// One member's page, with `notice` after an action or `problem` with a form.
async fn member_page(
    req: &HttpRequest,
    state: &AppState,
    admin: &Admin,
    account: &MemberAccount,
    notice: Option<&str>,
    problem: Problem,
) -> Answer {
    let user_id = account.user.id;
    let billing = state.billing.status(user_id).await?;
    let flags = state.billing.list_flags(user_id).await?;
    let filter = OutboxFilter {
        recipient: Some(&account.user.email),
        ..OutboxFilter::default()
    };
    let emails = mail::list_outbox(&state.pool, &filter, EMAILS_SHOWN).await?;
    let status = if problem.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = PrivatePage::new(
        "Member",
        "pages/admin/member",
        json!({
            "member": account_row(account),
            "is_self": user_id == admin.0.user().id,
            "billing": billing,
            "flags": flags.iter().map(flag_row).collect::<Vec<_>>(),
            "emails": emails.iter().map(email_row).collect::<Vec<_>>(),
            "emails_limit": EMAILS_SHOWN,
            "notice": notice,
            "errors": problem.errors,
            "months": problem.months,
            "source": problem.source,
            "note": problem.note,
            "months_max": GRANT_MONTHS.end(),
        }),
    )
    .status(status);
    Ok(render(req, state, admin, page).await)
}

async fn member(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    query: web::Query<NoticeQuery>,
) -> Answer {
    let account = find_member(&state, &id).await?;
    member_page(
        &req,
        &state,
        &admin,
        &account,
        notice(NOTICES, &query.notice),
        Problem::default(),
    )
    .await
}

/// Back to the member's page, saying what happened.
fn done(user_id: i64, notice: &str) -> HttpResponse {
    see_other(&format!("/admin/members/{user_id}?notice={notice}"))
}

/// The member's page again, with what was wrong with the form sent from it.
async fn refused(
    req: &HttpRequest,
    state: &AppState,
    admin: &Admin,
    account: &MemberAccount,
    problem: Problem,
) -> Answer {
    member_page(req, state, admin, account, None, problem).await
}

fn problem(error: impl ToString) -> Problem {
    Problem {
        errors: vec![error.to_string()],
        ..Problem::default()
    }
}

async fn resend_confirmation(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    _: CsrfForm<ButtonForm>,
) -> Answer {
    let account = find_member(&state, &id).await?;
    let admin_id = admin.0.user().id;
    match state
        .accounts
        .resend_confirmation(admin_id, account.user.id)
        .await
    {
        Ok(()) => {
            info!(state.log, "confirmation link sent again"; "member" => account.user.id, "user_id" => admin_id);
            Ok(done(account.user.id, "confirmation_sent"))
        }
        Err(
            e @ (AccountsError::AlreadyConfirmed | AccountsError::Disabled | AccountsError::EmailsCapped),
        ) => {
            let why = match e {
                AccountsError::AlreadyConfirmed => "the address is already confirmed: nothing to send",
                AccountsError::Disabled => "the account is disabled: enable it first",
                _ => "not sent: the address already had its share of emails today; try again tomorrow",
            };
            refused(&req, &state, &admin, &account, problem(why)).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn set_disabled(
    req: &HttpRequest,
    state: &AppState,
    admin: &Admin,
    raw_id: &str,
    disabled: bool,
) -> Answer {
    let account = find_member(state, raw_id).await?;
    let admin_id = admin.0.user().id;
    match state
        .accounts
        .set_disabled(admin_id, account.user.id, disabled)
        .await
    {
        Ok(changed) => {
            if changed {
                info!(state.log, "account disabled or enabled"; "disabled" => disabled,
                    "member" => account.user.id, "user_id" => admin_id);
            }
            let notice = match (disabled, changed) {
                (true, true) => "disabled",
                (true, false) => "already_disabled",
                (false, true) => "enabled",
                (false, false) => "already_enabled",
            };
            Ok(done(account.user.id, notice))
        }
        Err(AccountsError::OwnAccount) => {
            refused(req, state, admin, &account, problem(AccountsError::OwnAccount)).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn disable(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    _: CsrfForm<ButtonForm>,
) -> Answer {
    set_disabled(&req, &state, &admin, &id, true).await
}

async fn enable(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    _: CsrfForm<ButtonForm>,
) -> Answer {
    set_disabled(&req, &state, &admin, &id, false).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GrantForm {
    months: String,
    source: String,
    note: String,
}

async fn grant(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    CsrfForm(form): CsrfForm<GrantForm>,
) -> Answer {
    let account = find_member(&state, &id).await?;
    let mut errors = Vec::new();
    let months = form
        .months
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|months| GRANT_MONTHS.contains(months));
    if months.is_none() {
        errors.push(format!(
            "give a whole number of months from {} to {}",
            GRANT_MONTHS.start(),
            GRANT_MONTHS.end()
        ));
    }
    if !["complimentary", "paypal"].contains(&form.source.as_str()) {
        errors.push("say whether the months are complimentary or paid by PayPal".to_owned());
    }
    let note = form.note.trim();
    let refuse = |errors: Vec<String>| Problem {
        errors,
        months: form.months.chars().take(10).collect(),
        source: form.source.clone(),
        note: note.chars().take(500).collect(),
    };
    let Some(months) = months.filter(|_| errors.is_empty()) else {
        return refused(&req, &state, &admin, &account, refuse(errors)).await;
    };
    // The account's own address, read back from where only parsed addresses go.
    let email = EmailAddress::parse(&account.user.email)
        .map_err(|_| BillingError::StoredValue(account.user.email.clone()))?;
    let admin_id = admin.0.user().id;
    match state
        .billing
        .grant(&email, months, &form.source, note, GrantedBy::Admin(admin_id))
        .await
    {
        Ok(grant) => {
            info!(state.log, "months granted"; "member" => account.user.id, "user_id" => admin_id,
                "months" => months, "until" => when(grant.expires_at));
            Ok(done(account.user.id, "granted"))
        }
        Err(BillingError::NoteTooLong) => {
            let errors = vec![BillingError::NoteTooLong.to_string()];
            refused(&req, &state, &admin, &account, refuse(errors)).await
        }
        Err(e) => Err(e.into()),
    }
}
