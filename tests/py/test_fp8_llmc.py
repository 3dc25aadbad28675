"""FP8 block sources against llm-compressor's model_free_ptq: the tiny
DeepSeek-V3-shaped, Qwen3 and Llama FP8 block fixtures of test_fp8_models.py,
quantized by monoquant and by llm-compressor 0.14's model_free_ptq (with
compressed-tensors' FP8BlockDequantizer as its converter, the way
llm-compressor reads such a checkpoint) to every preset model_free_ptq takes
(all of ours but NVFP4, whose static activation scales it cannot calibrate),
each preset on one of the fixtures.

- With F32 intermediate values (our --dequant-dtype f32, the converter's
  dtype float32) every byte of both outputs is the same, except: a source
  weight kept in float is ours in the model's dtype (BF16), theirs in F32,
  so theirs is compared rounded to BF16; and MXFP8 codes of a -0 value are
  +0 in ours (as compressed-tensors' compressor writes them: it adds its zero
  point before the cast), -0 in model_free_ptq's, both decoding to zero.
- With BF16 ones (both tools' default: the model's dtype) the outputs have
  the same tensor names, dtypes and shapes, the tensors kept in float are
  byte-identical, and where a quantized tensor differs (compressed-tensors
  computes scales and codes in BF16 arithmetic, we in fp32) our weight error
  against the dequantized source, summed over the quantized weights and
  measured after compressed-tensors' own decompression, is no larger than
  theirs. The fraction of identical tensors and bytes is printed. FP8_BLOCK
  and the microscaling presets (scales that are powers of two or E4M3
  codes) are byte-identical in BF16 too, but for the -0 codes above.

model_free_ptq is told to ignore lm_head, the embeddings and the layers
monoquant keeps in float (a shape the preset does not divide: model_free_ptq
stops with an error on those), so both quantize the same layers.
llm-compressor is not installed: its unpacked wheel (scripts/deps.sh) is
put on the path with empty parent packages (llmcwheel.py),
so that the package's heavy __init__ (datasets, the trainer) never runs.
Without the wheel, or torch and compressed-tensors, this fails unless
MQ_OFFLINE=1."""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from mqcheck import check, finish, run  # noqa: E402

from llmcwheel import offline_or_fail  # noqa: E402
import llmcwheel  # noqa: E402


try:
    import torch
    import compressed_tensors  # noqa: F401
    import transformers  # noqa: F401
    from safetensors.torch import load_file
except ImportError as e:
    offline_or_fail("torch, transformers, compressed-tensors or safetensors is missing (%s)" % e)

import test_fp8_models  # noqa: E402

# Each preset model_free_ptq takes, on one fixture (CI time): with F32 and
# BF16 intermediate values, or (MXFP4, MXFP8: the weights of MXFP4A16 and
# MXFP8A16, with activations in the config) in BF16 only.
BOTH = ("f32", "bf16")
CASES = [
    ("deepseek-v3", [("W8A8", BOTH), ("W4A16_ASYM", BOTH), ("FP8_BLOCK", BOTH),
                     ("MXFP8A16", BOTH), ("NVFP4A16", BOTH)]),
    ("qwen3", [("W4A16", BOTH), ("FP8_DYNAMIC", BOTH), ("MXFP4A16", BOTH), ("MXFP8", ("bf16",))]),
    ("llama256-bf16", [("W8A16", BOTH), ("MXFP4", ("bf16",))]),
]
# BF16 outputs byte-identical to model_free_ptq's (the others differ in part).
BF16_IDENTICAL = {"FP8_BLOCK", "MXFP4A16", "MXFP4", "MXFP8A16", "MXFP8", "NVFP4A16"}
ALWAYS_IGNORED = ["lm_head", "re:.*embed_tokens$"]


def import_llmc():
    """model_free_ptq and the FP8 block converter, from the unpacked wheel."""
    llmcwheel.stub_packages("entrypoints", "modifiers", "modifiers.quantization", "utils")
    from llmcompressor.entrypoints.model_free import model_free_ptq
    from compressed_tensors.entrypoints.convert.converters.fp8block_dequantizer import (
        FP8BlockDequantizer)
    from loguru import logger
    logger.remove()  # one line per tensor otherwise
    return model_free_ptq, FP8BlockDequantizer


def raw(t):
    return t.contiguous().reshape(-1).view(torch.uint8)


def kept_in_float(tensors):
    """The modules whose 2-D weight an output holds in float (not quantized)."""
    return sorted(k[:-len(".weight")] for k, v in tensors.items()
                  if k.endswith(".weight") and v.dim() == 2 and v.is_floating_point() and
                  v.dtype != torch.float8_e4m3fn and k[:-len(".weight")] + ".weight_scale" not in
                  tensors)


def quantized_modules(tensors):
    return sorted(k[:-len(".weight_scale")] for k in tensors if k.endswith(".weight_scale"))


def weight_error(tensors, ref, preset, fmt):
    """Squared error of the quantized weights against ref (the dequantized
    source), after compressed-tensors' decompressor of the format."""
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import preset_name_to_scheme
    comp = BaseCompressor.get_value_from_registry(fmt)
    qs = preset_name_to_scheme(preset, ["Linear"])
    err = 0.0
    for m in quantized_modules(tensors):
        local = {k[len(m) + 1:]: v for k, v in tensors.items() if k.rsplit(".", 1)[0] == m}
        d = comp.decompress(local, qs)["weight"].double()
        err += ((ref[m + ".weight"].double() - d) ** 2).sum().item()
    return err


