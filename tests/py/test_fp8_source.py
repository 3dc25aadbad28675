"""FP8 block sources (DeepSeek-V3's layout: F8_E4M3 weights with
weight_scale_inv, quantization_config {quant_method: fp8, weight_block_size})
read by the streaming pass. The fixture is a tiny seeded Llama whose Linear
weights our FP8_BLOCK preset turns into 128x128 blocks, relabelled as such a
checkpoint. Checked: its values, dequantized, are torch's e4m3 * scale rounded
to the model's BF16 bit for bit, and what transformers' own fine-grained FP8
loader gives (when accelerate, which it needs, is installed), cast to FP16 by
--dtype fp16 bit for bit too, and `dequantize DIR` gives the float model
itself (the same logits); re-quantized
to W8A8, W4A16 and FP8_DYNAMIC it gives the same bytes as the float model it
stands for, loads with a plain from_pretrained and runs, its logits close to
the source's."""
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
    import transformers  # noqa: F401
    import compressed_tensors  # noqa: F401
    from safetensors.torch import load_file, save_file
except ImportError as e:
    if os.environ.get("MQ_OFFLINE") == "1":
        mqcheck.skip("loader packages missing and MQ_OFFLINE=1 (%s)" % e)
    print("FAIL: this test needs torch, transformers, compressed-tensors and safetensors "
          "(tests/py/requirements.txt): %s" % e)
    sys.exit(1)

import loaders  # noqa: E402

NAME = "llama256-bf16"
# The loader tests' thresholds: W8A8 0.999; the others never below the
# float model's own output of the same preset.
MIN_COS = {"W8A8": 0.999, "W4A16": 1.0, "FP8_DYNAMIC": 1.0}


def make_source(tmp):
    """(float model dir the source stands for, FP8 block source dir)."""
    orig = os.path.join(tmp, "orig")
    loaders.save_model(NAME, orig)
    blocks = os.path.join(tmp, "blocks")
    run("quantize", orig, "-o", blocks, "--preset", "FP8_BLOCK", "--device", "host", "-q")
    src = os.path.join(tmp, "fp8")
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
            sx = s.float().repeat_interleave(128, 0)[:rows].repeat_interleave(128, 1)[:, :cols]
            deq[k] = (v.float() * sx).to(torch.bfloat16)
        out[k] = v
    save_file(out, os.path.join(src, "model.safetensors"), metadata={"format": "pt"})
    cfg = json.load(open(os.path.join(blocks, "config.json")))
    cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3",
                                  "quant_method": "fp8", "weight_block_size": [128, 128]}
    json.dump(cfg, open(os.path.join(src, "config.json"), "w"), indent=2)
    # The float model: the original with every block weight as its dequantized values.
    flt = os.path.join(tmp, "float")
    shutil.copytree(orig, flt)
    ft = load_file(os.path.join(orig, "model.safetensors"))
    check(set(deq) and set(deq) <= set(ft), "no FP8 block weights in the fixture")
    ft.update(deq)
    save_file(ft, os.path.join(flt, "model.safetensors"), metadata={"format": "pt"})
    return flt, src, deq


def split_source(tmp, src):
    """The source in two shards (an index beside them), layer 0's k_proj,
    v_proj and up_proj with their scales in the second."""
    t = load_file(os.path.join(src, "model.safetensors"))
    second = {k for k in t if any(k.startswith("model.layers.0.%s.weight" % m)
                                  for m in ("self_attn.k_proj", "self_attn.v_proj",
                                            "mlp.up_proj"))}
    dst = os.path.join(tmp, "fp8-split")
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    names = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    parts = ({k: v for k, v in t.items() if k not in second},
             {k: v for k, v in t.items() if k in second})
    for name, part in zip(names, parts):
        save_file(part, os.path.join(dst, name), metadata={"format": "pt"})
    index = {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in t.values())},
             "weight_map": {k: names[k in second] for k in sorted(t)}}
    json.dump(index, open(os.path.join(dst, "model.safetensors.index.json"), "w"), indent=2)
    check(len(second) == 6, "the split source's second shard holds %s" % sorted(second))
    return dst


