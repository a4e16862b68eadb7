//! Black-box API tests: the real server on a random port, a fresh database per test.
//! Run against PostgreSQL by setting `TEST_DATABASE_URL=postgres://…` (see the README).

mod audit;
mod auth;
mod bench;
pub mod billing;
mod bootstrap;
mod bulk_settings;
mod cli;
mod connectwise;
mod connectwise_mock;
mod deploy;
pub mod devices;
mod docs;
mod edge;
mod errors;
mod field_audit;
mod health;
mod isolation;
pub mod jobs;
mod migrations;
mod openapi;
mod operators;
mod outbound;
pub mod policies;
mod pull;
mod query_plans;
mod readme;
mod replicas;
mod rollouts;
mod rotation;
mod saves;
mod secrets;
mod signin;
mod sim;
mod takeover;
mod tenants;
mod transfer;
mod ui;
mod ui_audit;
mod ui_browser;
mod ui_client;
mod ui_pages;
mod ui_scale;
mod ui_sessions;
mod webdriver;

mod helpers;
