"""FP8 block sources of the shapes they ship in: a tiny seeded
DeepSeek-V3-shaped model (MLA projections, one with a partial 128x128 block;
a dense first layer; routed and shared experts) and a Qwen3, in BF16, whose
Linear weights our FP8_BLOCK preset turns into E4M3 blocks, relabelled as
DeepSeek's layout (weight_scale_inv, quant_method fp8). Checked: transformers'
fine-grained FP8 loader reads the fixtures and agrees with our dequantization
bit for bit where every dimension is a multiple of 128 (its integration
derives the block from the scale grid, which is wrong for partial blocks,
where DeepSeek's reference, torch here, is the oracle); every preset gives
the bytes of quantizing the float model the source stands for; a subset
loads with a plain from_pretrained, its logits close to the source's."""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import mqcheck  # noqa: E402
from mqcheck import check, finish, run  # noqa: E402

try:
    import torch
    import transformers
    import compressed_tensors  # noqa: F401
    from safetensors.torch import load_file, save_file
except ImportError as e:
    if os.environ.get("MQ_OFFLINE") == "1":
        mqcheck.skip("loader packages missing and MQ_OFFLINE=1 (%s)" % e)
    print("FAIL: this test needs torch, transformers, compressed-tensors and safetensors "
          "(tests/py/requirements.txt): %s" % e)
    sys.exit(1)

import loaders  # noqa: E402

MODELS = ["deepseek-v3", "qwen3"]
PRESETS = ["W8A8", "W8A16", "W4A16", "W4A16_ASYM", "FP8_DYNAMIC", "FP8_BLOCK", "MXFP4A16",
           "MXFP4", "MXFP8A16", "MXFP8"]
# Loaded and run (the loader tests' thresholds: W8A8 0.999; the others never
# below the float model's own output of the same preset).
LOADED = {"W8A8": 0.999, "W4A16": 1.0, "FP8_DYNAMIC": 1.0}


def upstream_limit(name, preset):
    """The loader tests' upstream limits that these fixtures meet."""
    if name == "deepseek-v3" and preset == "W8A8":
        return "transformers 5 fuses MoE experts and accepts only FP8 or packed experts"
    return None


def same_bytes(a, b):
    return (a.dtype == b.dtype and a.shape == b.shape and
            a.contiguous().view(torch.uint8).equal(b.contiguous().view(torch.uint8)))


def make_source(name, tmp):
    """(float model dir the source stands for, FP8 block source dir, dequantized weights)."""
    orig = os.path.join(tmp, name + "-orig")
    loaders.save_model(name, orig)
    blocks = os.path.join(tmp, name + "-blocks")
    run("quantize", orig, "-o", blocks, "--preset", "FP8_BLOCK", "--device", "host", "-q")
    src = os.path.join(tmp, name + "-fp8")
    shutil.copytree(blocks, src)
    t = load_file(os.path.join(blocks, "model.safetensors"))
    out, deq = {}, {}
    for k, v in t.items():
        if k.endswith(".weight_scale"):
            continue
        if v.dtype == torch.float8_e4m3fn:
            s = t[k + "_scale"]
            out[k + "_scale_inv"] = s
            rows, cols = v.shape
            # DeepSeek's weight_dequant: each 128x128 block (the last partial) times its scale.
            sx = s.float().repeat_interleave(128, 0)[:rows].repeat_interleave(128, 1)[:, :cols]
            deq[k] = (v.float() * sx).to(torch.bfloat16)
        out[k] = v
    cfg = json.load(open(os.path.join(blocks, "config.json")))
    cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3",
                                  "quant_method": "fp8", "weight_block_size": [128, 128]}
    json.dump(cfg, open(os.path.join(src, "config.json"), "w"), indent=2)
    # What transformers' FP8 loader can read: whole blocks only.
    whole = src + "-whole"
    shutil.copytree(src, whole)
    save_file(out, os.path.join(whole, "model.safetensors"), metadata={"format": "pt"})
    # Weights our presets keep in float (a dimension not a multiple of 128)
    # are stored as DeepSeek's checkpoints have them: partial edge blocks.
    for k, v in t.items():
        if k.endswith("kv_a_proj_with_mqa.weight") and v.dtype == torch.bfloat16:
            q, s = encode_blocks(v)
            out[k], out[k + "_scale_inv"] = q, s
            rows, cols = v.shape
            sx = s.float().repeat_interleave(128, 0)[:rows].repeat_interleave(128, 1)[:, :cols]
            deq[k] = (q.float() * sx).to(torch.bfloat16)
    save_file(out, os.path.join(src, "model.safetensors"), metadata={"format": "pt"})
    flt = os.path.join(tmp, name + "-float")
    shutil.copytree(orig, flt)
    ft = load_file(os.path.join(orig, "model.safetensors"))
    ft.update(deq)
    save_file(ft, os.path.join(flt, "model.safetensors"), metadata={"format": "pt"})
    return flt, src, whole, deq


