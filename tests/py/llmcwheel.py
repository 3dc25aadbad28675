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


def stub_packages(*subs):
    """llmcompressor and llmcompressor.SUB for each SUB ("observers",
    "modifiers.quantization", ...) as empty packages over the wheel's files."""
    pkg = os.path.join(root(), "llmcompressor")
    for sub in ("",) + subs:
        m = types.ModuleType("llmcompressor" + ("." + sub if sub else ""))
        m.__path__ = [os.path.join(pkg, *sub.split("."))] if sub else [pkg]
        sys.modules[m.__name__] = m
