//! Integration tests: one binary, one shared helper that spawns the gateway on port 0.

mod accounts;
mod auth;
mod errors;
mod helpers;
mod openapi;
