#!/usr/bin/env python3
"""The reports of bench/gpu_check.sh: reads its work directory (steps.tsv and
logs/*.log, the pipeline's JSON) and writes gpu_check.md and gpu_check.json.
Python's standard library only: the GPU machine has no packages.
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess

SUITES = ["test_kernels", "test_errstats", "test_stream", "test_eval", "test_devfault", "test_cli"]


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def md_tables(text):
    """Every Markdown table in text, as (header, rows) with rows as lists of cells."""
    tables, cur = [], None
    for line in text.splitlines():
        if line.startswith("|") and line.rstrip().endswith("|"):
            cells = [c.strip() for c in line.strip()[1:-1].split("|")]
            if cur is None:
                cur = (cells, [])
                tables.append(cur)
            elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
                cur[1].append(cells)
        else:
            cur = None
    return tables


def number(cell):
    """A table cell as a number where it is one ("12.5", "3.1x"), else the text, "-" as None."""
    if cell in ("-", ""):
        return None
    m = re.fullmatch(r"(-?[0-9.]+(?:e[-+]?\d+)?)x?", cell)
    return float(m.group(1)) if m else cell


def key(header):
    return re.sub(r"[^a-z0-9]+", "_", header.lower()).strip("_")


def table_dicts(header, rows):
    return [{key(h): number(c) for h, c in zip(header, r)} for r in rows]


def md_table(header, rows, align=None):
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join(align or ["---"] * len(header)) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def esc(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def steps(work):
    out = []
    for line in read(os.path.join(work, "steps.tsv")).splitlines():
        f = line.split("\t")
        if len(f) < 6:
            continue
        out.append({"name": f[0], "status": f[1], "exit": int(f[2]) if f[2] else None,
                    "seconds": float(f[3] or 0), "timeout_s": int(f[4] or 0),
                    "command": "\t".join(f[5:])})
    return out


def device_info(logs, spec):
    """The device the probe's quantize used, and what clinfo and nvidia-smi say of it."""
    dev = {"spec": spec, "backend": None, "platform": None, "name": None,
           "driver_version": None, "device_version": None, "platform_version": None,
           "nvidia_smi": None}
    m = re.search(r"^device: (.*)$", read(os.path.join(logs, "probe.log")), re.M)
    if m:
        parts = m.group(1).split(" / ")
        dev["backend"] = parts[0]
        if len(parts) >= 3:
            dev["platform"], dev["name"] = parts[1], " / ".join(parts[2:])
        elif len(parts) == 2:
            dev["name"] = parts[1]
    # clinfo --raw: "[TAG/N]  CL_DEVICE_NAME  value", platforms as "[TAG/*]".
    raw = {}
    for line in read(os.path.join(logs, "clinfo.log")).splitlines():
        m = re.match(r"\s*\[([^/\]]+)/([^\]]+)\]\s+(CL_\w+)\s+(.*?)\s*$", line)
        if m:
            raw.setdefault((m.group(1), m.group(2)), {})[m.group(3)] = m.group(4)
    for (tag, idx), props in raw.items():
        if idx != "*" and dev["name"] and props.get("CL_DEVICE_NAME") == dev["name"]:
            dev["driver_version"] = props.get("CL_DRIVER_VERSION")
            dev["device_version"] = props.get("CL_DEVICE_VERSION")
            break
    for m in re.finditer(r"^Platform #\d+: (.*) \((.*)\)$", read(os.path.join(logs, "devices.log")),
                         re.M):
        if m.group(1) == dev["platform"]:
            dev["platform_version"] = m.group(2)
    smi = read(os.path.join(logs, "nvidia-smi.log")).strip().splitlines()
    if len(smi) >= 2:
        dev["nvidia_smi"] = dict(zip([h.strip() for h in smi[0].split(",")],
                                     [v.strip() for v in smi[1].split(",")]))
    return dev


def suite(logs, name):
    text = read(os.path.join(logs, name + ".log"))
    r = {"suite": name, "passed": 0, "failed": 0, "skipped": 0, "failed_tests": [],
         "skipped_tests": [], "device_line": None}
    for what in ("PASSED", "FAILED", "SKIPPED"):
        m = re.search(r"^\[\s*%s\s*\] (\d+) test" % what, text, re.M)
        if m:
            r[what.lower()] = int(m.group(1))
    for what, k in (("FAILED", "failed_tests"), ("SKIPPED", "skipped_tests")):
        r[k] = sorted(set(re.findall(r"^\[\s*%s\s*\] (\w+)\s*$" % what, text, re.M)))
    m = re.search(r"^OpenCL device: (.*)$", text, re.M)
    if m:
        r["device_line"] = m.group(1)
    return r


