"""Perplexity of SmolLM2-135M quantized with min-max, mse and mse with an
importance matrix (issue 24's table): bench/RESULTS.md "The mse observer
with an importance matrix".

Usage:
  python bench/bench_imatrix.py MONOQUANT MODEL_DIR IMATRIX EVAL_TEXT OUT.json [ROW ...]

MODEL_DIR is bench/smollm2_prepare.py's F32 directory; IMATRIX a file of
llama-imatrix (or bench/imatrix_hooks.py); EVAL_TEXT the perplexity text.
A ROW is "PRESET[:GROUP]/OBSERVER[+imatrix][/key=value,...]" (GROUP a
number or "channel"; key an observer option: maxshrink, grid, norm,
patience); without rows, the issue's table. Each row quantizes the model
with the CLI on the host path (its report's seconds and mean weight SQNR),
loads the output with a plain from_pretrained (asymmetric rows with
CompressedTensorsConfig(dequantize=True), see perplexity()) and measures perplexity over
non-overlapping windows of 512 tokens of the first 2048 tokens of the text.
Results go to OUT.json (appended, so an interrupted run resumes).
`python bench/bench_imatrix.py --table OUT.json...` prints them as RESULTS.md's table.

The search's cost, without perplexity:
  python bench/bench_imatrix.py --cost MONOQUANT MODEL_DIR IMATRIX DEVICE ROUNDS OUT.json \
      [SCHEME ...]
runs each SCHEME ("PRESET[:GROUP]"; by default the table's six) with min-max,
mse and mse with the matrix, ROUNDS rounds of the three in turn (the order
rotating each round, so that a change in the machine's load hits all three
alike), on DEVICE (host, cpu, ...), and prints the medians of each run's wall
time and CPU time (user + system of the CLI process) and the ratios of the
medians to min-max's (`--cost-table OUT.json...` prints them as a table).
Each run's output tensors are hashed (sha256, after
the run), so that rounds and devices can be compared byte for byte.
"""
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import statistics
import tempfile
import time

import torch

WINDOW, TOKENS = 512, 2048
TABLE = [p + "/" + o for p in ("W4A16:channel", "W4A16:64", "W4A16:128", "W4A16_ASYM:128",
                               "W8A8", "FP8_DYNAMIC") for o in ("minmax", "mse", "mse+imatrix")]


def perplexity(model_dir, ids, dequantize=False):
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig
    # Asymmetric pack-quantized fails a plain from_pretrained (an upstream
    # limit, README "Load the output"): those rows load dequantized.
    extra = {"quantization_config": CompressedTensorsConfig(dequantize=True)} if dequantize else {}
    m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **extra)
    m.eval()
    nll, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(ids) - 1, WINDOW):
            x = torch.tensor([ids[s:s + WINDOW + 1]])
            if x.shape[1] < 2:
                break
            logits = m(x[:, :-1]).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[0], x[0, 1:], reduction="sum")
            nll += loss.item()
            n += x.shape[1] - 1
    return math.exp(nll / n)


def quantize(cli, model, out, row, imatrix, device="host"):
    preset, _, rest = row.partition("/")
    obs, _, opts = rest.partition("/")
    preset, _, group = preset.partition(":")
    args = [cli, "quantize", model, "-o", out, "--preset", preset, "--device", device, "-q"]
    if group:
        args += ["--group-size", group]
    if obs.startswith("mse"):
        args += ["--observer", "mse"]
        if obs.endswith("+imatrix"):
            args += ["--imatrix", imatrix]
    for kv in filter(None, opts.split(",")):
        k, v = kv.split("=")
        args += ["--observer-" + k, v]
    report = out + ".json"
    cpu0 = os.times()
    t0 = time.perf_counter()
    subprocess.run(args + ["--report", report], check=True)
    wall = time.perf_counter() - t0
    cpu1 = os.times()
    r = json.load(open(report))
    sq = [t["weight_sqnr_db"] for t in r["quantized"] if t["weight_sqnr_db"] is not None]
    weighted = sum(1 for t in r["quantized"] if t.get("imatrix"))
    return {"seconds": r["seconds"], "wall_seconds": wall,
            "cpu_seconds": (cpu1.children_user - cpu0.children_user) +
                           (cpu1.children_system - cpu0.children_system),
            "sqnr_db": sum(sq) / len(sq), "tensors": len(r["quantized"]),
            "imatrix_weighted": weighted}


