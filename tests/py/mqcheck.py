"""Shared helpers of the Python checks: run the CLI, and the DESIGN.md numerics
written independently in numpy, to hold our output against."""
import os
import subprocess
import sys

SKIP = 77


def skip(message):
    print("SKIPPED: " + message)
    sys.exit(SKIP)


def need_numpy_safetensors():
    try:
        import numpy  # noqa: F401
        import safetensors.numpy  # noqa: F401
    except ImportError as e:
        skip("the official safetensors package with numpy is not installed (%s)" % e)


def cli(*args):
    """Runs monoquant; returns (exit code, combined output)."""
    p = subprocess.run([os.environ["MQ_CLI"], *args], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    return p.returncode, p.stdout


# The failed checks of the running check script (and of the scripts it
# imports): each check goes on after a failure, and exits non-zero at its end
# when this list is not empty.
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what)


def finish(ok="OK"):
    """Ends a check script: exit 1 with the count of failed checks, else print ok."""
    if failures:
        sys.exit("%d failure(s)" % len(failures))
    print(ok)


def run(*args):
    """Runs monoquant; ends the check with its output when it fails."""
    rc, out = cli(*args)
    if rc != 0:
        print(out)
        sys.exit("monoquant %s: exit %d" % (" ".join(args), rc))


def expected_int8(w, symmetric):
    """Per-row INT8 quantization of a float32 matrix, as DESIGN.md defines it."""
    import numpy as np
    w = w.astype(np.float32)
    eps = np.float32(np.finfo(np.float32).eps)
    if symmetric:
        amax = np.max(np.abs(w), axis=1)
        scale = np.maximum(amax / np.float32(127.5), eps).astype(np.float32)
        zp = np.zeros_like(scale, dtype=np.float32)
    else:
        lo = np.minimum(np.min(w, axis=1), np.float32(0))
        hi = np.maximum(np.max(w, axis=1), np.float32(0))
        scale = np.maximum((hi - lo) / np.float32(255), eps).astype(np.float32)
        zp = np.clip(np.rint(np.float32(-128) - lo / scale), -128, 127).astype(np.float32)
    # The zero point is added before rounding (compressed-tensors' order).
    q = np.clip(np.rint(w / scale[:, None] + zp[:, None]), -128, 127).astype(np.int8)
    return q, scale, zp.astype(np.int8)


def unpack_int8(packed, shape):
    """int8 codes from compressed-tensors' pack-quantized int32 words (8 bits
    per code): along the last dimension, four codes + 128 per little-endian
    word, a row's last word padded."""
    import numpy as np
    inner = shape[-1]
    b = np.ascontiguousarray(packed).view(np.uint8).reshape(-1, packed.shape[-1] * 4)
    return (b[:, :inner].astype(np.int16) - 128).astype(np.int8).reshape(shape)


def unpack_zero_points(packed, rows):
    """Zero points packed along dimension 0 ([ceil(rows / 4), 1] int32)."""
    import numpy as np
    b = np.ascontiguousarray(packed).view(np.uint8).reshape(-1)
    return (b[:rows].astype(np.int16) - 128).astype(np.int8)
