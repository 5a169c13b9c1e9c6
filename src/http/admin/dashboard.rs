//! `/admin/dashboard`: the business at a glance, as charts drawn on the
//! server ([`super::charts`]) and tables: page views and unique visitors a
//! day, the top pages, referrers and countries, sign-ups, subscribers, and
//! revenue a day and a month. The figures come from the events context
//! (`lectern_actors::events::figures`).

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest};
use lectern_actors::events;
use lectern_actors::events::figures::{self, grouped, Ranked};
use serde_json::{json, Value};
use time::{Date, Duration, OffsetDateTime};

use super::charts::{Bar, BarChart, Unit};
use super::{render, Answer};
use crate::http::extract::Admin;
use crate::http::layout::PrivatePage;
use crate::http::{get_or_head, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/dashboard", get_or_head().to(dashboard));
}

/// Days the daily charts and the top lists cover, today included.
const DAYS: i64 = 30;
/// Months the monthly revenue covers, this one included.
const MONTHS: u32 = 12;
/// Rows in each top list.
const TOP: i64 = 10;

async fn dashboard(req: HttpRequest, state: web::Data<AppState>, admin: Admin) -> Answer {
    let today = OffsetDateTime::now_utc().date();
    let from = today - Duration::days(DAYS - 1);
    let first_month = figures::months_before(today, MONTHS - 1);
    let pool = &state.pool;
    // One query after another: an admin page takes one of the pool's
    // connections at a time, never a share the pages need.
    let visits = events::daily_visits(pool, from, today).await?;
    let pages = figures::list_top_pages(pool, from, today, TOP).await?;
    let referrers = figures::list_top_referrers(pool, from, today, TOP).await?;
    let countries = figures::list_top_countries(pool, from, today, TOP).await?;
    let signups = figures::list_daily_signups(pool, from, today).await?;
    let subscribers = figures::count_subscribers(pool).await?;
    let changes = figures::list_daily_subscriber_changes(pool, from, today).await?;
    let subscriptions = figures::list_daily_subscriptions(pool, from, today).await?;
    let daily_revenue = figures::list_daily_revenue(pool, from, today).await?;
    let monthly_revenue = figures::list_monthly_revenue(pool, first_month, today).await?;

    let views = daily_bars(from, today, visits.iter().map(|v| (v.day, v.views)));
    let visitors = daily_bars(from, today, visits.iter().map(|v| (v.day, v.visitors)));
    let signups = daily_bars(from, today, signups.iter().map(|s| (s.day, s.count)));
    let started = daily_bars(from, today, changes.iter().map(|c| (c.day, c.started)));
    let subscriptions = daily_bars(from, today, subscriptions.iter().map(|s| (s.day, s.count)));
    let ended: i64 = changes.iter().map(|c| c.ended).sum();
    let total = |bars: &[Bar]| grouped(bars.iter().map(|b| b.value).sum());

    // One chart per currency: amounts in two currencies do not add up.
    let mut by_currency: BTreeMap<&str, (Amounts, Amounts)> = BTreeMap::new();
    for revenue in &daily_revenue {
        let entry = by_currency.entry(&revenue.money.currency).or_default();
        entry.0.push((revenue.day, revenue.money.amount));
    }
    for revenue in &monthly_revenue {
        let entry = by_currency.entry(&revenue.money.currency).or_default();
        entry.1.push((revenue.day, revenue.money.amount));
    }
    let revenue: Vec<Value> = by_currency
        .into_iter()
        .map(|(currency, (days, months))| {
            let unit = Unit::Money {
                currency: currency.to_owned(),
            };
            let code = currency.to_ascii_uppercase();
            let daily = BarChart {
                id: "revenue-daily",
                title: format!("Revenue in {code} per day, last {DAYS} days"),
                unit: unit.clone(),
                bars: daily_bars(from, today, days.into_iter()),
            };
            let monthly = BarChart {
                id: "revenue-monthly",
                title: format!("Revenue in {code} per month, last {MONTHS} months"),
                unit: unit.clone(),
                bars: monthly_bars(first_month, today, months),
            };
            json!({
                "currency": code,
                "daily_total": unit.show(daily.bars.iter().map(|b| b.value).sum()),
                "daily": daily.svg(),
                "monthly": monthly.svg(),
            })
        })
        .collect();

    let chart = |id, title: &str, bars: &[Bar]| {
        BarChart {
            id,
            title: title.to_owned(),
            unit: Unit::Count,
            bars: bars.to_vec(),
        }
        .svg()
    };
    let page = PrivatePage::new(
        "Dashboard",
        "pages/admin/dashboard",
        json!({
            "from": from.to_string(),
            "to": today.to_string(),
            "days": DAYS,
            "months": MONTHS,
            "views_total": total(&views),
            "views": chart("views", &format!("Page views per day, last {DAYS} days"), &views),
            "visitors": chart("visitors", &format!("Unique visitors per day, last {DAYS} days"), &visitors),
            "top_pages": ranked_rows(&pages),
            "top_referrers": ranked_rows(&referrers),
            "top_countries": ranked_rows(&countries),
            "signups_total": total(&signups),
            "signups": chart("signups", &format!("Sign-ups per day, last {DAYS} days"), &signups),
            "subscribers": grouped(subscribers),
            "started_total": total(&started),
            "ended_total": grouped(ended),
            "started": chart("subscriptions-started", &format!("Subscriptions started per day, last {DAYS} days"), &started),
            "subscriptions": chart(
                "subscriptions",
                &format!("Subscriptions giving access at the end of each day, last {DAYS} days"),
                &subscriptions,
            ),
            "revenue": revenue,
        }),
    );
    Ok(render(&req, &state, &admin, page).await)
}

/// Amounts in one currency by day (or month).
type Amounts = Vec<(Date, i64)>;

/// A bar for every day from `from` to `to`, zero where `values` has none.
fn daily_bars(from: Date, to: Date, values: impl Iterator<Item = (Date, i64)>) -> Vec<Bar> {
    let values: BTreeMap<Date, i64> = values.collect();
    std::iter::successors(Some(from), |day| day.next_day())
        .take_while(|day| *day <= to)
        .map(|day| Bar {
            label: day.to_string(),
            value: values.get(&day).copied().unwrap_or(0),
        })
        .collect()
}

/// A bar for every month from `first` (a month's first day) to `to`'s month,
/// labelled `2026-12`.
fn monthly_bars(first: Date, to: Date, values: Vec<(Date, i64)>) -> Vec<Bar> {
    let values: BTreeMap<Date, i64> = values.into_iter().collect();
    std::iter::successors(Some(first), |month| {
        figures::months_before(*month, 0)
            .checked_add(Duration::days(31))
            .map(|later| figures::months_before(later, 0))
    })
    .take_while(|month| *month <= to)
    .map(|month| Bar {
        label: format!("{}-{:02}", month.year(), u8::from(month.month())),
        value: values.get(&month).copied().unwrap_or(0),
    })
    .collect()
}

fn ranked_rows(ranked: &[Ranked]) -> Vec<Value> {
    ranked
        .iter()
        .map(|r| json!({ "name": r.name, "views": grouped(r.views), "visitors": grouped(r.visitors) }))
        .collect()
}
