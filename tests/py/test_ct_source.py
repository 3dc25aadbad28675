"""compressed-tensors checkpoints as sources: a tiny seeded Llama quantized by
monoquant to each format we write (int-quantized, pack-quantized int8/int4
sym and asym by group and channel, float-quantized FP8 by channel, tensor
and 128x128 block, the MX formats, NVFP4), then re-quantized to another
preset.
The result must have the bytes of quantizing compressed-tensors' own
decompression of the source (as transformers loads it, run_compressed
False) in F32, config.json included, and load with a plain
from_pretrained; `dequantize DIR` of the source gives that decompression,
and `--dtype fp16` that decompression cast to FP16; a BF16 source with
`--dequant-dtype f32` gives the bytes of quantizing its F32 decompression
(NVFP4's decompressor gives BF16 values whatever the scales' dtype, so there
the BF16 decompression widened). FP8 sources, dequantized by the back end,
give the same bytes on OpenCL (where a device is found) as on the host."""
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

NAME = "llama256-f32"
# The source (its CLI arguments) -> the preset it is re-quantized to.
PAIRS = [
    (["--preset", "W8A8"], "W4A16"),
    (["--preset", "W8A8", "--per-tensor"], "FP8_DYNAMIC"),
    (["--preset", "W8A16"], "FP8_BLOCK"),
    (["--preset", "W4A16"], "W8A8"),
    (["--preset", "W4A16_ASYM"], "FP8_DYNAMIC"),
    (["--scheme", "asym"], "W4A16"),
    (["--preset", "FP8_DYNAMIC"], "W8A16"),
    (["--preset", "FP8_DYNAMIC", "--per-tensor"], "W8A8"),
    (["--preset", "FP8_BLOCK"], "W8A8"),
    (["--preset", "MXFP4A16"], "W8A8"),
    (["--preset", "MXFP8A16"], "W4A16"),
    (["--preset", "NVFP4A16"], "W8A8"),
    (["--preset", "NVFP4A16"], "NVFP4A16"),
]
# Pairs whose source is also dequantized (`dequantize DIR`, `--dtype fp16`).
DEQUANTIZED = (0, 3, 6, 9, 11)
# FP8 sources, which the back end dequantizes as FP8 blocks (per channel, per
# tensor, 128x128): where an OpenCL device is found, its output must be the
# host's, byte for byte.
ON_DEVICE = (6, 7, 8)


def same_bytes(a, b):
    return (a.dtype == b.dtype and a.shape == b.shape and
            a.contiguous().view(torch.uint8).equal(b.contiguous().view(torch.uint8)))


def decompressed(src, orig, dst):
    """The float model `src` stands for, as compressed-tensors decompresses it
    on loading: the original checkpoint with every quantized weight replaced."""
    cls = loaders.build_models()[NAME][1]
    m = cls.from_pretrained(src, quantization_config=transformers.CompressedTensorsConfig(
        dequantize=True))
    sd = m.state_dict()
    shutil.copytree(orig, dst)
    t = load_file(os.path.join(orig, "model.safetensors"))
    quantized = {k[:-len("_scale")] for k in load_file(os.path.join(src, "model.safetensors"))
                 if k.endswith(".weight_scale")}
    n = 0
    for k in t:
        if k in quantized:
            t[k] = sd[k].to(t[k].dtype).contiguous()
            n += 1
    check(n > 0, "%s: no decompressed weights" % src)
    save_file(t, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    return t


def decompressed_f32(src, orig, dst, preset):
    """The same in F32: compressed-tensors' decompressor of the format given
    each layer's scale in F32 (transformers' loader decompresses in the
    checkpoint's dtype, then casts)."""
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import preset_name_to_scheme
    qc = loaders.quantization_config(src)
    comp = BaseCompressor.get_value_from_registry(qc["format"])
    qs = preset_name_to_scheme(preset, ["Linear"])
    st = load_file(os.path.join(src, "model.safetensors"))
    shutil.copytree(orig, dst)
    t = load_file(os.path.join(orig, "model.safetensors"))
    for k in [k for k in st if k.endswith(".weight_scale")]:
        m = k[:-len(".weight_scale")]
        local = {n[len(m) + 1:]: v for n, v in st.items() if n.rsplit(".", 1)[0] == m}
        local["weight_scale"] = local["weight_scale"].float()
        t[m + ".weight"] = comp.decompress(local, qs)["weight"].float().contiguous()
    save_file(t, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})


