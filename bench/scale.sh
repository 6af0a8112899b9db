#!/usr/bin/env bash
# How a list across accounts costs as the accounts grow (issue 26): 1, 10, 100 and 1,000 Koyeb
# accounts on the simulator with a fixed vendor latency (50 ms), for each fan-out concurrency in
# SCALE_CONCURRENCY (default 8,64,1000). Prints one `scale` line per (concurrency, accounts):
# median and worst of five first pages, the ratio to one account, CPU per list, peak RSS.
# Bounded: a few minutes. Writes bench/results-scale.txt. A debug build (the tests' own): the
# latencies are the vendor's, CPU per list is a debug build's.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --test it scale_list_across_accounts -- --ignored --nocapture 2>&1 |
  grep -E '^scale|test result|panicked' | tee bench/results-scale.txt
