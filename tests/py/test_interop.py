"""Our output, read by the official safetensors package: layout, metadata and
numbers for every scheme, checked against numpy's own arithmetic."""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import mqcheck  # noqa: E402
from mqcheck import check, finish  # noqa: E402

mqcheck.need_numpy_safetensors()
import numpy as np  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

EXAMPLE = os.path.join(os.environ["MQ_SOURCE_DIR"], "examples", "tiny_mlp.safetensors")
QUANTIZED = ["conv.weight", "fc1.weight", "fc2.weight"]


def run_scheme(tmp, args, symmetric, per_channel):
    out = os.path.join(tmp, "out-%s.safetensors" % "-".join(args).replace("-", ""))
    rc, text = mqcheck.cli("quantize", EXAMPLE, "-o", out, "-q", *args)
    check(rc == 0, "quantize %s exit %d: %s" % (args, rc, text))
    src, got = load_file(EXAMPLE), load_file(out)
    with safe_open(out, framework="numpy") as f:
        meta = f.metadata()
    check(meta.get("quantized_by", "").startswith("monoquant"), "metadata quantized_by: %r" % meta)
    check(meta.get("format") == "pt", "input metadata kept")
    for name, w in src.items():
        if name not in QUANTIZED:
            check(got[name].dtype == w.dtype and np.array_equal(got[name], w),
                  "%s copied byte for byte" % name)
            continue
        s = got[name + "_scale"]
        rows = w.shape[0] if per_channel else 1
        packed = not symmetric or "--weights-only" in args
        if packed:
            # pack-quantized: int32 words, the original shape beside them.
            check(name not in got, "%s: only the packed form is written" % name)
            p = got[name + "_packed"]
            check(p.dtype == np.int32 and p.shape == w.shape[:-1] + ((w.shape[-1] + 3) // 4,),
                  "%s_packed: int32 of shape %s" % (name, p.shape))
            check(np.array_equal(got[name + "_shape"], np.array(w.shape, dtype=np.int64)),
                  "%s_shape holds the shape" % name)
            q = mqcheck.unpack_int8(p, w.shape)
        else:
            q = got[name]
            check(q.dtype == np.int8 and q.shape == w.shape, "%s: int8 of shape %s" % (name, w.shape))
        check(s.dtype == np.float32, "%s_scale dtype" % name)
        check(s.shape == ((rows, 1) if per_channel else (1,)), "%s_scale shape %s" % (name, s.shape))
        eq, es, ez = mqcheck.expected_int8(w.reshape(rows, -1), symmetric)
        check(np.array_equal(q.reshape(rows, -1), eq), "%s: int8 values match numpy" % name)
        check(np.array_equal(s.reshape(-1), es), "%s: scales match numpy" % name)
        zp = got.get(name + "_zero_point")
        if symmetric:
            check(zp is None, "%s: no zero point when symmetric" % name)
        elif per_channel:
            check(zp is not None and zp.dtype == np.int32 and zp.shape == ((rows + 3) // 4, 1),
                  "%s: zero points packed along dimension 0" % name)
            zp = mqcheck.unpack_zero_points(zp, rows)
            check(np.array_equal(zp, ez), "%s: zero points match numpy" % name)
        else:
            check(zp is not None and zp.dtype == np.int8 and np.array_equal(zp.reshape(-1), ez),
                  "%s: zero points match numpy" % name)
        deq = (q.reshape(rows, -1).astype(np.float32) - (0 if zp is None else zp.reshape(rows, 1))) * s.reshape(rows, 1)
        err = np.abs(deq - w.reshape(rows, -1))
        check(np.all(err <= s.reshape(rows, 1) * 0.5001), "%s: round-trip error within half a step" % name)


def run_fp16(tmp):
    out = os.path.join(tmp, "out-fp16.safetensors")
    rc, text = mqcheck.cli("quantize", EXAMPLE, "-o", out, "--dtype", "fp16", "-q")
    check(rc == 0, "fp16 exit %d: %s" % (rc, text))
    src, got = load_file(EXAMPLE), load_file(out)
    check(sorted(src) == sorted(got), "fp16 keeps every name")
    for name, w in src.items():
        h = w.astype(np.float16)
        check(got[name].dtype == np.float16 and np.array_equal(got[name].view(np.uint16), h.view(np.uint16)),
              "%s: fp16 bits equal numpy's round-to-nearest-even" % name)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        run_scheme(tmp, [], True, True)
        run_scheme(tmp, ["--scheme", "asym"], False, True)
        run_scheme(tmp, ["--per-tensor"], True, False)
        run_scheme(tmp, ["--weights-only"], True, True)
        run_scheme(tmp, ["--scheme", "asym", "--per-tensor"], False, False)
        run_fp16(tmp)
    finish("interop: all checks passed")


main()
