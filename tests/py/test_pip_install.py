"""`pip install .` from this checkout into a fresh virtual environment (pip's
cache may serve the wheels of numpy and the build backend; libmonoquant and the
extension are built), then import the package there and run it without torch.
MQ_OFFLINE=1 skips it, as it does the loader tests."""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import mqcheck  # noqa: E402

SRC = os.path.abspath(os.environ.get("MQ_SOURCE_DIR",
                                     os.path.join(os.path.dirname(__file__), "..", "..")))
CHECK = r"""
import os, sys
import numpy as np
import monoquant
from mono_quant import dynamic_quantize, QuantizationConfig
assert os.path.dirname(monoquant.__file__).startswith(sys.prefix), monoquant.__file__
assert monoquant.__version__ == sys.argv[1], monoquant.__version__
w = np.arange(-12, 12, dtype=np.float32).reshape(4, 6)
out, skipped = dynamic_quantize({"fc.weight": w, "fc.bias": np.zeros(4, np.float32)})
assert out["fc.weight"].dtype == np.int8 and out["fc.weight_scale"].shape == (4, 1), out
assert skipped == ["fc.bias"], skipped
assert np.abs(out["fc.weight"] * out["fc.weight_scale"] - w).max() <= out["fc.weight_scale"].max()
report = monoquant.quantize_file(sys.argv[2], sys.argv[3], progress=False)
assert report["quantized"], report
assert any(d["spec"] == "host" for d in monoquant.devices())
assert "torch" not in sys.modules, "torch imported without need"
print("installed package ok")
"""


def main():
    if os.environ.get("MQ_OFFLINE") == "1":
        mqcheck.skip("MQ_OFFLINE=1: no package index for the clean-venv install")
    with open(os.path.join(SRC, "CMakeLists.txt")) as f:
        version = f.read().split("project(monoquant VERSION ")[1].split()[0]
    tmp = tempfile.mkdtemp(prefix="pip-install-")
    try:
        env = dict(os.environ, CMAKE_BUILD_PARALLEL_LEVEL="2", PIP_DISABLE_PIP_VERSION_CHECK="1")
        env.pop("PYTHONPATH", None)
        venv = os.path.join(tmp, "venv")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        py = os.path.join(venv, "bin", "python")
        p = subprocess.run([py, "-m", "pip", "install", "-q",
                            "--config-settings=build-dir=" + os.path.join(tmp, "build"), SRC],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=1200)
        if p.returncode != 0:
            print(p.stdout)
            print("FAIL: pip install . exited %d" % p.returncode)
            return 1
        example = os.path.join(SRC, "examples", "tiny_mlp.safetensors")
        p = subprocess.run([py, "-c", CHECK, version, example, os.path.join(tmp, "q.safetensors")],
                           cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=300)
        print(p.stdout)
        if p.returncode != 0:
            print("FAIL: the installed package did not run")
            return 1
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
