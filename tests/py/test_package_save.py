"""Saving and loading quantized modules: save_pretrained / from_pretrained,
monoquant.save_pretrained (quantize_dir's bytes), load_quantized (our files
back into quantized modules, nothing dequantized), torch.save / torch.load
(weights_only=True) of the state_dict."""
import filecmp
import io
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import pkgtest  # noqa: E402

if __name__ == "__main__":
    pkgtest.need_package()

import torch  # noqa: E402
from torch import nn  # noqa: E402

import monoquant  # noqa: E402
from monoquant import dynamic_quantize  # noqa: E402

cos = torch.nn.functional.cosine_similarity
SCHEMES = ({}, {"symmetric": False}, {"per_channel": False}, {"config": {"weights_only": True}})


def tiny_llama():
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError as e:
        pkgtest.skip_test("transformers: %s" % e)
    torch.manual_seed(11)
    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    return LlamaForCausalLM(cfg).eval()


def quiet_save(model, path):
    import transformers
    transformers.logging.set_verbosity_error()
    model.save_pretrained(path)


def test_save_pretrained_bytes_and_reload():
    model = tiny_llama()
    ids = torch.randint(0, 128, (2, 6))
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "float")
        quiet_save(model, src)
        for i, kw in enumerate(SCHEMES):
            ref = os.path.join(tmp, "ref%d" % i)
            monoquant.quantize_dir(src, ref, **kw)
            q, _ = dynamic_quantize(model, **kw)
            ours = os.path.join(tmp, "ours%d" % i)
            monoquant.save_pretrained(q, ours)
            for name in sorted(os.listdir(ref)):
                assert filecmp.cmp(os.path.join(ref, name), os.path.join(ours, name),
                                   shallow=False), (kw, name)
            assert sorted(os.listdir(ref)) == sorted(os.listdir(ours))
        # transformers' own save_pretrained: the same tensors and config, and
        # from_pretrained (compressed-tensors) reloads the quantized weights.
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM
        q, _ = dynamic_quantize(model)
        plain = os.path.join(tmp, "plain")
        quiet_save(q, plain)
        a = load_file(os.path.join(plain, "model.safetensors"))
        b = load_file(os.path.join(tmp, "ref0", "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        back = AutoModelForCausalLM.from_pretrained(plain).eval()
        with torch.no_grad():
            c = cos(back(ids).logits.flatten(0, 1), q(ids).logits.flatten(0, 1), dim=1)
        assert c.min() >= 0.999, c.min()


def test_load_quantized():
    model = tiny_llama()
    ids = torch.randint(0, 128, (2, 6))
    from transformers import LlamaForCausalLM
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "float")
        quiet_save(model, src)
        for i, kw in enumerate(SCHEMES):
            dst = os.path.join(tmp, "q%d" % i)
            monoquant.quantize_dir(src, dst, **kw)
            q, _ = dynamic_quantize(model, **kw)
            torch.manual_seed(99)
            skeleton = LlamaForCausalLM(model.config).eval()
            got = monoquant.load_quantized(dst, skeleton)
            assert got is skeleton
            layer = got.model.layers[0].mlp.up_proj
            assert isinstance(layer, monoquant.nn.QuantizedLinear)
            assert torch.equal(layer.weight_int8, q.model.layers[0].mlp.up_proj.weight_int8)
            assert type(got.lm_head) is nn.Linear
            with torch.no_grad():
                assert torch.equal(got(ids).logits, q(ids).logits), kw
        # A single file into a plain module.
        torch.manual_seed(5)
        seq = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 8))
        f = os.path.join(tmp, "seq.safetensors")
        from safetensors.torch import save_file
        save_file(seq.state_dict(), f)
        monoquant.quantize_file(f, f + ".q", include=["*"])
        loaded = monoquant.load_quantized(f + ".q", nn.Sequential(nn.Linear(16, 24), nn.ReLU(),
                                                                  nn.Linear(24, 8)))
        q, _ = dynamic_quantize(seq)
        x = torch.randn(3, 16)
        with torch.no_grad():
            assert torch.equal(loaded(x), q(x))
        pkgtest.expect_error(lambda: monoquant.load_quantized(os.path.join(tmp, "none"), seq),
                             "does not exist")
        pkgtest.expect_error(lambda: monoquant.load_quantized(f + ".q", nn.Linear(16, 24)),
                             "does not have")


def test_state_dict_round_trip():
    torch.manual_seed(6)

    def fresh():
        return nn.Sequential(nn.Linear(16, 10), nn.GELU(), nn.Linear(10, 4))

    model = fresh()
    x = torch.randn(5, 16)
    for kw in SCHEMES + ({"dtype": torch.float16},):
        q, _ = dynamic_quantize(model, **kw)
        buf = io.BytesIO()
        torch.save(q.state_dict(), buf)
        buf.seek(0)
        state = torch.load(buf, weights_only=True)
        # The state_dict is the file layout: the library's state_dict bytes.
        if "dtype" not in kw:
            lib, _ = dynamic_quantize(model.state_dict(), **kw)
            assert state.keys() == lib.keys(), (kw, sorted(state), sorted(lib))
            assert all(torch.equal(state[k], lib[k]) for k in lib), kw
        other, _ = dynamic_quantize(fresh(), **kw)
        other.load_state_dict(state)
        with torch.no_grad():
            assert torch.equal(other(x), q(x)), kw


if __name__ == "__main__":
    pkgtest.main(__file__, dict(globals()))
