#!/usr/bin/env python3
"""Plots bench/results-scale.txt (the `fanout` lines bench/scale.sh printed) to bench/scale.png:
list latency (median of seven, as a multiple of one account's) against the number of accounts,
one curve per fan-out concurrency. Needs matplotlib (`pip install matplotlib`)."""
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

here = Path(__file__).resolve().parent
curves = defaultdict(list)
for line in (here / "results-scale.txt").read_text().splitlines():
    parts = line.split()
    if len(parts) == 10 and parts[0] == "fanout" and parts[1].isdigit():
        curves[int(parts[1])].append((int(parts[2]), float(parts[5])))
fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
for concurrency, points in sorted(curves.items()):
    xs, ys = zip(*sorted(points))
    ax.plot(xs, ys, marker="o", label=f"listing.max_concurrency={concurrency}")
ax.axhline(2, color="grey", linestyle="--", linewidth=1, label="goal: 2x one account")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("accounts in the list (Koyeb, simulator, 50 ms vendor latency, release build)")
ax.set_ylabel("first page latency / one account's")
ax.set_title("GET /v1/snapshots across N accounts (median of 7)")
ax.legend(fontsize=8)
ax.grid(True, which="both", alpha=0.3)
fig.tight_layout()
fig.savefig(here / "scale.png")
print(f"wrote {here / 'scale.png'}")
