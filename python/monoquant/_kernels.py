"""The kernels a quantized Linear runs on, chosen per module at its first call
on a device, and the autograd rule that keeps their input gradient right.

CPU int8: PyTorch's packed quantized kernels (FBGEMM / oneDNN, the ops behind
torch.ao's dynamic Linear): our codes, scales and zero points become a
per-channel (or per-tensor) qint8 tensor, prepacked once, then
``quantized::linear_dynamic`` quantizes the activations per call. The packed
weight is unpacked once and compared with our codes: a kernel that would run
on other codes is not used. CUDA int8: ``torch._int_mm`` (per-token int8
activations) for symmetric weights where it takes the shape, else the weight
dequantized and a float matmul. CPU fp16: ``quantized::linear_dynamic_fp16``
(FBGEMM's packed fp16 weights), else the weight cast to the input's dtype.
Whatever runs, the module records it (``kernel``) and why the faster ones did
not (``kernel_reason``)."""
from __future__ import annotations

import warnings
from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F

PACKED, PACKED_FP16, INT_MM, DEQUANTIZE = "packed", "packed_fp16", "int_mm", "dequantize"


def _quantized_ops() -> Any:
    return getattr(torch.ops, "quantized", None)


def _engine_ok() -> Optional[str]:
    engine = torch.backends.quantized.engine
    if engine in (None, "none"):
        return "no quantized engine in this torch build"
    return None


# The ops themselves (resolved once: the per-call lookup costs as much as a
# small layer's GEMM).
LINEAR_DYNAMIC: Any = None
LINEAR_DYNAMIC_FP16: Any = None
# reduce_range of the int8 op, set when a weight is packed: as torch.ao's
# dynamic Linear, 7-bit activations on the x86 engines, whose AVX2 path sums
# pairs of u8*s8 products in saturating int16; full range on qnnpack.
REDUCE_RANGE = [True]


def _resolve_ops() -> None:
    global LINEAR_DYNAMIC, LINEAR_DYNAMIC_FP16
    ops = _quantized_ops()
    LINEAR_DYNAMIC = ops.linear_dynamic.default
    LINEAR_DYNAMIC_FP16 = ops.linear_dynamic_fp16.default
    REDUCE_RANGE[0] = torch.backends.quantized.engine != "qnnpack"


def prepack_int8(codes: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor],
                 bias: Optional[torch.Tensor]) -> Tuple[Any, str]:
    """(packed params, "") or (None, reason): the packed kernel's weight built
    from exactly our codes."""
    why = _engine_ok()
    if why:
        return None, why
    ops = _quantized_ops()
    if ops is None or not hasattr(ops, "linear_prepack"):
        return None, "this torch has no quantized::linear_prepack"
    if codes.device.type != "cpu":
        return None, "the packed kernels are CPU only"
    s = scale.detach().reshape(-1).to(torch.float64)
    zp = (torch.zeros(s.numel(), dtype=torch.int64) if zero_point is None
          else zero_point.detach().reshape(-1).to(torch.int64))
    b = None if bias is None else bias.detach().to(torch.float32)
    try:
        # Quantized tensors are the packed kernels' only input; torch warns
        # that creating them is deprecated in favour of torchao.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if s.numel() == 1:
                qw = torch._make_per_tensor_quantized_tensor(codes, float(s[0]), int(zp[0]))
            else:
                qw = torch._make_per_channel_quantized_tensor(codes, s, zp, 0)
            packed = ops.linear_prepack(qw, b)
            back = ops.linear_unpack(packed)[0]
    except (RuntimeError, TypeError, ValueError) as e:
        return None, "linear_prepack refused the weight (%s)" % str(e).splitlines()[0]
    if not torch.equal(back.int_repr(), codes):
        return None, "the packed weight holds other codes than ours"
    _resolve_ops()
    return packed, ""


def prepack_fp16(weight: torch.Tensor, bias: Optional[torch.Tensor]) -> Tuple[Any, str]:
    why = _engine_ok()
    if why:
        return None, why
    ops = _quantized_ops()
    if ops is None or not hasattr(ops, "linear_prepack_fp16"):
        return None, "this torch has no quantized::linear_prepack_fp16"
    if weight.device.type != "cpu":
        return None, "the packed kernels are CPU only"
    b = None if bias is None else bias.detach().to(torch.float32)
    try:
        packed = ops.linear_prepack_fp16(weight.detach().to(torch.float32), b)
    except (RuntimeError, TypeError) as e:
        return None, "linear_prepack_fp16 refused the weight (%s)" % str(e).splitlines()[0]
    _resolve_ops()
    return packed, ""


def int_mm_refusal(x2: torch.Tensor, out_features: int) -> Optional[str]:
    """Why torch._int_mm cannot take this input (None: it can)."""
    if not hasattr(torch, "_int_mm"):
        return "this torch has no torch._int_mm"
    if not x2.is_cuda:
        return "torch._int_mm is slow on CPU"
    if x2.shape[0] <= 16 or x2.shape[1] % 8 or out_features % 8:
        return "torch._int_mm needs more than 16 rows and sizes that are multiples of 8"
    return None


def run_int_mm(x2: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per-token symmetric int8 activations, int8 x int8 -> int32, then the scales."""
    xf = x2.to(torch.float32)
    s_x = xf.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).eps) / 127.0
    qx = torch.round(xf / s_x).clamp_(-127, 127).to(torch.int8)
    acc = torch._int_mm(qx, codes.t())
    return acc.to(torch.float32) * s_x * scale.to(torch.float32).reshape(1, -1)


class LinearFunction(torch.autograd.Function):
    """y = kernel(x) forward; backward through the dequantized weight, which is
    the gradient of the function the module approximates (weights frozen:
    they get none; a trainable bias gets its usual gradient)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bias: Optional[torch.Tensor],
                module: Any) -> torch.Tensor:
        ctx.module = module
        ctx.x_dtype = x.dtype
        ctx.bias_dtype = None if bias is None else bias.dtype
        with torch.no_grad():
            return module._run_kernel(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        m = ctx.module
        g2 = grad.reshape(-1, m.out_features).to(torch.float32)
        gx = gb = None
        if ctx.needs_input_grad[0]:
            w = m.dequantize_weight(torch.float32)
            gx = (g2 @ w).reshape(grad.shape[:-1] + (m.in_features,)).to(ctx.x_dtype)
        if ctx.needs_input_grad[1]:
            gb = g2.sum(0).to(ctx.bias_dtype)
        return gx, gb, None


def linear_dequantized(x: torch.Tensor, weight: torch.Tensor,
                       bias: Optional[torch.Tensor]) -> torch.Tensor:
    return F.linear(x, weight, None if bias is None else bias.to(x.dtype))
