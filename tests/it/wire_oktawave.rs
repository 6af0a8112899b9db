//! Exact oktawave requests and response mapping, asserted with a mock vendor (wiremock).
