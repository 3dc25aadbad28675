"""The mse observer against llm-compressor's own: for F32 weights, our
scales, zero points and codes must be the bytes that llm-compressor 0.14's
memoryless MSE observer (observers/mse_quant.py, _grid_search_mse, its CPU
path) and compressed-tensors' calculate_qparams and compressor give, for every
int preset per channel and per group, for FP8_DYNAMIC and for FP8_BLOCK's
128x128 blocks; and the OpenCL back end (where a device is found) must write
the same bytes as the host path.

llm-compressor is not installed: its wheel is unpacked (scripts/deps.sh
downloads it into build/llmc) and only the observer's two modules are loaded,
without the package's heavy imports. Needs torch and compressed-tensors
(build/venv); without them, or without the wheel, it fails unless
MQ_OFFLINE=1."""
import glob
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import mqcheck  # noqa: E402

from llmcwheel import offline_or_fail  # noqa: E402
import llmcwheel  # noqa: E402


try:
    import torch
    import compressed_tensors  # noqa: F401
except ImportError as e:
    offline_or_fail("torch and compressed-tensors are missing (%s)" % e)


def tensors(path):
    from safetensors.torch import load_file
    out = {}
    for f in sorted(glob.glob(os.path.join(path, "*.safetensors"))):
        out.update(load_file(f))
    return out


CASES = [
    ("W8A8", []),
    ("W8A16", ["--group-size", "channel"]),
    ("W8A16", ["--group-size", "16"]),
    ("W4A16", ["--group-size", "16"]),
    ("W4A16", ["--group-size", "channel"]),
    ("W4A16_ASYM", ["--group-size", "16"]),
    ("W4A16_ASYM", ["--group-size", "channel"]),
    ("FP8_DYNAMIC", []),
    ("FP8_BLOCK", []),
]


def main():
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    failures = []
    tmp = tempfile.mkdtemp(prefix="mq_obs_")
    model = os.path.join(tmp, "in")
    genmodel = os.path.join(os.environ["MQ_BUILD_DIR"], "mq-genmodel")
    # Hidden size 128: the attention weights also make whole 128x128 blocks.
    subprocess.run([genmodel, model, "--preset", "tiny", "--hidden", "128", "--heads", "4",
                    "--kv-heads", "2", "--dtype", "F32", "--seed", "7"],
                   check=True, stdout=subprocess.DEVNULL)
    src = tensors(model)
    # Outliers make the search clip: some groups take a shrunk range.
    for k, v in src.items():
        if v.dim() == 2:
            v.view(-1)[:: 97] *= 6.0
    from safetensors.torch import save_file
    for f in glob.glob(os.path.join(model, "*.safetensors")):
        os.remove(f)
    save_file(src, os.path.join(model, "model.safetensors"), metadata={"format": "pt"})
    opencl = mqcheck.cli("devices")[1]
    has_cl = "CPU" in opencl or "GPU" in opencl
    shrunk = 0
    for preset, extra in CASES:
        out = os.path.join(tmp, "out-%s%s" % (preset, "-".join(extra)))
        rc, log = mqcheck.cli("quantize", model, "-o", out, "--preset", preset, *extra,
                              "--observer", "mse", "--device", "host", "-q")
        if rc != 0:
            failures.append("%s %s: monoquant failed: %s" % (preset, extra, log))
            continue
        ours = tensors(out)
        with open(os.path.join(out, "config.json")) as f:
            qc = json.load(f)["quantization_config"]
        group = qc["config_groups"]["group_0"]
        args = QuantizationArgs(**group["weights"])
        scheme = QuantizationScheme(targets=["Linear"], weights=args)
        n = 0
        for k in sorted(ours):
            if not k.endswith(".weight_scale"):
                continue
            m = k[: -len(".weight_scale")]
            want = llmcwheel.mse_oracle(GRID, src[m + ".weight"], args, scheme, qc["format"])
            n += 1
            for name, t in want.items():
                got = ours.get(m + "." + name)
                if got is None or got.dtype != t.dtype or not torch.equal(got, t.contiguous()):
                    failures.append("%s %s: %s.%s differs from llm-compressor's" %
                                    (preset, extra, m, name))
            # Min-max would give amax / qmax: count the groups the search clipped.
            mm = src[m + ".weight"]
            if args.strategy == "channel":
                shrunk += int((ours[k].float().flatten() <
                               mm.abs().amax(1) / (127.5 if args.num_bits == 8 else 7.5) * 0.999)
                              .sum()) if args.type == "int" and args.symmetric else 0
        if n == 0:
            failures.append("%s %s: nothing quantized" % (preset, extra))
        if has_cl:
            out_cl = out + "-cl"
            rc, log = mqcheck.cli("quantize", model, "-o", out_cl, "--preset", preset, *extra,
                                  "--observer", "mse", "--device", "opencl", "-q")
            if rc != 0:
                failures.append("%s %s: OpenCL run failed: %s" % (preset, extra, log))
            else:
                theirs = tensors(out_cl)
                for k in ours:
                    if not torch.equal(ours[k], theirs[k]):
                        failures.append("%s %s: %s differs between host and OpenCL" %
                                        (preset, extra, k))
        print("%-12s %-24s %d weights byte-identical to llm-compressor's mse observer%s" %
              (preset, " ".join(extra), n, " (and OpenCL = host)" if has_cl else ""))
    if shrunk == 0:
        failures.append("no channel took a clipped range: the test data does not exercise the search")
    for f in failures:
        print("FAIL: " + f)
    sys.exit(1 if failures else 0)


GRID = llmcwheel.load_grid_search()

if __name__ == "__main__":
    main()
