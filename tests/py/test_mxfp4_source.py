"""gpt-oss MXFP4 sources (quant_method "mxfp4": each expert weight stored as
NAME_blocks, two e2m1 codes a byte, and NAME_scales, an e8m0 exponent per 32
values) read by the streaming pass. The fixture is the loader tests' tiny
seeded gpt-oss in BF16 whose experts are encoded here in that layout.
Checked: the experts we write (3-D MoE tensors, which no compressed-tensors
scheme covers, so kept dequantized in the model's dtype) are transformers'
own dequantization bit for bit, and what its MXFP4 loader gives; re-quantized
to W8A8, W4A16 and FP8_DYNAMIC the output has the same bytes as quantizing
the float model the source stands for, loads with a plain from_pretrained and
its logits are close to the source's; `dequantize DIR` gives the float model
(the same logits) and the very tensors of transformers' own dequantized save and `--dtype fp16` the experts cast to FP16."""
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
    from transformers.integrations.mxfp4 import FP4_VALUES, convert_moe_packed_tensors
except ImportError as e:
    if os.environ.get("MQ_OFFLINE") == "1":
        mqcheck.skip("loader packages missing and MQ_OFFLINE=1 (%s)" % e)
    print("FAIL: this test needs torch, transformers, compressed-tensors and safetensors "
          "(tests/py/requirements.txt): %s" % e)
    sys.exit(1)

import loaders  # noqa: E402

NAME = "gpt-oss"
EXPERTS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")
MIN_COS = {"W8A8": 0.999, "W4A16": 1.0, "FP8_DYNAMIC": 1.0}


