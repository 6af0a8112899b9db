#!/usr/bin/env bash
# Benchmarks the release binary against the simulator, interleaving in one run:
#   sim-get   the simulator directly        GET /hyperstack/v1/core/snapshots/{id}
#   gw-get    the gateway                   GET /v1/snapshots/{account}:{id}
#   gw-list   the gateway's fan-out list    GET /v1/snapshots?account=...
# Closed-loop (wrk, 32 connections) for throughput; fixed-rate (oha, 2000 req/s) for added
# latency; CPU per request from /proc; RSS idle and with 1,000 connections; upstream sockets
# opened (the simulator's accept counter).
#
# Needs: wrk (apt-get install wrk), oha (cargo install oha), a release build.
# Usage: bench/run.sh [seconds per run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
ROUNDS=${2:-3}
BIN=target/release/snapgate
[ -x "$BIN" ] || cargo build --release
work=$(mktemp -d)
cleanup() { kill "${GW_PID:-}" "${SIM_PID:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_for() { for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "timeout waiting for $1" >&2; exit 1; }

RUST_LOG=error "$BIN" simulate --listen 127.0.0.1:0 > "$work/sim.env" 2>/dev/null &
SIM_PID=$!
wait_for "$work/sim.env" SIMULATOR_OKTAWAVE_TOKEN_URL
eval "$(grep ^export "$work/sim.env")"
SIM=${SIMULATOR_HYPERSTACK_URL%/hyperstack/v1}

export SNAPGATE_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
export SNAPGATE_AUTH__HS256_SECRET=bench-secret-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SNAPGATE_SERVER__LISTEN=127.0.0.1:0
export SNAPGATE_STORE__URL="sqlite://$work/bench.db"
export SNAPGATE_PROVIDERS__HYPERSTACK__BASE_URL=$SIMULATOR_HYPERSTACK_URL
RUST_LOG=error "$BIN" serve > "$work/gw.env" 2>"$work/gw.log" &
GW_PID=$!
wait_for "$work/gw.env" SNAPGATE_URL
eval "$(grep ^export "$work/gw.env")"
TOKEN=$("$BIN" token --tenant bench)
AUTH="Authorization: Bearer $TOKEN"
curl -fsS -o /dev/null -X POST "$SNAPGATE_URL/v1/accounts" -H "$AUTH" -H 'Content-Type: application/json' \
  -d "{\"id\":\"hs\",\"provider\":\"hyperstack\",\"credentials\":{\"api_key\":\"$SIMULATOR_HYPERSTACK_API_KEY\"}}"
ID=$(curl -fsS "$SNAPGATE_URL/v1/snapshots?account=hs&page_size=1" -H "$AUTH" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["native_id"])')

SIM_GET=("$SIMULATOR_HYPERSTACK_URL/core/snapshots/$ID" -H "api_key: $SIMULATOR_HYPERSTACK_API_KEY")
GW_GET=("$SNAPGATE_URL/v1/snapshots/hs:$ID" -H "$AUTH")
GW_LIST=("$SNAPGATE_URL/v1/snapshots?account=hs" -H "$AUTH")

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
clk=$(getconf CLK_TCK)

echo "# snapgate benchmark $(date -u +%FT%TZ) — $(nproc) cores, ${DUR}s per run, $ROUNDS rounds"
echo "rss_idle_kb=$(rss_kb "$GW_PID")"

run_wrk() { # name url headers...
  local name=$1; shift
  local url=$1; shift
  local before after out reqs
  before=$(cpu_ticks "$GW_PID")
  out=$(wrk -t 2 -c 32 -d "${DUR}s" --latency "$@" "$url")
  after=$(cpu_ticks "$GW_PID")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  local cpu_us=$(( (after - before) * 1000000 / clk ))
  local per_req="n/a"
  [ "$name" != sim-get ] && per_req=$(awk -v c="$cpu_us" -v r="$reqs" 'BEGIN {printf "%.0f", c / r}')
  echo "wrk name=$name rps=$rps p50=$p50 p99=$p99 requests=$reqs gateway_cpu_us_per_req=$per_req"
}

run_oha() { # name url headers... ; fixed 2000 req/s
  local name=$1; shift
  local url=$1; shift
  local out
  out=$(oha --no-tui -z "${DUR}s" -q 2000 -c 16 --latency-correction "$@" "$url" 2>/dev/null || true)
  local p50 p99
  p50=$(echo "$out" | awk '/50.00% in/ {print $3 $4}')
  p99=$(echo "$out" | awk '/99.00% in/ {print $3 $4}')
  echo "oha name=$name rate=2000/s p50=$p50 p99=$p99"
}

accepted() { curl -fsS "$SIM/_sim/connections" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accepted"])'; }
for round in $(seq "$ROUNDS"); do
  echo "## round $round"
  run_wrk sim-get "${SIM_GET[0]}" "${SIM_GET[@]:1}"
  # Sockets the gateway opens to the vendor during a 32-connection run (wrk's own direct
  # connections to the simulator are not in this window).
  before=$(accepted)
  run_wrk gw-get "${GW_GET[0]}" "${GW_GET[@]:1}"
  echo "upstream_connections_opened name=gw-get count=$(( $(accepted) - before ))"
  run_wrk gw-list "${GW_LIST[0]}" "${GW_LIST[@]:1}"
done

if command -v oha >/dev/null; then
  for round in $(seq "$ROUNDS"); do
    run_oha sim-get "${SIM_GET[0]}" -H "api_key: $SIMULATOR_HYPERSTACK_API_KEY"
    run_oha gw-get "${GW_GET[0]}" -H "$AUTH"
  done
else
  echo "oha not installed: skipping fixed-rate latency (cargo install oha)"
fi

# RSS with 1,000 client connections (sampled while wrk holds them open).
ulimit -n 65536 2>/dev/null || true
peak=0
wrk -t 2 -c 1000 -d 5s -H "$AUTH" "${GW_GET[0]}" > /dev/null &
WRK=$!
while kill -0 "$WRK" 2>/dev/null; do r=$(rss_kb "$GW_PID"); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.2; done
echo "rss_1000_connections_peak_kb=$peak"
echo "rss_after_kb=$(rss_kb "$GW_PID")"