def kernels(logs, name="bench_kernels"):
    text = read(os.path.join(logs, name + ".log"))
    t = md_tables(text)
    head = [l for l in text.splitlines()[:3] if l and not l.startswith("|")]
    return {"notes": head, "header": t[0][0] if t else [],
            "rows": table_dicts(*t[0]) if t else []}, text


EVAL_RUN = re.compile(r"^(device \(first: builds\)|device|host reference)\s+([\d.]+)\s+([\d.]+)\s+"
                      r"([\d.]+)\s+(.*)$")
SGEMM = re.compile(r"^(\d+ x \d+ x \d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\S+)$")


def evals(logs):
    text = read(os.path.join(logs, "bench_eval.log"))
    r = {"weights": None, "runs": [], "sgemm": [], "peak": None}
    for line in text.splitlines():
        if line.startswith("weights:"):
            r["weights"] = line[len("weights:"):].strip()
        elif line.startswith("peak estimate:"):
            r["peak"] = line[len("peak estimate:"):].strip()
        elif EVAL_RUN.match(line):
            m = EVAL_RUN.match(line)
            r["runs"].append({"run": m.group(1), "seconds": float(m.group(2)),
                              "s_per_gb": float(m.group(3)), "gemm_gflops": float(m.group(4)),
                              "device": m.group(5)})
        elif SGEMM.match(line):
            m = SGEMM.match(line)
            r["sgemm"].append({"m_n_k": m.group(1), "first_s": float(m.group(2)),
                               "median_ms": float(m.group(3)), "tflops": float(m.group(4)),
                               "of_peak": m.group(5)})
    return r


def git_commit(root):
    try:
        p = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty"],
                           capture_output=True, text=True, timeout=10)
        return p.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def tail(text, n=25):
    return "\n".join(text.rstrip("\n").splitlines()[-n:])


