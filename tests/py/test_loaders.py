"""The loader contract, judged by the real loaders: for tiny seeded models of
nine architectures and every int8 scheme, the output directory must load
with a plain from_pretrained (no missing or unexpected keys, no warnings),
run, and give logits close to the original; quantize exactly the Linear
layers minus `ignore`; pass vLLM 0.33's scheme-selection rules; and, for F32
weights, hold the same bytes as compressed-tensors' own compression of the
same weights. Where a case fails upstream (listed in the README), the test
shows that compressed-tensors' own output of the same case fails the same way.

Needs the packages of tests/py/requirements.txt (scripts/deps.sh installs
them into build/venv); without them it fails, unless MQ_OFFLINE=1."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import mqcheck  # noqa: E402
from mqcheck import check, finish  # noqa: E402

try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import compressed_tensors  # noqa: F401
except ImportError as e:
    if os.environ.get("MQ_OFFLINE") == "1":
        mqcheck.skip("loader packages missing and MQ_OFFLINE=1 (%s)" % e)
    print("FAIL: the loader tests need torch, transformers and compressed-tensors "
          "(tests/py/requirements.txt; scripts/deps.sh --python installs them): %s" % e)
    sys.exit(1)

import torch  # noqa: E402,F811
import loaders  # noqa: E402

MODELS = ["llama-f32", "llama-bf16", "llama-sharded", "qwen2", "bert", "gpt2", "t5", "whisper",
          "mixtral", "gpt-oss", "falcon"]
# The presets, on Llamas whose layers divide into groups of 128 and 128x128
# blocks, and on one whose MLP does not (those layers stay in float, in ignore).
PRESET_MODELS = ["llama256-f32", "llama256-bf16", "llama256-sharded", "llama-ragged"]
# Some presets on other families: a ViT, whose modules transformers renames
# on load, with ragged layers kept in float (ignore must name them as
# transformers builds them); a Mixtral whose experts span several blocks.
FAMILY_PRESETS = {"vit-ragged": ["W8A16", "FP8_BLOCK"], "mixtral256": ["FP8_BLOCK"]}
EXPERT = re.compile(r"\.experts\.\d+\.(w1|w2|w3|gate_proj|up_proj|down_proj)$")


def upstream_limit(name, scheme):
    """Cases that fail in transformers + compressed-tensors whoever writes them:
    (why, the text the error must hold, or None)."""
    if scheme in ("asym", "W4A16_ASYM"):
        return "compressed-tensors' meta-device path never packs the zero point", None
    packed = loaders.scheme_info(scheme)["format"] == "pack-quantized"
    if name == "t5" and packed:
        return "T5 in pack-quantized fails a plain load", "object has no attribute 'weight'"
    if name == "falcon" and packed:
        return ("Falcon in pack-quantized fails a plain load",
                "'FalconLinear' object has no attribute 'weight'")
    if name == "mixtral" and scheme in ("w8a8", "w8a8-tensor"):
        return "transformers 5 fuses MoE experts and accepts only FP8 or packed experts", None
    if name == "mixtral256" and scheme == "FP8_BLOCK":
        return ("transformers' FP8 expert path multiplies experts wider than one block by "
                "their block scales without expanding them",
                "automatic conversion of the weights")
    return None


def quantize(src, out, scheme):
    p = subprocess.run([os.environ["MQ_CLI"], "quantize", src, "-o", out, "-q", "--device", "host",
                        *loaders.scheme_info(scheme)["args"]], capture_output=True, text=True)
    check(p.returncode == 0, "quantize %s: exit %d: %s" % (out, p.returncode, p.stderr))
    return p.returncode == 0


def quantized_modules(tensors):
    return {k[:-len(".weight_scale")] for k in tensors if k.endswith(".weight_scale")}


def check_selection(tag, qc, scheme):
    want = loaders.scheme_info(scheme)["vllm"]
    try:
        got = set(loaders.vllm_scheme(qc).values())
        check(want is not None and got == {want}, "%s: vLLM picks %s, want %s" % (tag, got, want))
    except (AssertionError, NotImplementedError) as e:
        check(want is None, "%s: vLLM rejects the config: %s" % (tag, e))


def check_modules(tag, name, ref, ref_tensors, tensors, qc):
    ignore = set(qc["ignore"])
    # compressed-tensors matches ignore against the modules transformers
    # builds: each float-kept module is named as it is built (the checkpoint
    # name may stay beside it).
    built = loaders.built_modules(ref, ignore)
    check(all(b in ignore for b in built.values()),
          "%s: ignore lacks the built names %s" % (tag, sorted(set(built.values()) - ignore)[:4]))
    # Modules as the model builds them, or as the checkpoint names them
    # (transformers 5 renames Mixtral's block_sparse_moe to mlp; vLLM keeps it).
    modules = {n for n, _ in ref.named_modules()} | {k.rsplit(".", 1)[0] for k in ref_tensors}
    check(ignore <= modules, "%s: ignore names modules that do not exist: %s"
          % (tag, sorted(ignore - modules)))
    expected = loaders.quantizable_linears(ref) - ignore
    # Per-expert projections are stored on disk as Linear weights (transformers
    # 5 fuses them into 3-D parameters when it builds the model).
    expected |= {k[:-len(".weight")] for k in ref_tensors
                 if k.endswith(".weight") and EXPERT.search(k[:-len(".weight")])}
    q = quantized_modules(tensors)
    got = set(loaders.built_modules(ref, q).values())
    check(got == expected, "%s: quantized %s, expected %s" % (
        tag, sorted(got ^ expected)[:6], "the Linear layers minus ignore"))


def compare_bytes(tag, ours, theirs, dtype_f32):
    """Every tensor of a quantized module: the same bytes (F32 inputs), or
    the fraction of identical codes and our error no larger (BF16)."""
    names = [k for k in theirs if k.rsplit(".", 1)[0] in quantized_modules(theirs)]
    check(quantized_modules(ours) == quantized_modules(theirs),
          "%s: quantized modules differ from compressed-tensors'" % tag)
    same = 0
    for k in names:
        a, b = ours.get(k), theirs[k]
        ok = a is not None and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        same += ok
        if dtype_f32:
            check(ok, "%s: %s differs from compressed-tensors' own output" % (tag, k))
    return same / max(len(names), 1)


def weight_error(tensors, ref_tensors):
    err = 0.0
    for m in quantized_modules(tensors):
        w = ref_tensors[m + ".weight"].double()
        d = mqcheck_dequant(tensors, m, w.shape)
        err += ((w - d) ** 2).sum().item()
    return err


def mqcheck_dequant(t, m, shape):
    s = t[m + ".weight_scale"].double()
    if m + ".weight_packed" in t:
        q = torch.from_numpy(mqcheck.unpack_int8(t[m + ".weight_packed"].numpy(), tuple(shape)))
    else:
        q = t[m + ".weight"]
    zp = t.get(m + ".weight_zero_point")
    q = q.double().reshape(shape[0] if s.numel() > 1 else 1, -1)
    if zp is not None:
        if zp.dtype == torch.int32:
            zp = torch.from_numpy(mqcheck.unpack_zero_points(zp.numpy(), s.numel()))
        q = q - zp.double().reshape(-1, 1)
    return (q * s.reshape(-1, 1)).reshape(shape)


def weight_error_ct(tensors, ref_tensors, scheme):
    """Squared weight error of a compressed checkpoint, dequantized by
    compressed-tensors' own decompressor of the scheme's format."""
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationScheme
    s = loaders.scheme_info(scheme)
    weights, acts = loaders.weight_args(s)
    qs = QuantizationScheme(targets=["Linear"], weights=weights, input_activations=acts)
    comp = BaseCompressor.get_value_from_registry(s["format"])
    err = 0.0
    for m in quantized_modules(tensors):
        local = {k[len(m) + 1:]: v for k, v in tensors.items() if k.rsplit(".", 1)[0] == m}
        w = ref_tensors[m + ".weight"].double()
        d = comp.decompress(local, qs)["weight"].double()
        err += ((w - d) ** 2).sum().item()
    return err


def check_dequantize(tag, out, tensors, scheme):
    """`monoquant dequantize` gives exactly what compressed-tensors' own
    decompressor of the format gives."""
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationScheme
    from safetensors.torch import load_file
    d = {}
    for f in sorted(os.listdir(out)):
        if not f.endswith(".safetensors"):
            continue
        shard = os.path.join(out, f)
        deq = shard + ".deq"
        p = subprocess.run([os.environ["MQ_CLI"], "dequantize", shard, "-o", deq],
                           capture_output=True, text=True)
        check(p.returncode == 0, "%s: dequantize %s: exit %d: %s" % (tag, f, p.returncode,
                                                                      p.stderr))
        if p.returncode:
            return
        d.update(load_file(deq))
        os.unlink(deq)
    s = loaders.scheme_info(scheme)
    weights, acts = loaders.weight_args(s)
    qs = QuantizationScheme(targets=["Linear"], weights=weights, input_activations=acts)
    comp = BaseCompressor.get_value_from_registry(s["format"])
    for m in quantized_modules(tensors):
        local = {k[len(m) + 1:]: v for k, v in tensors.items() if k.rsplit(".", 1)[0] == m}
        want = comp.decompress(local, qs)["weight"]
        got = d.get(m + ".weight")
        check(got is not None and torch.equal(want.to(got.dtype), got),
              "%s: dequantize of %s differs from compressed-tensors' decompress" % (tag, m))


last_error = {}


def plain_load_error(name, path):
    try:
        m, info, msgs = loaders.plain_load(name, path)
        return None, (m, info, msgs)
    except Exception as e:  # the loader's own error is the verdict
        last_error[path] = str(e)
        return type(e).__name__, None


def run_model(tmp, name, schemes):
    src = os.path.join(tmp, name)
    ref = loaders.save_model(name, src).eval()
    inputs = loaders.model_inputs(name, ref)
    y = loaders.outputs(ref, inputs)
    ref_tensors = loaders.load_tensors(src)
    f32 = loaders.build_models()[name][2] == torch.float32
    for scheme in schemes:
        tag = "%s %s" % (name, scheme)
        out = os.path.join(tmp, "%s-%s" % (name, scheme))
        if not quantize(src, out, scheme):
            continue
        qc = loaders.quantization_config(out)
        fmt = loaders.scheme_info(scheme)["format"]
        check(qc["format"] == fmt and qc["config_groups"]["group_0"]["format"] == fmt,
              "%s: format %s" % (tag, fmt))
        check_selection(tag, qc, scheme)
        tensors = loaders.load_tensors(out)
        check_modules(tag, name, ref, ref_tensors, tensors, qc)
        oracle = os.path.join(tmp, "ct-%s-%s" % (name, scheme))
        if name.startswith("mixtral"):
            # transformers 5 fuses the experts into 3-D parameters, so no model
            # it builds has them as Linear modules: compressed-tensors
            # compresses the checkpoint's tensors of the same modules instead.
            loaders.ct_oracle_tensors(src, oracle, scheme, quantized_modules(tensors), qc)
        else:
            loaders.ct_oracle(name, src, oracle, scheme, qc["ignore"])
            if name.startswith("vit"):
                # Saved through transformers, compressed-tensors' output holds the
                # checkpoint's names and so does its ignore, which its own loader
                # then misses for the renamed modules: its tensors stay the byte
                # oracle, with our ignore beside them.
                loaders.set_ignore(oracle, qc["ignore"])
        theirs = loaders.load_tensors(oracle)
        frac = compare_bytes(tag, tensors, theirs, f32)
        if name == "llama-ragged" and scheme != "W8A8":
            # The MLP's 320 rows leave partial blocks; its down_proj's 320
            # in-features leave ragged groups: kept in float, listed in ignore.
            ragged = {"model.layers.%d.mlp.down_proj" % i for i in range(2)}
            if scheme == "FP8_BLOCK":
                ragged |= {"model.layers.%d.mlp.%s" % (i, p) for i in range(2)
                           for p in ("gate_proj", "up_proj")}
            if scheme == "FP8_DYNAMIC":
                ragged = set()
            check(ragged <= set(qc["ignore"]) and not ragged & quantized_modules(tensors),
                  "%s: the layers that do not divide are not kept in float and ignored" % tag)
        if name == "vit-ragged":
            # fc2's 320 in-features leave ragged groups; fc1's 320 rows and the
            # classifier's 10 leave partial blocks. ignore names them as built.
            ragged = {"vit.layers.%d.mlp.fc2" % i for i in range(2)}
            if scheme == "FP8_BLOCK":
                ragged |= {"vit.layers.%d.mlp.fc1" % i for i in range(2)} | {"classifier"}
            check(ragged <= set(qc["ignore"]),
                  "%s: ignore lacks the built names of the ragged layers %s"
                  % (tag, sorted(ragged - set(qc["ignore"]))))
        if f32 and scheme in loaders.PRESETS:
            check_dequantize(tag, out, tensors, scheme)
        if not f32:
            werr = weight_error_ct if scheme in loaders.PRESETS else weight_error
            e_ours = werr(tensors, ref_tensors, scheme) if werr is weight_error_ct else werr(
                tensors, ref_tensors)
            e_theirs = werr(theirs, ref_tensors, scheme) if werr is weight_error_ct else werr(
                theirs, ref_tensors)
            print("%s: %.1f%% of tensors identical to compressed-tensors'; weight error %.4g "
                  "vs %.4g" % (tag, 100 * frac, e_ours, e_theirs))
            check(e_ours <= e_theirs * 1.001, "%s: our weight error is larger" % tag)
        their_qc = loaders.quantization_config(oracle)
        # With every Linear layer ignored (GPT-2) it writes no block at all.
        if not name.startswith("mixtral"):  # (its oracle carries our block)
            check(their_qc is None and not quantized_modules(tensors)
                  or their_qc["config_groups"] == qc["config_groups"],
                  "%s: config_groups differ from compressed-tensors'" % tag)
        err, loaded = plain_load_error(name, out)
        limit, text = (upstream_limit(name, scheme) or (None, None)) if quantized_modules(
            tensors) else (None, None)
        if limit:
            check(err is not None, "%s: expected the upstream failure (%s), but it loaded"
                  % (tag, limit))
            check(err is None or text is None or text in last_error.get(out, ""),
                  "%s: the upstream failure lacks %r: %s" % (tag, text, last_error.get(out)))
            their_err, _ = plain_load_error(name, oracle)
            check(their_err == err, "%s: compressed-tensors' own output fails with %s, ours "
                  "with %s" % (tag, their_err, err))
            print("%s: fails upstream as compressed-tensors' own output does (%s: %s)"
                  % (tag, err, limit))
            continue
        check(err is None, "%s: from_pretrained failed: %s" % (tag, err))
        if err:
            continue
        model, info, msgs = loaded
        check(not info["missing_keys"] and not info["unexpected_keys"]
              and not info.get("mismatched_keys"),
              "%s: missing %s unexpected %s" % (tag, sorted(info["missing_keys"])[:4],
                                                 sorted(info["unexpected_keys"])[:4]))
        check(not msgs, "%s: warnings while loading: %s" % (tag, msgs[:3]))
        cos = loaders.cosine_per_row(y, loaders.outputs(model, inputs))
        want = loaders.scheme_info(scheme)["min_cos"]
        if want is None:
            # FP8 and int4: never below compressed-tensors' own output of the
            # same preset on the same model.
            _, (tm, _, _) = plain_load_error(name, oracle)
            theirs_cos = loaders.cosine_per_row(y, loaders.outputs(tm, inputs))
            print("%s: logits cosine %.5f (compressed-tensors' own output: %.5f)"
                  % (tag, cos, theirs_cos))
            check(cos >= theirs_cos - 1e-6, "%s: logits cosine %.5f below compressed-tensors' "
                  "%.5f" % (tag, cos, theirs_cos))
            continue
        if name == "mixtral" and scheme == "asym-tensor":
            # transformers' fused experts lose accuracy with per-tensor
            # asymmetric weights: compressed-tensors' own output of the same
            # values (byte-identical, checked above) scores exactly the same.
            _, (tm, _, _) = plain_load_error(name, oracle)
            theirs_cos = loaders.cosine_per_row(y, loaders.outputs(tm, inputs))
            print("%s: logits cosine %.5f, compressed-tensors' own output %.5f (upstream: "
                  "transformers' fused MoE experts)" % (tag, cos, theirs_cos))
            check(abs(cos - theirs_cos) < 1e-6, "%s: cosine %.6f differs from compressed-"
                  "tensors' own output's %.6f" % (tag, cos, theirs_cos))
            continue
        if not f32 and oracle:
            # BF16 activations add their own noise: never below compressed-
            # tensors' own output of the same case.
            _, (tm, _, _) = plain_load_error(name, oracle)
            theirs_cos = loaders.cosine_per_row(y, loaders.outputs(tm, inputs))
            print("%s: logits cosine %.5f (compressed-tensors' own output: %.5f)"
                  % (tag, cos, theirs_cos))
            want = min(want, theirs_cos)
        else:
            print("%s: logits cosine %.5f" % (tag, cos))
        check(cos >= want, "%s: logits cosine %.5f < %.4f" % (tag, cos, want))


def run_fp16(tmp, name):
    """--dtype fp16: no quantization_config, torch_dtype float16, every float
    tensor F16; a plain from_pretrained runs it."""
    import json
    src = os.path.join(tmp, name)
    out = os.path.join(tmp, name + "-fp16")
    tag = name + " fp16"
    p = subprocess.run([os.environ["MQ_CLI"], "quantize", src, "-o", out, "-q", "--device", "host",
                        "--dtype", "fp16"], capture_output=True, text=True)
    check(p.returncode == 0, "%s: exit %d: %s" % (tag, p.returncode, p.stderr))
    if p.returncode:
        return
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    check("quantization_config" not in cfg, "%s: no quantization_config" % tag)
    check(cfg.get("torch_dtype", cfg.get("dtype")) == "float16", "%s: torch_dtype float16" % tag)
    tensors = loaders.load_tensors(out)
    check(all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point()),
          "%s: every float tensor is F16" % tag)
    ref, _, _ = loaders.plain_load(name, src)
    inputs = loaders.model_inputs(name, ref)
    y = loaders.outputs(ref, inputs)
    err, loaded = plain_load_error(name, out)
    check(err is None, "%s: from_pretrained failed: %s" % (tag, err))
    if err:
        return
    model, info, msgs = loaded
    check(not info["missing_keys"] and not info["unexpected_keys"],
          "%s: missing or unexpected keys" % tag)
    check(not msgs, "%s: warnings while loading: %s" % (tag, msgs[:3]))
    # Run in float32: the comparison is of the stored weights, not of CPU half arithmetic.
    model = model.float()
    fin = {k: (v.float() if v.is_floating_point() else v) for k, v in inputs.items()}
    cos = loaders.cosine_per_row(y, loaders.outputs(model, fin))
    print("%s: logits cosine %.6f" % (tag, cos))
    check(cos >= 0.999, "%s: logits cosine %.5f < 0.999" % (tag, cos))


def main():
    torch.set_num_threads(2)
    tmp = tempfile.mkdtemp(prefix="mq-loaders-", dir=os.environ.get("TMPDIR"))
    try:
        only = os.environ.get("MQ_LOADER_MODELS")
        for name in MODELS:
            if only and name not in only.split(","):
                continue
            run_model(tmp, name, loaders.SCHEMES)
            run_fp16(tmp, name)
        for name in PRESET_MODELS:
            if only and name not in only.split(","):
                continue
            run_model(tmp, name, loaders.PRESETS)
        for name, presets in FAMILY_PRESETS.items():
            if only and name not in only.split(","):
                continue
            run_model(tmp, name, presets)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish("loaders: all checks passed")


main()
