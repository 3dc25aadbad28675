"""Our mse observer against llm-compressor's own on a real model's weights:
for each preset, every quantized Linear's tensors (scales, zero points,
codes) from `monoquant quantize --observer mse` compared with those of
llm-compressor 0.14.0.1's memoryless MSE observer (observers/mse_quant.py,
_grid_search_mse, its CPU path, with the observer's default options) followed
by compressed-tensors' calculate_qparams and compressor, the way
tests/py/test_observer_llmc.py does on generated weights. bench/RESULTS.md
"The mse observer with an importance matrix", llm-compressor section.

Usage:
  python bench/bench_observer_llmc.py MONOQUANT MODEL_DIR LLMC_UNPACKED [OUT.json] [ROW ...]

MODEL_DIR: an F32 Hugging Face directory (bench/smollm2_prepare.py's);
LLMC_UNPACKED: the unpacked llmcompressor wheel (scripts/deps.sh puts it in
build/llmc/unpacked); a ROW is PRESET[:GROUP] (GROUP a number or "channel"),
by default W4A16:64, W4A16:channel and W8A8. Prints, per row, the weights
whose every tensor is byte-identical, the tensors identical of all compared,
the CLI process's CPU seconds (host path) and the upstream search's CPU
seconds (torch on the same CPU), and for each weight that differs how many
of its scales do.
"""
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import llmcwheel  # noqa: E402


def run_row(cli, model, grid_search, row, tmp):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    from safetensors import safe_open
    from safetensors.torch import load_file
    preset, _, group = row.partition(":")
    out = os.path.join(tmp, "out")
    shutil.rmtree(out, ignore_errors=True)
    args = [cli, "quantize", model, "-o", out, "--preset", preset, "--observer", "mse",
            "--device", "host", "-q"]
    if group:
        args += ["--group-size", group]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(args, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ours = {}
    for f in sorted(os.listdir(out)):
        if f.endswith(".safetensors"):
            ours.update(load_file(os.path.join(out, f)))
    with open(os.path.join(out, "config.json")) as f:
        qc = json.load(f)["quantization_config"]
    qargs = QuantizationArgs(**qc["config_groups"]["group_0"]["weights"])
    scheme = QuantizationScheme(targets=["Linear"], weights=qargs)
    sources = {}
    for f in sorted(os.listdir(model)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(model, f), "pt") as h:
                sources.update({k: os.path.join(model, f) for k in h.keys()})
    weights = sorted(k[: -len(".weight_scale")] for k in ours if k.endswith(".weight_scale"))
    same_w = same_t = total_t = 0
    theirs_cpu = 0.0
    differ = []
    for m in weights:
        with safe_open(sources[m + ".weight"], "pt") as h:
            w = h.get_tensor(m + ".weight")
        t0 = time.process_time()
        want = llmcwheel.mse_oracle(grid_search, w, qargs, scheme, qc["format"])
        theirs_cpu += time.process_time() - t0
        bad = []
        for name, t in want.items():
            got = ours.get(m + "." + name)
            total_t += 1
            if got is not None and got.dtype == t.dtype and torch.equal(got, t.contiguous()):
                same_t += 1
            else:
                bad.append(name)
        if bad:
            sc = ours[m + ".weight_scale"]
            n = int((sc != want["weight_scale"]).sum())
            differ.append({"weight": m, "tensors": bad, "scales_differing": n,
                           "scales": sc.numel()})
        else:
            same_w += 1
    return {"row": row, "format": qc["format"], "weights": len(weights),
            "weights_identical": same_w, "tensors": total_t, "tensors_identical": same_t,
            "cli_cpu_seconds": ours_cpu, "upstream_cpu_seconds": theirs_cpu, "differ": differ}


def main():
    cli, model, root = sys.argv[1:4]
    rest = sys.argv[4:]
    out_json = rest.pop(0) if rest and rest[0].endswith(".json") else None
    rows = rest or ["W4A16:64", "W4A16:channel", "W8A8"]
    grid_search = llmcwheel.load_grid_search(root)
    tmp = tempfile.mkdtemp(prefix="mq_bench_llmc_")
    results = []
    try:
        for row in rows:
            r = run_row(cli, model, grid_search, row, tmp)
            results.append(r)
            print("%-14s %3d of %3d weights identical (%d of %d tensors); CPU s: monoquant %.1f, "
                  "upstream search %.1f" % (row, r["weights_identical"], r["weights"],
                                            r["tensors_identical"], r["tensors"],
                                            r["cli_cpu_seconds"], r["upstream_cpu_seconds"]),
                  flush=True)
            for d in r["differ"]:
                print("    %s: %s differ (%d of %d scales)" % (d["weight"], ", ".join(d["tensors"]),
                                                            d["scales_differing"], d["scales"]))
            if out_json:
                with open(out_json, "w") as f:
                    json.dump(results, f, indent=1)
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