def encode_blocks(w):
    """E4M3 codes and F32 scales (amax / 448) of each 128x128 block, the last partial."""
    rows, cols = w.shape
    br, bc = -(-rows // 128), -(-cols // 128)
    s = torch.empty(br, bc)
    q = torch.empty(rows, cols, dtype=torch.float8_e4m3fn)
    for i in range(br):
        for j in range(bc):
            blk = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128].float()
            s[i, j] = blk.abs().amax().clamp(min=1e-12) / 448.0
            q[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = (blk / s[i, j]).to(q.dtype)
    return q, s


def check_transformers(name, src, whole, flt, deq):
    """Our dequantization against torch's, and transformers' FP8 loader (of
    the whole-block source) against the float model (ours)."""
    kept = src + "-kept"
    run("quantize", src, "-o", kept, "--dtype", "fp16", "--device", "host", "-q")
    ours = load_file(os.path.join(kept, "model.safetensors"))
    for k, v in deq.items():
        check(torch.equal(ours[k], v.to(torch.float16)), "%s: %s: ours differs from torch's" %
              (name, k))
    tm = transformers.AutoModelForCausalLM.from_pretrained(
        whole, dtype=torch.bfloat16,
        quantization_config=transformers.FineGrainedFP8Config(dequantize=True))
    fm, _, _ = loaders.plain_load(name, flt)
    sd, fsd = tm.state_dict(), fm.state_dict()
    # transformers 5 fuses the experts on loading: compare whole state dicts
    # with the float model's, which holds our dequantization.
    n = 0
    for k, v in fsd.items():
        whole = all(d % 128 == 0 for d in v.shape)
        if k not in sd or not whole:
            continue
        check(same_bytes(sd[k].to(v.dtype), v), "%s: transformers' FP8 loader disagrees on %s" %
              (name, k))
        n += 1
    print("%s: transformers' FP8 loader: %d tensors bit for bit" % (name, n))
    return fm


def main():
    torch.manual_seed(0)
    tmp = tempfile.mkdtemp(prefix="mq-fp8models-")
    try:
        for name in MODELS:
            flt, src, whole, deq = make_source(name, tmp)
            check(len(deq) > 0, "%s: no FP8 block weights" % name)
            partial = [k for k, v in deq.items() if any(d % 128 for d in v.shape)]
            if name == "deepseek-v3":
                check(partial, "%s: no weight with a partial block" % name)
            tm = check_transformers(name, src, whole, flt, deq)
            inputs = loaders.model_inputs(name, tm)
            y = loaders.outputs(tm, inputs)
            for preset in PRESETS:
                a, b = os.path.join(tmp, "a-" + preset), os.path.join(tmp, "b-" + preset)
                run("quantize", src, "-o", a, "--preset", preset, "--device", "host", "-q")
                run("quantize", flt, "-o", b, "--preset", preset, "--device", "host", "-q")
                ta = load_file(os.path.join(a, "model.safetensors"))
                tb = load_file(os.path.join(b, "model.safetensors"))
                check(sorted(ta) == sorted(tb), "%s %s: tensor names differ" % (name, preset))
                diff = [k for k in set(ta) & set(tb) if not same_bytes(ta[k], tb[k])]
                check(not diff, "%s %s: differs from the float model's: %s" %
                      (name, preset, sorted(diff)[:4]))
                limit = upstream_limit(name, preset)
                if limit:
                    # As the float model's own output does: both fail to load.
                    for d in (a, b):
                        try:
                            loaders.plain_load(name, d)
                            check(False, "%s %s: expected the upstream failure (%s)" %
                                  (name, preset, limit))
                        except Exception as e:  # noqa: BLE001
                            err = str(e)
                    print("%s %s: fails upstream as the float model's output does (%s: %s)" %
                          (name, preset, limit, err.splitlines()[0][:80]))
                elif preset in LOADED:
                    model, info, _ = loaders.plain_load(name, a)
                    check(not info["missing_keys"] and not info["unexpected_keys"],
                          "%s %s: keys %s" % (name, preset, info))
                    cos = loaders.cosine_per_row(y, loaders.outputs(model, inputs))
                    fm, _, _ = loaders.plain_load(name, b)
                    floor = loaders.cosine_per_row(y, loaders.outputs(fm, inputs))
                    want = min(LOADED[preset], floor)
                    print("%s %s: logits cosine %.6f against the source (the float model's "
                          "own: %.6f)" % (name, preset, cos, floor))
                    check(cos >= want - 1e-9, "%s %s: logits cosine %.5f < %.4f" %
                          (name, preset, cos, want))
                shutil.rmtree(a, ignore_errors=True)
                shutil.rmtree(b, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
