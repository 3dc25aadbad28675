"""The Python package's presets: quantize_file writes the CLI's bytes for every
preset and group size, a state_dict gives the file's tensors, settings resolve
as the CLI's flags do, and bad presets, schemes and modules raise clearly."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import mqcheck  # noqa: E402
import pkgtest  # noqa: E402

if __name__ == "__main__":
    pkgtest.need_package()

import torch  # noqa: E402
from torch import nn  # noqa: E402

import monoquant  # noqa: E402
from monoquant import QuantizationConfig, dynamic_quantize  # noqa: E402

PRESETS = ["W8A8", "INT8", "W8A16", "W8A16_ASYM", "W4A16", "W4A16_ASYM", "FP8_DYNAMIC",
           "FP8_BLOCK", "MXFP4A16", "MXFP4", "MXFP8A16", "MXFP8", "NVFP4A16", "FP16"]


def fixture():
    """Weights that divide groups and blocks of 128, one that does not (kept in
    float by the group and block presets), BF16, a Conv, and tensors that stay."""
    g = torch.Generator().manual_seed(7)
    return {
        "a.weight": torch.randn(256, 256, generator=g),
        "a.bias": torch.randn(256, generator=g),
        "b.weight": (torch.randn(128, 384, generator=g) * 0.02).to(torch.bfloat16),
        "ragged.weight": torch.randn(72, 200, generator=g),
        "conv.weight": torch.randn(8, 4, 3, 3, generator=g),
        "norm.weight": torch.ones(256),
        "embed_tokens.weight": torch.randn(32, 256, generator=g),
    }


def source(tmp):
    from safetensors.torch import save_file
    src = os.path.join(tmp, "in.safetensors")
    save_file(fixture(), src)
    return src


def read(path):
    with open(path, "rb") as f:
        return f.read()


def same_as_cli(src, tmp, cli_args, **kw):
    """quantize_file(src, ..., **kw) against `monoquant quantize src ... cli_args`;
    returns the report."""
    mine, ref = os.path.join(tmp, "py.safetensors"), os.path.join(tmp, "cli.safetensors")
    for p in (mine, ref):
        if os.path.exists(p):
            os.remove(p)
    report = monoquant.quantize_file(src, mine, progress=False, **kw)
    rc, text = mqcheck.cli("quantize", src, "-o", ref, "-q", *cli_args)
    assert rc == 0, (cli_args, text)
    assert read(mine) == read(ref), (cli_args, kw)
    return report


def test_presets_list():
    assert monoquant.presets() == PRESETS
    assert "presets" in monoquant.__all__
    # The new fields come last: positional configs keep their meaning.
    c = QuantizationConfig("int8", False, True)
    assert c.symmetric is False and c.per_channel is True and c.preset is None


def test_dir_equals_cli():
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError as e:
        pkgtest.skip_test("transformers: %s" % e)
    torch.manual_seed(9)
    cfg = LlamaConfig(vocab_size=128, hidden_size=128, intermediate_size=256,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "llama")
        LlamaForCausalLM(cfg).save_pretrained(src)
        for args, kw in ((["--preset", "W4A16"], {"preset": "W4A16"}),
                         (["--preset", "FP8_BLOCK"], {"config": {"preset": "FP8_BLOCK"}}),
                         (["--preset", "W8A16", "--group-size", "64"],
                          {"preset": "W8A16", "group_size": 64})):
            mine, ref = os.path.join(tmp, "py"), os.path.join(tmp, "cli")
            for d in (mine, ref):
                shutil.rmtree(d, ignore_errors=True)
            report = monoquant.quantize_dir(src, mine, progress=False, **kw)
            rc, text = mqcheck.cli("quantize", src, "-o", ref, "-q", *args)
            assert rc == 0, text
            assert sorted(os.listdir(mine)) == sorted(os.listdir(ref))
            for name in os.listdir(ref):
                assert read(os.path.join(mine, name)) == read(os.path.join(ref, name)), (args, name)
            assert report["preset"] == args[1], report["preset"]


def test_every_preset_equals_cli():
    canonical = {"INT8": "W8A8"}
    with tempfile.TemporaryDirectory() as tmp:
        src = source(tmp)
        for p in PRESETS:
            report = same_as_cli(src, tmp, ["--preset", p], preset=p)
            assert report["preset"] == canonical.get(p, p), (p, report["preset"])
            quantized = {e["name"] for e in report["quantized"]}
            if p != "FP16":
                assert "a.weight" in quantized and "b.weight" in quantized, (p, quantized)
            if p in ("W8A16", "W8A16_ASYM", "W4A16", "W4A16_ASYM"):
                assert report["group_size"] == 128 and "ragged.weight" not in quantized, p
            if p == "FP8_BLOCK":
                assert report["block_size"] == 128 and "ragged.weight" not in quantized
        # Names are case-insensitive; the config's preset is the same as the keyword.
        same_as_cli(src, tmp, ["--preset", "W4A16"], preset="w4a16")
        same_as_cli(src, tmp, ["--preset", "FP8_BLOCK"],
                    config=QuantizationConfig(preset="fp8_block"))


def test_group_size_and_refinement():
    with tempfile.TemporaryDirectory() as tmp:
        src = source(tmp)
        r = same_as_cli(src, tmp, ["--preset", "W4A16", "--group-size", "64"],
                        preset="W4A16", group_size=64)
        assert r["group_size"] == 64 and r["preset"] == "W4A16"
        for gs in (-1, "channel"):
            r = same_as_cli(src, tmp, ["--preset", "W4A16", "--group-size", "channel"],
                            preset="W4A16", group_size=gs)
            assert r["group_size"] is None and "ragged.weight" in {
                e["name"] for e in r["quantized"]}
        same_as_cli(src, tmp, ["--preset", "W8A16", "--group-size", "-1"],
                    config={"preset": "W8A16", "group_size": -1})
        # The scheme settings given refine the preset, wherever they come from.
        r = same_as_cli(src, tmp, ["--preset", "W4A16", "--scheme", "asym"],
                        preset="W4A16", symmetric=False)
        assert r["preset"] == "W4A16_ASYM"
        same_as_cli(src, tmp, ["--preset", "W4A16", "--scheme", "asym"],
                    config=QuantizationConfig(preset="W4A16", symmetric=False))
        same_as_cli(src, tmp, ["--preset", "W4A16", "--group-size", "32"],
                    config=QuantizationConfig(preset="W4A16"), group_size=32)
        same_as_cli(src, tmp, ["--preset", "FP8_DYNAMIC", "--per-tensor"],
                    preset="FP8_DYNAMIC", per_channel=False)
        # A preset argument replaces the config's preset and scheme settings.
        same_as_cli(src, tmp, ["--preset", "W8A8"], preset="W8A8",
                    config={"preset": "W4A16", "symmetric": False, "group_size": 32})
        # dtype strings without a preset, as --dtype.
        same_as_cli(src, tmp, ["--dtype", "int4", "--group-size", "64"], dtype="int4",
                    group_size=64)
        same_as_cli(src, tmp, ["--dtype", "fp8"], dtype=torch.float8_e4m3fn)


def test_bad_presets_and_schemes():
    names = ", ".join(PRESETS)
    sd = {"a.weight": torch.randn(16, 128)}
    e = pkgtest.expect_error(lambda: dynamic_quantize(sd, preset="W3A16"), "W3A16", names)
    assert e.status
    pkgtest.expect_error(lambda: monoquant.quantize_file("in", "out", preset="nope"), "nope",
                         names)
    pkgtest.expect_error(lambda: dynamic_quantize(sd, config={"preset": "W5"}), "W5", names)
    pkgtest.expect_error(lambda: dynamic_quantize(sd, preset=4), "preset")
    # FP8 has no zero points; groups are for weights-only kernels.
    pkgtest.expect_error(lambda: dynamic_quantize(sd, preset="FP8_DYNAMIC", symmetric=False),
                         "FP8 is symmetric")
    pkgtest.expect_error(lambda: monoquant.quantize_file("in", "out", dtype="fp8",
                                                         symmetric=False), "FP8 is symmetric")
    pkgtest.expect_error(lambda: dynamic_quantize(sd, group_size=64), "groups need")
    pkgtest.expect_error(lambda: dynamic_quantize(sd, preset="W4A16", group_size=12),
                         "multiple of 8")
    for bad in (0, -2, "64", 1.5, True):
        pkgtest.expect_error(lambda: dynamic_quantize(sd, preset="W4A16", group_size=bad),
                             "group_size")
    pkgtest.expect_error(lambda: dynamic_quantize(sd, dtype="int3"), "int4", "fp8")


def test_state_dict_equals_file():
    from safetensors.torch import load_file
    sd = fixture()
    with tempfile.TemporaryDirectory() as tmp:
        src = source(tmp)
        for p in PRESETS:
            out = os.path.join(tmp, p + ".safetensors")
            monoquant.quantize_file(src, out, preset=p, progress=False)
            want = load_file(out)
            got, skipped = dynamic_quantize(sd, preset=p)
            assert set(got) == set(want), (p, sorted(set(got) ^ set(want)))
            for k, v in want.items():
                assert got[k].dtype == v.dtype and got[k].shape == v.shape, (p, k)
                assert got[k].contiguous().view(torch.uint8).numpy().tobytes() == \
                    v.contiguous().view(torch.uint8).numpy().tobytes(), (p, k)
            if p in ("W4A16", "FP8_BLOCK"):
                assert "ragged.weight" in skipped and "a.weight" not in skipped, (p, skipped)
            if p == "W4A16":
                assert got["a.weight_packed"].dtype == torch.int32
                assert got["a.weight_scale"].shape == (256, 2)
            if p == "FP8_DYNAMIC":
                assert got["a.weight"].dtype == torch.float8_e4m3fn
        got, _ = dynamic_quantize(sd, config={"preset": "W4A16"}, group_size=64)
        assert got["a.weight_scale"].shape == (256, 4)
    # numpy has no fp8 dtype: the error says to pass torch tensors.
    import numpy as np
    pkgtest.expect_error(lambda: dynamic_quantize({"w.weight": np.ones((8, 8), np.float32)},
                                                  preset="FP8_DYNAMIC"), "torch")


def test_modules():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 16))
    for kw in ({"preset": "W4A16"}, {"preset": "W4A16_ASYM"}, {"preset": "FP8_DYNAMIC"},
               {"preset": "FP8_BLOCK"}, {"preset": "W8A16"}, {"dtype": "int4"},
               {"config": QuantizationConfig(preset="W8A16_ASYM")}):
        e = pkgtest.expect_error(lambda: dynamic_quantize(model, **kw), "nn.Module",
                                 "state_dict", "quantize_file", "quantize_dir")
        name = kw["config"].preset if "config" in kw else kw.get("preset")
        grouped = name in ("W8A16", "W8A16_ASYM", "W4A16", "W4A16_ASYM")
        assert ("groups of 128" in str(e)) == grouped, str(e)
    # The int8 per-channel schemes and FP16 are modules, whatever names them.
    default, _ = dynamic_quantize(model)
    for kw in ({"preset": "W8A8"}, {"preset": "int8"}, {"config": {"preset": "INT8"}}):
        q, _ = dynamic_quantize(model, **kw)
        assert torch.equal(q[0].weight_int8, default[0].weight_int8), kw
    wo, _ = dynamic_quantize(model, config={"weights_only": True})
    q, _ = dynamic_quantize(model, preset="W8A16", group_size=-1)
    assert torch.equal(q[0].weight_int8, wo[0].weight_int8)
    asym, _ = dynamic_quantize(model, symmetric=False)
    q, _ = dynamic_quantize(model, preset="W8A16_ASYM", group_size="channel")
    assert torch.equal(q[0].weight_int8, asym[0].weight_int8)
    assert torch.equal(q[0].weight_zero_point, asym[0].weight_zero_point)
    h, skipped = dynamic_quantize(model, preset="FP16")
    assert skipped == ["1"] and h[0].weight_fp16.dtype == torch.float16
    assert isinstance(h[2], monoquant.nn.Float16Linear)


if __name__ == "__main__":
    pkgtest.main(__file__, dict(globals()))
