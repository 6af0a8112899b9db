#!/usr/bin/env bash
# snapgate side by side with a real proxy, in one run on one machine:
#
#   upstream   nginx (2 workers) playing Koyeb: a 2 KB snapshot body for
#              GET /v1/snapshots/{id} and a 10-snapshot list, the vendor bearer token checked
#   direct     wrk → upstream
#   peer       wrk → nginx keep-alive reverse proxy (proxy_http_version 1.1, Connection "",
#              upstream keepalive 64) setting the vendor's Authorization header → upstream
#   snapgate   wrk → `snapgate serve` (HS256 caller token) with Koyeb accounts → upstream
#
# Closed loop `wrk -t2 -c32 -d${DUR}s --latency` after a ${WARM}s warm-up, ROUNDS interleaved
# rounds, medians. CPU per request from utime+stime in /proc (nginx: its workers). Also: added p50
# at 2,000 req/s open loop (oha, if installed), RSS idle and peak (VmHWM) with 1,000 connections,
# upstream connections opened per 32-connection run (the upstream's stub_status), and the fan-out
# list over 5 accounts against 1 account's page.
#
# Needs nginx and wrk (Debian packages; oha from crates.io for the open-loop figure) and a
# release build. Usage: bench/side_by_side.sh   (DUR=10 ROUNDS=3 WARM=2 BIN=... to change)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-3}
WARM=${WARM:-2}
BIN=${BIN:-target/release/snapgate}
[ -x "$BIN" ] || cargo build --release --locked
command -v nginx >/dev/null && command -v wrk >/dev/null || {
  echo "needs nginx and wrk: apt-get install -y nginx-light wrk" >&2
  exit 2
}
NGINX=$(command -v nginx)
work=$(mktemp -d)
cleanup() {
  kill "${GW_PID:-}" "${ALT_PID:-}" 2>/dev/null || true
  for p in up peer; do [ -f "$work/$p.pid" ] && kill "$(cat "$work/$p.pid")" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
UP=$(free_port)
PEER=$(free_port)
VENDOR_TOKEN=bench-koyeb-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
SNAP=5e0f3c2a-9b8d-4a71-8c6e-2d4f6a8b0c1e

# The 2 KB snapshot body (the documented Koyeb shape, padded with the labels a real account
# carries) and a 10-snapshot list page.
python3 - "$work" "$SNAP" <<'EOF'
import json, sys
work, snap = sys.argv[1], sys.argv[2]
def snapshot(i, sid):
    return {"id": sid, "name": f"pg-data-before-migration-{i}", "size": 10,
            "created_at": f"2025-03-11T09:{15 + i:02d}:42.221274Z",
            "updated_at": "2025-03-11T09:17:03.518802Z",
            "organization_id": "c402bcad-d06d-4fd6-8af2-08b790c0e249",
            "parent_volume_id": "8f6e2b4a-3c1d-4e5f-9a7b-0c2d4e6f8a1b",
            "region": "fra", "status": "SNAPSHOT_STATUS_AVAILABLE", "type": "SNAPSHOT_TYPE_LOCAL"}
one = {"snapshot": snapshot(0, snap)}
pad = 2048 - len(json.dumps(one))
one["snapshot"]["labels"] = {"owner": "platform", "note": "x" * max(0, pad - 40)}
open(f"{work}/snapshot.json", "w").write(json.dumps(one))
items = [snapshot(i, f"5e0f3c2a-9b8d-4a71-8c6e-2d4f6a8b0c{i:02d}") for i in range(10)]
open(f"{work}/list.json", "w").write(json.dumps({"snapshots": items, "limit": 100, "offset": 0, "has_next": False}))
EOF

cat > "$work/up.conf" <<EOF
worker_processes 2;
pid $work/up.pid;
error_log $work/up.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/json;
  keepalive_requests 1000000;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  server {
    listen 127.0.0.1:$UP reuseport backlog=4096;
    location = /status { stub_status; }
    location = /v1/snapshots/$SNAP {
      if (\$http_authorization != "Bearer $VENDOR_TOKEN") { return 401 '{"status":401,"code":"authentication_error","message":"unauthenticated"}'; }
      alias $work/snapshot.json;
    }
    location = /v1/snapshots {
      if (\$http_authorization != "Bearer $VENDOR_TOKEN") { return 401 '{"status":401,"code":"authentication_error","message":"unauthenticated"}'; }
      alias $work/list.json;
    }
  }
}
EOF
cat > "$work/peer.conf" <<EOF
worker_processes 2;
pid $work/peer.pid;
error_log $work/peer.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  upstream koyeb { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$PEER reuseport backlog=4096;
    location / {
      proxy_pass http://koyeb;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer $VENDOR_TOKEN";
    }
  }
}
EOF
"$NGINX" -q -c "$work/up.conf" -e "$work/up.err"
"$NGINX" -q -c "$work/peer.conf" -e "$work/peer.err"

