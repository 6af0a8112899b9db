#!/usr/bin/env bash
# The soak (issue 21): two `snapgate serve` replicas on one PostgreSQL under create load, with
# the database cut off, its backends killed and a replica killed -9 on a schedule; an event
# follower and a webhook receiver. Prints vendor creates per key, events seen per event
# written and deliveries per event, and fails unless each promise held. Bounded: ~40 s of load,
# at most ~2.5 min in all. Needs PostgreSQL on 127.0.0.1:5432 (`.ci/postgres` starts it).
set -euo pipefail
cd "$(dirname "$0")/.."
export SNAPGATE_TEST_POSTGRES_URL="${SNAPGATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo test --locked --test it soak -- --ignored --nocapture 2>&1 | tee "${SOAK_LOG:-/tmp/snapgate-soak.log}" | grep -E '^soak|test result|panicked'
