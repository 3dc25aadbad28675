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
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

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


def quantize(cli, model, out, row, imatrix):
    preset, _, rest = row.partition("/")
    obs, _, opts = rest.partition("/")
    preset, _, group = preset.partition(":")
    args = [cli, "quantize", model, "-o", out, "--preset", preset, "--device", "host", "-q"]
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
    subprocess.run(args + ["--report", report], check=True)
    cpu1 = os.times()
    r = json.load(open(report))
    sq = [t["weight_sqnr_db"] for t in r["quantized"] if t["weight_sqnr_db"] is not None]
    weighted = sum(1 for t in r["quantized"] if t.get("imatrix"))
    return {"seconds": r["seconds"],
            "cpu_seconds": (cpu1.children_user - cpu0.children_user) +
                           (cpu1.children_system - cpu0.children_system),
            "sqnr_db": sum(sq) / len(sq), "tensors": len(r["quantized"]),
            "imatrix_weighted": weighted}


def table(*paths):
    rows = {r["row"]: r for p in paths for r in json.load(open(p))}
    order = ["float"] + TABLE
    rows = {k: rows[k] for k in sorted(rows, key=lambda k: (k not in order, order.index(k)
                                                           if k in order else 0, k))}
    base = rows["float"]["ppl"]
    print("| scheme | observer | perplexity | gap closed | weight SQNR dB | CPU s | wall s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        if name == "float":
            continue
        scheme, _, obs = name.partition("/")
        mm = rows.get(scheme + "/minmax")
        closed = ""
        if mm and not obs.startswith("minmax") and mm["ppl"] > base:
            closed = "%.0f%%" % (100.0 * (mm["ppl"] - r["ppl"]) / (mm["ppl"] - base))
        print("| %s | %s | %.3f | %s | %.3f | %.1f | %.1f |" % (
            scheme, obs.replace("/", " ").replace(",", ", "), r["ppl"], closed, r["sqnr_db"],
            r["cpu_seconds"], r["seconds"]))
    print("| float | | %.3f | | | | |" % base)


def main():
    if sys.argv[1] == "--table":
        return table(*sys.argv[2:])
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
                res["ppl"] = perplexity(q, ids, dequantize="ASYM" in row)
        finally:
            shutil.rmtree(tmp)
        done[row] = res
        print(json.dumps(res), flush=True)
        json.dump(list(done.values()), open(out_json, "w"), indent=1)


if __name__ == "__main__":
    main()
