"""The microscaling presets (MXFP4A16, MXFP4, MXFP8A16, MXFP8) against
compressed-tensors itself: every e2m1 code and midpoint and every e8m0 scale
edge (powers of two, the round-up threshold 1.75 * 2^k, zero, subnormals) in
F32, BF16 and F16, byte for byte against its calculate_qparams and
compressors; for a seeded Llama in F32 every tensor and the config.json
block identical to its own quantize + compress, in BF16 the identical
fraction and a weight error no larger; the same directory on PoCL and its
model.safetensors as a single file (host and PoCL) byte for byte the host
directory output; dequantize against its decompression;
and a plain from_pretrained of our output, which must behave as its own
output of the same weights does.

Needs torch, transformers and compressed-tensors (tests/py/requirements.txt);
without them it fails, unless MQ_OFFLINE=1."""
import os
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
    print("FAIL: the MX tests need torch, transformers and compressed-tensors: %s" % e)
    sys.exit(1)

import torch  # noqa: E402,F811
import loaders  # noqa: E402

FORMATS = {p: s["format"] for p, s in loaders.MX_PRESETS.items()}


def run_cli(src, out, preset, device="host"):
    p = subprocess.run([os.environ["MQ_CLI"], "quantize", src, "-o", out, "-q", "--device",
                        device, "--preset", preset], capture_output=True, text=True)
    check(p.returncode == 0, "quantize %s: exit %d: %s" % (out, p.returncode, p.stderr))
    return p.returncode == 0


def ct_compress(w, preset):
    """compressed-tensors' own qparams and compression of one Linear weight."""
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import preset_name_to_scheme
    from compressed_tensors.quantization.utils import calculate_qparams
    qs = preset_name_to_scheme(preset, ["Linear"])
    lo, hi = loaders.observe(w, qs.weights)
    sc, zp = calculate_qparams(lo, hi, qs.weights)
    comp = BaseCompressor.get_value_from_registry(FORMATS[preset])
    return comp.compress({"weight": w, "weight_scale": sc.to(w.dtype), "weight_zero_point": zp},
                         qs)


