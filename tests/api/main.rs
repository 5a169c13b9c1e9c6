//! Lectern's integration tests: one binary, one module per area.

// A failed unwrap is a failed test: the production-code lint does not apply.
#![allow(clippy::unwrap_used)]

mod cli;
mod embedded;
mod events;
mod helpers;
mod middleware;
mod ops;
mod static_files;
mod store;
mod supervision;
mod telemetry;
