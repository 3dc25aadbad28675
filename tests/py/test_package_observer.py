"""The Python package's observer= setting: quantize_file with observer="mse"
writes the CLI's --observer mse bytes (and not min-max's), the config field
resolves like the other settings, and a bad observer raises clearly."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import mqcheck  # noqa: E402
import pkgtest  # noqa: E402

if __name__ == "__main__":
    pkgtest.need_package()

import torch  # noqa: E402

import monoquant  # noqa: E402
from monoquant import QuantizationConfig  # noqa: E402


def _weights(path):
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(3)
    w = torch.randn(64, 128, generator=g)
    w.view(-1)[::37] *= 6.0  # outliers: the search clips somewhere
    save_file({"l.weight": w}, path, metadata={"format": "pt"})


def test_mse_matches_cli():
    tmp = tempfile.mkdtemp(prefix="mq_pyobs_")
    try:
        src = os.path.join(tmp, "in.safetensors")
        _weights(src)
        outs = {}
        for obs in ("minmax", "mse"):
            py = os.path.join(tmp, "py-%s.safetensors" % obs)
            cli = os.path.join(tmp, "cli-%s.safetensors" % obs)
            r = monoquant.quantize_file(src, py, preset="W4A16", group_size=32, observer=obs,
                                        device="host", progress=False)
            assert len(r["quantized"]) == 1
            rc, log = mqcheck.cli("quantize", src, "-o", cli, "--preset", "W4A16",
                                  "--group-size", "32", "--observer", obs, "--device", "host",
                                  "-q")
            assert rc == 0, log
            with open(py, "rb") as a, open(cli, "rb") as b:
                outs[obs] = a.read()
                assert outs[obs] == b.read(), obs
        assert outs["minmax"] != outs["mse"]
    finally:
        shutil.rmtree(tmp)


def test_imatrix_matches_cli():
    import imatrixfile
    tmp = tempfile.mkdtemp(prefix="mq_pyimx_")
    try:
        from safetensors.torch import save_file
        g = torch.Generator().manual_seed(4)
        src = os.path.join(tmp, "in.safetensors")
        save_file({"model.layers.0.mlp.up_proj.weight": torch.randn(16, 64, generator=g)}, src)
        imx = os.path.join(tmp, "m.gguf")
        imp = (torch.rand(64, generator=g) ** 4 * 30 + 1e-3).tolist()
        imatrixfile.write(imx, imatrixfile.gguf_bytes({"blk.0.ffn_up.weight": ([imp], [1.0])}))
        py = os.path.join(tmp, "py.safetensors")
        cli = os.path.join(tmp, "cli.safetensors")
        plain = os.path.join(tmp, "plain.safetensors")
        r = monoquant.quantize_file(src, py, preset="W4A16", group_size=32, observer="mse",
                                    imatrix=imx, device="host", progress=False)
        assert [t["imatrix"] for t in r["quantized"]] == [True]
        monoquant.quantize_file(src, plain, preset="W4A16", group_size=32, observer="mse",
                                device="host", progress=False)
        rc, log = mqcheck.cli("quantize", src, "-o", cli, "--preset", "W4A16", "--group-size",
                              "32", "--observer", "mse", "--imatrix", imx, "--device", "host",
                              "-q")
        assert rc == 0, log
        with open(py, "rb") as a, open(cli, "rb") as b, open(plain, "rb") as c:
            got = a.read()
            assert got == b.read()
            assert got != c.read()
        assert QuantizationConfig(observer="mse", imatrix=imx).imatrix == imx
        pkgtest.expect_error(lambda: monoquant.quantize_file(src, os.path.join(tmp, "x"),
                                                             imatrix=3, observer="mse"),
                             "imatrix")
        pkgtest.expect_error(lambda: monoquant.quantize_file(src, os.path.join(tmp, "y"),
                                                             preset="W4A16", group_size=32,
                                                             observer="mse",
                                                             imatrix=os.path.join(tmp, "no")),
                             "no")
    finally:
        shutil.rmtree(tmp)


def test_config_field():
    assert QuantizationConfig(observer="mse").observer == "mse"
    pkgtest.expect_error(lambda: QuantizationConfig(observer="gptq"), "observer", "mse")
    pkgtest.expect_error(lambda: monoquant.quantize_file("x", "y", observer=3), "observer")


if __name__ == "__main__":
    pkgtest.main(__file__, dict(globals()))
