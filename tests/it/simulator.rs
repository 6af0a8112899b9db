//! The vendor simulator against the vendor fixtures: every operation answers in the fixture's
//! shape, auth is enforced, paging and async progress behave, faults and the control plane work.
//! Helpers live here; one submodule per vendor plus one for faults and the control plane.

mod control;
mod hostinger;
mod hyperstack;
mod koyeb;
mod oktawave;
mod syminet;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use snapgate::simulator::{self, RunningSimulator, SimulatorConfig, Vendor};

/// The async delay the tests run with: short, yet long enough to observe in-progress states.
pub(crate) const DELAY: Duration = Duration::from_millis(800);

/// A fixture file as JSON.
pub(crate) fn fixture(vendor: &str, file: &str) -> Value {
    crate::helpers::vendor_fixture(vendor, file)
}

/// Every key path of a JSON value (`a.b`, `list[].c`), arrays merged over their elements.
pub(crate) fn shape(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, at: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let path = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    out.insert(path.clone());
                    walk(child, &path, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, &format!("{at}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, "", &mut out);
    out
}

/// Asserts that `actual` has exactly the key paths of the fixture file.
#[track_caller]
pub(crate) fn assert_shape(actual: &Value, vendor: &str, file: &str) {
    let expected = fixture(vendor, file);
    let (got, want) = (shape(actual), shape(&expected));
    assert_eq!(
        got,
        want,
        "{vendor}/{file}: shape differs\nmissing: {:?}\nextra: {:?}\nbody: {actual:#}",
        want.difference(&got).collect::<Vec<_>>(),
        got.difference(&want).collect::<Vec<_>>(),
    );
}

/// A simulator on 127.0.0.1:0 with the test delay and seeded state.
pub(crate) async fn start() -> RunningSimulator {
    start_with(SimulatorConfig {
        async_delay: DELAY,
        ..SimulatorConfig::default()
    })
    .await
}

pub(crate) async fn start_with(config: SimulatorConfig) -> RunningSimulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    simulator::start(listener, config).await.unwrap()
}

/// A vendor API client: base URL plus the headers every request carries.
pub(crate) struct Api {
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    pub(crate) headers: BTreeMap<&'static str, String>,
}

impl Api {
    pub(crate) fn new(
        sim: &RunningSimulator,
        vendor: Vendor,
        headers: &[(&'static str, &str)],
    ) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: sim.base_url(vendor),
            headers: headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        }
    }

    pub(crate) fn req(&self, method: Method, path: &str) -> RequestBuilder {
        let mut rb = self.client.request(method, format!("{}{path}", self.base));
        for (k, v) in &self.headers {
            rb = rb.header(*k, v);
        }
        rb
    }

    pub(crate) async fn call(&self, method: Method, path: &str) -> (u16, Value) {
        send(self.req(method, path)).await
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path).await
    }

    pub(crate) async fn send_json(&self, method: Method, path: &str, body: &Value) -> (u16, Value) {
        send(self.req(method, path).json(body)).await
    }
}

/// Sends and returns the status and the body as JSON (`Null` when empty).
pub(crate) async fn send(rb: RequestBuilder) -> (u16, Value) {
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    if text.is_empty() {
        return (status, Value::Null);
    }
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text}: {e}"));
    (status, body)
}

/// Repeats a GET until `done` holds for its 200 body; fails after 5 s.
pub(crate) async fn poll(api: &Api, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = api.get(path).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never settled: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

#[test]
fn shape_lists_nested_key_paths_once() {
    let v = serde_json::json!({ "a": { "b": 1 }, "l": [{ "c": 1 }, { "c": 2, "d": null }] });
    let got: Vec<String> = shape(&v).into_iter().collect();
    assert_eq!(got, ["a", "a.b", "l", "l[].c", "l[].d"]);
}
