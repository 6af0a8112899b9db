//! Examples in the OpenAPI document: accounts `snapgate demo` seeds, so Swagger UI's "Try it
//! out" works against the demo as written. Derived from the provider list, never a name here.

use super::ProviderKind;

/// The demo's account of the first provider.
pub fn account_id() -> String {
    format!("demo-{}", ProviderKind::ALL[0])
}

/// A new account's id.
pub fn new_account_id() -> String {
    format!("prod-{}", ProviderKind::ALL[0])
}

/// A snapshot of the demo's first account.
pub fn snapshot_id() -> String {
    format!("{}:1402", account_id())
}
