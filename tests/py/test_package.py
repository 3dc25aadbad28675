"""The monoquant Python package: dynamic_quantize on modules (the original
design's own check, Conv, a Hugging Face Llama) and state_dicts (the CLI's
bytes), settings resolution, errors, host vs OpenCL, the file calls."""
import copy
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import mqcheck  # noqa: E402
import pkgtest  # noqa: E402

if __name__ == "__main__":
    pkgtest.need_package()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import monoquant  # noqa: E402
from monoquant import QuantizationConfig, QuantizationError, dynamic_quantize  # noqa: E402

SRC = os.environ.get("MQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
cos = torch.nn.functional.cosine_similarity


def nbytes(model):
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) +
               list(model.buffers()))


def same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)


def test_seed_model():
    """The original design's verification, verbatim in substance."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 10))
    before = copy.deepcopy(model)
    q8, skipped8 = dynamic_quantize(model, dtype=torch.qint8)
    q16, skipped16 = dynamic_quantize(model, dtype=torch.float16)
    assert same_state(model, before), "the original changed"
    assert q8 is not model and q16 is not model
    assert "1" in skipped8 and "0" not in skipped8 and "2" not in skipped8, skipped8
    # fp16 as torch.ao's float16 dynamic quantization: fp16 Linear weights,
    # the rest as it was, fp32 in and out (fp16 in works too).
    assert skipped16 == ["1"], skipped16
    x = torch.randn(1, 128)
    assert q8(x).shape == (1, 10)
    assert q16(x.half()).shape == (1, 10) and q16(x.half()).dtype == torch.float16
    assert q16(x).dtype == torch.float32
    assert q16[0].weight_fp16.dtype == torch.float16 and q16[0].bias.dtype == torch.float32
    ratio = nbytes(q8) / nbytes(model)
    assert ratio < 0.35, ratio
    xs = torch.randn(64, 128)
    with torch.no_grad():
        c8 = cos(model(xs), q8(xs), dim=1)
        c16 = cos(model(xs), q16(xs), dim=1)
    assert c8.min() >= 0.999 and c16.min() >= 0.999, (c8.min(), c16.min())
    assert isinstance(q8[0], monoquant.nn.QuantizedLinear)
    assert q8[0].weight_int8.dtype == torch.int8 and q8[0].bias.dtype == torch.float32
    assert q8[0].weight_scale.shape == (256,)


def test_schemes_and_int_mm():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 32))
    xs = torch.randn(64, 64)
    with torch.no_grad():
        ref = model(xs)
        for kw in ({"symmetric": False}, {"per_channel": False},
                   {"symmetric": False, "per_channel": False}, {"config": {"weights_only": True}}):
            q, _ = dynamic_quantize(model, **kw)
            assert cos(ref, q(xs), dim=1).min() >= 0.999, kw
            if kw.get("symmetric") is False:
                assert q[0].weight_zero_point is not None
        # weights_only is packed in the file layout; unpacked it is the same codes.
        qs, _ = dynamic_quantize(model)
        qw, _ = dynamic_quantize(model, config=QuantizationConfig(weights_only=True))
        assert torch.equal(qs[0].weight_int8, qw[0].weight_int8)
        # Both forward paths of a symmetric Linear: W8A8 with _int_mm (the
        # default) and dequantize on the fly.
        L = monoquant.nn.QuantizedLinear
        assert L.use_int_mm
        y_int = qs(xs)
        try:
            L.use_int_mm = False
            y_deq = qs(xs)
        finally:
            L.use_int_mm = True
        assert not torch.equal(y_int, y_deq)
        assert cos(ref, y_int, dim=1).min() >= 0.999 and cos(ref, y_deq, dim=1).min() >= 0.9999


def test_conv():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 8, 3, stride=2, padding=1, padding_mode="reflect"),
                          nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    conv1d = nn.Conv1d(4, 6, 3, groups=2)
    conv3d = nn.Conv3d(2, 4, (1, 2, 2), bias=False)
    q, skipped = dynamic_quantize(model, dtype=torch.qint8)
    assert sorted(skipped) == ["1", "3"], skipped
    assert isinstance(q[2], monoquant.nn.QuantizedConv2d)
    xs = torch.randn(16, 3, 16, 16)
    with torch.no_grad():
        assert cos(model(xs), q(xs), dim=1).min() >= 0.999
        for m, x in ((conv1d, torch.randn(5, 4, 9)), (conv3d, torch.randn(2, 2, 3, 4, 4))):
            qm, sk = dynamic_quantize(m)
            assert sk == [] and isinstance(qm, monoquant.nn._Int8Weight)
            assert cos(m(x).flatten(1), qm(x).flatten(1), dim=1).min() >= 0.999


def test_llama():
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError as e:
        pkgtest.skip_test("transformers: %s" % e)
    torch.manual_seed(3)
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(cfg).eval()
    before = copy.deepcopy(model)
    ids = torch.randint(0, 256, (2, 12))
    q, skipped = dynamic_quantize(model, dtype=torch.qint8)
    h, _ = dynamic_quantize(model, dtype=torch.float16)
    assert same_state(model, before)
    lin = [n for n, m in model.named_modules() if type(m) is nn.Linear]
    # The file path's rule: lm_head stays in float (and is named as skipped).
    assert "lm_head" in lin and set(lin) & set(skipped) == {"lm_head"}, skipped
    assert type(q.lm_head) is nn.Linear and torch.equal(q.lm_head.weight, model.lm_head.weight)
    assert "model.embed_tokens" in skipped and "model.norm" in skipped
    with torch.no_grad():
        ref = model(ids).logits.flatten(0, 1)
        got8 = q(ids).logits.flatten(0, 1)
        got16 = h(ids).logits.flatten(0, 1).float()
    assert cos(ref, got8, dim=1).min() >= 0.999, cos(ref, got8, dim=1).min()
    assert cos(ref, got16, dim=1).min() >= 0.999


def state_dict_fixture():
    g = torch.Generator().manual_seed(4)
    return {
        "fc1.weight": torch.randn(33, 20, generator=g),
        "fc1.bias": torch.randn(33, generator=g),
        "half.weight": torch.randn(8, 7, generator=g).to(torch.bfloat16),
        "conv.weight": torch.randn(6, 3, 3, 3, generator=g),
        "norm.weight": torch.ones(20),
        "embed_tokens.weight": torch.randn(16, 20, generator=g),
        "steps": torch.tensor([3], dtype=torch.int64),
        # not contiguous: made contiguous on the way in
        "t.weight": torch.randn(20, 9, generator=g).t(),
    }


def test_state_dict_equals_cli():
    from safetensors.torch import load_file, save_file
    sd = state_dict_fixture()
    before = {k: v.clone() for k, v in sd.items()}
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.safetensors")
        save_file({k: v.contiguous() for k, v in sd.items()}, src)
        for args, kw in (([], {}), (["--scheme", "asym"], {"symmetric": False}),
                         (["--per-tensor"], {"per_channel": False}),
                         (["--scheme", "asym", "--per-tensor"],
                          {"symmetric": False, "per_channel": False}),
                         (["--weights-only"], {"config": QuantizationConfig(weights_only=True)}),
                         (["--exclude", "conv*"], {"config": {"exclude": ["conv*"]}}),
                         (["--dtype", "fp16"], {"dtype": torch.float16})):
            out = os.path.join(tmp, "out.safetensors")
            rc, text = mqcheck.cli("quantize", src, "-o", out, "-q", *args)
            assert rc == 0, text
            cli = load_file(out)
            got, skipped = dynamic_quantize(sd, **kw)
            assert list(got) == list(cli.keys()) or set(got) == set(cli), (args, got.keys())
            for k, v in cli.items():
                assert got[k].dtype == v.dtype and got[k].shape == v.shape, (args, k)
                assert got[k].contiguous().view(torch.uint8).numpy().tobytes() == \
                    v.contiguous().view(torch.uint8).numpy().tobytes(), (args, k)
            if not args:
                assert "fc1.bias" in skipped and "fc1.weight" not in skipped
    for k in sd:
        assert torch.equal(sd[k], before[k])
    # numpy in, numpy out
    got, _ = dynamic_quantize({"w.weight": np.ones((4, 4), np.float32)})
    assert isinstance(got["w.weight"], np.ndarray) and got["w.weight"].dtype == np.int8


def test_settings_resolution():
    sd = {"a.weight": torch.randn(8, 8)}
    asym = QuantizationConfig(symmetric=False, per_channel=False)
    # defaults: int8 symmetric per channel
    got, _ = dynamic_quantize(sd)
    assert got["a.weight"].dtype == torch.int8 and got["a.weight_scale"].shape == (8, 1)
    # config over defaults
    got, _ = dynamic_quantize(sd, config=asym)
    assert "a.weight_packed" in got and got["a.weight_scale"].shape == (1,)
    # arguments over config
    got, _ = dynamic_quantize(sd, symmetric=True, per_channel=True, config=asym)
    assert got["a.weight"].dtype == torch.int8 and got["a.weight_scale"].shape == (8, 1)
    got, _ = dynamic_quantize(sd, dtype=torch.qint8, config={"dtype": "fp16"})
    assert got["a.weight"].dtype == torch.int8
    got, _ = dynamic_quantize(sd, config={"dtype": torch.float16})
    assert got["a.weight"].dtype == torch.float16
    got, _ = dynamic_quantize(sd, dtype="fp16", config={"dtype": "int8"})
    assert got["a.weight"].dtype == torch.float16
    # exclude keeps a module in float and names it
    m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    q, skipped = dynamic_quantize(m, config=QuantizationConfig(exclude=["1"]))
    assert skipped == ["1"] and type(q[1]) is nn.Linear
    # the device argument over the config's
    e = pkgtest.expect_error(lambda: dynamic_quantize(sd, config={"device": "host"},
                                                      device="no-such-device"), "no-such-device")
    assert e.status
    dynamic_quantize(sd, config={"device": "no-such-device"}, device="host")


def test_errors():
    bad = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 3)))
    with torch.no_grad():
        bad[1][0].weight[1, 2] = float("nan")
    pkgtest.expect_error(lambda: dynamic_quantize(bad), "module '1.0'", "NaN")
    pkgtest.expect_error(lambda: dynamic_quantize({"x.weight": torch.full((2, 2), float("inf"))}),
                         "x.weight")
    pkgtest.expect_error(lambda: dynamic_quantize({"c": torch.zeros(2, dtype=torch.complex64)}),
                         "'c'", "unsupported dtype")
    pkgtest.expect_error(lambda: dynamic_quantize(nn.Linear(2, 2), dtype=torch.int32),
                         "unsupported dtype")
    pkgtest.expect_error(lambda: dynamic_quantize({"x": [1, 2]}), "'x'")
    pkgtest.expect_error(lambda: dynamic_quantize(42), "nn.Module or a state_dict")
    pkgtest.expect_error(lambda: dynamic_quantize({}, symmetric="yes"), "symmetric")
    pkgtest.expect_error(lambda: dynamic_quantize({}, config={"bits": 4}), "bits")
    pkgtest.expect_error(lambda: dynamic_quantize({}, config=7), "QuantizationConfig")
    pkgtest.expect_error(lambda: dynamic_quantize({}, config=QuantizationConfig(include="x")),
                         "include")
    pkgtest.expect_error(lambda: dynamic_quantize(
        {"a.weight": torch.ones(2, 2)}, config=QuantizationConfig(include=["re:(unclosed"])), "(unclosed")
    pkgtest.expect_error(lambda: dynamic_quantize({"a.weight": torch.ones(2, 2)}, device="nope"),
                         "nope")
    pkgtest.expect_error(lambda: monoquant.quantize_file("/nonexistent.safetensors", "/tmp/x"),
                         "nonexistent")
    pkgtest.expect_error(lambda: monoquant.quantize_file(SRC, "/tmp/x"), "quantize_dir")
    pkgtest.expect_error(lambda: monoquant.quantize_file("a", "b", colour=1), "colour")
    with tempfile.TemporaryDirectory() as tmp:
        junk = os.path.join(tmp, "junk.safetensors")
        with open(junk, "wb") as f:
            f.write(b"\xff" * 64)
        pkgtest.expect_error(lambda: monoquant.quantize_file(junk, junk + ".out"), "junk")
        assert os.listdir(tmp) == ["junk.safetensors"]


def test_opencl_equals_host():
    if not any(d["kind"] == "opencl" for d in monoquant.devices()):
        pkgtest.skip_test("no OpenCL device")
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(96, 80), nn.Tanh(), nn.Conv1d(1, 4, 3))
    sd = state_dict_fixture()
    for kw in ({}, {"symmetric": False}, {"per_channel": False}, {"dtype": torch.float16}):
        host, hs = dynamic_quantize(sd, device="host", **kw)
        cl, cs = dynamic_quantize(sd, device="opencl", **kw)
        assert hs == cs and list(host) == list(cl)
        for k in host:
            assert host[k].dtype == cl[k].dtype and torch.equal(host[k], cl[k]), (kw, k)
        qh, _ = dynamic_quantize(model, device="host", **kw)
        qc, _ = dynamic_quantize(model, config={"device": "opencl"}, **kw)
        assert same_state(qh, qc), kw


def test_files():
    example = os.path.join(SRC, "examples", "tiny_mlp.safetensors")
    from safetensors.torch import load_file
    calls = []
    with tempfile.TemporaryDirectory() as tmp:
        out, ref = os.path.join(tmp, "q.safetensors"), os.path.join(tmp, "cli.safetensors")
        report = monoquant.quantize_file(example, out, symmetric=False,
                                         progress=lambda *a: calls.append(a))
        assert report["scheme"] == "asym" and report["device"]["backend"] in ("host", "opencl")
        assert {e["name"] for e in report["quantized"]} >= {"fc1.weight", "fc2.weight"}
        assert calls and calls[-1][0] == calls[-1][1]
        rc, text = mqcheck.cli("quantize", example, "-o", ref, "-q", "--scheme", "asym")
        assert rc == 0, text
        a, b = load_file(out), load_file(ref)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        # A model directory, from a saved tiny Llama.
        try:
            from transformers import LlamaConfig, LlamaForCausalLM
        except ImportError:
            return
        cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
        src = os.path.join(tmp, "llama")
        LlamaForCausalLM(cfg).save_pretrained(src)
        dst = os.path.join(tmp, "llama-int8")
        report = monoquant.quantize_dir(src, dst, config=QuantizationConfig(device="host"),
                                        progress=False)
        with open(os.path.join(dst, "config.json")) as f:
            qc = json.load(f)["quantization_config"]
        assert qc["format"] == "int-quantized" and "lm_head" in qc["ignore"]
        assert report["output"] == dst
        pkgtest.expect_error(lambda: monoquant.quantize_dir(example, dst), "not a model directory")


def test_fp16_modules():
    """fp16 as torch.ao's float16 dynamic quantization: Linear and Conv get
    fp16 weights, everything else (embeddings, norms, buffers) stays as it
    was, and fp32 goes in and out."""
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.head = nn.Linear(8, 10, bias=False)
            self.head.weight = self.emb.weight
            self.norm = nn.BatchNorm1d(8)
            self.register_buffer("steps", torch.tensor(3))

        def forward(self, ids):
            return self.head(self.norm(self.emb(ids).transpose(1, 2)).transpose(1, 2))

    m = Tied().eval()
    h, skipped = dynamic_quantize(m, dtype=torch.float16)
    assert skipped == ["emb", "norm"], skipped
    assert isinstance(h.head, monoquant.nn.Float16Linear)
    assert h.head.weight_fp16.dtype == torch.float16 and h.emb.weight.dtype == torch.float32
    assert h.norm.running_mean.dtype == torch.float32 and h.steps.dtype == torch.int64
    assert torch.equal(h.head.weight_fp16, m.emb.weight.half())
    ids = torch.randint(0, 10, (4, 5))
    with torch.no_grad():
        y = h(ids)
        assert y.dtype == torch.float32
        assert cos(y.flatten(0, 1), m(ids).flatten(0, 1), dim=1).min() >= 0.999
    if "fbgemm" in torch.backends.quantized.supported_engines:
        assert h.head.kernel == "packed_fp16", repr(h.head)
    assert "kernel=" in repr(h.head)
    conv = nn.Conv2d(3, 4, 3)
    hc, _ = dynamic_quantize(conv, dtype=torch.float16)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert hc(x).dtype == torch.float32
        assert cos(hc(x).flatten(1), conv(x).flatten(1), dim=1).min() >= 0.999


def test_version_and_alias():
    with open(os.path.join(SRC, "CMakeLists.txt")) as f:
        version = re.search(r"project\(monoquant VERSION ([0-9.]+)", f.read()).group(1)
    assert monoquant.__version__ == version
    import mono_quant
    from mono_quant import QuantizationConfig as QC, dynamic_quantize as dq  # noqa: F401
    assert dq is dynamic_quantize and mono_quant.__version__ == version
    devs = monoquant.devices()
    assert devs[0]["spec"] == "host" and sum(d["auto"] for d in devs) == 1


if __name__ == "__main__":
    pkgtest.main(__file__, dict(globals()))
