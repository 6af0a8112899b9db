#!/usr/bin/env bash
# How cost grows with the work (issue 26), on the simulator, one command:
#   - a list across 1, 10, 100 and 1,000 Koyeb accounts with 50 ms vendor latency, for each
#     fan-out concurrency in SCALE_CONCURRENCY (default "8 256 1024"): `fanout` lines, from
#     bench/fanout.sh (a release build; the gateway and the simulator in processes of their own);
#   - event pages after a cursor at the log's start, middle and end, and operation long-poll
#     wake-ups, at 10k, 100k and 1M stored events (SQLite; PostgreSQL too when
#     SNAPGATE_TEST_POSTGRES_URL is set): `scale-events` lines;
#   - the reconciler with 200, 1,000 and 10,000 open operations: store calls per idle second,
#     one claim's time, store and vendor calls per operation checked: `scale-reconciler` lines;
#   - 1,000 webhook endpoints receiving one event each: `scale-webhooks` lines.
# The others are ignored tests in tests/it/scale.rs, bounded in count and time, in a debug build
# (the tests' own): their latencies are mostly the vendor's and the store's. Writes
# bench/results-scale.txt; `python3 bench/plot_scale.py` plots the list curves.
set -euo pipefail
cd "$(dirname "$0")/.."
run() { cargo test --locked --test it "$1" -- --ignored --nocapture 2>&1 | grep -E '^scale|test result|panicked'; }
{
  for c in ${SCALE_CONCURRENCY:-8 256 1024}; do SNAPGATE_LISTING__MAX_CONCURRENCY=$c bench/fanout.sh | grep -E '^fanout [0-9]'; done
  SCALE_STORE=sqlite run scale_events_and_long_polls
  if [ -n "${SNAPGATE_TEST_POSTGRES_URL:-}" ]; then SCALE_STORE=postgres run scale_events_and_long_polls; fi
  run scale_reconciler
  run scale_webhooks
} | tee bench/results-scale.txt
