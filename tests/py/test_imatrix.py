"""--imatrix: llama.cpp's importance matrix weighing the mse search, from
GGUF and legacy .dat files written by imatrixfile.py.

Checked through the CLI on tiny F32 files: the two layouts give the same
bytes; weights of one give plain mse's bytes; skewed importances change the
scales; each group takes the importances of its place in the row; an
expert's weight takes its row of a 3-D entry; the report and the summary
count the weights without an entry; bad files and bad settings fail naming
the file, the entry and the cause."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import imatrixfile  # noqa: E402
import mqcheck  # noqa: E402

if __name__ == "__main__":
    mqcheck.need_numpy_safetensors()

import json  # noqa: E402

import numpy as np  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

Q = "model.layers.0.self_attn.q_proj.weight"
K = "model.layers.0.self_attn.k_proj.weight"
UP = "model.layers.0.mlp.up_proj.weight"
DOWN = "model.layers.0.mlp.down_proj.weight"
GATE = "model.layers.0.mlp.gate_proj.weight"
EXPERT1 = "model.layers.1.block_sparse_moe.experts.1.w1.weight"


def _rng_weights(rows, cols, seed):
    g = np.random.default_rng(seed)
    w = g.standard_normal((rows, cols)).astype(np.float32)
    w.reshape(-1)[::29] *= 5.0  # outliers: the search clips
    return w


def _skewed(n, seed):
    g = np.random.default_rng(seed)
    return (g.random(n) ** 4 * 50.0 + 1e-3).astype(np.float32)


class Run:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="mq_imx_")

    def path(self, name):
        return os.path.join(self.tmp, name)

    def quantize(self, src, name, *extra, ok=True):
        out = self.path(name)
        rc, log = mqcheck.cli("quantize", src, "-o", out, "--device", "host",
                              "--report", out + ".json", *extra)
        assert (rc == 0) == ok, log
        return out, log

    def close(self):
        shutil.rmtree(self.tmp)


def test_layouts_agree_and_weigh():
    r = Run()
    try:
        src = r.path("in.safetensors")
        save_file({Q: _rng_weights(16, 64, 1), DOWN: _rng_weights(8, 64, 2)}, src)
        imp = _skewed(64, 3)
        # GGUF: sums and counts (imp = sum / count); .dat: the mean times ncall.
        imatrixfile.write(r.path("m.gguf"), imatrixfile.gguf_bytes(
            {"blk.0.attn_q.weight": ([list(imp * 7.0)], [7.0])}))
        imatrixfile.write(r.path("m.dat"), imatrixfile.dat_bytes(
            {"blk.0.attn_q.weight": (3, list(imp * 3.0))}))
        imatrixfile.write(r.path("ones.gguf"), imatrixfile.gguf_bytes(
            {"blk.0.attn_q.weight": ([[2.0] * 64], [2.0])}))
        for group in ("channel", "32"):
            base = ["--preset", "W4A16", "--group-size", group, "--observer", "mse"]
            plain, _ = r.quantize(src, "plain" + group, *base)
            gg, log = r.quantize(src, "gguf" + group, *base, "--imatrix", r.path("m.gguf"))
            dat, _ = r.quantize(src, "dat" + group, *base, "--imatrix", r.path("m.dat"))
            ones, _ = r.quantize(src, "ones" + group, *base, "--imatrix", r.path("ones.gguf"))
            a, b, p, o = (load_file(x) for x in (gg, dat, plain, ones))
            for name in a:
                assert np.array_equal(a[name], b[name]), (group, name)
                assert np.array_equal(o[name], p[name]), (group, name)
            scale = Q.replace(".weight", ".weight_scale")
            assert not np.array_equal(a[scale], p[scale]), group
            # down_proj has no entry: the plain search, counted.
            dscale = DOWN.replace(".weight", ".weight_scale")
            assert np.array_equal(a[dscale], p[dscale]), group
            assert "1 of 2 quantized tensors weighted, 1 without an entry" in log, log
            rep = json.load(open(gg + ".json"))
            flags = {t["name"]: t["imatrix"] for t in rep["quantized"]}
            assert flags == {Q: True, DOWN: False}, flags
            assert rep["observer"] == "mse"
    finally:
        r.close()


def test_group_place_and_experts():
    """A row of two groups of 32 whose halves are the same values: group 0
    must take importances a, group 1 importances b, so its scales are those
    of 32-column weights searched with a and with b alone. And expert 1 of a
    3-D entry takes that entry's row 1."""
    r = Run()
    try:
        half = _rng_weights(1100, 32, 4)  # 70400 values in up_proj: its groups run in parallel
        gate = _rng_weights(8, 32, 5)
        src = r.path("in.safetensors")
        save_file({UP: np.concatenate([half, half], axis=1), Q: half, K: half.copy(),
                   GATE: gate, EXPERT1: gate.copy()}, src)
        a, b = _skewed(32, 6), _skewed(32, 7)
        imatrixfile.write(r.path("m.gguf"), imatrixfile.gguf_bytes({
            "blk.0.ffn_up.weight": ([list(a) + list(b)], [1.0]),
            "blk.0.attn_q.weight": ([list(a)], [1.0]),
            "blk.0.attn_k.weight": ([list(b)], [1.0]),
            "blk.0.ffn_gate.weight": ([list(b)], [1.0]),
            "blk.1.ffn_gate_exps.weight": ([list(a), list(b * 4.0)], [1.0, 4.0]),
        }))
        # Every step runs (the stop is the whole weight's, and these differ).
        out, _ = r.quantize(src, "g", "--preset", "W4A16", "--group-size", "32", "--observer",
                            "mse", "--observer-patience", "100", "--imatrix", r.path("m.gguf"))
        t = load_file(out)

        def sc(n):
            return t[n.replace(".weight", ".weight_scale")]
        assert np.array_equal(sc(UP)[:, 0:1], sc(Q)), "group 0 takes the first importances"
        assert np.array_equal(sc(UP)[:, 1:2], sc(K)), "group 1 takes the second"
        assert not np.array_equal(sc(Q), sc(K))
        assert np.array_equal(sc(EXPERT1), sc(GATE)), "expert 1 takes row 1"
        assert np.array_equal(t[EXPERT1.replace(".weight", ".weight_packed")],
                              t[GATE.replace(".weight", ".weight_packed")])
    finally:
        r.close()


