//! Lectern's web layer and command line: configuration, logs, startup and
//! the HTTP routes. The core lives in the `lectern-actors` crate.

pub mod cli;
pub mod commands;
pub mod config;
pub mod http;
pub mod startup;
pub mod telemetry;
