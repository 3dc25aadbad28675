#!/usr/bin/env python3
"""End-to-end benchmark of `monoquant quantize` on a generated llama-shaped
model directory, side by side in one run with the I/O bound (`cp -r` + sync):
medians of alternating runs, GB/s of input, ratio to the copy, peak RSS.
Python's standard library only.

usage: bench/bench_pipeline.py [--build build] [--work DIR] [--runs 3]
                               [--dtypes F32,BF16] [--preset 1b] [--devices auto,host]
                               [--json FILE]
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, **kw)


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def warm(path):
    """Reads every file once so the input sits in the page cache."""
    for r, _, fs in os.walk(path):
        for f in fs:
            with open(os.path.join(r, f), "rb") as fh:
                while fh.read(1 << 24):
                    pass


def timed(cmd):
    """Runs cmd in a child; returns (seconds, peak RSS in bytes of that child)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            err.seek(0)
            sys.exit("failed (exit %d): %s\n%s" % (p.returncode, " ".join(cmd),
                                                   err.read().decode(errors="replace")))
    return dt, ru.ru_maxrss * 1024


def copy_cmd(src, dst):
    return ["sh", "-c", "rm -rf '%s' && cp -r '%s' '%s' && sync" % (dst, src, dst)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", default="build/bench-work")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dtypes", default="F32,BF16")
    ap.add_argument("--preset", default="1b")
    ap.add_argument("--devices", default="auto,host")
    ap.add_argument("--memory-limit", default="1G")
    ap.add_argument("--json", help="also write the rows and the machine to this JSON file")
    a = ap.parse_args()
    mq = os.path.join(a.build, "monoquant")
    gen = os.path.join(a.build, "mq-genmodel")
    os.makedirs(a.work, exist_ok=True)
    dev = subprocess.run([mq, "devices"], stdout=subprocess.PIPE, text=True).stdout
    auto_line = next((l.strip() for l in dev.splitlines() if "* Device" in l), "none")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    machine = "%s, %d cores, %s" % (cpu, os.cpu_count(), platform.platform())
    print("machine: %s" % machine)
    print("auto device: %s" % auto_line)
    rows = []
    for dt in a.dtypes.split(","):
        src = os.path.join(a.work, "llama-%s-%s" % (a.preset, dt))
        if not os.path.isdir(src):
            sh(gen, src, "--preset", a.preset, "--dtype", dt, "--shards", "4")
        size = dir_bytes(src)
        warm(src)
        times = {d: [] for d in a.devices.split(",")}
        times["cp -r + sync"] = []
        rss = {}
        for run in range(a.runs):
            for d in a.devices.split(","):
                out = os.path.join(a.work, "out-%s" % d)
                shutil.rmtree(out, ignore_errors=True)
                cmd = [mq, "quantize", src, "-o", out, "-q", "--device", d,
                       "--memory-limit", a.memory_limit]
                sh("sync")
                t, r = timed(cmd)
                times[d].append(t)
                rss[d] = max(rss.get(d, 0), r)
                shutil.rmtree(out, ignore_errors=True)
            sh("sync")
            t, _ = timed(copy_cmd(src, os.path.join(a.work, "copy")))
            times["cp -r + sync"].append(t)
            shutil.rmtree(os.path.join(a.work, "copy"), ignore_errors=True)
        cp = statistics.median(times["cp -r + sync"])
        for name, ts in times.items():
            med = statistics.median(ts)
            rows.append((dt, name, size / 1e9, med, size / med / 1e9, med / cp, rss.get(name), ts))
    print()
    print("| input | run | input GB | median s | GB/s | time / (cp -r + sync) | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for dt, name, gb, med, rate, ratio, r, _ in rows:
        print("| %s | %s | %.2f | %.2f | %.2f | %.2f | %s |" % (
            dt, name if name.startswith("cp") else "monoquant --device " + name, gb, med, rate,
            ratio, "%.0f" % (r / 2**20) if r else "-"))
    note = ("medians of %d alternating runs; input in page cache; output written and synced by "
            "each run; peak RSS the largest of the timed runs" % a.runs)
    print("\n" + note)
    if a.json:
        doc = {"machine": machine, "auto_device": auto_line, "preset": a.preset, "runs": a.runs,
               "memory_limit": a.memory_limit, "note": note,
               "rows": [{"input": dt, "run": name if name.startswith("cp") else
                         "monoquant --device " + name, "input_gb": gb, "median_s": med,
                         "gb_per_s": rate, "time_over_copy": ratio,
                         "peak_rss_mib": r / 2**20 if r else None, "seconds": ts}
                        for dt, name, gb, med, rate, ratio, r, ts in rows]}
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