wait_for() { for _ in $(seq ${WAIT_TENTHS:-100}); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "timeout waiting for $1" >&2; exit 1; }
export SNAPGATE_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
export SNAPGATE_AUTH__HS256_SECRET=bench-secret-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SNAPGATE_SERVER__LISTEN=127.0.0.1:0
export SNAPGATE_SERVER__MAX_CONNECTIONS=4096
export SNAPGATE_STORE__URL="sqlite://$work/bench.db"
export SNAPGATE_PROVIDERS__KOYEB__BASE_URL=http://127.0.0.1:$UP
# DHAT=FILE runs the gateway under valgrind's DHAT (see the DHAT mode below).
GW_WRAP=()
[ -n "${DHAT:-}" ] && GW_WRAP=(valgrind -q --tool=dhat --dhat-out-file="$DHAT")
RUST_LOG=error "${GW_WRAP[@]}" "$BIN" serve > "$work/gw.env" 2>"$work/gw.log" &
GW_PID=$!
wait_for "$work/gw.env" SNAPGATE_URL
eval "$(grep ^export "$work/gw.env")"
TOKEN=$("$BIN" token --tenant bench)
AUTH="Authorization: Bearer $TOKEN"
accounts() { # URL: five Koyeb accounts, all pointed at the upstream
  for i in 1 2 3 4 5; do
    curl -fsS -o /dev/null -X POST "$1/v1/accounts" -H "$AUTH" -H 'Content-Type: application/json' \
      -d "{\"id\":\"k$i\",\"provider\":\"koyeb\",\"credentials\":{\"token\":\"$VENDOR_TOKEN\"}}"
  done
  curl -fsS -o /dev/null "$1/v1/snapshots/k1:$SNAP" -H "$AUTH"
}
accounts "$SNAPGATE_URL"
# ALT="VAR=value ...": a second gateway with those settings (or ALT_BIN), measured in the same
# rounds as `alt`, to compare one change side by side.
if [ -n "${ALT:-}${ALT_BIN:-}" ]; then
  env SNAPGATE_STORE__URL="sqlite://$work/alt.db" ${ALT:-} RUST_LOG=error "${ALT_BIN:-$BIN}" serve > "$work/alt.env" 2>"$work/alt.log" &
  ALT_PID=$!
  wait_for "$work/alt.env" SNAPGATE_URL
  ALT_URL=$(sed -n 's/^export SNAPGATE_URL=//p' "$work/alt.env")
  accounts "$ALT_URL"
fi
curl -fsS -o /dev/null "http://127.0.0.1:$PEER/v1/snapshots/$SNAP"

up_pids() { pgrep -P "$(cat "$work/up.pid")" | tr '\n' ' '; }
peer_pids() { pgrep -P "$(cat "$work/peer.pid")" | tr '\n' ' '; }
ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
switches() { cat $(for p in "$@"; do echo /proc/$p/task/*/status; done) 2>/dev/null | awk '/ctxt_switches/ {t += $2} END {print t + 0}'; }
accepts() { curl -fsS "http://127.0.0.1:$UP/status" | awk 'NR==3 {print $1}'; }
clk=$(getconf CLK_TCK)

DIRECT=("http://127.0.0.1:$UP/v1/snapshots/$SNAP" -H "Authorization: Bearer $VENDOR_TOKEN")
PEER_GET=("http://127.0.0.1:$PEER/v1/snapshots/$SNAP")
GW_GET=("$SNAPGATE_URL/v1/snapshots/k1:$SNAP" -H "$AUTH")
GW_LIST1=("$SNAPGATE_URL/v1/snapshots?account=k1&page_size=10" -H "$AUTH")
GW_LIST5=("$SNAPGATE_URL/v1/snapshots?page_size=10" -H "$AUTH")

# SYSCALLS=1: instead of measuring, count the gateway's system calls per request under the GET
# load (strace -c, 4 s; strace slows the gateway, the counts per request are what matter).
if [ -n "${SYSCALLS:-}" ]; then
  wrk -t2 -c32 -d8s "${GW_GET[@]}" > "$work/wrk.out" 2>&1 &
  WRK_PID=$!
  sleep 2
  timeout 4 strace -c -f -p "$GW_PID" -o "$work/strace.out" 2>/dev/null || true
  wait "$WRK_PID"
  echo "requests while traced: see wrk below; per-call counts:"
  cat "$work/strace.out"
  cat "$work/wrk.out"
  exit 0
fi

# THREADS=1: instead of measuring, print each gateway thread's context switches (voluntary,
# involuntary) and CPU ticks over 4 s of the GET load, and the requests served meanwhile.
if [ -n "${THREADS:-}" ]; then
  snap() { for t in /proc/"$GW_PID"/task/*; do
    echo "${t##*/} $(tr ' ' _ < "$t/comm") $(awk '/^voluntary_ctxt/ {v=$2} /nonvoluntary_ctxt/ {n=$2} END {print v, n}' "$t/status") $(awk '{print $14 + $15}' "$t/stat")"
  done | sort; }
  wrk -t2 -c32 -d8s "${GW_GET[@]}" > "$work/wrk.out" 2>&1 &
  WRK_PID=$!
  sleep 2
  snap > "$work/th.a"; sleep 4; snap > "$work/th.b"
  wait "$WRK_PID"
  join "$work/th.a" "$work/th.b" | awk '{printf "%-22s voluntary=%-7d involuntary=%-7d ticks=%d\n", $2, $7 - $3, $8 - $4, $9 - $5}'
  grep -E 'requests in|Requests/sec' "$work/wrk.out"
  exit 0
