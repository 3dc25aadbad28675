"""NVFP4A16 against compressed-tensors and llm-compressor themselves.

Edges, in F32, BF16 and F16, byte for byte against llm-compressor 0.14's
weight observer (memoryless min-max: its global scale, generate_gparam) with
compressed-tensors' calculate_qparams and NVFP4 compressor: every e2m1 code
and midpoint under an effective scale of exactly 1, every midpoint between
two e4m3 scale values (a tie, rounded to even), zero and subnormal groups
(e4m3's epsilon), and global scales that overflow to 1 (a zero tensor, a
tiny amax, F16's narrow range). A seeded Llama (F32: every tensor identical
to llm-compressor's own observers, fused as its fuse_weight_observers fuses
q/k/v and gate/up, then compressed-tensors' compression; BF16: the identical
fraction and a weight error no larger); a sharded copy whose q_proj and
k_proj lie in different shards; host and OpenCL (where PoCL is found) alike,
and a single model.safetensors the directory's bytes on both;
dequantize against compressed-tensors' decompression; and a plain
from_pretrained with a forward pass.

llm-compressor is not installed: only its observers are loaded from the
unpacked wheel (tests/py/llmcwheel.py). Needs torch,
transformers and compressed-tensors; without them it fails, unless
MQ_OFFLINE=1."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from mqcheck import check, finish  # noqa: E402

from llmcwheel import offline_or_fail  # noqa: E402
import llmcwheel  # noqa: E402


try:
    import torch
    import transformers  # noqa: F401
    import compressed_tensors  # noqa: F401
except ImportError as e:
    offline_or_fail("the NVFP4 tests need torch, transformers and compressed-tensors: %s" % e)

import loaders  # noqa: E402
import test_mx  # noqa: E402

FORMAT = "nvfp4-pack-quantized"


def llmc_observers():
    """llm-compressor's observer modules, without the package's heavy imports."""
    llmcwheel.stub_packages("observers", "utils")
    from llmcompressor.observers.helpers import fuse_weight_observers
    from llmcompressor.observers.min_max import MemorylessMinMaxObserver
    return MemorylessMinMaxObserver, fuse_weight_observers


def scheme():
    from compressed_tensors.quantization import preset_name_to_scheme
    return preset_name_to_scheme("NVFP4A16", ["Linear"])


def ct_compress(w):
    """llm-compressor's observer and compressed-tensors' compressor on one weight."""
    from compressed_tensors.compressors import BaseCompressor
    observer, _ = llmc_observers()
    qs = scheme()
    q = observer(base_name="weight", args=qs.weights)(w).get_qparams()
    comp = BaseCompressor.get_value_from_registry(FORMAT)
    return comp.compress({"weight": w, "weight_scale": q["scale"],
                          "weight_global_scale": q["global_scale"]}, qs)


def e4m3_values():
    """The positive finite e4m3fn values, ascending."""
    v = torch.arange(1, 127, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    return sorted(set(v.tolist()))


def edge_tensors(dtype):
    """name -> weight. 'edges': a tensor whose max (168) makes the global
    scale 16, so that a group whose max is 6 has the e4m3 scale 16 and the
    effective scale 16 / 16 = 1 (the codes and midpoints of e2m1 as they are),
    and a group whose max is 6 m / 16 has the scale m exactly (m each midpoint
    between two e4m3 values: ties); zero and subnormal groups. The others:
    global scales of a zero tensor, a tiny and a huge amax, small weights
    (F16: 2688 / amax overflows, so 1)."""
    gen = torch.Generator().manual_seed(11)
    vals = [0.0, -0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
    near = []
    for v in vals[2:]:
        near += [v, -v, float(torch.nextafter(torch.tensor(v), torch.tensor(0.0))),
                 float(torch.nextafter(torch.tensor(v), torch.tensor(9.0)))]
    near += [0.0, -0.0, 1e-3, -1e-3, 0.1, -0.1, 5.99, -5.99]
    flat = torch.tensor(near)
    flat = torch.cat([flat, torch.zeros((-len(flat)) % 15)])
    groups = [torch.cat([torch.tensor([168.0]), torch.rand(15, generator=gen) * 100])]
    groups += [torch.cat([torch.tensor([6.0]), g]) for g in flat.reshape(-1, 15)]
    vs = e4m3_values()
    for lo, hi in zip(vs, vs[1:]):
        a = 6.0 * ((lo + hi) / 2) / 16.0
        for f in (1.0, 1.0 - 2 ** -12, 1.0 + 2 ** -12):
            g = (torch.rand(16, generator=gen) * 2 - 1) * a
            g[5] = -a * f if lo > 8 else a * f
            groups.append(g)
    groups.append(torch.zeros(16))
    groups.append(torch.full((16,), 1e-45))
    for _ in range(16):
        groups.append((torch.rand(16, generator=gen) * 2 - 1) * 10 ** (torch.rand(1, generator=gen)
                                                                       * 6 - 4))
    if len(groups) % 2:
        groups.append(torch.zeros(16))
    out = {"edges.weight": torch.stack(groups).reshape(-1, 32)}
    out["zero.weight"] = torch.zeros(8, 32)
    out["tiny.weight"] = torch.randn(8, 32, generator=gen) * 1e-37
    out["small.weight"] = torch.randn(8, 32, generator=gen) * 0.005
    out["mid.weight"] = torch.randn(8, 32, generator=gen) * 0.02
    if dtype != torch.float16:
        out["huge.weight"] = torch.randn(8, 32, generator=gen) * 1e30
    return {k: v.to(dtype).contiguous() for k, v in out.items()}


def run_cli(src, out, device="host", extra=()):
    p = subprocess.run([os.environ["MQ_CLI"], "quantize", src, "-o", out, "-q", "--device", device,
                        "--preset", "NVFP4A16", *extra], capture_output=True, text=True)
    check(p.returncode == 0, "quantize %s: exit %d: %s" % (out, p.returncode, p.stderr))
    return p.returncode == 0


def same_bytes(a, b):
    return (a is not None and a.dtype == b.dtype and a.shape == b.shape
            and torch.equal(a.view(torch.uint8), b.view(torch.uint8)))


def check_edges(tmp):
    from safetensors.torch import load_file, save_file
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        tag = "edges %s" % str(dtype)[6:]
        ts = edge_tensors(dtype)
        # Rows of 40: groups of 16 do not divide them; kept in float.
        ragged = torch.randn(8, 40).to(dtype)
        src = os.path.join(tmp, "edges-%s.safetensors" % str(dtype)[6:])
        save_file(dict(ts, **{"ragged.weight": ragged}), src)
        theirs = {name: ct_compress(w) for name, w in ts.items()}
        for device in ("host", "cpu"):
            out = os.path.join(tmp, "edges-%s-%s.safetensors" % (str(dtype)[6:], device))
            if not run_cli(src, out, device):
                continue
            ours = load_file(out)
            check(same_bytes(ours.get("ragged.weight"), ragged)
                  and "ragged.weight_packed" not in ours,
                  "%s (%s): the ragged weight is not kept in float" % (tag, device))
            for name, t in theirs.items():
                base = name[:-len(".weight")]
                for k, v in t.items():
                    a = ours.get(base + "." + k)
                    ok = same_bytes(a, v)
                    if not ok and a is not None and a.shape == v.shape:
                        bad = (a.view(torch.uint8) != v.view(torch.uint8)).nonzero()[:3].tolist()
                        print("%s %s %s.%s: first differing bytes at %s" % (tag, device, base, k,
                                                                             bad))
                    check(ok, "%s (%s): %s.%s differs from compressed-tensors'" % (tag, device,
                                                                                 base, k))
        if dtype == torch.float16:
            gs = theirs["small.weight"]["weight_global_scale"]
            check(float(gs) == 1.0, "%s: the F16 global scale that overflows is %s, not 1"
                  % (tag, gs))


def llmc_oracle(name, src, dst, ignore):
    """llm-compressor's observers (fused as its fuse_weight_observers fuses
    them) and compressed-tensors' compression of the model's Linear layers,
    saved as llm-compressor saves a model."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig, apply_quantization_config
    observer, fuse = llmc_observers()
    _, cls, _, _ = loaders.build_models()[name]
    model = cls.from_pretrained(src).eval()
    apply_quantization_config(model, QuantizationConfig(config_groups={"group_0": scheme()},
                                                        ignore=list(ignore)))
    mods = [m for _, m in model.named_modules() if hasattr(m, "weight_global_scale")]
    for m in mods:
        m.weight_observer = observer(base_name="weight", args=m.quantization_scheme.weights)
    fuse(model)
    for m in mods:
        m.weight_observer(m.weight)
    for m in mods:
        q = m.weight_observer.get_qparams()
        m.weight_scale.data.copy_(q["scale"].reshape(m.weight_scale.shape))
        m.weight_global_scale.data.copy_(q["global_scale"].reshape(m.weight_global_scale.shape))
    for m in mods:
        del m.weight_observer
    comp = ModelCompressor.from_pretrained_model(model, FORMAT)
    comp.compress_model(model)
    model.save_pretrained(dst)
    comp.update_config(dst)