def comparable(ours, theirs, k, f32):
    """Our tensor k and theirs as they should compare: with F32 intermediate
    values a source weight kept in float is ours in the model's dtype (BF16),
    theirs in the converter's (F32): theirs is rounded to BF16."""
    a, b = ours[k], theirs[k]
    if f32 and a.dtype == torch.bfloat16 and b.dtype == torch.float32:
        b = b.to(torch.bfloat16)
    return a, b


def negative_zero_codes(a, b):
    """Whether every byte where e4m3 codes a and b differ is a zero: ours
    +0, theirs -0 (model_free_ptq keeps a -0 weight's sign in MXFP8 codes;
    compressed-tensors' compressor, our oracle, adds its zero point first,
    which makes it +0)."""
    x, y = raw(a), raw(b)
    d = x != y
    return a.dtype == torch.float8_e4m3fn and bool(((x[d] == 0) & (y[d] == 0x80)).all())


def compare(tag, ours, theirs, f32, preset):
    """(identical tensors, tensors, identical bytes, bytes, negative zeros);
    names, dtypes and shapes checked."""
    check(sorted(ours) == sorted(theirs), "%s: tensor names differ: %s" %
          (tag, sorted(set(ours) ^ set(theirs))[:6]))
    same = n = same_b = n_b = nz = 0
    for k in sorted(set(ours) & set(theirs)):
        a, b = comparable(ours, theirs, k, f32)
        check(a.dtype == b.dtype and a.shape == b.shape, "%s: %s is %s %s, theirs %s %s" %
              (tag, k, a.dtype, list(a.shape), theirs[k].dtype, list(b.shape)))
        if a.dtype != b.dtype or a.shape != b.shape:
            continue
        eq = int((raw(a) == raw(b)).sum())
        n += 1
        same += eq == a.nbytes
        same_b += eq
        n_b += a.nbytes
        if eq != a.nbytes and preset.startswith("MXFP8") and negative_zero_codes(a, b):
            nz += a.nbytes - eq
    return same, n, same_b, n_b, nz


def run_case(tools, name, src, refs, preset, dt, tmp):
    model_free_ptq, FP8BlockDequantizer = tools
    f32 = dt == "f32"
    tag = "%s %s %s" % (name, preset, dt.upper())
    a, b = os.path.join(tmp, "ours"), os.path.join(tmp, "theirs")
    extra = ["--dequant-dtype", "f32"] if f32 else []
    run("quantize", src, "-o", a, "--preset", preset, "--device", "host", "-q", *extra)
    ours = load_file(os.path.join(a, "model.safetensors"))
    ignore = ALWAYS_IGNORED + [m for m in kept_in_float(ours)
                               if not m.endswith("embed_tokens") and m != "lm_head"]
    conv = FP8BlockDequantizer.from_pretrained(src, dtype=torch.float32 if f32 else torch.bfloat16)
    model_free_ptq(src, b, scheme=preset, ignore=ignore, max_workers=1, device="cpu",
                   converter=conv)
    theirs = load_file(os.path.join(b, "model.safetensors"))
    same, n, same_b, n_b, nz = compare(tag, ours, theirs, f32, preset)
    fmt = json.load(open(os.path.join(a, "config.json")))["quantization_config"]["format"]
    e_ours = weight_error(ours, refs[dt], preset, fmt)
    e_theirs = weight_error(theirs, refs[dt], preset, fmt)
    print("%s: %d of %d tensors byte-identical (%.6f of the bytes%s); weight error %.6g, "
          "theirs %.6g" % (tag, same, n, same_b / max(n_b, 1),
                           ", the other %d bytes -0 codes" % nz if nz else "", e_ours, e_theirs))
    check(n > 0 and len(quantized_modules(ours)) > 0, "%s: nothing quantized" % tag)
    if f32 or preset in BF16_IDENTICAL:
        check(same_b + nz == n_b, "%s: %d bytes differ from model_free_ptq's" %
              (tag, n_b - same_b - nz))
    check(e_ours <= e_theirs * 1.001, "%s: our weight error %.6g is larger than "
          "model_free_ptq's %.6g" % (tag, e_ours, e_theirs))
    quantized = set(quantized_modules(ours))
    kept = [k for k in ours if k in theirs and k.rsplit(".", 1)[0] not in quantized]
    diff = [k for k in kept if not torch.equal(*(raw(t) for t in comparable(ours, theirs, k,
                                                                            f32)))]
    check(not diff, "%s: tensors kept in float differ: %s" % (tag, diff[:4]))
    shutil.rmtree(a, ignore_errors=True)
    shutil.rmtree(b, ignore_errors=True)


def main():
    tools = import_llmc()
    torch.manual_seed(0)
    tmp = tempfile.mkdtemp(prefix="mq-fp8llmc-")
    try:
        for name, cases in CASES:
            flt, src, _whole, deq = test_fp8_models.make_source(name, tmp)
            check(len(deq) > 0, "%s: no FP8 block weights" % name)
            ref_bf16 = load_file(os.path.join(flt, "model.safetensors"))
            # The F32 dequantization: each value e4m3 * scale in fp32, unrounded.
            ref_f32 = dict(ref_bf16)
            st = load_file(os.path.join(src, "model.safetensors"))
            for k in deq:
                q, s = st[k], st[k + "_scale_inv"].float()
                rows, cols = q.shape
                sx = s.repeat_interleave(128, 0)[:rows].repeat_interleave(128, 1)[:, :cols]
                ref_f32[k] = q.float() * sx
            refs = {"f32": ref_f32, "bf16": ref_bf16}
            for preset, dts in cases:
                for dt in dts:
                    run_case(tools, name, src, refs, preset, dt, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