def encode(w):
    """An expert weight [E, in, out] as gpt-oss stores it: (blocks, scales)."""
    wt = w.float().transpose(1, 2).contiguous()  # [E, out, in]
    e, out, inn = wt.shape
    g = wt.reshape(e, out, inn // 32, 32)
    amax = g.abs().amax(-1).clamp(min=2.0 ** -100)
    x = (torch.floor(torch.log2(amax)) - 2 + 127).clamp(0, 254)
    q = g / torch.pow(2.0, x - 127).unsqueeze(-1)
    lut = torch.tensor(FP4_VALUES)
    codes = (q.unsqueeze(-1) - lut).abs().argmin(-1).to(torch.uint8)
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return blocks.contiguous(), x.to(torch.uint8).contiguous()


def make_source(tmp):
    """(float model dir the source stands for, MXFP4 source dir, dequantized experts)."""
    orig = os.path.join(tmp, "orig")
    builder = loaders.build_models()[NAME][0]
    loaders._seeded(builder).to(torch.bfloat16).save_pretrained(orig)
    t = load_file(os.path.join(orig, "model.safetensors"))
    src = os.path.join(tmp, "mxfp4")
    shutil.copytree(orig, src)
    out, deq = {}, {}
    for k, v in t.items():
        if k.endswith(EXPERTS):
            blocks, scales = encode(v)
            out[k + "_blocks"], out[k + "_scales"] = blocks, scales
            deq[k] = convert_moe_packed_tensors(blocks, scales, dtype=torch.bfloat16)
        else:
            out[k] = v
    check(len(deq) == 4, "expected 4 expert weights, found %d" % len(deq))
    save_file(out, os.path.join(src, "model.safetensors"), metadata={"format": "pt"})
    cfg = json.load(open(os.path.join(orig, "config.json")))
    cfg["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    json.dump(cfg, open(os.path.join(src, "config.json"), "w"), indent=2)
    flt = os.path.join(tmp, "float")
    shutil.copytree(orig, flt)
    t.update(deq)
    save_file(t, os.path.join(flt, "model.safetensors"), metadata={"format": "pt"})
    return flt, src, deq


def same_bytes(a, b):
    return (a.dtype == b.dtype and a.shape == b.shape and
            a.contiguous().view(torch.uint8).equal(b.contiguous().view(torch.uint8)))


def main():
    tmp = tempfile.mkdtemp(prefix="mq-mxfp4src-")
    try:
        flt, src, deq = make_source(tmp)
        # transformers' MXFP4 loader, dequantizing on the CPU, reads the fixture
        # as convert_moe_packed_tensors does.
        tm = transformers.AutoModelForCausalLM.from_pretrained(
            src, dtype=torch.bfloat16,
            quantization_config=transformers.Mxfp4Config(dequantize=True))
        sd = tm.state_dict()
        for k, v in deq.items():
            check(same_bytes(sd[k], v), "%s: transformers' MXFP4 loader disagrees" % k)
        a = os.path.join(tmp, "a-W4A16")
        for preset, want in MIN_COS.items():
            a, b = os.path.join(tmp, "a-" + preset), os.path.join(tmp, "b-" + preset)
            run("quantize", src, "-o", a, "--preset", preset, "--device", "host", "-q")
            run("quantize", flt, "-o", b, "--preset", preset, "--device", "host", "-q")
            ta = load_file(os.path.join(a, "model.safetensors"))
            tb = load_file(os.path.join(b, "model.safetensors"))
            check(sorted(ta) == sorted(tb), "%s: tensor names differ: %s" %
                  (preset, sorted(set(ta) ^ set(tb))))
            for k in set(ta) & set(tb):
                check(same_bytes(ta[k], tb[k]), "%s: %s differs from the float model's" %
                      (preset, k))
            for k, v in deq.items():
                check(k in ta and same_bytes(ta[k], v),
                      "%s: expert %s is not transformers' dequantization" % (preset, k))
            cfg = json.load(open(os.path.join(a, "config.json")))
            check(cfg.get("quantization_config", {}).get("quant_method") == "compressed-tensors",
                  "%s: the source's quantization_config was not replaced" % preset)
            model, info, _ = loaders.plain_load(NAME, a)
            check(not info["missing_keys"] and not info["unexpected_keys"],
                  "%s: keys %s" % (preset, info))
            inputs = loaders.model_inputs(NAME, tm)
            y = loaders.outputs(tm, inputs)
            cos = loaders.cosine_per_row(y, loaders.outputs(model, inputs))
            fm, _, _ = loaders.plain_load(NAME, b)
            floor = loaders.cosine_per_row(y, loaders.outputs(fm, inputs))
            print("%s: logits cosine %.6f against the source (the float model's own: %.6f)"
                  % (preset, cos, floor))
            check(cos >= min(want, floor) - 1e-9,
                  "%s: logits cosine %.5f < %.4f" % (preset, cos, min(want, floor)))
        # --dtype fp16: the experts (and every float weight) cast to FP16.
        h = os.path.join(tmp, "f16")
        run("quantize", src, "-o", h, "--dtype", "fp16", "--device", "host", "-q")
        th = load_file(os.path.join(h, "model.safetensors"))
        for k, v in deq.items():
            check(k in th and torch.equal(th[k], v.to(torch.float16)),
                  "--dtype fp16: expert %s is not the dequantization cast to FP16" % k)
        check("quantization_config" not in json.load(open(os.path.join(h, "config.json"))),
              "--dtype fp16 kept a quantization_config")
        dq = os.path.join(tmp, "dequantized")
        run("dequantize", src, "-o", dq)
        cfg = json.load(open(os.path.join(dq, "config.json")))
        check("quantization_config" not in cfg, "dequantize kept a quantization_config")
        # transformers' own dequantized save: the same tensors, byte for byte,
        # and no quantization_config either.
        saved = os.path.join(tmp, "saved")
        tm.save_pretrained(saved)
        ts, td = load_file(os.path.join(saved, "model.safetensors")), load_file(
            os.path.join(dq, "model.safetensors"))
        check(sorted(ts) == sorted(td), "dequantize: names differ from transformers' save: %s"
              % sorted(set(ts) ^ set(td)))
        bad = [k for k in ts if k in td and not same_bytes(ts[k], td[k])]
        check(not bad, "dequantize: differs from transformers' dequantized save: %s" % bad[:4])
        check("quantization_config" not in json.load(open(os.path.join(saved, "config.json"))),
              "transformers' dequantized save has a quantization_config")
        model, info, _ = loaders.plain_load(NAME, dq)
        check(not info["missing_keys"] and not info["unexpected_keys"], "dequantize: keys %s" % info)
        fm, _, _ = loaders.plain_load(NAME, flt)
        inputs = loaders.model_inputs(NAME, fm)
        check(torch.equal(loaders.outputs(model, inputs), loaders.outputs(fm, inputs)),
              "dequantize: logits differ from the float model's")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
