//! `snapgate demo`: one command gives a working gateway with five seeded accounts.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the demo in `dir` on port 0 and returns its `export` lines as (name, value).
fn start_demo(dir: &std::path::Path) -> (Demo, Vec<(String, String)>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_snapgate"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env_remove("SNAPGATE_AUTH__HS256_SECRET")
        .env_remove("SNAPGATE_MASTER_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let demo = Demo(child);
    let mut exports = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
            exports.push((k.to_owned(), v.to_owned()));
        }
        // The export lines end where the "Try:" examples begin.
        if line == "Try:" || Instant::now() > deadline {
            break;
        }
    }
    (demo, exports)
}

fn get(exports: &[(String, String)], name: &str) -> String {
    exports
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{name} not printed"))
}

#[tokio::test]
async fn the_demo_prints_a_url_and_token_that_work_and_reuses_its_data_on_a_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let (demo, exports) = start_demo(dir.path());
    let url = get(&exports, "SNAPGATE_URL");
    let token = get(&exports, "SNAPGATE_TOKEN");
    assert!(url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"));
    #[cfg(unix)]
    {
        // The demo's keys and database are the owner's alone.
        use std::os::unix::fs::PermissionsExt;
        let data = dir.path().join(".snapgate-demo");
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("secrets.toml")), 0o600);
        assert_eq!(mode(&data.join("snapgate.db")), 0o600);
    }
    let client = reqwest::Client::new();
    let providers: Value = client
        .get(format!("{url}/v1/providers"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        providers["items"].as_array().unwrap().len(),
        snapgate::domain::ProviderKind::ALL.len()
    );
    for p in ["HYPERSTACK", "KOYEB", "OKTAWAVE", "HOSTINGER", "SYMINET"] {
        assert_eq!(
            get(&exports, &format!("SNAPGATE_DEMO_{p}_ACCOUNT")),
            format!("demo-{}", p.to_lowercase())
        );
        assert!(
            get(&exports, &format!("SNAPGATE_DEMO_{p}_SOURCES"))
                .split(',')
                .count()
                >= 3
        );
        // A seeded snapshot id per provider, so the README's examples paste as they are.
        let snapshot = get(&exports, &format!("SNAPGATE_DEMO_{p}_SNAPSHOT"));
        assert!(
            snapshot.starts_with(&format!("demo-{}:", p.to_lowercase())),
            "{snapshot}"
        );
        let got = client
            .get(format!("{url}/v1/snapshots/{snapshot}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200, "{snapshot}");
        let got: Value = got.json().await.unwrap();
        assert_eq!(got["id"], snapshot.as_str());
        assert_eq!(got["status"], "available");
    }
    let accounts: Value = client
        .get(format!("{url}/v1/accounts"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        accounts["items"].as_array().unwrap().len(),
        snapgate::domain::ProviderKind::ALL.len()
    );
    let page: Value = client
        .get(format!("{url}/v1/snapshots"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        page["items"].as_array().unwrap().len() >= 5,
        "the first list is not empty: {page}"
    );

    // `snapgate token` from the same directory mints tokens the running demo accepts.
    let out = Command::new(env!("CARGO_BIN_EXE_snapgate"))
        .args(["token", "--tenant", "other"])
        .current_dir(dir.path())
        .env_remove("SNAPGATE_AUTH__HS256_SECRET")
        .output()
        .unwrap();
    assert!(out.status.success());
    let other = String::from_utf8(out.stdout).unwrap();
    let resp = client
        .get(format!("{url}/v1/accounts"))
        .bearer_auth(other.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["items"],
        serde_json::json!([])
    );
    drop(demo);

    // A second run reuses the data directory: same accounts, not duplicated.
    let (_demo, exports) = start_demo(dir.path());
    let url = get(&exports, "SNAPGATE_URL");
    let token = get(&exports, "SNAPGATE_TOKEN");
    let accounts: Value = client
        .get(format!("{url}/v1/accounts"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        accounts["items"].as_array().unwrap().len(),
        snapgate::domain::ProviderKind::ALL.len()
    );
}

#[test]
fn simulate_prints_one_url_per_vendor_then_the_credentials() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_snapgate"))
        .args(["simulate", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = Demo(child);
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .take_while(|l| l.starts_with("export "))
        .collect();
    drop(guard);
    let names: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("export "))
        .map(|l| l.split('=').next().unwrap())
        .collect();
    let vendors = snapgate::simulator::Vendor::ALL;
    let urls: Vec<String> = vendors
        .iter()
        .map(|v| format!("SIMULATOR_{}_URL", v.as_str().to_uppercase()))
        .collect();
    assert_eq!(&names[..vendors.len()], urls);
    let credentials = vendors.iter().flat_map(|v| {
        v.credentials()
            .iter()
            .map(move |(field, _)| format!("SIMULATOR_{}_{}", v.as_str(), field).to_uppercase())
    });
    for name in credentials.chain(["SIMULATOR_OKTAWAVE_TOKEN_URL".to_owned()]) {
        assert!(
            names.contains(&name.as_str()),
            "{name} missing from {lines:?}"
        );
    }
    assert!(!lines[0].contains(":0/"), "the real port is printed");
}

#[test]
fn serve_prints_its_real_address_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let serve = crate::helpers::ServeProcess::start(
        &dir.path().join("db.sqlite"),
        &[("RUST_LOG", "info".to_owned())],
    );
    let url = serve.url.clone();
    assert!(!url.ends_with(":0"));
    let health = std::net::TcpStream::connect(url.trim_start_matches("http://")).is_ok();
    assert!(health, "listening at {url}");
    let (status, logs) = serve.stop("TERM");
    assert!(status.success(), "exit status {status}");
    // stderr is a pipe here, not a terminal: plain text, no colour codes.
    assert!(!logs.is_empty(), "serve logged something");
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI escape in piped logs: {logs:?}"
    );
}

/// Issue 24: the command line refuses what it cannot honour, naming the cause, and exits
/// non-zero; it never runs with a setting silently dropped.
#[test]
fn the_command_line_refuses_what_it_would_ignore() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_snapgate"))
            .args(args)
            .envs(envs.iter().copied())
            .env(
                "SNAPGATE_MASTER_KEY",
                "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=",
            )
            .env(
                "SNAPGATE_STORE__URL",
                format!("sqlite://{}", dir.path().join("s.db").display()),
            )
            .env("SNAPGATE_SERVER__LISTEN", "127.0.0.1:0")
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // An unknown section, in the environment or in the file, names itself.
    let (ok, err) = run(&["serve"], &[("SNAPGATE_SEVER__LISTEN", "127.0.0.1:0")]);
    assert!(!ok);
    assert!(err.contains("unknown section `sever`"), "{err}");
    let file = dir.path().join("snapgate.toml");
    std::fs::write(&file, "[sever]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let (ok, err) = run(&["serve", "--config", file.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(err.contains("unknown section `sever`"), "{err}");
    // Commands that make their own configuration refuse a file they would ignore.
    for command in ["demo", "simulate", "openapi"] {
        let (ok, err) = run(&[command, "--config", file.to_str().unwrap()], &[]);
        assert!(!ok, "{command}");
        assert!(err.contains("would ignore --config"), "{command}: {err}");
    }
    // A copy from a mistyped path neither succeeds nor creates the file.
    let missing = dir.path().join("typo.db");
    let from = format!("sqlite://{}", missing.display());
    let to = format!("sqlite://{}", dir.path().join("to.db").display());
    let (ok, err) = run(&["store", "copy", "--from", &from, "--to", &to], &[]);
    assert!(!ok);
    assert!(err.contains("there is no SQLite database"), "{err}");
    assert!(!missing.exists());
    // A simulator on a port that is taken names the address, not a data directory.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, err) = run(&["simulate", "--listen", &addr], &[]);
    assert!(!ok);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(!err.contains("data directory"), "{err}");
    // The token command's help lists every scope it accepts.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_snapgate"))
        .args(["token", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for scope in snapgate::auth::all_scopes() {
        assert!(help.contains(&scope), "{scope} missing from token --help");
    }
}
