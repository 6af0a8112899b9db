#!/usr/bin/env python3
"""Allocations per request, from two DHAT heap profiles of the same build.

    DHAT=/tmp/a.dhat DHAT_REQUESTS=1000 bench/side_by_side.sh
    DHAT=/tmp/b.dhat DHAT_REQUESTS=3000 bench/side_by_side.sh
    bench/allocations.py /tmp/a.dhat 1000 /tmp/b.dhat 3000

Both runs pay the same start-up, so the difference of their totals divided by the difference of
their request counts is what one request costs. Prints allocations and bytes per request, then
the allocation sites (grouped by the innermost frame outside the allocator and the standard
library, with the frame that called it) that make it up, most allocations first. A release
build with line tables (`CARGO_PROFILE_RELEASE_DEBUG=line-tables-only`) names the sites.
"""
import json
import re
import sys
from collections import defaultdict

# A frame of a named crate's function (`snapgate::…`, `<hyper::… as …>::…`), not of the
# allocator, the standard library or a generic helper inlined from them.
OWN = re.compile(r"^(<(&mut |&)?)?([a-z_][a-z0-9_]*)::")
STD = {"alloc", "core", "std", "hashbrown"}


def own(frame):
    m = OWN.match(re.sub(r"^0x[0-9A-F]+: ", "", frame))
    return bool(m) and m.group(3) not in STD


def sites(path):
    with open(path) as f:
        d = json.load(f)
    frames = d["ftbl"]
    out = defaultdict(lambda: [0, 0])
    for pp in d["pps"]:
        names = [frames[i] for i in pp["fs"]]
        mine = [n for n in names if own(n)]
        key = " <- ".join(short(n) for n in mine[:2]) or short(names[-1])
        out[key][0] += pp["tbk"]
        out[key][1] += pp["tb"]
    return out


def short(frame):
    # "0x1234: snapgate::x::y (src/x.rs:12:5)" -> "snapgate::x::y (x.rs:12)"
    frame = re.sub(r"^0x[0-9A-F]+: ", "", frame)
    frame = re.sub(r"\(([^()]*/)?([^/()]+\.rs):(\d+):\d+\)$", r"(\2:\3)", frame)
    return frame[:140]


def main():
    a_path, a_n, b_path, b_n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    a, b = sites(a_path), sites(b_path)
    n = b_n - a_n
    rows = []
    for key in set(a) | set(b):
        blocks = (b.get(key, [0, 0])[0] - a.get(key, [0, 0])[0]) / n
        size = (b.get(key, [0, 0])[1] - a.get(key, [0, 0])[1]) / n
        if blocks >= 0.05:
            rows.append((blocks, size, key))
    rows.sort(reverse=True)
    total_blocks = sum(r[0] for r in rows)
    total_bytes = sum(r[1] for r in rows)
    print(f"{total_blocks:.1f} allocations, {total_bytes:,.0f} bytes per request ({n} requests apart)")
    for blocks, size, key in rows[: int(sys.argv[5]) if len(sys.argv) > 5 else 60]:
        print(f"{blocks:6.2f} {size:8.0f} B  {key}")


if __name__ == "__main__":
    main()
