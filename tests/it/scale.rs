//! How a list across many accounts costs as the accounts grow (issue 26): `bench/scale.sh`
//! runs it (ignored in the ordinary test run: it creates a thousand accounts per setting).
//! Koyeb accounts on the simulator with a fixed vendor latency; for each fan-out concurrency,
//! the first page of `GET /v1/snapshots` at 1, 10, 100 and 1,000 accounts: median and worst of
//! five, the ratio to one account, CPU per list and the process's peak memory (the process
//! holds the gateway and the simulator both).

use std::time::{Duration, Instant};

use serde_json::json;
use snapgate::simulator::{Fault, Vendor};

use crate::{helpers::*, lifecycle::spawn_with_simulator_and};

const LATENCY_MS: u64 = 50;
const ROUNDS: usize = 5;

fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat (11 and 12 after the name).
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "bench: run by bench/scale.sh"]
async fn scale_list_across_accounts() {
    let settings: Vec<usize> = std::env::var("SCALE_CONCURRENCY")
        .unwrap_or_else(|_| "8,64,1000".to_owned())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let sizes = [1usize, 10, 100, 1000];
    println!("scale vendor latency {LATENCY_MS} ms, first page (page_size=20) of GET /v1/snapshots?provider=koyeb, {ROUNDS} rounds");
    println!(
        "scale concurrency accounts p50_ms max_ms ratio_to_1 cpu_ms_per_list peak_rss_mb errors"
    );
    for concurrency in settings {
        let s = spawn_with_simulator_and(Duration::from_millis(50), |c| {
            c.listing.max_concurrency = concurrency;
            c.listing.account_timeout_ms = 60_000;
            // Every bench account holds the simulator's one Koyeb token, which the gateway
            // rightly treats as one vendor account (16 calls at once); lifted here to stand
            // for 1,000 accounts with tokens of their own.
            c.upstream.max_concurrency_per_account = 2_000;
        })
        .await;
        let (app, t) = (&s.app, s.token.as_str());
        let credentials: serde_json::Map<String, serde_json::Value> = s
            .sim
            .credentials(Vendor::Koyeb)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect();
        // The simulator's own Koyeb account is the first.
        let mut made = 1;
        let mut one = None;
        for n in sizes {
            s.sim.clear_faults();
            while made < n {
                let body = json!({"id": format!("ky-{made}"), "provider": "koyeb", "credentials": credentials});
                let resp = app.post("/v1/accounts", t, &body).await;
                assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
                made += 1;
            }
            s.sim.set_fault(
                Vendor::Koyeb,
                Fault {
                    latency_ms: Some(LATENCY_MS),
                    ..Fault::default()
                },
            );
            let mut times = Vec::new();
            let mut errors = 0;
            let cpu = cpu_secs();
            for _ in 0..ROUNDS {
                let started = Instant::now();
                let page = json_of(
                    app.get("/v1/snapshots?provider=koyeb&page_size=20", t)
                        .await,
                )
                .await;
                times.push(started.elapsed());
                errors += page["errors"].as_array().map_or(1, Vec::len);
            }
            let cpu_ms = (cpu_secs() - cpu) * 1000.0 / ROUNDS as f64;
            times.sort();
            let p50 = times[ROUNDS / 2].as_secs_f64() * 1000.0;
            let max = times[ROUNDS - 1].as_secs_f64() * 1000.0;
            let base = *one.get_or_insert(p50);
            println!(
                "scale {concurrency} {n} {p50:.0} {max:.0} {:.2} {cpu_ms:.1} {:.0} {errors}",
                p50 / base,
                peak_rss_mb()
            );
        }
        s.sim.clear_faults();
    }
}