def main():
    tmp = tempfile.mkdtemp(prefix="mq-ctsrc-")
    devices = mqcheck.cli("devices")[1]
    has_cl = "CPU" in devices or "GPU" in devices
    try:
        orig = os.path.join(tmp, "orig")
        loaders.save_model(NAME, orig)
        for i, (src_args, target) in enumerate(PAIRS):
            tag = "%s -> %s" % (" ".join(src_args), target)
            src, flt = os.path.join(tmp, "src%d" % i), os.path.join(tmp, "flt%d" % i)
            run("quantize", orig, "-o", src, "--device", "host", "-q", *src_args)
            want = decompressed(src, orig, flt)
            a, b = os.path.join(tmp, "a%d" % i), os.path.join(tmp, "b%d" % i)
            run("quantize", src, "-o", a, "--preset", target, "--device", "host", "-q")
            run("quantize", flt, "-o", b, "--preset", target, "--device", "host", "-q")
            ta = load_file(os.path.join(a, "model.safetensors"))
            tb = load_file(os.path.join(b, "model.safetensors"))
            check(sorted(ta) == sorted(tb), "%s: tensor names differ: %s" %
                  (tag, sorted(set(ta) ^ set(tb))))
            diff = [k for k in set(ta) & set(tb) if not same_bytes(ta[k], tb[k])]
            check(not diff, "%s: differs from quantizing the decompression: %s" %
                  (tag, sorted(diff)[:4]))
            same = (open(os.path.join(a, "config.json"), "rb").read() ==
                    open(os.path.join(b, "config.json"), "rb").read())
            check(same, "%s: config.json differs from the decompression's" % tag)
            if has_cl and i in ON_DEVICE:
                c = os.path.join(tmp, "cl%d" % i)
                run("quantize", src, "-o", c, "--preset", target, "--device", "opencl", "-q")
                tc = load_file(os.path.join(c, "model.safetensors"))
                bad = [k for k in ta if k not in tc or not same_bytes(ta[k], tc[k])]
                check(not bad, "%s: OpenCL differs from the host: %s" % (tag, bad[:4]))
                shutil.rmtree(c, ignore_errors=True)
            model, info, _ = loaders.plain_load(NAME, a)
            check(not info["missing_keys"] and not info["unexpected_keys"],
                  "%s: keys %s" % (tag, info))
            if i in DEQUANTIZED:
                # dequantize DIR: compressed-tensors' decompression, as a plain checkpoint.
                dq = os.path.join(tmp, "dq%d" % i)
                run("dequantize", src, "-o", dq)
                check("quantization_config" not in json.load(open(os.path.join(dq, "config.json"))),
                      "%s: dequantize kept a quantization_config" % tag)
                td = load_file(os.path.join(dq, "model.safetensors"))
                bad = [k for k in want if k not in td or not same_bytes(td[k], want[k])]
                check(not bad, "%s: dequantize differs from the decompression: %s" %
                      (tag, bad[:4]))
                # --dtype fp16: that decompression cast to FP16, as of a float model.
                h = os.path.join(tmp, "f16-%d" % i)
                run("quantize", src, "-o", h, "--dtype", "fp16", "--device", "host", "-q")
                th = load_file(os.path.join(h, "model.safetensors"))
                bad = [k for k in want if want[k].is_floating_point() and want[k].dim() == 2 and
                       (k not in th or not torch.equal(th[k], want[k].to(torch.float16)))]
                check(not bad, "%s: --dtype fp16 differs from the decompression: %s" %
                      (tag, bad[:4]))
                check("quantization_config" not in json.load(open(os.path.join(h, "config.json"))),
                      "%s: --dtype fp16 kept a quantization_config" % tag)
            print("%s: identical" % tag if not diff else "%s: %d tensors differ" % (tag, len(diff)))
            for d in (src, flt, a, b):
                shutil.rmtree(d, ignore_errors=True)
        # A BF16 source with --dequant-dtype f32: quantized from the F32
        # decompression (kept weights would still be BF16).
        orig = os.path.join(tmp, "orig-bf16")
        loaders.save_model("llama256-bf16", orig)
        for preset in ("W4A16_ASYM", "NVFP4A16", "FP8_DYNAMIC"):
            src, flt = os.path.join(tmp, "src-" + preset), os.path.join(tmp, "flt-" + preset)
            run("quantize", orig, "-o", src, "--preset", preset, "--device", "host", "-q")
            decompressed_f32(src, orig, flt, preset)
            a, b = os.path.join(tmp, "a-" + preset), os.path.join(tmp, "b-" + preset)
            run("quantize", src, "-o", a, "--preset", "W8A8", "--dequant-dtype", "f32",
                "--device", "host", "-q")
            run("quantize", flt, "-o", b, "--preset", "W8A8", "--device", "host", "-q")
            ta = load_file(os.path.join(a, "model.safetensors"))
            tb = load_file(os.path.join(b, "model.safetensors"))
            diff = [k for k in set(ta) | set(tb) if k not in ta or k not in tb or
                    not same_bytes(ta[k], tb[k])]
            check(not diff, "BF16 %s --dequant-dtype f32: differs from quantizing the F32 "
                  "decompression: %s" % (preset, sorted(diff)[:4]))
            check(any(v.dtype == torch.float32 for k, v in ta.items() if k.endswith("_scale")),
                  "BF16 %s --dequant-dtype f32: no F32 scales" % preset)
            print("BF16 %s --dequant-dtype f32 -> W8A8: %s" %
                  (preset, "identical" if not diff else "%d tensors differ" % len(diff)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
