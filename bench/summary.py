#!/usr/bin/env python3
"""Medians and ratios of a bench/side_by_side.sh run (its raw output on stdin or as a file)."""

import re
import statistics
import sys
from collections import defaultdict

text = open(sys.argv[1]).read() if len(sys.argv) > 1 else sys.stdin.read()
runs = defaultdict(lambda: defaultdict(list))
singles = {}
for line in text.splitlines():
    m = re.match(r"^(\w+) ((?:\w+=\S+ ?)+)$", line)
    if m and "=" in m.group(2) and not line.startswith("rss_"):
        for key, value in re.findall(r"(\w+)=(\S+)", m.group(2)):
            try:
                runs[m.group(1)][key].append(float(value))
            except ValueError:
                pass
    m = re.match(r"^(rss_\w+)=(\d+)$", line)
    if m:
        singles[m.group(1)] = int(m.group(2))


def med(name, key):
    values = runs[name][key]
    return statistics.median(values) if values else float("nan")


print("| measure (median of rounds) | nginx direct | nginx proxy (peer) | snapgate | snapgate ÷ peer | goal |")
print("|---|---|---|---|---|---|")
rps = [med(n, "rps") for n in ("direct", "peer", "snapgate")]
print(f"| req/s, 32 connections | {rps[0]:,.0f} | {rps[1]:,.0f} | {rps[2]:,.0f} | **{rps[2] / rps[1]:.2f}×** | ≥ 0.6× |")
cpu = [med(n, "cpu_us") for n in ("direct", "peer", "snapgate")]
print(f"| CPU µs per request | {cpu[0]:.1f} | {cpu[1]:.1f} | {cpu[2]:.1f} | **{cpu[2] / cpu[1]:.2f}×** | ≤ 2× |")
p50 = [med(n, "p50_ms") for n in ("direct", "peer", "snapgate")]
p99 = [med(n, "p99_ms") for n in ("direct", "peer", "snapgate")]
print(f"| p50 / p99 ms, 32 connections | {p50[0]:.2f} / {p99[0]:.2f} | {p50[1]:.2f} / {p99[1]:.2f} | {p50[2]:.2f} / **{p99[2]:.2f}** | | p99 ≤ 5 ms |")
ol_peer, ol_gw = med("peer", "openloop_p50_ms"), med("snapgate", "openloop_p50_ms")
if ol_peer == ol_peer:
    print(f"| p50 at 2,000 req/s open loop, ms | | {ol_peer:.3f} | {ol_gw:.3f} | **+{ol_gw - ol_peer:.3f} ms** | ≤ +0.25 ms |")
conns = med("snapgate", "upstream_conns")
print(f"| upstream connections opened per 32-connection run | | {med('peer', 'upstream_conns'):.0f} | **{conns:.0f}** | | ≤ 40 |")
l1, l5 = med("list1", "rps"), med("list5", "rps")
print(f"| fan-out list req/s: 1 account / 5 accounts | | | {l1:,.0f} / {l5:,.0f} | **{l1 / l5:.2f}×** cost | ≤ 1.3× |")
if singles:
    idle = singles.get("rss_idle_kb", 0) / 1024
    peak = singles.get("rss_peak_kb", 0) / 1024
    print(f"| RSS idle / peak (VmHWM) with 1,000 connections, MB | | | {idle:.1f} / **{peak:.1f}** | | ≤ 20 / ≤ 48 |")
if runs["alt"]["rps"]:
    a_rps, a_cpu, a_p99 = med("alt", "rps"), med("alt", "cpu_us"), med("alt", "p99_ms")
    ol = med("alt", "openloop_p50_ms")
    print(f"| *alt* (the `ALT` settings, same rounds) | | | {a_rps:,.0f} req/s, {a_cpu:.1f} µs, p99 {a_p99:.2f} ms, open-loop p50 {ol:.3f} ms | {a_rps / rps[1]:.2f}× / {a_cpu / cpu[1]:.2f}× | |")
    idle, peak = med("alt", "rss_idle_mb"), med("alt", "rss_peak_mb")
    print(f"| *alt* RSS idle / peak, MB | | | {idle:.1f} / {peak:.1f} | | |")
for name in ("direct", "peer", "snapgate", "alt", "list1", "list5"):
    values = runs[name]["rps"]
    if values:
        print(f"<!-- {name} req/s per round: {', '.join(f'{v:.0f}' for v in values)} -->")