def edge_weights(dtype):
    """Rows of 32: each e2m1 code and midpoint (and values just beside them)
    under a scale of 1 (a group max of 4 gives e8m0 127 for e2m1), random
    values, then groups whose max walks the e8m0 edges."""
    vals = [0.0, -0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
    near = []
    for v in vals[2:]:
        near += [v, -v, float(torch.nextafter(torch.tensor(v), torch.tensor(0.0))),
                 float(torch.nextafter(torch.tensor(v), torch.tensor(9.0)))]
    near += [0.0, -0.0, 1e-3, -1e-3, 0.1, -0.1, 5.99, -5.99]
    rows = []
    flat = torch.tensor(near, dtype=torch.float32)
    flat = torch.cat([flat, torch.zeros((-len(flat)) % 31)])
    for g in flat.reshape(-1, 31):
        rows.append(torch.cat([torch.tensor([4.0]), g]))
    gen = torch.Generator().manual_seed(7)
    for _ in range(8):
        r = torch.rand(32, generator=gen) * 12 - 6
        r[0] = 4.0
        rows.append(r)
    for k in range(-135, 128, 3):
        for f in (1.0, 1.5, 1.74, 1.75, 1.9999):
            r = (torch.rand(32, generator=gen) * 2 - 1) * (f * 2.0 ** k)
            r[3] = -f * 2.0 ** k
            rows.append(r)
    rows.append(torch.zeros(32))
    rows.append(torch.full((32,), 1e-45))
    w = torch.stack(rows).to(dtype)
    # F16 groups whose max rounds up past 65504 get an infinite scale, whose
    # e8m0 byte compressed-tensors takes from an undefined cast of inf to an
    # integer: left out.
    w = w[torch.isfinite(w).all(dim=1) & (w.float().abs().amax(dim=1) < 57344.0)]
    # Rows of 64 values: two groups each.
    if w.shape[0] % 2:
        w = w[:-1]
    return w.reshape(-1, 64).contiguous()


def check_edges(tmp):
    from safetensors.torch import load_file, save_file
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        w = edge_weights(dtype)
        src = os.path.join(tmp, "edges-%s.safetensors" % str(dtype)[6:])
        save_file({"layer.weight": w}, src)
        for preset in ("MXFP4A16", "MXFP8"):
            tag = "edges %s %s" % (str(dtype)[6:], preset)
            theirs = ct_compress(w, preset)
            for device in ("host", "cpu"):
                out = os.path.join(tmp, "edges-%s-%s-%s.safetensors" % (str(dtype)[6:], preset,
                                                                       device))
                if not run_cli(src, out, preset, device):
                    continue
                ours = load_file(out)
                for k, v in theirs.items():
                    a = ours.get("layer." + k)
                    ok = (a is not None and a.dtype == v.dtype and a.shape == v.shape
                          and torch.equal(a.view(torch.uint8), v.view(torch.uint8)))
                    if not ok and a is not None and a.shape == v.shape:
                        bad = (a.view(torch.uint8) != v.view(torch.uint8)).nonzero()[:3].tolist()
                        print("%s %s %s: first differing bytes at %s" % (tag, device, k, bad))
                    check(ok, "%s (%s): %s differs from compressed-tensors'" % (tag, device, k))


def quantized_modules(tensors):
    return {k[:-len(".weight_scale")] for k in tensors if k.endswith(".weight_scale")}


def check_model(tmp, name, preset):
    tag = "%s %s" % (name, preset)
    src = os.path.join(tmp, name)
    if not os.path.isdir(src):
        loaders.save_model(name, src)
    out = os.path.join(tmp, "%s-%s" % (name, preset))
    if not run_cli(src, out, preset):
        return
    shards = sorted(f for f in os.listdir(src) if f.endswith(".safetensors"))
    check(sorted(f for f in os.listdir(out) if f.endswith(".safetensors")) == shards,
          "%s: the output's shards differ from the input's %s" % (tag, shards))
    qc = loaders.quantization_config(out)
    fmt = FORMATS[preset]
    check(qc["format"] == fmt and qc["config_groups"]["group_0"]["format"] == fmt,
          "%s: format %s" % (tag, qc.get("format")))
    oracle = os.path.join(tmp, "ct-%s-%s" % (name, preset))
    loaders.ct_oracle(name, src, oracle, preset, qc["ignore"])
    ours, theirs = loaders.load_tensors(out), loaders.load_tensors(oracle)
    their_qc = loaders.quantization_config(oracle)
    check(their_qc["config_groups"] == qc["config_groups"],
          "%s: config_groups differ: ours %s, theirs %s" % (tag, qc["config_groups"],
                                                           their_qc["config_groups"]))
    check(quantized_modules(ours) == quantized_modules(theirs) and quantized_modules(ours),
          "%s: quantized modules differ from compressed-tensors'" % tag)
    names = [k for k in theirs if k.rsplit(".", 1)[0] in quantized_modules(theirs)]
    f32 = loaders.build_models()[name][2] == torch.float32
    same = 0
    for k in names:
        a, b = ours.get(k), theirs[k]
        ok = (a is not None and a.dtype == b.dtype and a.shape == b.shape
              and torch.equal(a.view(torch.uint8), b.view(torch.uint8)))
        same += ok
        if f32:
            check(ok, "%s: %s differs from compressed-tensors' own output" % (tag, k))
    check_inputs(tag, src, out, preset, ours)
    ref = loaders.load_tensors(src)
    if not f32:
        e_ours, e_theirs = deq_error(out, ref), deq_error(oracle, ref)
        print("%s: %.1f%% of tensors identical to compressed-tensors'; weight error %.6g vs %.6g"
              % (tag, 100.0 * same / max(len(names), 1), e_ours, e_theirs))
        check(e_ours <= e_theirs * 1.001, "%s: our weight error is larger" % tag)
    else:
        check_dequantize(tag, out, oracle, preset)
    check_load(tag, name, out, oracle)


def have_pocl():
    p = subprocess.run([os.environ["MQ_CLI"], "devices"], capture_output=True, text=True)
    return p.returncode == 0 and "Device #" in p.stdout


def check_inputs(tag, src, out, preset, ours):
    """The directory on PoCL, and its model.safetensors as a single file on
    the host path and on PoCL: every tensor the bytes of the host path's
    directory output `ours` (which the callers hold against compressed-tensors')."""
    from safetensors.torch import load_file
    runs = [("directory", "cpu")] if have_pocl() else []
    if os.path.exists(os.path.join(src, "model.safetensors")):
        runs += [("file", "host")] + [("file", "cpu")] * bool(runs)
    for kind, device in runs:
        dst = "%s-%s-%s" % (out, kind, device)
        if kind == "file":
            dst += ".safetensors"
            ok = run_cli(os.path.join(src, "model.safetensors"), dst, preset, device)
        else:
            ok = run_cli(src, dst, preset, device)
        if not ok:
            continue
        t = load_file(dst) if kind == "file" else loaders.load_tensors(dst)
        bad = sorted(k for k in set(t) | set(ours) if not (
            k in t and k in ours and t[k].dtype == ours[k].dtype and t[k].shape == ours[k].shape
            and torch.equal(t[k].view(torch.uint8), ours[k].view(torch.uint8))))
        check(not bad, "%s: the %s on %s differs from the host directory output in %d "
              "tensor(s), first %s" % (tag, kind, device, len(bad), bad[:3]))
    print("%s: %s: the host directory output's bytes" % (
        tag, ", ".join("%s on %s" % r for r in runs)))


def deq_error(path, ref):
    """Sum of squared errors of compressed-tensors' decompression of `path`."""
    total = 0.0
    for k, w in decompress(path).items():
        total += float(((w.float() - ref[k + ".weight"].float()) ** 2).sum())
    return total


def decompress(path):
    """module -> weight, as compressed-tensors decompresses each quantized module."""
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import preset_name_to_scheme
    qc = loaders.quantization_config(path)
    fmt = qc["format"]
    preset = [p for p, f in FORMATS.items() if f == fmt][0]
    qs = preset_name_to_scheme(preset, ["Linear"])
    comp = BaseCompressor.get_value_from_registry(fmt)
    t = loaders.load_tensors(path)
    out = {}
    for m in quantized_modules(t):
        local = {k[len(m) + 1:]: v for k, v in t.items() if k.startswith(m + ".")
                 and "." not in k[len(m) + 1:]}
        if "weight_packed" in local:
            # The packed weight's shape, as the loader knows it from the module.
            local["weight_shape"] = torch.tensor([local["weight_packed"].shape[0],
                                                  local["weight_packed"].shape[1] * 2])
        out[m] = comp.decompress(local, qs)["weight"]
    return out


def check_dequantize(tag, out, oracle, preset):
    """monoquant dequantize of each shard: compressed-tensors' decompression of the same files."""
    from safetensors.torch import load_file
    ours = {}
    for f in sorted(os.listdir(out)):
        if not f.endswith(".safetensors"):
            continue
        deq = os.path.join(out + ".deq-" + f)
        p = subprocess.run([os.environ["MQ_CLI"], "dequantize", os.path.join(out, f), "-o", deq],
                           capture_output=True, text=True)
        check(p.returncode == 0, "%s: dequantize %s: %s" % (tag, f, p.stderr))
        if p.returncode != 0:
            return
        ours.update(load_file(deq))
    for m, w in decompress(out).items():
        a = ours.get(m + ".weight")
        ok = a is not None and a.shape == w.shape and torch.equal(a.float(), w.float())
        check(ok, "%s: dequantized %s differs from compressed-tensors' decompression" % (tag, m))


def check_load(tag, name, out, oracle):
    """A plain from_pretrained of ours; compressed-tensors' own output must
    behave the same: both load and give the same logits, or both fail with
    the same error."""
    def attempt(path):
        try:
            model, info, msgs = loaders.plain_load(name, path)
            return model, None
        except Exception as e:  # noqa: BLE001 - the error is the result
            return None, "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
    m_ours, e_ours = attempt(out)
    m_theirs, e_theirs = attempt(oracle)
    if e_theirs is not None:
        print("%s: compressed-tensors' own output fails a plain load: %s" % (tag, e_theirs))
        check(e_ours is not None and e_ours.split(":")[0] == e_theirs.split(":")[0],
              "%s: ours %s, compressed-tensors' own output fails with %s" % (tag, e_ours,
                                                                          e_theirs))
        return
    check(e_ours is None, "%s: plain load fails: %s" % (tag, e_ours))
    if e_ours is not None:
        return
    ref = loaders.save_model(name, os.path.join(os.path.dirname(out), name + "-again")).eval()
    inputs = loaders.model_inputs(name, ref)
    y = loaders.outputs(ref, inputs)

    def forward(model):
        try:
            return loaders.outputs(model, inputs), None
        except Exception as e:  # noqa: BLE001 - the error is the result
            return None, "%s: %s" % (type(e).__name__, e)
    y_ours, f_ours = forward(m_ours)
    y_theirs, f_theirs = forward(m_theirs)
    if f_theirs is not None:
        # transformers' compressed-tensors path decompresses MX weights to
        # BF16 whatever the model's dtype: an F32 model's forward then fails.
        print("%s: compressed-tensors' own output fails a forward pass on CPU: %s"
              % (tag, f_theirs))
        check(f_ours == f_theirs, "%s: ours %s, compressed-tensors' own output %s"
              % (tag, f_ours, f_theirs))
        return
    check(f_ours is None, "%s: forward pass fails: %s" % (tag, f_ours))
    if f_ours is not None:
        return
    c_ours = float(loaders.cosine_per_row(y, y_ours))
    c_theirs = float(loaders.cosine_per_row(y, y_theirs))
    print("%s: logits cosine %.6f (compressed-tensors' own output %.6f)" % (tag, c_ours, c_theirs))
    check(c_ours >= c_theirs - 1e-6, "%s: logits cosine below compressed-tensors'" % tag)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        check_edges(tmp)
        for name in ("llama256-f32", "llama256-bf16"):
            for preset in ("MXFP4A16", "MXFP4", "MXFP8A16", "MXFP8"):
                check_model(tmp, name, preset)
        # A model directory in several shards (index rewritten).
        check_model(tmp, "llama256-sharded", "MXFP4A16")
    finish("ok")


if __name__ == "__main__":
    main()