fi

# MEMORY=1: instead of measuring, print where the gateway's resident memory is (by mapping,
# and anonymous against file-backed) idle and after 5 s of the GET load on 1,000 connections.
if [ -n "${MEMORY:-}" ]; then
  resident() {
    echo "## $1: $(grep -E '^(VmRSS|VmHWM)' "/proc/$GW_PID/status" | tr -s ' \t' ' ' | tr '\n' ' ')"
    grep -E '^(Anonymous|Pss_File)' "/proc/$GW_PID/smaps_rollup" | tr -s ' ' | tr '\n' ' '; echo
    awk '/^[0-9a-f]+-/ {name = ($6 == "" ? "[anon]" : $6)} /^Rss:/ {r[name] += $2}
      END {for (n in r) if (r[n] > 500) printf "%8d kB %s\n", r[n], n}' "/proc/$GW_PID/smaps" | sort -rn
  }
  resident idle
  wrk -t2 -c1000 -d5s "${GW_GET[@]}" 2>&1 | grep -E 'requests in|Non-2xx' || true
  resident "after 1,000 connections"
  exit 0
fi

# DHAT=FILE: instead of measuring, run the gateway under DHAT, send it DHAT_REQUESTS GETs
# (default 2000) on one connection and stop it; DHAT writes its heap profile to FILE. Run it
# twice with two counts and difference them (bench/allocations.py) for allocations per request
# without the start-up's.
if [ -n "${DHAT:-}" ]; then
  n=${DHAT_REQUESTS:-2000}
  python3 - "$n" "${GW_GET[0]}" "$AUTH" <<'EOF'
import http.client, sys, urllib.parse
n, url, auth = int(sys.argv[1]), sys.argv[2], sys.argv[3]
u = urllib.parse.urlsplit(url)
name, value = auth.split(": ", 1)
conn = http.client.HTTPConnection(u.hostname, u.port)
for _ in range(n):
    conn.request("GET", u.path, headers={name: value})
    r = conn.getresponse(); r.read()
    assert r.status == 200, r.status
EOF
  kill -INT "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
  echo "dhat: $n GETs (+6 set-up requests) in $DHAT"
  exit 0
fi

# PROFILE=FILE: instead of measuring, record the gateway's profile under the GET load
# (`perf record -g`, 8 s) and print where its cycles go, by library and by symbol.
# PROFILE_OF=peer profiles the nginx proxy's workers under its own load instead.
if [ -n "${PROFILE:-}" ]; then
  if [ "${PROFILE_OF:-}" = peer ]; then
    target=$(peer_pids | tr ' ' ',' | sed 's/,$//'); load=("${PEER_GET[@]}")
  else
    target=$GW_PID; load=("${GW_GET[@]}")
  fi
  wrk -t2 -c32 -d12s "${load[@]}" >/dev/null 2>&1 &
  WRK_PID=$!
  sleep 2
  perf record -q ${PERF_EVENT:+-e "$PERF_EVENT"} ${PERF_CALL_GRAPH:--g} -o "$PROFILE" -p "$target" -- sleep "${PERF_SECS:-8}" 2>/dev/null
  wait "$WRK_PID"
  perf report -i "$PROFILE" --no-children --sort dso --stdio 2>/dev/null | grep -v '^#' | grep . | head -15
  perf report -i "$PROFILE" --no-children --sort symbol --stdio -g none 2>/dev/null | grep -v '^#' | grep . | head -60
  exit 0