def shard_of(path, key):
    import json
    idx = os.path.join(path, "model.safetensors.index.json")
    if not os.path.exists(idx):
        return "model.safetensors"
    with open(idx) as f:
        return json.load(f)["weight_map"][key]


def check_fused(tag, ours):
    """One global scale in each q/k/v and gate/up set."""
    sets = {}
    for k, v in ours.items():
        for members, kind in ((("q_proj", "k_proj", "v_proj"), "qkv"), (("gate_proj", "up_proj"),
                                                                       "gate_up")):
            for mem in members:
                suffix = ".%s.weight_global_scale" % mem
                if k.endswith(suffix):
                    sets.setdefault((k[:-len(suffix)], kind), []).append(float(v))
    check(sets and all(len(set(g)) == 1 and len(g) > 1 for g in sets.values()),
          "%s: fused sets with differing global scales: %s" % (tag, sets))


def check_model(tmp, name, device="host"):
    tag = "%s NVFP4A16 %s" % (name, device)
    src = os.path.join(tmp, name)
    if not os.path.isdir(src):
        loaders.save_model(name, src)
    out = os.path.join(tmp, "%s-nvfp4-%s" % (name, device))
    if not run_cli(src, out, device):
        return
    qc = loaders.quantization_config(out)
    check(qc["format"] == FORMAT and qc["config_groups"]["group_0"]["format"] == FORMAT,
          "%s: format %s" % (tag, qc.get("format")))
    oracle = os.path.join(tmp, "llmc-%s-nvfp4" % name)
    if not os.path.isdir(oracle):
        llmc_oracle(name, src, oracle, qc["ignore"])
    ours, theirs = loaders.load_tensors(out), loaders.load_tensors(oracle)
    their_qc = loaders.quantization_config(oracle)
    check(their_qc["config_groups"] == qc["config_groups"],
          "%s: config_groups differ: ours %s, theirs %s" % (tag, qc["config_groups"],
                                                           their_qc["config_groups"]))
    mods = test_mx.quantized_modules
    check(mods(ours) == mods(theirs) and mods(ours),
          "%s: quantized modules differ from llm-compressor's" % tag)
    check_fused(tag, ours)
    names = [k for k in theirs if k.rsplit(".", 1)[0] in mods(theirs)]
    f32 = loaders.build_models()[name][2] == torch.float32
    same = 0
    for k in names:
        ok = same_bytes(ours.get(k), theirs[k])
        same += ok
        if f32:
            check(ok, "%s: %s differs from llm-compressor's own output" % (tag, k))
    if name.endswith("sharded"):
        q, k = ("model.layers.0.self_attn.%s.weight" % p for p in ("q_proj", "k_proj"))
        check(shard_of(src, q) != shard_of(src, k),
              "%s: q_proj and k_proj should lie in different shards" % tag)
    if device != "host":
        return
    test_mx.check_inputs(tag, src, out, "NVFP4A16", ours)
    ref = loaders.load_tensors(src)
    if not f32:
        e_ours, e_theirs = test_mx.deq_error(out, ref), test_mx.deq_error(oracle, ref)
        print("%s: %.1f%% of tensors identical to llm-compressor's; weight error %.6g vs %.6g"
              % (tag, 100.0 * same / max(len(names), 1), e_ours, e_theirs))
        check(e_ours <= e_theirs * 1.001, "%s: our weight error is larger" % tag)
    else:
        test_mx.check_dequantize(tag, out, oracle, "NVFP4A16")
    test_mx.check_load(tag, name, out, oracle)


