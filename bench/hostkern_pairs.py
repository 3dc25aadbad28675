#!/usr/bin/env python3
"""Two builds of bench_hostkern, run in alternating pairs (the order swapped
every pair), each run its own least-of-N thread CPU time per row; printed per
row: the median of each build's figures and the median of the per-pair ratios
after/before with their min-max. On a machine shared with other work the
paired ratio is the steadier figure.

Usage: bench/hostkern_pairs.py BEFORE AFTER [pairs (7)] [iters per run (5)]
"""
import statistics
import subprocess
import sys


def run(binary, iters):
    out = subprocess.run([binary, str(iters)], check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines()[1:]:
        f = line.split()
        # dtype, kind (several words), err, ns/value
        rows[(f[0], " ".join(f[1:-2]), f[-2])] = float(f[-1])
    return rows


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    before, after = sys.argv[1], sys.argv[2]
    pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    iters = sys.argv[4] if len(sys.argv) > 4 else "5"
    b, a = [], []
    for p in range(pairs):
        if p % 2 == 0:
            b.append(run(before, iters))
            a.append(run(after, iters))
        else:
            a.append(run(after, iters))
            b.append(run(before, iters))
    print(f"{'dtype':5} {'kind':15} {'err':4} {'before':>8} {'after':>8} "
          f"{'after/before (min-max)':>24}")
    for key in b[0]:
        if key not in a[0]:
            continue
        rb = [r[key] for r in b]
        ra = [r[key] for r in a]
        q = [y / x for x, y in zip(rb, ra)]
        print(f"{key[0]:5} {key[1]:15} {key[2]:4} {statistics.median(rb):8.3f} "
              f"{statistics.median(ra):8.3f} {statistics.median(q):9.2f} "
              f"({min(q):.2f}-{max(q):.2f})")


if __name__ == "__main__":
    main()
