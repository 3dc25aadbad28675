#!/usr/bin/env python3
"""End-to-end benchmark of `monoquant quantize --preset NAME` against
llm-compressor's `model_free_ptq` with the same compressed-tensors preset on
CPU, and against the I/O bound (`cp -r` + sync), on a generated llama-shaped
model directory: medians of alternating runs, GB/s of input, ratios, peak RSS.
Optionally (--check) the fraction of identical bytes per tensor between our
output and llm-compressor's.

The parent process uses Python's standard library only. llm-compressor runs in
its own interpreter (--llmc-python, e.g. a venv with `pip install
llmcompressor`); without it that column is left out, with a note.

usage: bench/bench_presets.py [--build build] [--work DIR] [--runs 3]
                              [--presets W8A8,W8A16,W4A16,W4A16_ASYM,FP8_DYNAMIC,FP8_BLOCK,
                                         MXFP4A16,NVFP4A16]
                              [--dtypes F32,BF16,FP8B] [--model 1b] [--devices host]
                              [--group-size N] [--llmc-python PY] [--llmc-workers 1]
                              [--llmc-ignore lm_head,re:.*embed_tokens$] [--no-ours]
                              [--llmc-wheel DIR] [--check] [--json FILE]

Input FP8B is the model as an FP8 block source (mq-genmodel --fp8-blocks:
BF16 model, its layers' Linear weights F8_E4M3 with 128 x 128 block scales);
llm-compressor reads it through compressed-tensors' FP8BlockDequantizer
(model_free_ptq's converter). Peak RSS and CPU seconds (user + system) are
those of the child and everything it waited for.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_pipeline import dir_bytes, sh, warm  # noqa: E402  (the same helpers)

PRESETS = "W8A8,W8A16,W4A16,W4A16_ASYM,FP8_DYNAMIC,FP8_BLOCK,MXFP4A16,NVFP4A16"

# Runs in the llm-compressor interpreter: quantizes IN into OUT with a preset and
# writes the seconds spent importing and quantizing to TIMES (JSON).
LLMC_RUN = r'''
import json, sys, time
t0 = time.perf_counter()
from llmcompressor import model_free_ptq
t1 = time.perf_counter()
src, out, preset, times, workers, ignore, group, source = sys.argv[1:9]
converter = None
if source == "fp8b":
    from compressed_tensors.entrypoints.convert.converters.fp8block_dequantizer import (
        FP8BlockDequantizer)
    converter = FP8BlockDequantizer.from_pretrained(src)
scheme = preset
if group:
    from compressed_tensors.quantization import preset_name_to_scheme
    scheme = preset_name_to_scheme(preset, ["Linear"])
    g = int(group)
    if g <= 0:
        scheme.weights.strategy, scheme.weights.group_size = "channel", None
    else:
        scheme.weights.group_size = g
model_free_ptq(src, out, scheme=scheme, ignore=[p for p in ignore.split(",") if p],
               max_workers=int(workers), device="cpu", converter=converter)
t2 = time.perf_counter()
with open(times, "w") as f:
    json.dump({"import_s": t1 - t0, "quantize_s": t2 - t1}, f)
'''

# Runs in the llm-compressor interpreter: compares two model directories tensor
# by tensor (bytes of the stored data) and their quantization_config blocks.
LLMC_CHECK = r'''
import glob, json, os, sys
import torch
from safetensors import safe_open
a_dir, b_dir, out = sys.argv[1:4]

def files(d):
    m = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        with safe_open(f, "pt") as h:
            for k in h.keys():
                m[k] = f
    return m

def raw(t):
    return t.contiguous().reshape(-1).view(torch.uint8)

def diff(x, y, path, acc):
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(set(x) | set(y)):
            diff(x.get(k, "<absent>"), y.get(k, "<absent>"), path + "." + k, acc)
    elif x != y:
        acc.append("%s: %s vs %s" % (path, json.dumps(x), json.dumps(y)))
    return acc

fa, fb = files(a_dir), files(b_dir)
tensors = []
for name in sorted(set(fa) & set(fb)):
    with safe_open(fa[name], "pt") as h:
        a = h.get_tensor(name)
    with safe_open(fb[name], "pt") as h:
        b = h.get_tensor(name)
    row = {"name": name, "dtype": [str(a.dtype), str(b.dtype)],
           "shape": [list(a.shape), list(b.shape)], "bytes": a.nbytes}
    if a.dtype == b.dtype and a.shape == b.shape:
        row["identical"] = int((raw(a) == raw(b)).sum())
    tensors.append(row)
def norm(x):
    """Leaves out null, empty and default-valued fields, and the config groups' names
    (ours "group_0", llm-compressor's the preset's name), so that only differences
    in meaning remain."""
    if isinstance(x, dict):
        d = {k: norm(v) for k, v in x.items()}
        if isinstance(d.get("config_groups"), dict):
            d["config_groups"] = {"group %d" % i: v
                                  for i, (_, v) in enumerate(sorted(d["config_groups"].items()))}
        return {k: v for k, v in d.items() if v not in (None, {}, [])}
    if isinstance(x, list):
        return [norm(v) for v in x]
    return x

qa = norm(json.load(open(os.path.join(a_dir, "config.json"))).get("quantization_config", {}))
qb = norm(json.load(open(os.path.join(b_dir, "config.json"))).get("quantization_config", {}))
json.dump({"tensors": tensors, "only_a": sorted(set(fa) - set(fb)),
           "only_b": sorted(set(fb) - set(fa)),
           "config_diff": diff(qa, qb, "quantization_config", [])}, open(out, "w"))
'''


def timed(cmd, env=None):
    """Runs cmd in a child; returns (seconds, peak RSS in bytes of the child and the
    descendants it waited for, exit code, end of stderr, CPU seconds of them)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        before = os.times()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        rc = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode(errors="replace")[-4000:] if rc else ""
        after = os.times()
        # the child's own rusage, plus what it waited for (sync's children, llm-compressor's)
        cpu = (after.children_user - before.children_user) + \
              (after.children_system - before.children_system)
    return dt, ru.ru_maxrss * 1024, rc, tail, max(cpu, ru.ru_utime + ru.ru_stime)


