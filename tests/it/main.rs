//! Integration tests: one binary, one shared helper that spawns the gateway on port 0.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "tests are clients and servers of their own"
)]
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a panic in a test helper is a failing test"
)]

mod accounts;
mod auth;
mod canary;
mod demo;
mod deploy;
mod durability;
mod errors;
mod events;
mod faults;
mod hardening;
mod helpers;
mod lifecycle;
mod listing;
mod openapi;
mod paging;
mod pg_tls;
mod reconciler;
mod replicas;
mod resilience;
mod simulator;
mod snapshots;
mod soak;
mod store_contract;
mod tracing;
mod variants;
mod vendor_truth;
mod webhooks;
mod wire_hostinger;
mod wire_hyperstack;
mod wire_koyeb;
mod wire_oktawave;
mod wire_syminet;
