#!/usr/bin/env python3
"""Memory and time of re-quantizing an FP8 block source against quantizing
the float model it stands for: `monoquant quantize` of a generated model
(mq-genmodel --preset MODEL, BF16) and of its FP8 block version
(--fp8-blocks), alternating float and FP8 runs per preset, each under
/usr/bin/time -v: medians of wall and CPU (user + system) seconds, the
largest peak RSS, and the FP8 source's peak RSS above the float model's.

usage: bench/bench_fp8src.py [--build build] [--work DIR] [--model 1b] [--runs 3]
                             [--presets W8A8,W4A16] [--device host] [--memory-limit 256M]
"""
import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys


def run_timed(cmd):
    """(wall s, user + system s, peak RSS KiB) of cmd under /usr/bin/time -v."""
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit("%s: exit %d\n%s" % (" ".join(cmd), r.returncode, r.stderr[-2000:]))

    def field(name):
        return re.search(r"^\s*%s: (.*)$" % re.escape(name), r.stderr, re.M).group(1)

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
    secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    return secs, cpu, int(field("Maximum resident set size (kbytes)"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", default="build/bench-fp8src")
    ap.add_argument("--model", default="1b")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--presets", default="W8A8,W4A16")
    ap.add_argument("--device", default="host")
    ap.add_argument("--memory-limit", default="256M")
    a = ap.parse_args()
    mq, gen = os.path.join(a.build, "monoquant"), os.path.join(a.build, "mq-genmodel")
    os.makedirs(a.work, exist_ok=True)
    inputs = {"BF16": ["--dtype", "BF16"], "FP8B": ["--dtype", "BF16", "--fp8-blocks"]}
    srcs = {}
    for k, flags in inputs.items():
        srcs[k] = os.path.join(a.work, "llama-%s-%s" % (a.model, k))
        if not os.path.isdir(srcs[k]):
            subprocess.run([gen, srcs[k], "--preset", a.model, "--shards", "4"] + flags,
                           check=True, stdout=subprocess.DEVNULL)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    print("machine: %s, %d cores, %s" % (cpu, os.cpu_count(), platform.platform()))
    res = {}
    for p in a.presets.split(","):
        for run in range(a.runs):
            for k in inputs:  # alternating: float, FP8, float, FP8, ...
                out = os.path.join(a.work, "out")
                shutil.rmtree(out, ignore_errors=True)
                subprocess.run(["sync"])
                t = run_timed([mq, "quantize", srcs[k], "-o", out, "-q", "--device", a.device,
                               "--memory-limit", a.memory_limit, "--preset", p])
                res.setdefault((p, k), []).append(t)
                print("%s %s run %d: %.2f s, CPU %.2f s, peak RSS %d KiB" % ((p, k, run + 1) + t),
                      file=sys.stderr)
                shutil.rmtree(out, ignore_errors=True)
    print("\n| preset | input | median s | median CPU s | peak RSS MiB | RSS above float MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for p in a.presets.split(","):
        base = max(t[2] for t in res[(p, "BF16")]) / 1024
        for k in inputs:
            ts = res[(p, k)]
            rss = max(t[2] for t in ts) / 1024
            print("| %s | %s | %.2f | %.2f | %.0f | %s |" % (
                p, k, statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts), rss,
                "%+.0f" % (rss - base) if k != "BF16" else ""))
    print("\n--device %s --memory-limit %s, %d alternating runs per preset, input in page cache"
          % (a.device, a.memory_limit, a.runs))


main()