def last_line(text):
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    return lines[-1][:200] if lines else ""


class Column:
    """One tool/device: its command per preset, times, peak RSS, state."""

    def __init__(self, key, label):
        self.key, self.label = key, label
        self.times, self.extra, self.rss, self.out_bytes = [], [], 0, None
        self.cpu = []
        self.status = None  # None: ran; else a short reason shown in the table


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="build tree with monoquant and mq-genmodel")
    ap.add_argument("--work", default="build/bench-work", help="models and outputs go here")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--presets", default=PRESETS)
    ap.add_argument("--dtypes", default="F32,BF16")
    ap.add_argument("--model", default="1b", help="mq-genmodel --preset (model size)")
    ap.add_argument("--devices", default="host", help="monoquant --device values, comma-separated")
    ap.add_argument("--memory-limit", default="1G")
    ap.add_argument("--group-size", help="passed to both tools (llm-compressor: the preset's "
                    "scheme with this group size; -1 per channel)")
    ap.add_argument("--llmc-python", help="python of a venv with llmcompressor installed")
    ap.add_argument("--llmc-workers", type=int, default=1, help="model_free_ptq max_workers")
    ap.add_argument("--llmc-wheel", help="an unpacked llmcompressor wheel to import instead of an "
                    "installed one (with a stand-in for the datasets package, which "
                    "model_free_ptq never calls)")
    ap.add_argument("--llmc-ignore", default="lm_head,re:.*embed_tokens$",
                    help="model_free_ptq ignore list (what monoquant keeps in float)")
    ap.add_argument("--no-ours", action="store_true", help="time only llm-compressor and cp")
    ap.add_argument("--no-copy", action="store_true", help="leave out cp -r + sync")
    ap.add_argument("--check", action="store_true", help="compare our output with "
                    "llm-compressor's byte for byte, per tensor (needs --llmc-python)")
    ap.add_argument("--json", help="also write the rows and the machine to this JSON file")
    a = ap.parse_args()

    mq = os.path.join(a.build, "monoquant")
    gen = os.path.join(a.build, "mq-genmodel")
    os.makedirs(a.work, exist_ok=True)
    work = os.path.abspath(a.work)
    presets = [p for p in a.presets.split(",") if p]
    devices = [] if a.no_ours else [d for d in a.devices.split(",") if d]
    if a.check and not a.llmc_python:
        sys.exit("--check needs --llmc-python")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    machine = "%s, %d cores, %s" % (cpu, os.cpu_count(), platform.platform())
    notes = []
    print("machine: %s" % machine)

    helpers = tempfile.mkdtemp(prefix="bench-presets-", dir=work)
    llmc_run = os.path.join(helpers, "llmc_run.py")
    llmc_check = os.path.join(helpers, "llmc_check.py")
    with open(llmc_run, "w") as f:
        f.write(LLMC_RUN)
    with open(llmc_check, "w") as f:
        f.write(LLMC_CHECK)

    llmc_env = None
    if a.llmc_wheel:
        stub = os.path.join(helpers, "stubs", "datasets")
        os.makedirs(os.path.join(stub, "formatting"))
        with open(os.path.join(stub, "__init__.py"), "w") as f:
            f.write("class Dataset: pass\nclass DatasetDict(dict): pass\n"
                    "class IterableDataset: pass\nclass IterableDatasetDict(dict): pass\n"
                    "def load_dataset(*args, **kwargs):\n"
                    "    raise RuntimeError('datasets is not installed')\n")
        open(os.path.join(stub, "formatting", "__init__.py"), "w").close()
        with open(os.path.join(stub, "formatting", "formatting.py"), "w") as f:
            f.write("class LazyRow: pass\n")
        path = [os.path.abspath(a.llmc_wheel), os.path.join(helpers, "stubs")]
        if os.environ.get("PYTHONPATH"):
            path.append(os.environ["PYTHONPATH"])
        llmc_env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    llmc_version = None
    if a.llmc_python:
        v = subprocess.run([a.llmc_python, "-c",
                            "import importlib.metadata as m; print(' '.join('%s %s' % (p, m.version(p)) "
                            "for p in ('compressed-tensors', 'torch')) + "
                            "' llmcompressor ' + __import__('llmcompressor').__version__)"],
                           stdout=subprocess.PIPE, text=True, env=llmc_env)
        if v.returncode != 0:
            sys.exit("--llmc-python %s cannot report llmcompressor's version" % a.llmc_python)
        llmc_version = v.stdout.strip()
        print("llm-compressor: %s (model_free_ptq, device cpu, max_workers %d, ignore %s)"
              % (llmc_version, a.llmc_workers, a.llmc_ignore))
    else:
        notes.append("llm-compressor column left out: no --llmc-python given")

    # Which presets this monoquant build accepts: a run on a tiny model of the same shape family.
    supported = {}
    if devices:
        tiny = os.path.join(work, "probe-tiny")
        if not os.path.isdir(tiny):
            sh(gen, tiny, "--preset", "tiny", "--dtype", "F32", stdout=subprocess.DEVNULL)
        for p in presets:
            out = os.path.join(helpers, "probe-out")
            cmd = [mq, "quantize", tiny, "-o", out, "-q", "--device", "host", "--preset", p]
            if a.group_size:
                cmd += ["--group-size", a.group_size]
            r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            supported[p] = r.returncode == 0
            if r.returncode != 0:
                notes.append("monoquant --preset %s: not supported by this build (exit %d: %s)"
                             % (p, r.returncode, last_line(r.stderr)))
            shutil.rmtree(out, ignore_errors=True)

    rows, checks = [], []
    for dt in [d for d in a.dtypes.split(",") if d]:
        src = os.path.join(work, "llama-%s-%s" % (a.model, dt))
        gen_dt = ["--dtype", "BF16", "--fp8-blocks"] if dt == "FP8B" else ["--dtype", dt]
        if not os.path.isdir(src):
            sh(gen, src, "--preset", a.model, *gen_dt, "--shards", "4", stdout=subprocess.DEVNULL)
        size = dir_bytes(src)
        warm(src)
        for p in presets:
            cols = [Column("mq:" + d, "monoquant --device " + d) for d in devices]
            for c in cols:
                if not supported.get(p):
                    c.status = "not supported by this build"
            llmc = Column("llmc", "llm-compressor model_free_ptq (cpu)") if a.llmc_python else None
            cp = None if a.no_copy else Column("cp", "cp -r + sync")
            keep = {}
            for run in range(a.runs):
                last = run == a.runs - 1
                for c in cols:
                    if c.status:
                        continue
                    out = os.path.join(work, "out-%s-%s" % (c.key.replace(":", "-"), p))
                    shutil.rmtree(out, ignore_errors=True)
                    cmd = [mq, "quantize", src, "-o", out, "-q", "--device", c.key[3:],
                           "--memory-limit", a.memory_limit, "--preset", p]
                    if a.group_size:
                        cmd += ["--group-size", a.group_size]
                    sh("sync")
                    t, r, rc, err, cpu = timed(cmd)
                    if rc != 0:
                        c.status = "failed (exit %d): %s" % (rc, last_line(err))
                        shutil.rmtree(out, ignore_errors=True)
                        continue
                    c.times.append(t)
                    c.cpu.append(cpu)
                    c.rss = max(c.rss, r)
                    c.out_bytes = dir_bytes(out)
                    print("%s %s %s run %d: %.2f s" % (dt, p, c.label, run + 1, t), file=sys.stderr)
                    if last and a.check and c is cols[0]:
                        keep["ours"] = out
                    else:
                        shutil.rmtree(out, ignore_errors=True)
                if llmc and not llmc.status:
                    out = os.path.join(work, "out-llmc-%s" % p)
                    tfile = os.path.join(helpers, "times.json")
                    shutil.rmtree(out, ignore_errors=True)
                    cmd = ["sh", "-c", '"$0" "$@" && sync', a.llmc_python, llmc_run, src, out, p,
                           tfile, str(a.llmc_workers), a.llmc_ignore, a.group_size or "",
                           "fp8b" if dt == "FP8B" else ""]
                    sh("sync")
                    t, r, rc, err, cpu = timed(cmd, llmc_env)
                    if rc != 0:
                        llmc.status = "failed (exit %d): %s" % (rc, last_line(err))
                        notes.append("llm-compressor %s %s failed:\n%s" % (dt, p, err[-1500:]))
                        shutil.rmtree(out, ignore_errors=True)
                    else:
                        llmc.times.append(t)
                        llmc.cpu.append(cpu)
                        print("%s %s %s run %d: %.2f s" % (dt, p, llmc.label, run + 1, t),
                              file=sys.stderr)
                        with open(tfile) as f:
                            llmc.extra.append(json.load(f))
                        llmc.rss = max(llmc.rss, r)
                        llmc.out_bytes = dir_bytes(out)
                        if last and a.check:
                            keep["llmc"] = out
                        else:
                            shutil.rmtree(out, ignore_errors=True)
                if cp:
                    dst = os.path.join(work, "copy")
                    sh("sync")
                    t, _, rc, err, cpu = timed(["sh", "-c",
                                                'rm -rf "$1" && cp -r "$0" "$1" && sync', src, dst])
                    if rc != 0:
                        sys.exit("cp -r failed: %s" % err)
                    cp.times.append(t)
                    cp.cpu.append(cpu)
                    print("%s %s cp -r + sync run %d: %.2f s" % (dt, p, run + 1, t), file=sys.stderr)
                    shutil.rmtree(dst, ignore_errors=True)
            if a.check and "ours" in keep and "llmc" in keep:
                res = os.path.join(helpers, "check.json")
                r = subprocess.run([a.llmc_python, llmc_check, keep["ours"], keep["llmc"], res],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   env=llmc_env)
                if r.returncode != 0:
                    checks.append({"input": dt, "preset": p, "error": last_line(r.stderr)})
                else:
                    with open(res) as f:
                        checks.append(dict(json.load(f), input=dt, preset=p,
                                           device=cols[0].key[3:]))
            for out in keep.values():
                shutil.rmtree(out, ignore_errors=True)

            cp_med = statistics.median(cp.times) if cp else None
            ours_med = statistics.median(cols[0].times) if cols and cols[0].times else None
            for c in cols + [x for x in (llmc, cp) if x]:
                med = statistics.median(c.times) if c.times else None
                row = {"input": dt, "preset": p, "run": c.label, "input_gb": size / 1e9,
                       "status": c.status, "seconds": c.times, "median_s": med,
                       "cpu_seconds": c.cpu,
                       "median_cpu_s": statistics.median(c.cpu) if c.cpu else None,
                       "gb_per_s": size / med / 1e9 if med else None,
                       "time_over_copy": med / cp_med if med and cp_med else None,
                       "llmc_over_ours": med / ours_med if c is llmc and med and ours_med else None,
                       "peak_rss_mib": c.rss / 2**20 if c.rss else None,
                       "output_gb": c.out_bytes / 1e9 if c.out_bytes else None}
                if c is llmc and c.extra:
                    row["import_s_median"] = statistics.median(e["import_s"] for e in c.extra)
                    row["quantize_s_median"] = statistics.median(e["quantize_s"] for e in c.extra)
                rows.append(row)
            print("%s %s done" % (dt, p), file=sys.stderr)
    shutil.rmtree(helpers, ignore_errors=True)

    def f(v, fmt):
        return fmt % v if v is not None else "-"

    print()
    print("| input | preset | run | input GB | median s | median CPU s | GB/s "
          "| time / (cp -r + sync) | llmc / ours | peak RSS MiB | output GB |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["status"]:
            print("| %s | %s | %s | %.2f | %s | | | | | | |" % (r["input"], r["preset"], r["run"],
                                                             r["input_gb"], r["status"]))
            continue
        print("| %s | %s | %s | %.2f | %.2f | %s | %.2f | %s | %s | %s | %s |" % (
            r["input"], r["preset"], r["run"], r["input_gb"], r["median_s"],
            f(r["median_cpu_s"], "%.2f"), r["gb_per_s"],
            f(r["time_over_copy"], "%.2f"), f(r["llmc_over_ours"], "%.1fx"),
            f(r["peak_rss_mib"], "%.0f"), f(r["output_gb"], "%.2f")))
    llmc_rows = [r for r in rows if r["run"].startswith("llm") and r.get("import_s_median")]
    if llmc_rows:
        print("\nllm-compressor's time includes starting Python and importing it (median "
              "%.1f-%.1f s of the runs above); the model_free_ptq call alone:"
              % (min(r["import_s_median"] for r in llmc_rows),
                 max(r["import_s_median"] for r in llmc_rows)))
        print("\n| input | preset | model_free_ptq s | GB/s |")
        print("|---|---|---:|---:|")
        for r in llmc_rows:
            print("| %s | %s | %.2f | %.2f |" % (r["input"], r["preset"], r["quantize_s_median"],
                                               r["input_gb"] / r["quantize_s_median"]))
    if checks:
        print("\nByte identity, our output (--device %s) against llm-compressor's, last run of each:"
              % (checks[0].get("device") or "?"))
        print("\n| input | preset | tensors in both | only ours | only llmc | dtype/shape differ "
              "| byte-identical tensors | identical bytes | lowest tensor | config block (normalized) |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
        for c in checks:
            if "error" in c:
                print("| %s | %s | check failed: %s | | | | | | | |" % (c["input"], c["preset"],
                                                                    c["error"]))
                continue
            ts = c["tensors"]
            same = [t for t in ts if "identical" in t]
            nbytes = sum(t["bytes"] for t in same)
            ident = sum(t["identical"] for t in same)
            worst = min((t for t in same if t["identical"] < t["bytes"]),
                        key=lambda t: t["identical"] / max(t["bytes"], 1), default=None)
            print("| %s | %s | %d | %d | %d | %d | %d | %s | %s | %s |" % (
                c["input"], c["preset"], len(ts), len(c["only_a"]), len(c["only_b"]),
                len(ts) - len(same), sum(1 for t in same if t["identical"] == t["bytes"]),
                "%.6f" % (ident / nbytes) if nbytes else "-",
                "%s %.4f" % (worst["name"], worst["identical"] / max(worst["bytes"], 1))
                if worst else "-",
                "same" if not c["config_diff"] else "%d differences" % len(c["config_diff"])))
        for c in checks:
            if c.get("config_diff"):
                print("\n%s %s, quantization_config (ours vs llm-compressor's):\n%s" % (
                    c["input"], c["preset"],
                    "\n".join("- " + d[:300] for d in c["config_diff"])))
    note = ("medians of %d alternating runs (each monoquant device, llm-compressor, cp -r + sync, "
            "per preset); input in page cache; every run's output written and synced (monoquant "
            "fsyncs its files; llm-compressor and cp are followed by sync); peak RSS the largest "
            "of the timed runs, including child processes" % a.runs)
    print("\n" + note)
    for n in notes:
        print("\n" + n)
    if a.json:
        doc = {"machine": machine, "llmcompressor": llmc_version, "model": a.model,
               "runs": a.runs, "memory_limit": a.memory_limit, "group_size": a.group_size,
               "llmc_ignore": a.llmc_ignore, "llmc_workers": a.llmc_workers, "note": note,
               "notes": notes, "rows": rows, "checks": checks}
        with open(a.json, "w") as fh:
            json.dump(doc, fh, indent=1)
            fh.write("\n")


main()
