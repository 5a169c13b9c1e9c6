//! Lectern's integration tests: one binary, one module per area.

// A failed unwrap is a failed test: the production-code lint does not apply.
#![allow(clippy::unwrap_used)]

mod account_security;
mod accounts;
mod admin;
mod alerts;
mod backup;
mod backup_s3;
mod backup_schedule;
mod billing;
mod browser;
mod cli;
mod content;
mod content_admin;
mod content_export;
mod dashboard;
mod deploy;
mod digest;
mod embedded;
mod events;
mod first_hour;
mod fuzz;
mod helpers;
mod mail;
mod middleware;
mod ops;
mod overload;
mod page_cache;
mod pages;
mod search;
mod snapshots;
mod static_files;
mod store;
mod stripe_server;
mod supervision;
mod telemetry;
mod visitor;
mod webhooks_ses;
