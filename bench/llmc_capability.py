"""Whether llm-compressor's MSE observer (its CPU path) agrees with itself:
the same search on the same weights under each of torch's CPU kernel sets
(ATEN_CPU_CAPABILITY=default, avx2, avx512; torch picks one by the CPU, and
they differ in the power's vector routine and in the order of the sums),
each in its own process, on one machine. Prints, for every pair of kernel
sets and for ours against each, how many groups' scales differ.

Usage:
  python bench/llmc_capability.py MONOQUANT MODEL_DIR LLMC_UNPACKED PRESET GROUP WEIGHT...

PRESET W4A16 or W8A8, GROUP a group size or "channel", WEIGHT a Linear's
name without ".weight". Default observer options (maxshrink 0.2, patience 5,
grid 100, norm 2.4).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
CAPS = ("default", "avx2", "avx512")


def qargs_of(preset, group):
    from compressed_tensors.quantization import QuantizationArgs
    bits = 4 if preset == "W4A16" else 8
    if group == "channel":
        return QuantizationArgs(num_bits=bits, type="int", symmetric=True, strategy="channel")
    return QuantizationArgs(num_bits=bits, type="int", symmetric=True, strategy="group",
                            group_size=int(group))


def weight(model, name):
    from safetensors import safe_open
    for f in sorted(os.listdir(model)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(model, f), "pt") as h:
                if name + ".weight" in h.keys():
                    return h.get_tensor(name + ".weight")
    sys.exit("%s.weight not found" % name)


def child(model, root, preset, group, out, names):
    import llmcwheel
    from compressed_tensors.quantization import QuantizationStrategy
    from compressed_tensors.quantization.utils import calculate_qparams
    grid_search = llmcwheel.load_grid_search(root)
    qargs = qargs_of(preset, group)
    token = qargs.model_copy(update={"strategy": QuantizationStrategy.TOKEN})
    scales = {}
    for n in names:
        w = weight(model, n)
        obs = llmcwheel.flatten(w, qargs)
        lo, hi = grid_search(obs, qargs, token, 0.2, 5, 100.0, 2.4, 0.3, 1.0)
        scales[n] = calculate_qparams(lo, hi, qargs)[0].to(w.dtype).reshape(w.shape[0], -1)
    torch.save({"capability": torch.backends.cpu.get_cpu_capability(), "scales": scales}, out)


def quantize_some(cli, model, preset, group, out, names):
    """Our CLI's mse search (host path, default options) on the weights
    `names` only, into the directory `out`; its tensors."""
    from safetensors.torch import load_file
    args = [cli, "quantize", model, "-o", out, "--preset", preset, "--group-size", group,
            "--observer", "mse", "--device", "host", "-q"]
    for n in names:
        args += ["--include", n + ".weight"]
    subprocess.run(args, check=True)
    t = {}
    for f in os.listdir(out):
        if f.endswith(".safetensors"):
            t.update(load_file(os.path.join(out, f)))
    return t


def ours(cli, model, preset, group, tmp, names):
    t = quantize_some(cli, model, preset, group, os.path.join(tmp, "ours"), names)
    return {n: t[n + ".weight_scale"].reshape(t[n + ".weight_scale"].shape[0], -1) for n in names}


def main(cli, model, root, preset, group, *names):
    tmp = tempfile.mkdtemp(prefix="mq_llmc_cap_")
    try:
        runs = {}
        for cap in CAPS:
            out = os.path.join(tmp, cap + ".pt")
            env = dict(os.environ, ATEN_CPU_CAPABILITY=cap)
            subprocess.run([sys.executable, __file__, "--child", model, root, preset, group, out,
                            *names], check=True, env=env)
            r = torch.load(out)
            runs[cap] = r["scales"]
            print("ATEN_CPU_CAPABILITY=%s: torch ran %s kernels" % (cap, r["capability"]))
        runs["monoquant"] = ours(cli, model, preset, group, tmp, names)
        total = sum(s.numel() for s in runs["default"].values())
        keys = list(runs)
        result = {}
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                d = sum(int((runs[a][n] != runs[b][n]).sum()) for n in names)
                result["%s vs %s" % (a, b)] = d
                print("%-9s vs %-9s: %d of %d groups' scales differ" % (a, b, d, total))
        print(json.dumps(result))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        a = sys.argv[2:]
        child(a[0], a[1], a[2], a[3], a[4], a[5:])
    elif len(sys.argv) < 7:
        sys.exit(__doc__)
    else:
        main(*sys.argv[1:])