def main():
    ap = argparse.ArgumentParser()
    for a in ("--work", "--out", "--mode", "--device", "--build"):
        ap.add_argument(a, required=True)
    ap.add_argument("--budget", type=int, required=True)
    ap.add_argument("--seconds", type=int, required=True)
    a = ap.parse_args()
    logs = os.path.join(a.work, "logs")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cpu = next((l.split(":", 1)[1].strip() for l in read("/proc/cpuinfo").splitlines()
                if l.startswith("model name")), "?")
    st = steps(a.work)
    dev = device_info(logs, a.device)
    version = subprocess.run([os.path.join(a.build, "monoquant"), "--version"],
                             capture_output=True, text=True).stdout.strip() or None
    kern, kern_text = kernels(logs)
    kinds, kinds_text = kernels(logs, "bench_kinds")
    pipeline = {}
    for dt in ("F32", "BF16"):
        try:
            with open(os.path.join(a.work, "pipeline_%s.json" % dt)) as f:
                pipeline[dt] = json.load(f)
        except (OSError, ValueError):
            pipeline[dt] = None
    doc = {
        "check": "bench/gpu_check.sh",
        "mode": a.mode,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": a.seconds,
        "budget_s": a.budget,
        "passed": all(s["status"] in ("ok", "skipped") for s in st),
        "commit": git_commit(root),
        "monoquant": version,
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
                    "work_filesystem": read(os.path.join(logs, "work-filesystem.log")).strip()},
        "device": dev,
        "notes": [l for l in read(os.path.join(a.work, "notes.txt")).splitlines() if l],
        "steps": st,
        "tests": [suite(logs, s) for s in SUITES],
        "kernels": kern,
        "kinds": kinds,
        "eval": evals(logs),
        "pipeline": pipeline,
        "devices_listing": read(os.path.join(logs, "devices.log")),
    }
    with open(os.path.join(a.out, "gpu_check.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    md = ["# GPU check (%s)" % ("dry run: PoCL or host, tiny sizes, not figures"
                                if a.mode == "dry-run" else "GPU"), ""]
    dname = " / ".join(x for x in (dev["backend"], dev["platform"], dev["name"]) if x)
    md += ["- result: **%s** in %d s (budget %d s)" % (
               "all steps passed" if doc["passed"] else "some steps did not pass",
               a.seconds, a.budget),
           "- date: %s; commit: %s; %s" % (doc["date"], doc["commit"] or "unknown",
                                           version or "monoquant ?"),
           "- machine: %s, %d cores, %s" % (cpu, os.cpu_count(), platform.platform()),
           "- device `%s`: %s" % (a.device, dname or "none (the probe failed)"),
           "- driver: %s; device: %s; platform: %s" % (
               dev["driver_version"] or "?", dev["device_version"] or "?",
               dev["platform_version"] or "?")]
    if dev["nvidia_smi"]:
        md.append("- nvidia-smi: " + ", ".join("%s %s" % kv for kv in dev["nvidia_smi"].items()))
    for n in doc["notes"]:
        md.append("- note: " + n)
    md += ["", "## Steps", "",
           md_table(["step", "status", "exit", "seconds", "timeout s", "command"],
                    [[s["name"], s["status"], "" if s["exit"] is None else s["exit"],
                      "%.1f" % s["seconds"], s["timeout_s"], "`%s`" % esc(s["command"])]
                     for s in st], ["---", "---", "---:", "---:", "---:", "---"])]
    md += ["", "## Test suites on the device (MQ_DEVICE=%s)" % a.device, "",
           "Every kernel result compared bit for bit with the reference (src/numerics/reference.c).", "",
           md_table(["suite", "passed", "failed", "skipped", "device"],
                    [[t["suite"], t["passed"], t["failed"], t["skipped"],
                      esc(t["device_line"] or "")] for t in doc["tests"]],
                    ["---", "---:", "---:", "---:", "---"])]
    for t in doc["tests"]:
        if t["failed_tests"]:
            md.append("\n%s failed: %s" % (t["suite"], ", ".join(t["failed_tests"])))
        if t["skipped_tests"]:
            md.append("\n%s skipped: %s" % (t["suite"], ", ".join(t["skipped_tests"])))
    md += ["", "## Kernels (bench_kernels)", ""]
    if kern["rows"]:
        md += ["- " + n for n in kern["notes"]] + [""]
        md += [l for l in kern_text.splitlines() if l.startswith("|")]
    else:
        md.append("no figures (see the steps)")
    md += ["", "## Preset kinds: int4 groups, fp8 per channel and in blocks "
           "(bench_kernels --kinds)", ""]
    kind_lines = [l for l in kinds_text.splitlines() if l.startswith("|")]
    md += kind_lines if kind_lines else ["no figures (see the steps)"]
    ev = doc["eval"]
    md += ["", "## Eval and CLBlast SGEMM (bench_eval)", ""]
    if ev["runs"]:
        md += ["weights: %s" % ev["weights"], "",
               md_table(["eval run", "seconds", "s/GB", "GEMM GFLOP/s", "device"],
                        [[r["run"], r["seconds"], r["s_per_gb"], r["gemm_gflops"],
                          esc(r["device"])] for r in ev["runs"]],
                        ["---", "---:", "---:", "---:", "---"])]
    if ev["sgemm"]:
        md += ["", md_table(["m x n x k", "first s", "median ms", "TFLOP/s", "of peak"],
                            [[r["m_n_k"], r["first_s"], r["median_ms"], r["tflops"],
                              r["of_peak"]] for r in ev["sgemm"]],
                            ["---", "---:", "---:", "---:", "---:"]),
               "", "peak estimate: %s" % (ev["peak"] or "?")]
    if not ev["runs"]:
        md.append("no figures (see the steps)")
    md += ["", "## End to end (bench_pipeline.py)", ""]
    prow = [r for dt in ("F32", "BF16") if pipeline[dt] for r in pipeline[dt]["rows"]]
    if prow:
        p0 = next(pipeline[dt] for dt in ("F32", "BF16") if pipeline[dt])
        md += ["preset %s, --memory-limit %s; %s; work directory on: %s" % (
                   p0["preset"], p0["memory_limit"], p0["note"],
                   doc["machine"]["work_filesystem"].splitlines()[-1]
                   if doc["machine"]["work_filesystem"] else "?"), "",
               md_table(["input", "run", "input GB", "median s", "GB/s",
                         "time / (cp -r + sync)", "peak RSS MiB"],
                        [[r["input"], r["run"], "%.2f" % r["input_gb"], "%.2f" % r["median_s"],
                          "%.2f" % r["gb_per_s"], "%.2f" % r["time_over_copy"],
                          "%.0f" % r["peak_rss_mib"] if r["peak_rss_mib"] else "-"]
                         for r in prow],
                        ["---", "---", "---:", "---:", "---:", "---:", "---:"])]
    else:
        md.append("no figures (see the steps)")
    md += ["", "## Devices (monoquant devices)", "", "```", doc["devices_listing"].rstrip(), "```"]
    bad = [s for s in st if s["status"] not in ("ok", "skipped")]
    if bad:
        md += ["", "## Steps that did not pass (end of their output; all of it in gpu_check.log)"]
        for s in bad:
            md += ["", "### %s: %s" % (s["name"], s["status"]), "", "```",
                   tail(read(os.path.join(logs, s["name"] + ".log"))) or "(no output)", "```"]
    with open(os.path.join(a.out, "gpu_check.md"), "w") as f:
        f.write("\n".join(md) + "\n")


main()