def table(*paths):
    """RESULTS.md's table from result files (a later file's row replaces an
    earlier one's with the same importance matrix; rows with different
    matrices are all shown) and, after "--cost", --cost files: their medians
    fill the time columns (host path and PoCL CPU seconds) of the rows whose
    matrix is the cost runs' (`--cost-matrix NAME`, by default
    imatrix_llama.gguf) or that have none; without them the time columns are
    the result files' own (the run's CPU and wall seconds)."""
    paths = list(paths)
    cost_matrix = "imatrix_llama.gguf"
    if "--cost-matrix" in paths:
        i = paths.index("--cost-matrix")
        cost_matrix = paths[i + 1]
        del paths[i:i + 2]
    costs = paths[paths.index("--cost") + 1:] if "--cost" in paths else []
    paths = paths[:len(paths) - len(costs) - (1 if costs else 0)]

    def matrix(r):
        # The first runs did not record their matrix: the forward hooks' file.
        return r.get("imatrix", "imatrix.gguf") if "+imatrix" in r["row"] else ""
    rows = {(r["row"], matrix(r)): r for p in paths for r in json.load(open(p))}
    med = {(c["scheme"], c["device"], o): m for p in costs for c in json.load(open(p))
           for o, m in c["median"].items()}
    order = ["float"] + TABLE
    rows = {k: rows[k] for k in sorted(rows, key=lambda k: (
        k[0] not in order, order.index(k[0]) if k[0] in order else 0, k))}
    base = rows[("float", "")]["ppl"]
    if costs:
        print("| scheme | observer | matrix | perplexity | gap closed | weight SQNR dB "
              "| host CPU s | host wall s | PoCL CPU s |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    else:
        print("| scheme | observer | perplexity | gap closed | weight SQNR dB | CPU s | wall s |")
        print("|---|---|---:|---:|---:|---:|---:|")
    for (name, mat), r in rows.items():
        if name == "float":
            continue
        scheme, _, obs = name.partition("/")
        mm = rows.get((scheme + "/minmax", ""))
        closed = ""
        if mm and not obs.startswith("minmax") and mm["ppl"] > base:
            closed = "%.0f%%" % (100.0 * (mm["ppl"] - r["ppl"]) / (mm["ppl"] - base))
        label = obs.replace("/", " ").replace(",", ", ")
        if not costs:
            print("| %s | %s | %.3f | %s | %.3f | %.1f | %.1f |" % (
                scheme, label, r["ppl"], closed, r["sqnr_db"], r["cpu_seconds"], r["seconds"]))
            continue

        def cell(device, key, fmt="%.2f"):
            m = med.get((scheme, device, obs)) if mat in ("", cost_matrix) else None
            return fmt % m[key] if m else ""
        print("| %s | %s | %s | %.3f | %s | %.3f | %s | %s | %s |" % (
            scheme, label, mat, r["ppl"], closed, r["sqnr_db"], cell("host", "cpu_seconds"),
            cell("host", "wall_seconds", "%.1f"), cell("cpu", "cpu_seconds")))
    if costs:
        print("| float | | | %.3f | | | | | |" % base)
    else:
        print("| float | | %.3f | | | | |" % base)


def cost(cli, model, imatrix, device, rounds, out_json, *schemes):
    observers = ("minmax", "mse", "mse+imatrix")
    results = []
    tmp = tempfile.mkdtemp(prefix="mq_bench_imx_cost_")
    try:
        for scheme in schemes or sorted({r.partition("/")[0] for r in TABLE}, key=scheme_order):
            runs = {o: [] for o in observers}
            for k in range(int(rounds)):
                for j in range(len(observers)):
                    obs = observers[(j + k) % len(observers)]
                    q = os.path.join(tmp, "q")
                    shutil.rmtree(q, ignore_errors=True)
                    r = quantize(cli, model, q, scheme + "/" + obs, imatrix, device)
                    r["sha256"] = output_hash(q)
                    runs[obs].append(r)
            med = {o: {key: statistics.median(r[key] for r in runs[o])
                       for key in ("wall_seconds", "cpu_seconds")} for o in observers}
            res = {"scheme": scheme, "device": device, "rounds": int(rounds), "runs": runs,
                   "median": med}
            results.append(res)
            mm = med["minmax"]
            print("%-16s %-6s" % (scheme, device) + "".join(
                " | %s wall %.2f cpu %.2f (x%.1f wall, x%.1f cpu)" % (
                    o, med[o]["wall_seconds"], med[o]["cpu_seconds"],
                    med[o]["wall_seconds"] / mm["wall_seconds"],
                    med[o]["cpu_seconds"] / mm["cpu_seconds"]) for o in observers), flush=True)
            json.dump(results, open(out_json, "w"), indent=1)
    finally:
        shutil.rmtree(tmp)


def cost_table(*paths):
    """RESULTS.md's cost table of --cost files: medians and ratios."""
    print("| scheme | device | rounds | min-max CPU s | mse CPU s | mse+imatrix CPU s "
          "| mse / min-max CPU | mse+imatrix / min-max CPU | min-max wall s | mse wall s "
          "| mse+imatrix wall s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in paths:
        for c in json.load(open(p)):
            m = c["median"]
            cpu = [m[o]["cpu_seconds"] for o in ("minmax", "mse", "mse+imatrix")]
            wall = [m[o]["wall_seconds"] for o in ("minmax", "mse", "mse+imatrix")]
            print("| %s | %s | %d | %.2f | %.2f | %.2f | %.1fx | %.1fx | %.1f | %.1f | %.1f |" % (
                c["scheme"], c["device"], c["rounds"], *cpu, cpu[1] / cpu[0], cpu[2] / cpu[0],
                *wall))


def output_hash(out):
    """sha256 of the output's tensor files, in name order (outside the timing)."""
    h = hashlib.sha256()
    for f in sorted(os.listdir(out)):
        if f.endswith(".safetensors"):
            with open(os.path.join(out, f), "rb") as fh:
                for block in iter(lambda: fh.read(1 << 24), b""):
                    h.update(block)
    return h.hexdigest()


def scheme_order(scheme):
    return [r.partition("/")[0] for r in TABLE].index(scheme)


def main():
    if sys.argv[1] == "--table":
        return table(*sys.argv[2:])
    if sys.argv[1] == "--cost-table":
        return cost_table(*sys.argv[2:])
    if sys.argv[1] == "--cost":
        return cost(*sys.argv[2:])
    cli, model, imatrix, text, out_json = sys.argv[1:6]
    rows = sys.argv[6:] or ["float"] + TABLE
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
    ids = tok.encode(open(text, encoding="utf-8").read()).ids[:TOKENS]
    done = {}
    if os.path.exists(out_json):
        done = {r["row"]: r for r in json.load(open(out_json))}
    for row in rows:
        if row in done:
            continue
        tmp = tempfile.mkdtemp(prefix="mq_bench_imx_")
        try:
            if row == "float":
                res = {"row": row, "ppl": perplexity(model, ids)}
            else:
                q = os.path.join(tmp, "q")
                res = {"row": row, **quantize(cli, model, q, row, imatrix)}
                if "+imatrix" in row:
                    res["imatrix"] = os.path.basename(imatrix)
                res["ppl"] = perplexity(q, ids, dequantize="ASYM" in row)
        finally:
            shutil.rmtree(tmp)
        done[row] = res
        print(json.dumps(res), flush=True)
        json.dump(list(done.values()), open(out_json, "w"), indent=1)


if __name__ == "__main__":
    main()
