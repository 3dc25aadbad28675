"""monoquant.nn at run time: the kernel each Linear runs on (PyTorch's packed
quantized kernels fed with our codes on CPU), the dequantize fallback, input
gradients, fp16 I/O dtypes, torch.jit.script, copies and pickles."""
import copy
import io
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))
import pkgtest  # noqa: E402

if __name__ == "__main__":
    pkgtest.need_package()

import torch  # noqa: E402
from torch import nn  # noqa: E402

import monoquant  # noqa: E402
from monoquant import dynamic_quantize  # noqa: E402

cos = torch.nn.functional.cosine_similarity
PACKED = bool(set(torch.backends.quantized.supported_engines) & {"fbgemm", "x86", "onednn"})


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 32)).eval()


def test_packed_kernel_holds_our_codes():
    if not PACKED:
        pkgtest.skip_test("no x86/fbgemm/onednn quantized engine")
    model = mlp()
    x = torch.randn(7, 64)
    for kw in ({}, {"symmetric": False}, {"per_channel": False}):
        q, _ = dynamic_quantize(model, **kw)
        with torch.no_grad():
            y = q(x)
        layer = q[0]
        assert layer.kernel == "packed" and layer.kernel_reason == "", repr(layer)
        assert "kernel=packed" in repr(layer)
        packed = layer._cache[3]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w, b = torch.ops.quantized.linear_unpack(packed)
        # Bit-level: the packed weight is our codes, scales and zero points.
        assert torch.equal(w.int_repr(), layer.weight_int8), kw
        if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            assert torch.equal(w.q_per_channel_scales().float(), layer.weight_scale.float())
            zp = w.q_per_channel_zero_points()
            want = (torch.zeros_like(zp) if layer.weight_zero_point is None
                    else layer.weight_zero_point.long())
            assert torch.equal(zp, want)
        else:
            assert w.q_scale() == float(layer.weight_scale[0])
        with torch.no_grad():
            ref = model(x)
        assert cos(ref, y, dim=1).min() >= 0.999, kw


def test_dequantize_fallback_and_forcing():
    model = mlp(1)
    q, _ = dynamic_quantize(model)
    x = torch.randn(5, 64)
    layer = q[0]
    layer.kernel_choice = "dequantize"
    with torch.no_grad():
        y = q(x)
        deq = torch.nn.functional.linear(x, layer.dequantize_weight(), layer.bias)
    assert layer.kernel == "dequantize" and q[2].kernel == ("packed" if PACKED else "dequantize")
    assert torch.allclose(y, q[2](torch.nn.functional.gelu(deq)), atol=1e-5)
    assert torch.allclose(layer(x), deq, atol=1e-5)
    layer.kernel_choice = None
    with torch.no_grad():
        layer(x)
    assert layer.kernel == ("packed" if PACKED else "dequantize")
    # A torch without the packed ops falls back, with the reason recorded.
    from monoquant import _kernels
    real = _kernels._quantized_ops
    try:
        _kernels._quantized_ops = lambda: None
        q2, _ = dynamic_quantize(model)
        with torch.no_grad():
            y2 = q2(x)
        assert q2[0].kernel == "dequantize", repr(q2[0])
        assert "no quantized::linear_prepack" in q2[0].kernel_reason
        assert q2[0].kernel_reason in repr(q2[0])
        h2, _ = dynamic_quantize(model, dtype=torch.float16)
        with torch.no_grad():
            h2(x)
        assert h2[0].kernel == "dequantize" and "linear_prepack_fp16" in h2[0].kernel_reason
    finally:
        _kernels._quantized_ops = real
    with torch.no_grad():
        q2[0].kernel_choice = q2[2].kernel_choice = "dequantize"
        assert torch.equal(y2, q2(x))
        q2[0].kernel_choice = q2[2].kernel_choice = None
    # Forcing a kernel that is not available is an error that says why.
    q2[0].kernel_choice = "int_mm"
    try:
        q2[0](x)
        raise AssertionError("int_mm on CPU was not refused")
    except RuntimeError as e:
        assert "int_mm" in str(e) and "not available" in str(e)
    q2[0].kernel_choice = None
    # Changing the codes in place (load_state_dict) repacks at the next call.
    q3, _ = dynamic_quantize(mlp(2))
    with torch.no_grad():
        q3(x)
        q3.load_state_dict(q.state_dict())
        assert torch.allclose(q3(x), q(x), atol=1e-6)


def test_input_gradient():
    model = mlp(3)
    for kw in ({}, {"symmetric": False}):
        q, _ = dynamic_quantize(model, **kw)
        ref = copy.deepcopy(model)
        with torch.no_grad():
            for i in (0, 2):
                ref[i].weight.copy_(q[i].dequantize_weight())
        x = torch.randn(9, 64, requires_grad=True)
        xr = x.detach().clone().requires_grad_(True)
        # As the issue measured it: q(x).sum().backward().
        q(x).sum().backward()
        ref(xr).sum().backward()
        c = cos(x.grad.flatten(), xr.grad.flatten(), dim=0)
        assert c >= 0.9999, (kw, float(c))
        assert q[0].weight_int8.grad is None and not q[0].weight_int8.requires_grad
        assert q[0].bias.grad is not None
        assert cos(q[0].bias.grad, ref[0].bias.grad, dim=0) >= 0.9999
    qf, _ = dynamic_quantize(model, dtype=torch.float16)
    x = torch.randn(9, 64, requires_grad=True)
    qf(x).sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float32


def test_fp16_io():
    model = mlp(4)
    h, _ = dynamic_quantize(model, dtype=torch.float16)
    x = torch.randn(3, 64)
    with torch.no_grad():
        y = h(x)
        assert y.dtype == torch.float32 and h(x.half()).dtype == torch.float16
        assert h(x.double()).dtype == torch.float64
        assert cos(model(x), y, dim=1).min() >= 0.9999
    assert h[0].weight_fp16.dtype == torch.float16


def test_jit_script_and_copies():
    model = mlp(5)
    x = torch.randn(4, 64)
    for kw in ({}, {"dtype": torch.float16}):
        q, _ = dynamic_quantize(model, **kw)
        s = torch.jit.script(q)
        with torch.no_grad():
            assert cos(s(x), q(x), dim=1).min() >= 0.9999, kw
    conv = nn.Conv1d(4, 6, 3)
    qc, _ = dynamic_quantize(conv)
    xc = torch.randn(2, 4, 9)
    with torch.no_grad():
        assert torch.allclose(torch.jit.script(qc)(xc), qc(xc), atol=1e-5)
    q, _ = dynamic_quantize(model)
    with torch.no_grad():
        y = q(x)  # builds the packed weight, which copies leave behind
    c = copy.deepcopy(q)
    buf = io.BytesIO()
    torch.save(q, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    with torch.no_grad():
        assert torch.equal(c(x), y) and torch.equal(loaded(x), y)


if __name__ == "__main__":
    pkgtest.main(__file__, dict(globals()))
