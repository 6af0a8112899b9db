//! Outbound webhooks, the parts that know nothing of the store: Standard Webhooks signing
//! ([`sign`]) and where a delivery may go ([`target`]).

pub mod sign;
pub mod target;
