#!/usr/bin/env bash
# The list across 1 to 1,000 accounts with a release build, the gateway and the simulator each in
# its own process (so the gateway's CPU is its own): Koyeb accounts on `snapgate simulate`, every
# vendor call answering after ${LATENCY} ms, the first page (page_size=20) of
# GET /v1/snapshots?provider=koyeb, ROUNDS rounds per size, median and worst, the gateway's and the
# simulator's CPU per list and the gateway's peak RSS.
#
# Every account holds the simulator's one Koyeb token, which the gateway rightly treats as one
# vendor account (16 calls at once); the bench lifts that cap to stand for accounts with tokens
# of their own. Usage: bench/fanout.sh   (SIZES="1 10 100 1000" ROUNDS=7 LATENCY=50 BIN=...;
# PROFILE=/tmp/f.data records the gateway with perf during the largest size, PERF_ARGS its
# options; SNAPGATE_LISTING__MAX_CONCURRENCY and other settings pass through to the gateway)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/snapgate}
SIZES=${SIZES:-"1 10 100 1000"}
ROUNDS=${ROUNDS:-7}
LATENCY=${LATENCY:-50}
[ -x "$BIN" ] || cargo build --release --locked
work=$(mktemp -d)
cleanup() {
  kill "${GW_PID:-}" "${SIM_PID:-}" "${PERF_PID:-}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
wait_for() { for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "timeout waiting for $1" >&2; exit 1; }

"$BIN" simulate --listen 127.0.0.1:0 > "$work/sim.env" 2>"$work/sim.log" &
SIM_PID=$!
wait_for "$work/sim.env" "simulator listening"
SIM=$(sed -n 's/^# simulator listening on \([^;]*\);.*/\1/p' "$work/sim.env")
KOYEB_URL=$(sed -n "s/^export SIMULATOR_KOYEB_URL=//p" "$work/sim.env")

export SNAPGATE_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
export SNAPGATE_AUTH__HS256_SECRET=bench-secret-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SNAPGATE_SERVER__LISTEN=127.0.0.1:0
export SNAPGATE_STORE__URL="sqlite://$work/bench.db"
export SNAPGATE_PROVIDERS__KOYEB__BASE_URL=$KOYEB_URL
export SNAPGATE_UPSTREAM__MAX_CONCURRENCY_PER_ACCOUNT=2000
export SNAPGATE_LISTING__ACCOUNT_TIMEOUT_MS=60000
RUST_LOG=error "$BIN" serve > "$work/gw.env" 2>"$work/gw.log" &
GW_PID=$!
wait_for "$work/gw.env" SNAPGATE_URL
GW=$(sed -n 's/^export SNAPGATE_URL=//p' "$work/gw.env")
TOKEN=$("$BIN" token --tenant bench)

CONCURRENCY=${SNAPGATE_LISTING__MAX_CONCURRENCY:-1024}
python3 - "$GW" "$SIM" "$TOKEN" "$GW_PID" "$SIM_PID" "$SIZES" "$ROUNDS" "$LATENCY" "${PROFILE:-}" "$CONCURRENCY" <<'EOF'
import http.client, json, os, subprocess, sys, time
gw, sim, token, gw_pid, sim_pid, sizes, rounds, latency, profile, concurrency = sys.argv[1:]
sizes, rounds = [int(s) for s in sizes.split()], int(rounds)
host, port = gw.removeprefix("http://").split(":")
conn = http.client.HTTPConnection(host, int(port), timeout=120)
def call(method, path, body=None, base=conn):
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    base.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = base.getresponse()
    return r.status, r.read()
def ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
def hwm(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
clk = os.sysconf("SC_CLK_TCK")
sh, sp = sim.split(":")
control = http.client.HTTPConnection(sh, int(sp), timeout=30)
def fault(body):
    control.request("PUT" if body else "DELETE", "/_sim/faults/koyeb", body=json.dumps(body) if body else None,
                    headers={"Content-Type": "application/json"})
    control.getresponse().read()
print(f"fanout vendor latency {latency} ms, first page (page_size=20) of GET /v1/snapshots?provider=koyeb, {rounds} rounds")
print("fanout concurrency accounts p50_ms max_ms ratio_to_1 gateway_cpu_ms_per_list simulator_cpu_ms_per_list gateway_peak_rss_mb errors")
made, one = 0, None
for n in sizes:
    fault(None)
    while made < n:
        status, body = call("POST", "/v1/accounts", {"id": f"ky-{made}", "provider": "koyeb", "credentials": {"token": "sim-koyeb-token"}})
        assert status == 201, body
        made += 1
    fault({"latency_ms": int(latency)})
    call("GET", "/v1/snapshots?provider=koyeb&page_size=20")  # warm: connections and account cache
    perf = None
    if profile and n == sizes[-1]:
        perf = subprocess.Popen(["perf", "record", *os.environ.get("PERF_ARGS", "-g").split(), "-o", profile, "-p", gw_pid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    times, errors = [], 0
    g0, s0 = ticks(gw_pid), ticks(sim_pid)
    for _ in range(rounds):
        started = time.perf_counter()
        status, body = call("GET", "/v1/snapshots?provider=koyeb&page_size=20")
        times.append((time.perf_counter() - started) * 1000)
        page = json.loads(body)
        errors += len(page.get("errors", [])) if status == 200 else 1
        if errors and n == sizes[0] and not times[1:]: print("fanout first error:", body[:300], file=sys.stderr)
    g1, s1 = ticks(gw_pid), ticks(sim_pid)
    if perf:
        perf.send_signal(2); perf.wait()
    times.sort()
    p50 = times[len(times) // 2]
    one = one or p50
    print(f"fanout {concurrency} {n} {p50:.0f} {times[-1]:.0f} {p50 / one:.2f} {(g1 - g0) * 1000 / clk / rounds:.1f} "
          f"{(s1 - s0) * 1000 / clk / rounds:.1f} {hwm(gw_pid):.0f} {errors}", flush=True)
EOF