def test_bad_files_and_settings():
    r = Run()
    try:
        src = r.path("in.safetensors")
        save_file({Q: _rng_weights(8, 64, 8)}, src)
        good = imatrixfile.gguf_bytes({"blk.0.attn_q.weight": ([[1.0] * 64], [1.0])})
        cases = {
            "trunc.gguf": (good[:len(good) - 9], ["trunc.gguf", "blk.0.attn_q.weight"]),
            "unknown.gguf": (imatrixfile.gguf_bytes({
                "blk.0.ssm_in.weight": ([[1.0] * 8], [1.0]),
                "blk.0.attn_q.weight": ([[1.0] * 64], [1.0])}),
                ["unknown.gguf", "blk.0.ssm_in.weight", "1 entry"]),
            "size.gguf": (imatrixfile.gguf_bytes({"blk.0.attn_q.weight": ([[1.0] * 48], [1.0])}),
                          ["size.gguf", "blk.0.attn_q.weight", Q, "64 columns"]),
            "neg.dat": (imatrixfile.dat_bytes({"blk.0.attn_q.weight": (1, [-1.0] * 64)}),
                        ["neg.dat", "blk.0.attn_q.weight", "-1"]),
            "nocounts.gguf": (imatrixfile.gguf_bytes(
                {}, extra_tensors=[("blk.0.attn_q.weight.in_sum2", [1.0] * 64)]),
                ["nocounts.gguf", "blk.0.attn_q.weight.counts"]),
            "garbage.dat": (b"\xff\xff\xff\x7f" + b"x" * 40, ["garbage.dat", "legacy"]),
        }
        for name, (data, words) in cases.items():
            imatrixfile.write(r.path(name), data)
            _, log = r.quantize(src, "o-" + name, "--preset", "W4A16", "--group-size", "32",
                                "--observer", "mse",
                                "--imatrix", r.path(name), ok=False)
            for w in words:
                assert w in log, (name, w, log)
            assert not os.path.exists(r.path("o-" + name))
        _, log = r.quantize(src, "o-missing", "--preset", "W4A16", "--observer", "mse",
                            "--imatrix", r.path("missing.gguf"), ok=False)
        assert "missing.gguf" in log, log
        # The matrix weighs the search: without --observer mse it is refused.
        imatrixfile.write(r.path("good.gguf"), good)
        _, log = r.quantize(src, "o-minmax", "--preset", "W4A16", "--imatrix",
                            r.path("good.gguf"), ok=False)
        assert "imatrix" in log and "mse" in log, log
        # The config file's key.
        cfg = r.path("cfg.json")
        with open(cfg, "w") as f:
            json.dump({"preset": "W4A16", "group_size": 32, "observer": "mse",
                       "imatrix": r.path("good.gguf")}, f)
        out, _ = r.quantize(src, "o-cfg", "--config", cfg)
        assert json.load(open(out + ".json"))["quantized"][0]["imatrix"] is True
    finally:
        r.close()


if __name__ == "__main__":
    for name, fn in sorted(globals().items()):
        if name.startswith("test_") and callable(fn):
            fn()
            print("ok", name)