def main():
    torch.manual_seed(0)
    tmp = tempfile.mkdtemp(prefix="mq-fp8src-")
    try:
        flt, src, deq = make_source(tmp)
        # The values: torch's dequantization, cast to FP16 as --dtype fp16 does.
        f16 = os.path.join(tmp, "f16")
        run("quantize", src, "-o", f16, "--dtype", "fp16", "--device", "host", "-q")
        got = load_file(os.path.join(f16, "model.safetensors"))
        for k, v in deq.items():
            check(torch.equal(got[k].view(torch.int16), v.to(torch.float16).view(torch.int16)),
                  "%s: dequantized values differ from torch's" % k)
        check(not any(k.endswith("_scale_inv") for k in got), "scales written by --dtype fp16")
        cfg = json.load(open(os.path.join(f16, "config.json")))
        check("quantization_config" not in cfg, "--dtype fp16 kept a quantization_config")
        # NVFP4A16 from the source: its first pass dequantizes for each weight's
        # amax, q/k/v and gate/up share their file's global scale: the same
        # bytes as from the float model the source stands for.
        nv = {}
        for d, o in ((src, "nv-src"), (flt, "nv-float")):
            run("quantize", d, "-o", os.path.join(tmp, o), "--preset", "NVFP4A16", "--device",
                "host", "-q")
            nv[o] = load_file(os.path.join(tmp, o, "model.safetensors"))
        check(sorted(nv["nv-src"]) == sorted(nv["nv-float"]) and all(
            torch.equal(nv["nv-src"][k].view(torch.uint8), nv["nv-float"][k].view(torch.uint8))
            for k in nv["nv-float"]), "NVFP4A16 from the FP8 source differs from the float model's")
        # The same source in two shards, layer 0's q_proj and gate_proj in the
        # first, its k/v_proj and up_proj in the second: the directory's pass
        # dequantizes them too, so the sets still share one global scale and
        # the bytes are still the float model's.
        # On PoCL too, where found (its dequantize_source in that pass).
        split = split_source(tmp, src)
        devices = ["host"] + ["cpu"] * ("Device #" in mqcheck.cli("devices")[1])
        for device in devices:
            o = os.path.join(tmp, "nv-split-" + device)
            run("quantize", split, "-o", o, "--preset", "NVFP4A16", "--device", device, "-q")
            got = loaders.load_tensors(o)
            bad = [k for k in nv["nv-float"] if k not in got or not torch.equal(
                got[k].view(torch.uint8), nv["nv-float"][k].view(torch.uint8))]
            check(sorted(got) == sorted(nv["nv-float"]) and not bad,
                  "NVFP4A16 from the FP8 source in two shards (%s) differs from the float "
                  "model's: %s" % (device, bad[:4]))
        # Every weight kept: written as our BF16 dequantization, which must be
        # what transformers' own fine-grained FP8 loader gives (it needs accelerate).
        kept = os.path.join(tmp, "kept")
        run("quantize", src, "-o", kept, "--exclude", "*_proj.weight", "--device", "host", "-q")
        ours = load_file(os.path.join(kept, "model.safetensors"))
        for k, v in deq.items():
            check(ours[k].dtype == torch.bfloat16 and torch.equal(ours[k].view(torch.int16),
                                                                  v.view(torch.int16)),
                  "%s: kept weight differs from torch's dequantization" % k)
        try:
            import accelerate  # noqa: F401
            have_accelerate = True
        except ImportError:
            have_accelerate = False
            print("note: accelerate is not installed: transformers' FP8 loader not compared")
        if have_accelerate:
            tm = transformers.AutoModelForCausalLM.from_pretrained(
                src, dtype=torch.bfloat16,
                quantization_config=transformers.FineGrainedFP8Config(dequantize=True))
            sd = tm.state_dict()
            for k in deq:
                check(sd[k].dtype == torch.bfloat16 and torch.equal(sd[k].view(torch.int16),
                                                                    ours[k].view(torch.int16)),
                      "%s: transformers' FP8 loader disagrees with our dequantization" % k)
            print("transformers' FP8 loader: %d weights bit for bit" % len(deq))
        model, _, _ = loaders.plain_load(NAME, f16)
        ref, _, _ = loaders.plain_load(NAME, flt)
        inputs = loaders.model_inputs(NAME, ref)
        y = loaders.outputs(ref, inputs)
        print("fp16: logits cosine %.6f" % loaders.cosine_per_row(y, loaders.outputs(model, inputs)))
        # dequantize of the directory: the float model itself, loaded as such.
        dq = os.path.join(tmp, "dequantized")
        run("dequantize", src, "-o", dq)
        cfg = json.load(open(os.path.join(dq, "config.json")))
        check("quantization_config" not in cfg, "dequantize kept a quantization_config")
        model, info, _ = loaders.plain_load(NAME, dq)
        check(not info["missing_keys"] and not info["unexpected_keys"], "dequantize: keys %s" % info)
        check(torch.equal(loaders.outputs(model, inputs), y),
              "dequantize: logits differ from the float model's")
        for preset, want in MIN_COS.items():
            a, b = os.path.join(tmp, "a-" + preset), os.path.join(tmp, "b-" + preset)
            run("quantize", src, "-o", a, "--preset", preset, "--device", "host", "-q")
            run("quantize", flt, "-o", b, "--preset", preset, "--device", "host", "-q")
            # safetensors' save_file orders the float model's tensors its own way:
            # the same tensors, byte for byte, not the same file.
            ta = load_file(os.path.join(a, "model.safetensors"))
            tb = load_file(os.path.join(b, "model.safetensors"))
            check(sorted(ta) == sorted(tb), "%s: tensor names differ" % preset)
            for k in set(ta) & set(tb):
                same = (ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape and
                        ta[k].contiguous().view(torch.uint8).equal(
                            tb[k].contiguous().view(torch.uint8)))
                check(same, "%s: %s differs from the float model's output" % (preset, k))
            same = (open(os.path.join(a, "config.json"), "rb").read() ==
                    open(os.path.join(b, "config.json"), "rb").read())
            check(same, "%s: config.json differs from the float model's output" % preset)
            model, info, _ = loaders.plain_load(NAME, a)
            check(not info["missing_keys"] and not info["unexpected_keys"],
                  "%s: keys %s" % (preset, info))
            cos = loaders.cosine_per_row(y, loaders.outputs(model, inputs))
            fm, _, _ = loaders.plain_load(NAME, b)
            floor = loaders.cosine_per_row(y, loaders.outputs(fm, inputs))
            print("%s: logits cosine %.6f against the source (the float model's own: %.6f)"
                  % (preset, cos, floor))
            check(cos >= min(want, floor) - 1e-9,
                  "%s: logits cosine %.5f < %.4f" % (preset, cos, min(want, floor)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
