"""Smaller behaviours of the package: one policy with the file path for
Hugging Face models, fp16 overflow warnings, refusals (a .pt given as
safetensors, an existing output, a meta-device model, bad configs at
construction), what skipped names, typing files, parameter counts."""
import os
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(__file__))
import pkgtest  # noqa: E402

def test_module_selection():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv1d(2, 4, 1), nn.Flatten(), nn.Linear(12, 6), nn.ReLU(),
                          nn.Linear(6, 3))
    q, skipped = dynamic_quantize(model, modules={nn.Linear})
    assert type(q[0]) is nn.Conv1d and "0" in skipped
    assert isinstance(q[2], QuantizedLinear) and isinstance(q[4], QuantizedLinear)
    q, skipped = dynamic_quantize(model, modules={"4"})
    assert type(q[2]) is nn.Linear and isinstance(q[4], QuantizedLinear)
    assert {"0", "2"} <= set(skipped)
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        assert torch.nn.functional.cosine_similarity(q(x), model(x), dim=1).min() >= 0.999
    pkgtest.expect_error(lambda: dynamic_quantize(model, modules=[3]), "modules=")
    pkgtest.expect_error(lambda: dynamic_quantize(model.state_dict(), modules={nn.Linear}),
                         "modules=")


def test_lstm_gru_opt_in():
    torch.manual_seed(3)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True)
            self.gru = nn.GRU(32, 12, batch_first=True)
            self.proj = nn.LSTM(12, 10, proj_size=4, batch_first=True)

        def forward(self, x):
            return self.proj(self.gru(self.lstm(x)[0])[0])[0]

    model = Net().eval()
    x = torch.randn(3, 5, 8)
    q, skipped = dynamic_quantize(model)
    assert type(q.lstm) is nn.LSTM and "lstm" in skipped  # the default is unchanged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.nn.quantized import dynamic as nnqd
        for kw in ({}, {"symmetric": False}, {"per_channel": False}):
            q, skipped = dynamic_quantize(model, modules={nn.LSTM, nn.GRU}, **kw)
            assert isinstance(q.lstm, nnqd.LSTM) and isinstance(q.gru, nnqd.GRU), kw
            assert type(q.proj) is nn.LSTM and "proj" in skipped  # proj_size: no kernel
            weights = q.lstm._weight_bias()["weight"]
            for name in ("weight_ih_l1_reverse", "weight_hh_l0"):
                lib, _ = dynamic_quantize({"w.weight": getattr(model.lstm, name).detach()}, **kw)
                if "w.weight" in lib:
                    codes = lib["w.weight"]
                else:
                    from monoquant import _layout
                    codes = _layout.from_file({k[2:]: v for k, v in lib.items()})[0]
                assert torch.equal(weights[name].int_repr(), codes), (kw, name)
            with torch.no_grad():
                c = torch.nn.functional.cosine_similarity(q(x).flatten(0, 1),
                                                          model(x).flatten(0, 1), dim=1)
            assert c.min() >= 0.999, (kw, float(c.min()))


if __name__ == "__main__":
    pkgtest.need_package()

import torch  # noqa: E402
from torch import nn  # noqa: E402

import monoquant  # noqa: E402
from monoquant import QuantizationConfig, dynamic_quantize  # noqa: E402
from monoquant.nn import QuantizedLinear  # noqa: E402

SRC = os.environ.get("MQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


def test_hf_policy_tied_head_and_routers():
    try:
        from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM
    except ImportError as e:
        pkgtest.skip_test("transformers: %s" % e)
    torch.manual_seed(0)
    cfg = Qwen2MoeConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                         moe_intermediate_size=16, shared_expert_intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         num_experts=4, num_experts_per_tok=2, tie_word_embeddings=True)
    model = Qwen2MoeForCausalLM(cfg).eval()
    q, skipped = dynamic_quantize(model)
    # As quantize_dir: the tied head, the router gates stay float; the tie holds.
    assert q.lm_head.weight is q.model.embed_tokens.weight
    assert {"lm_head", "model.layers.0.mlp.shared_expert_gate"} <= set(skipped), skipped
    assert type(q.model.layers[0].mlp.shared_expert_gate) is nn.Linear
    # int8 weights are (frozen) parameters: the count is the float model's.
    assert q.num_parameters() == model.num_parameters()
    assert isinstance(q.model.layers[0].mlp.shared_expert.up_proj, monoquant.nn.QuantizedLinear)
    assert q.config.quantization_config["ignore"] == ["lm_head",
                                                      "model.layers.0.mlp.shared_expert_gate"]
    # include overrides the rule, as --include does.
    q2, _ = dynamic_quantize(model, config={"include": ["lm_head"]})
    assert isinstance(q2.lm_head, monoquant.nn.QuantizedLinear)
    # A plain module keeps the original design's rule: every Linear, tied or not.
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.lm_head = nn.Linear(8, 10)
            self.lm_head.weight = self.emb.weight

    qp, _ = dynamic_quantize(Plain())
    assert isinstance(qp.lm_head, monoquant.nn.QuantizedLinear)


