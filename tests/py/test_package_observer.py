"""The Python package's observer= setting: quantize_file with observer="mse"
writes the CLI's --observer mse bytes (and not min-max's), the search's
options (observer_maxshrink, _grid, _norm, _patience) write the bytes of the
CLI's flags and of the config file's keys, the config fields resolve like the
other settings, and a bad observer or option raises clearly."""
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


# One group whose error, step after step, falls, rises for a few steps and
# falls again: patience decides whether the search gets past the bump (with
# many groups some group improves at nearly every step).
BUMPY = [2, 6, 0, 1, 8, 3, -4, -1, -7, 5, -7, 4, 2, 3, -1, 5, -8, 1, -1, 3, 1, -5, 7, -3, -3, 2,
         -9, 5, -2, -4, -8, -5]


def _weights(path, bumpy=False):
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(3)
    w = torch.randn(64, 128, generator=g)
    w.view(-1)[::37] *= 6.0  # outliers: the search clips somewhere
    tensors = {"l.weight": w}
    if bumpy:
        tensors["k.weight"] = torch.tensor([BUMPY], dtype=torch.float32)
    save_file(tensors, path, metadata={"format": "pt"})


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


OPTIONS = {"observer_maxshrink": 0.5, "observer_grid": 20, "observer_norm": 1.5,
           "observer_patience": 2}


def test_options_match_cli():
    import json
    tmp = tempfile.mkdtemp(prefix="mq_pyobsopt_")
    try:
        src = os.path.join(tmp, "in.safetensors")
        _weights(src, bumpy=True)
        scheme = {"preset": "W4A16", "group_size": 32, "observer": "mse", "device": "host"}

        def py(name, **kw):
            out = os.path.join(tmp, name)
            r = monoquant.quantize_file(src, out, progress=False, **kw)
            with open(out, "rb") as f:
                return f.read(), r

        got, r = py("kw.safetensors", **scheme, **OPTIONS)
        assert r["observer_options"] == {"maxshrink": 0.5, "grid": 20, "norm": 1.5,
                                         "patience": 2}, r["observer_options"]
        cli = os.path.join(tmp, "cli.safetensors")
        rc, log = mqcheck.cli("quantize", src, "-o", cli, "--preset", "W4A16", "--group-size",
                              "32", "--observer", "mse", "--observer-maxshrink", "0.5",
                              "--observer-grid", "20", "--observer-norm", "1.5",
                              "--observer-patience", "2", "--device", "host", "-q")
        assert rc == 0, log
        with open(cli, "rb") as f:
            assert got == f.read()
        # The config file's keys of the same names.
        conf = os.path.join(tmp, "c.json")
        with open(conf, "w") as f:
            json.dump(dict(OPTIONS, observer="mse"), f)
        cli2 = os.path.join(tmp, "cli2.safetensors")
        rc, log = mqcheck.cli("quantize", src, "-o", cli2, "--preset", "W4A16", "--group-size",
                              "32", "--config", conf, "--device", "host", "-q")
        assert rc == 0, log
        with open(cli2, "rb") as f:
            assert got == f.read()
        # The same through a QuantizationConfig and a dict.
        cfg = QuantizationConfig(**scheme, **OPTIONS)
        assert py("cfg.safetensors", config=cfg)[0] == got
        assert py("dict.safetensors", config=dict(scheme, **OPTIONS))[0] == got
        # A state dict gives the file's tensors.
        from safetensors.torch import load_file
        sd, _ = monoquant.dynamic_quantize(load_file(src), config=cfg)
        want = load_file(os.path.join(tmp, "kw.safetensors"))
        assert sorted(sd) == sorted(want)
        assert all(torch.equal(sd[k], want[k]) for k in want)
        # Each option on its own changes the bytes (so none is dropped on the
        # way); maxshrink alone narrower than the default, as a wider one would
        # stop on the default patience.
        plain = py("plain.safetensors", **scheme)[0]
        assert plain != got
        for key, value in dict(OPTIONS, observer_maxshrink=0.03).items():
            assert py(key + ".safetensors", **scheme, **{key: value})[0] != plain, key
    finally:
        shutil.rmtree(tmp)


def test_option_errors():
    assert QuantizationConfig(observer="mse", observer_grid=50).observer_grid == 50
    for key, bad in (("observer_maxshrink", 1.5), ("observer_maxshrink", 0),
                     ("observer_grid", -1), ("observer_grid", float("inf")),
                     ("observer_norm", "2"), ("observer_norm", True),
                     ("observer_patience", 0), ("observer_patience", 2.0),
                     ("observer_patience", 1000001)):
        pkgtest.expect_error(lambda: QuantizationConfig(observer="mse", **{key: bad}), key)
        pkgtest.expect_error(lambda: monoquant.quantize_file("x", "y", observer="mse",
                                                             **{key: bad}), key)


def test_config_field():
    assert QuantizationConfig(observer="mse").observer == "mse"
    pkgtest.expect_error(lambda: QuantizationConfig(observer="gptq"), "observer", "mse")
    pkgtest.expect_error(lambda: monoquant.quantize_file("x", "y", observer=3), "observer")


if __name__ == "__main__":
    pkgtest.main(__file__, dict(globals()))