def check_vllm(tmp):
    """vLLM's scheme selection (loaders.vllm_scheme, restated) for the
    config.json of each FP4 and MX preset: NVFP4A16 CompressedTensorsW4A16Fp4,
    MXFP4A16 and MXFP4 CompressedTensorsW4A16Mxfp4, the MXFP8 presets none."""
    src = os.path.join(tmp, "llama-f32")
    loaders.save_model("llama-f32", src)
    for preset, s in loaders.MX_PRESETS.items():
        out = os.path.join(tmp, "vllm-" + preset)
        p = subprocess.run([os.environ["MQ_CLI"], "quantize", src, "-o", out, "-q", "--device",
                            "host", "--preset", preset], capture_output=True, text=True)
        check(p.returncode == 0, "quantize %s: %s" % (preset, p.stderr))
        if p.returncode != 0:
            continue
        try:
            got = set(loaders.vllm_scheme(loaders.quantization_config(out)).values())
        except (AssertionError, NotImplementedError) as e:
            got = {type(e).__name__}
        want = {s["vllm"] or "NotImplementedError"}
        check(got == want, "%s: vLLM picks %s, want %s" % (preset, got, want))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        check_vllm(tmp)
        check_edges(tmp)
        for name in ("llama256-f32", "llama256-bf16"):
            check_model(tmp, name)
        check_model(tmp, "llama256-sharded")
        check_model(tmp, "llama256-sharded", "cpu")
    finish("ok")


if __name__ == "__main__":
    main()
