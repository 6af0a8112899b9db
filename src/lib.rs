//! snapgate: one HTTP API in front of the snapshot APIs of many clouds.
//!
//! Request flow: `api` (auth, extractors, handlers) → `store` (accounts, sealed credentials)
//! → `providers` (one adapter per vendor) → the vendor. See `ARCHITECTURE.md`.

#[allow(
    clippy::disallowed_types,
    reason = "the HTTP edge: axum belongs here (clippy.toml)"
)]
pub mod api;
#[allow(
    clippy::disallowed_types,
    reason = "the HTTP edge: axum belongs here (clippy.toml)"
)]
pub mod app;
pub mod auth;
pub mod config;
pub mod demo;
pub mod domain;
mod head;
pub mod otel;
mod pair;
pub mod private_files;
pub mod providers;
pub mod scrub;
pub mod service;
#[allow(
    clippy::disallowed_types,
    reason = "the simulator is an axum server of its own"
)]
pub mod simulator;
pub mod store;
pub mod telemetry;
pub mod upstream;
pub mod webhooks;

pub use app::Application;
pub use config::Config;