def test_fp16_overflow_warns():
    big = {"w.weight": torch.tensor([[1e6, 1.0], [-7e4, 2.0]])}
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        out, _ = dynamic_quantize(big, dtype=torch.float16)
        lin = nn.Linear(2, 2)
        with torch.no_grad():
            lin.weight.fill_(1e5)
        dynamic_quantize(lin, dtype=torch.float16)
    msgs = [str(w.message) for w in got if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 2 and "2 value(s)" in msgs[0] and "fp16_saturate=True" in msgs[0], msgs
    assert torch.isinf(out["w.weight"]).sum() == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sat, _ = dynamic_quantize(big, dtype=torch.float16, config={"fp16_saturate": True})
    assert float(sat["w.weight"].abs().max()) == 65504.0


def test_file_refusals():
    example = os.path.join(SRC, "examples", "tiny_mlp.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        pt = os.path.join(tmp, "model.pt")
        torch.save({"fc.weight": torch.ones(4, 4)}, pt)
        pkgtest.expect_error(lambda: monoquant.quantize_file(pt, pt + ".out"),
                             "'%s' is not a safetensors file" % pt, "torch.load")
        out = os.path.join(tmp, "q.safetensors")
        monoquant.quantize_file(example, out)
        before = os.path.getmtime(out), os.path.getsize(out)
        pkgtest.expect_error(lambda: monoquant.quantize_file(example, out), "exists")
        assert (os.path.getmtime(out), os.path.getsize(out)) == before


def test_meta_device_and_empty_models():
    with torch.device("meta"):
        meta = nn.Sequential(nn.Linear(4, 4))
    e = pkgtest.expect_error(lambda: dynamic_quantize(meta), "'0.weight'", "meta device")
    assert isinstance(e, monoquant.QuantizationError)
    assert dynamic_quantize(nn.Sequential())[1] == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        empty = nn.Linear(8, 0)
    q, skipped = dynamic_quantize(empty)
    assert skipped == ["(root)"] and q is not empty
    assert dynamic_quantize(nn.Linear(4, 4))[1] == []


def test_config_validated_at_construction():
    pkgtest.expect_error(lambda: QuantizationConfig(dtype="bogus"), "bogus")
    pkgtest.expect_error(lambda: QuantizationConfig(preset="nope"), "nope", "W8A8")
    pkgtest.expect_error(lambda: QuantizationConfig(symmetric="yes"), "symmetric")
    pkgtest.expect_error(lambda: QuantizationConfig(group_size=0), "group_size")
    pkgtest.expect_error(lambda: QuantizationConfig(preset="FP8_DYNAMIC", symmetric=False),
                         "FP8")
    assert QuantizationConfig(preset="W4A16").preset == "W4A16"


def test_typing_files():
    import mono_quant
    import monoquant._core as core
    pkg = os.path.dirname(monoquant.__file__)
    assert os.path.exists(os.path.join(pkg, "py.typed"))
    assert os.path.exists(os.path.join(os.path.dirname(mono_quant.__file__), "py.typed"))
    with open(os.path.join(pkg, "_core.pyi")) as f:
        stub = f.read()
    for name in (n for n in dir(core) if not n.startswith("__")):
        assert ("def %s(" % name) in stub or ("%s:" % name) in stub or \
            ("class %s(" % name) in stub, name


def test_parameter_counts():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    q, _ = dynamic_quantize(model)
    n = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in q.parameters()) == n
    size = sum(p.numel() * p.element_size() for p in q.parameters())
    assert size == 64 * 32 + 32 * 8 + 4 * (32 + 8)
    assert all(not p.requires_grad for n_, p in q.named_parameters() if "weight" in n_)


def test_module_selection():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv1d(2, 4, 1), nn.Flatten(), nn.Linear(12, 6), nn.ReLU(),
                          nn.Linear(6, 3))
    q, skipped = dynamic_quantize(model, modules={nn.Linear})
    assert type(q[0]) is nn.Conv1d and "0" in skipped
    assert isinstance(q[2], QuantizedLinear) and isinstance(q[4], QuantizedLinear)
    q, skipped = dynamic_quantize(model, modules={"4"})
    assert type(q[2]) is nn.Linear and isinstance(q[4], QuantizedLinear)
    assert {"0", "2"} <= set(skipped)
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        assert torch.nn.functional.cosine_similarity(q(x), model(x), dim=1).min() >= 0.999
    pkgtest.expect_error(lambda: dynamic_quantize(model, modules=[3]), "modules=")
    pkgtest.expect_error(lambda: dynamic_quantize(model.state_dict(), modules={nn.Linear}),
                         "modules=")


def test_lstm_gru_opt_in():
    torch.manual_seed(3)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True)
            self.gru = nn.GRU(32, 12, batch_first=True)
            self.proj = nn.LSTM(12, 10, proj_size=4, batch_first=True)

        def forward(self, x):
            return self.proj(self.gru(self.lstm(x)[0])[0])[0]

    model = Net().eval()
    x = torch.randn(3, 5, 8)
    q, skipped = dynamic_quantize(model)
    assert type(q.lstm) is nn.LSTM and "lstm" in skipped  # the default is unchanged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.nn.quantized import dynamic as nnqd
        for kw in ({}, {"symmetric": False}, {"per_channel": False}):
            q, skipped = dynamic_quantize(model, modules={nn.LSTM, nn.GRU}, **kw)
            assert isinstance(q.lstm, nnqd.LSTM) and isinstance(q.gru, nnqd.GRU), kw
            assert type(q.proj) is nn.LSTM and "proj" in skipped  # proj_size: no kernel
            weights = q.lstm._weight_bias()["weight"]
            for name in ("weight_ih_l1_reverse", "weight_hh_l0"):
                lib, _ = dynamic_quantize({"w.weight": getattr(model.lstm, name).detach()}, **kw)
                if "w.weight" in lib:
                    codes = lib["w.weight"]
                else:
                    from monoquant import _layout
                    codes = _layout.from_file({k[2:]: v for k, v in lib.items()})[0]
                assert torch.equal(weights[name].int_repr(), codes), (kw, name)
            with torch.no_grad():
                c = torch.nn.functional.cosine_similarity(q(x).flatten(0, 1),
                                                          model(x).flatten(0, 1), dim=1)
            assert c.min() >= 0.999, (kw, float(c.min()))


if __name__ == "__main__":
    pkgtest.main(__file__, dict(globals()))