fi

measure() {
echo "# side by side $(date -u +%FT%TZ) — $(nproc) cores, ${DUR}s runs, ${WARM}s warm-up, $ROUNDS rounds"
echo "# $(nginx -v 2>&1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), snapgate $("$BIN" --version 2>/dev/null || echo '?')"
echo "rss_idle_kb=$(awk '/VmRSS/ {print $2}' "/proc/$GW_PID/status")"
[ -n "${ALT_PID:-}" ] && echo "alt rss_idle_mb=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$ALT_PID/status")"

# run NAME PIDS -- URL ARGS...: one closed-loop run; prints a result line.
run() {
  local name=$1 pids=$2; shift 3
  wrk -t2 -c32 -d"${WARM}s" "$@" >/dev/null 2>&1
  local before after acc_before acc_after out sw_before sw_after
  acc_before=$(accepts)
  before=$(ticks $pids)
  sw_before=$(switches $pids)
  out=$(wrk -t2 -c32 -d"${DUR}s" --latency "$@")
  after=$(ticks $pids)
  sw_after=$(switches $pids)
  acc_after=$(accepts)
  python3 - "$name" "$((after - before))" "$clk" "$((acc_after - acc_before))" "$out" "$((sw_after - sw_before))" <<'EOF'
import re, sys
name, ticks, clk, accepted, out, switches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
unit = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)", v)
    if not m:
        sys.exit(f"{name}: cannot read latency {v!r} in:\n{out}")
    return float(m.group(1)) * unit[m.group(2)]
if not re.search(r"^\s+99%\s+\S+", out, re.M):
    sys.exit(f"{name}: wrk printed no latency distribution:\n{out}")
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
cpu_us = ticks / clk * 1e6 / max(reqs, 1)
print(f"{name} rps={rps:.0f} p50_ms={p50:.3f} p99_ms={p99:.3f} cpu_us={cpu_us:.1f} upstream_conns={accepted} switches_per_req={switches / max(reqs, 1):.2f} non2xx={errors.group(1) if errors else 0}")
EOF
}

openloop() { # NAME URL ARGS...: p50 at 2,000 req/s
  local name=$1; shift
  command -v oha >/dev/null || { echo "$name openloop=skipped (no oha)"; return; }
  local url=$1; shift
  oha -z 8s -q 2000 -c 16 --latency-correction --no-tui --output-format json "$url" "$@" 2>/dev/null \
    | python3 -c "import json,sys; d=json.load(sys.stdin); print('$name openloop_p50_ms=%.3f' % (d['latencyPercentiles']['p50']*1000))"
}

for round in $(seq "$ROUNDS"); do
  echo "## round $round"
  run direct "$(up_pids)" -- "${DIRECT[@]}"
  run peer "$(peer_pids)" -- "${PEER_GET[@]}"
  run snapgate "$GW_PID" -- "${GW_GET[@]}"
  [ -n "${ALT_PID:-}" ] && run alt "$ALT_PID" -- "$ALT_URL/v1/snapshots/k1:$SNAP" -H "$AUTH"
  run list1 "$GW_PID" -- "${GW_LIST1[@]}"
  run list5 "$GW_PID" -- "${GW_LIST5[@]}"
  openloop peer "${PEER_GET[@]}"
  openloop snapgate "${GW_GET[@]}"
  [ -n "${ALT_PID:-}" ] && openloop alt "$ALT_URL/v1/snapshots/k1:$SNAP" -H "$AUTH"
done

wrk -t2 -c1000 -d5s "${GW_GET[@]}" >/dev/null 2>&1 || true
echo "rss_peak_kb=$(awk '/VmHWM/ {print $2}' "/proc/$GW_PID/status")"
if [ -n "${ALT_PID:-}" ]; then
  wrk -t2 -c1000 -d5s "$ALT_URL/v1/snapshots/k1:$SNAP" -H "$AUTH" >/dev/null 2>&1 || true
  echo "alt rss_peak_mb=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$ALT_PID/status")"
fi
echo "rss_after_kb=$(awk '/VmRSS/ {print $2}' "/proc/$GW_PID/status")"
}

OUT=${OUT:-bench/results-side-by-side.txt}
measure | tee "$OUT"
echo
python3 bench/summary.py "$OUT"
