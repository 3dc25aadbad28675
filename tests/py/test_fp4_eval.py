"""The FP4 and MX presets' `eval` and ragged layers, on the host path and
on PoCL: `eval` of every preset's output against the output error computed
from compressed-tensors' decompression of the same file under the same
inputs (NVFP4A16's global scale included); a model whose down_proj leaves
ragged groups of 16 and 32, kept in float and in `ignore` (a directory) or
in float (its single file). Byte identity with compressed-tensors, of
directories and single files on both devices, is test_mx.py's and
test_nvfp4.py's. Without PoCL the OpenCL runs are left out with a note.
Needs torch, transformers and compressed-tensors; without them it fails,
unless MQ_OFFLINE=1."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import mqcheck  # noqa: E402
from mqcheck import check, finish  # noqa: E402

try:
    import torch
    import transformers  # noqa: F401
    import compressed_tensors  # noqa: F401
except ImportError as e:
    if os.environ.get("MQ_OFFLINE") == "1":
        mqcheck.skip("loader packages missing and MQ_OFFLINE=1 (%s)" % e)
    print("FAIL: the FP4 input tests need torch, transformers and compressed-tensors: %s" % e)
    sys.exit(1)

import loaders  # noqa: E402
import test_mx  # noqa: E402

PRESETS = ("MXFP4A16", "MXFP4", "MXFP8A16", "MXFP8", "NVFP4A16")


def quantize(src, out, preset, device):
    p = subprocess.run([os.environ["MQ_CLI"], "quantize", src, "-o", out, "-q", "--device",
                        device, "--preset", preset], capture_output=True, text=True)
    check(p.returncode == 0, "quantize %s --device %s: exit %d: %s" % (out, device, p.returncode,
                                                                      p.stderr))
    return p.returncode == 0


def have_pocl():
    p = subprocess.run([os.environ["MQ_CLI"], "devices"], capture_output=True, text=True)
    return p.returncode == 0 and "Device #" in p.stdout


def same(a, b):
    return (a is not None and b is not None and a.dtype == b.dtype and a.shape == b.shape
            and torch.equal(a.view(torch.uint8), b.view(torch.uint8)))


def check_ragged(tmp, devices):
    """down_proj's 200 in-features leave ragged groups of 16 and 32: kept in
    float and listed in ignore (directory), kept in float (single file)."""
    from safetensors.torch import load_file
    src = os.path.join(tmp, "ragged")
    cfg = transformers.LlamaConfig(hidden_size=64, intermediate_size=200, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
                                   max_position_embeddings=64)
    torch.manual_seed(5)
    transformers.LlamaForCausalLM(cfg).save_pretrained(src)
    w = load_file(os.path.join(src, "model.safetensors"))
    down = "model.layers.0.mlp.down_proj"
    for preset in PRESETS:
        for device in devices:
            tag = "ragged %s %s" % (preset, device)
            d = os.path.join(tmp, "ragged-%s-%s" % (preset, device))
            if quantize(src, d, preset, device):
                qc = loaders.quantization_config(d)
                t = loaders.load_tensors(d)
                check(down in qc["ignore"] and same(t.get(down + ".weight"), w[down + ".weight"])
                      and down + ".weight_scale" not in t,
                      "%s: down_proj is not kept in float and ignored (ignore %s)"
                      % (tag, qc["ignore"]))
                check("model.layers.0.mlp.up_proj.weight_scale" in t,
                      "%s: up_proj is not quantized" % tag)
            f = d + ".safetensors"
            if quantize(os.path.join(src, "model.safetensors"), f, preset, device):
                t = load_file(f)
                check(same(t.get(down + ".weight"), w[down + ".weight"]),
                      "%s (file): down_proj is not kept in float" % tag)


def layer_sqnr(x, w, wq):
    y, yq = x.double() @ w.double().t(), x.double() @ wq.double().t()
    return float(10 * torch.log10((y ** 2).sum() / ((y - yq) ** 2).sum()))


def check_eval(tmp, name, devices):
    """eval of each preset's file: every quantized layer, with the SQNR of
    compressed-tensors' decompression of the same file under the same
    inputs (it decompresses to BF16, eval in fp32: NVFP4's values, not
    exact in BF16, put them up to a few hundredths of a dB apart)."""
    from safetensors.torch import load_file, save_file
    loaders.save_model(name, os.path.join(tmp, name))
    src = os.path.join(tmp, name, "model.safetensors")
    orig = load_file(src)
    gen = torch.Generator().manual_seed(3)
    widths = sorted({v.shape[1] for k, v in orig.items() if k.endswith("proj.weight")})
    xs = {"x%d" % n: torch.randn(24, n, generator=gen) for n in widths}
    inputs = os.path.join(tmp, "eval-inputs.safetensors")
    save_file(xs, inputs)
    for preset in PRESETS:
        # A directory, for its config.json (the format, which compressed-tensors'
        # decompression reads); eval takes its model.safetensors.
        qdir = os.path.join(tmp, "%s-%s" % (name, preset))
        if not quantize(os.path.join(tmp, name), qdir, preset, "host"):
            continue
        q = os.path.join(qdir, "model.safetensors")
        theirs = test_mx.decompress(qdir)
        for device in devices:
            tag = "eval %s %s %s" % (name, preset, device)
            js = os.path.join(tmp, "eval-%s-%s.json" % (preset, device))
            p = subprocess.run([os.environ["MQ_CLI"], "eval", src, q, "--inputs", inputs,
                                "--json", js, "--device", device], capture_output=True,
                               text=True)
            check(p.returncode == 0, "%s: exit %d: %s" % (tag, p.returncode, p.stderr))
            if p.returncode != 0:
                continue
            with open(js) as f:
                layers = {lay["name"]: lay for lay in json.load(f)["layers"]}
            check(set(layers) == {m + ".weight" for m in theirs} or set(layers) == set(theirs),
                  "%s: layers %s, want %s" % (tag, sorted(layers)[:3], sorted(theirs)[:3]))
            worst = 0.0
            for m, wq in theirs.items():
                lay = layers.get(m + ".weight", layers.get(m))
                if lay is None:
                    continue
                w = orig[m + ".weight"]
                want = layer_sqnr(xs["x%d" % w.shape[1]], w, wq)
                got = lay["sqnr_db"]
                ok = got is not None and abs(got - want) <= 0.05
                worst = max(worst, abs(got - want) if got is not None else 99.0)
                check(ok, "%s: %s SQNR %s dB, from compressed-tensors' decompression %.4f dB"
                      % (tag, m, got, want))
            print("%s: %d layers, SQNR within %.4f dB of compressed-tensors' decompression"
                  % (tag, len(layers), worst))


def main():
    devices = ["host"]
    if have_pocl():
        devices.append("cpu")
    else:
        print("note: no OpenCL device: the host path only")
    with tempfile.TemporaryDirectory() as tmp:
        check_eval(tmp, "llama256-f32", devices)
        check_ragged(tmp, devices)
    finish("ok")


if __name__ == "__main__":
    main()
