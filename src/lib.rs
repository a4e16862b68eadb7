//! GMP server: a multi-tenant Global Management Portal for MSP backup appliances and vaults.
//!
//! Dependency direction: `http` → `services` → `db`, `domain`; `domain` depends on nothing of
//! ours.

pub mod auth;
pub mod bench;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connectwise;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod secrets;
pub mod services;
pub mod sim;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod ui;
