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
mod architecture;
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
mod indexes;
mod lifecycle;
mod listing;
mod openapi;
mod paging;
mod pg_tls;
mod policies;
mod reconciler;
mod replicas;
mod resilience;
mod retention;
mod scale;
mod simulator;
mod snapshots;
mod soak;
mod store_contract;
mod tracing;
mod variants;
mod vendor_truth;
mod webhooks;

/// Each vendor's own test module: its wire tests and its canary account. A vendor is one line
/// here; the shared tests (`canary`) reach every vendor through it.
macro_rules! vendor_tests {
    ($($module:ident),* $(,)?) => {
        $(mod $module;)*

        /// Every vendor's canary, from its own module.
        fn vendor_canaries() -> Vec<canary::Canary> {
            vec![$($module::canary()),*]
        }
    };
}

vendor_tests!(
    wire_digitalocean,
    wire_hetzner,
    wire_hostinger,
    wire_hyperstack,
    wire_koyeb,
    wire_oktawave,
    wire_syminet,
);
