#!/usr/bin/env python3
"""Latency and accuracy of monoquant's quantized modules against torch.ao's
dynamic quantization and the float model, on CPU: an MLP of 4 x
Linear(4096) and a small Llama built from a config (hidden 512, 4 layers,
sequence 32), batch 1 and 32, 1 and 2 threads.

Each case runs every variant once per round (a sample: as many calls as
take torch.ao int8 about 50 ms, timed together), in an order that alternates
from round to round, so that load from other jobs falls on all of them
alike; the table gives medians over the rounds and each variant's ratio to
torch.ao int8 measured in the same rounds. Accuracy is the cosine of each
output row to the float model's (min over rows). Prints a Markdown report
(CPU, flags, torch, engine) and writes it to --out when given.

    python bench/bench_python.py [--rounds 7] [--out report.md] [--quick]
                                 [--suites mlp,llama] [--threads 1,2] [--batches 1,32]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD_PY = os.path.join(HERE, "..", "build", "python")
if os.path.isdir(os.path.join(BUILD_PY, "monoquant")):
    sys.path.insert(0, BUILD_PY)
import monoquant  # noqa: E402


def cpu_info() -> dict:
    info = {"model": platform.processor() or "?", "flags": ""}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith("model name") and info["model"] in ("?", "x86_64"):
                info["model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                keep = sorted(f for f in flags if f.startswith(("avx", "amx")) or
                              f in ("fma", "f16c", "sse4_2"))
                info["flags"] = " ".join(keep)
                break
    except OSError:
        pass
    info["cpus"] = os.cpu_count()
    return info


def mlp() -> nn.Module:
    torch.manual_seed(0)
    layers = []
    for i in range(4):
        layers.append(nn.Linear(4096, 4096))
        if i < 3:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def llama(vocab: int) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=512, intermediate_size=1376,
                      num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=8,
                      max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()


def variants(model: nn.Module, hf: bool) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {"float": model}
        out["monoquant int8"] = monoquant.dynamic_quantize(model)[0]
        if hf:
            # torch.ao quantizes lm_head too; this row does the same.
            out["monoquant int8 + lm_head"] = monoquant.dynamic_quantize(
                model, config={"include": ["lm_head"]})[0]
        out["torch.ao int8"] = torch.ao.quantization.quantize_dynamic(
            model, {nn.Linear}, dtype=torch.qint8)
        # torch.ao's default above is per tensor; monoquant's default is per
        # channel, which this row gives torch.ao too (same kernels).
        out["torch.ao int8 per channel"] = torch.ao.quantization.quantize_dynamic(
            model, {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig})
        out["monoquant fp16"] = monoquant.dynamic_quantize(model, dtype=torch.float16)[0]
        out["torch.ao fp16"] = torch.ao.quantization.quantize_dynamic(
            model, {nn.Linear}, dtype=torch.float16)
    return out


def run(model: nn.Module, x: torch.Tensor, hf: bool) -> torch.Tensor:
    y = model(x)
    return y.logits if hf else y


def case(name: str, models: dict, x: torch.Tensor, hf: bool, rounds: int) -> list:
    names = list(models)
    times = {n: [] for n in names}
    ratios = {n: [] for n in names}
    with torch.inference_mode():
        ref = run(models["float"], x, hf).flatten(0, -2).float()
        outs = {n: run(m, x, hf).flatten(0, -2).float() for n, m in models.items()}  # warm-up
        # A sample is enough calls to take about 50 ms of the fastest
        # variant, so that one preemption by another job weighs less.
        t0 = time.perf_counter()
        run(models["torch.ao int8"], x, hf)
        reps = max(1, int(0.05 / max(time.perf_counter() - t0, 1e-6)))
        for r in range(rounds):
            order = names if r % 2 == 0 else names[::-1]
            got = {}
            for n in order:
                t0 = time.perf_counter()
                for _ in range(reps):
                    run(models[n], x, hf)
                got[n] = (time.perf_counter() - t0) / reps
            for n in names:
                times[n].append(got[n])
                ratios[n].append(got[n] / got["torch.ao int8"])
    rows = []
    for n in names:
        c = torch.nn.functional.cosine_similarity(outs[n], ref, dim=1)
        rows.append((name, n, statistics.median(times[n]) * 1e3,
                     statistics.median(ratios[n]), float(c.min())))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--suites", default="mlp,llama", help="which models: mlp, llama or both")
    ap.add_argument("--quick", action="store_true", help="MLP batch 1 only, 3 rounds")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.quick:
        args.batches, args.threads, args.rounds = "1", args.threads.split(",")[0], 3
    cpu = cpu_info()
    lines = ["CPU: %s (%s logical CPUs), flags: %s" % (cpu["model"], cpu["cpus"], cpu["flags"]),
             "torch %s, quantized engine %s, CPU capability %s; monoquant %s"
             % (torch.__version__, torch.backends.quantized.engine,
                torch.backends.cpu.get_cpu_capability(), monoquant.__version__),
             "load average at start: %s" % " ".join("%.2f" % v for v in os.getloadavg()),
             "rounds per case: %d (median; ratio = median of per-round time / torch.ao int8's)"
             % args.rounds, ""]
    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    wanted = set(args.suites.split(","))
    if wanted - {"mlp", "llama"}:
        ap.error("--suites takes mlp, llama or both")
    suites = []
    if "mlp" in wanted or args.quick:
        suites.append(("4xLinear(4096)", mlp(), False))
    if "llama" in wanted and not args.quick:
        suites.append(("Llama h512 4 layers seq 32", llama(args.vocab), True))
    rows = []
    for label, model, hf in suites:
        models = variants(model, hf)
        for t in threads:
            torch.set_num_threads(t)
            for b in batches:
                if hf:
                    x = torch.randint(0, args.vocab, (b, 32))
                else:
                    x = torch.randn(b, 4096)
                for r in case("%s, batch %d, %d thread%s" % (label, b, t, "s" if t > 1 else ""),
                              models, x, hf, args.rounds):
                    rows.append(r)
                    print("%-48s %-26s %9.2f ms  x%.2f  cos %.5f" % r, file=sys.stderr)
        for n in ("monoquant int8", "monoquant fp16"):
            kernels = sorted({"%s (%s)" % (m.kernel, m.kernel_reason) if m.kernel_reason
                              else m.kernel for m in models[n].modules()
                              if isinstance(m, (monoquant.nn.QuantizedLinear,
                                                monoquant.nn.Float16Linear))})
            lines.append("%s: %s Linear kernels: %s" % (label, n, ", ".join(kernels)))
    lines.append("load average at end: %s" % " ".join("%.2f" % v for v in os.getloadavg()))
    lines += ["", "| case | variant | ms (median) | x torch.ao int8 | min cosine to float |",
              "|---|---|---:|---:|---:|"]
    for case_name, n, ms, ratio, c in rows:
        lines.append("| %s | %s | %.2f | %.2f | %.5f |" % (case_name, n, ms, ratio, c))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
