"""llm-compressor for the checks that compare with it: its wheel, pinned,
downloaded once into the build directory and unpacked there (never
installed), and its subpackages put on the path with empty parents, so that
the package's heavy __init__ (datasets, transformers' trainer, ...) never
runs. Without the wheel a check fails, unless MQ_OFFLINE=1."""
import os
import subprocess
import sys
import types
import zipfile

import mqcheck

LLMC_VERSION = "0.14.0.1"


def offline_or_fail(msg):
    if os.environ.get("MQ_OFFLINE") == "1":
        mqcheck.skip(msg + " and MQ_OFFLINE=1")
    print("FAIL: " + msg)
    sys.exit(1)


def root():
    """The unpacked wheel (downloaded with pip when absent)."""
    base = os.path.join(os.environ["MQ_BUILD_DIR"], "llmc")
    wheel = os.path.join(base, "llmcompressor-%s-py3-none-any.whl" % LLMC_VERSION)
    if not os.path.exists(wheel):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "llmcompressor==" + LLMC_VERSION, "-d", base], check=False)
    if not os.path.exists(wheel):
        offline_or_fail("llmcompressor %s could not be downloaded" % LLMC_VERSION)
    unpacked = os.path.join(base, "unpacked")
    if not os.path.isdir(os.path.join(unpacked, "llmcompressor")):
        with zipfile.ZipFile(wheel) as z:
            z.extractall(unpacked)
    return unpacked


def stub_packages(*subs, unpacked=None):
    """llmcompressor and llmcompressor.SUB for each SUB ("observers",
    "modifiers.quantization", ...) as empty packages over the wheel's files
    (those of root(), or of the directory `unpacked`)."""
    pkg = os.path.join(unpacked or root(), "llmcompressor")
    for sub in ("",) + subs:
        m = types.ModuleType("llmcompressor" + ("." + sub if sub else ""))
        m.__path__ = [os.path.join(pkg, *sub.split("."))] if sub else [pkg]
        sys.modules[m.__name__] = m


def load_grid_search(unpacked=None):
    """The MSE observer's search (observers/mse_quant.py, _grid_search_mse)."""
    stub_packages("observers", "utils", unpacked=unpacked)
    from llmcompressor.observers.mse_quant import _grid_search_mse
    return _grid_search_mse


def flatten(w, args):
    """helpers.flatten_for_calibration of a weight."""
    if args.strategy == "channel":
        return w.unsqueeze(-2).unsqueeze(0)
    if args.strategy == "block":
        bh, bw = args.block_structure
        rows, cols = w.shape
        return (w.reshape(rows // bh, bh, cols // bw, bw).transpose(1, 2).flatten(-2, -1)
                .unsqueeze(0))
    return w.unflatten(-1, (-1, args.group_size)).unsqueeze(0)


def mse_oracle(grid_search, w, args, scheme, fmt):
    """Weight w's compressed tensors by the MSE observer's search (its default
    options: maxshrink 0.2, patience 5, grid 100, norm 2.4), then
    compressed-tensors' calculate_qparams and the compressor of `fmt`."""
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationStrategy
    from compressed_tensors.quantization.utils import calculate_qparams
    token_args = args.model_copy(update={"strategy": QuantizationStrategy.TOKEN})
    lo, hi = grid_search(flatten(w, args), args, token_args, 0.2, 5, 100.0, 2.4, 0.3, 1.0)
    sc, zp = calculate_qparams(lo, hi, args)
    comp = BaseCompressor.get_value_from_registry(fmt)
    return comp.compress({"weight": w, "weight_scale": sc.to(w.dtype), "weight_zero_point": zp},
                         scheme)
