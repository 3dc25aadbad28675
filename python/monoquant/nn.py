"""Quantized torch modules that dynamic_quantize puts in place of nn.Linear and
nn.Conv1d/2d/3d.

int8 (``Quantized*``): int8 codes with per-output-channel (or per-tensor)
scales and, for asymmetric weights, zero points; the bias stays float. fp16
(``Float16*``): fp16 weights, the bias in its own dtype. Both take and return
the input's dtype (fp32 in, fp32 out), as torch.ao's dynamic modules do.

Kernels (see monoquant._kernels): a Linear picks its kernel at its first call
on a device and records it in ``kernel`` and the reason the faster ones were
not taken in ``kernel_reason`` (both in ``repr``). CPU int8 runs PyTorch's
packed quantized kernels on our codes (``"packed"``, as torch.ao's dynamic
Linear), CUDA int8 ``torch._int_mm`` (``"int_mm"``), CPU fp16 the packed fp16
kernel (``"packed_fp16"``); the fallback of each is ``"dequantize"``: the
weight dequantized ((q - zp) * scale) and the float op. Convolutions always
dequantize (PyTorch's quantized::conv2d_dynamic loses too much accuracy:
cosine 0.90 to the float result on a random 3x3 convolution). ``kernel_choice``
(class-wide or per module) forces one: ``"dequantize"`` gives output that
depends on the weights only; ``use_int_mm = False`` is its older spelling.

Gradients: the input gradient is the float layer's with the dequantized weight
(an autograd Function around the int8 kernels); the quantized weights are
frozen (``requires_grad=False`` parameters), a trainable bias gets its
gradient. ``torch.jit.script`` scripts an equivalent module: the same packed
op and weight (int8 and fp16 Linear), the float op otherwise."""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import _kernels as K
from . import _layout

__all__ = ["QuantizedLinear", "QuantizedConv1d", "QuantizedConv2d", "QuantizedConv3d",
           "Float16Linear", "Float16Conv1d", "Float16Conv2d", "Float16Conv3d"]


INT, PACK = "int-quantized", "pack-quantized"


def _frozen(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t, requires_grad=False)


class _Weighted(nn.Module):
    """What the int8 and fp16 modules share: the float bias, the original
    dtype, a kernel cache that copies and pickles leave behind."""

    float_dtype: torch.dtype

    def _set_bias(self, bias: Optional[torch.Tensor], dtype: torch.dtype) -> None:
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(),
                                                           requires_grad=bias.requires_grad)
        self.float_dtype = dtype
        self._cache: Any = None
        self.kernel: Optional[str] = None
        self.kernel_reason = ""

    def __getstate__(self) -> dict:
        # Packed kernel weights are rebuilt at the next call, not copied.
        state = dict(self.__dict__)
        state["_cache"] = None
        return state

    def dequantize_weight(self, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        raise NotImplementedError

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight (computed on each access; for code that reads .weight)."""
        return self.dequantize_weight()

    def _kernel_text(self) -> str:
        if self.kernel is None:
            return "kernel chosen at the first call"
        return "kernel=%s%s" % (self.kernel, " (%s)" % self.kernel_reason
                                if self.kernel_reason else "")


class _Int8Weight(_Weighted):
    """int8 codes (a frozen parameter, so num_parameters counts it), scale (the
    original weight's dtype) and optional zero point (buffers)."""

    def _set_weight(self, q: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor],
                    bias: Optional[torch.Tensor], dtype: torch.dtype) -> None:
        self.weight_int8 = _frozen(q)
        self.register_buffer("weight_scale", scale.reshape(-1))
        self.register_buffer("weight_zero_point",
                             None if zero_point is None else zero_point.reshape(-1))
        # compressed-tensors' format of the file layout (state_dict, saves):
        # pack-quantized for asymmetric and weights-only weights.
        self.weight_format = PACK if zero_point is not None else INT
        self._set_bias(bias, dtype)

    def _shape_per_channel(self, v: torch.Tensor) -> torch.Tensor:
        return v.reshape((-1,) + (1,) * (self.weight_int8.dim() - 1))

    def dequantize_weight(self, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """(q - zp) * scale in fp32, cast to `dtype` (default: the original weight's)."""
        w = self.weight_int8.detach().to(torch.float32)
        if self.weight_zero_point is not None:
            w = w - self._shape_per_channel(self.weight_zero_point.to(torch.float32))
        w = w * self._shape_per_channel(self.weight_scale.to(torch.float32))
        return w.to(dtype or self.float_dtype)

    # state_dict in the file layout (monoquant._layout): what save_pretrained
    # and torch.save write, and what load_state_dict takes back (the
    # in-memory names weight_int8 / flat weight_scale are accepted too).
    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        q = destination.pop(prefix + "weight_int8")
        s = destination.pop(prefix + "weight_scale")
        zp = destination.pop(prefix + "weight_zero_point", None)
        for key, t in _layout.to_file(q, s, zp, self.weight_format == PACK).items():
            destination[prefix + key] = t

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        if prefix + "weight_int8" not in state_dict and (
                prefix + "weight" in state_dict or prefix + "weight_packed" in state_dict):
            found = {k: state_dict.pop(prefix + k) for k in _layout.FILE_KEYS
                     if prefix + k in state_dict}
            if "weight_scale" in found:
                codes, scale, zp = _layout.from_file(found)
                self.weight_format = PACK if "weight_packed" in found else INT
                state_dict[prefix + "weight_int8"] = codes
                state_dict[prefix + "weight_scale"] = scale
                if zp is not None:
                    state_dict[prefix + "weight_zero_point"] = zp
            else:
                state_dict.update({prefix + k: v for k, v in found.items()})
        elif prefix + "weight_scale" in state_dict:
            state_dict[prefix + "weight_scale"] = state_dict[prefix + "weight_scale"].reshape(-1)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        kind = "asymmetric" if self.weight_zero_point is not None else "symmetric"
        per = "per channel" if self.weight_scale.numel() > 1 else "per tensor"
        return "%s, int8 %s %s, bias=%s, %s" % (tuple(self.weight_int8.shape), kind, per,
                                               self.bias is not None, self._kernel_text())


class _Float16Weight(_Weighted):
    def _set_weight(self, w16: torch.Tensor, bias: Optional[torch.Tensor],
                    dtype: torch.dtype) -> None:
        self.weight_fp16 = _frozen(w16)
        self._set_bias(bias, dtype)

    def dequantize_weight(self, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        return self.weight_fp16.detach().to(dtype or self.float_dtype)

    # state_dict: the fp16 weight as "weight", as an fp16 checkpoint holds it.
    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight"] = destination.pop(prefix + "weight_fp16")

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        if prefix + "weight_fp16" not in state_dict and prefix + "weight" in state_dict:
            state_dict[prefix + "weight_fp16"] = state_dict.pop(prefix + "weight")
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return "%s, fp16, bias=%s, %s" % (tuple(self.weight_fp16.shape), self.bias is not None,
                                          self._kernel_text())


class _LinearForward:
    """forward of both Linear kinds: the cached kernel plan, the autograd rule."""

    use_int_mm: bool = True
    kernel_choice: Optional[str] = None
    in_features: int
    out_features: int
    _STORED: tuple = ()

    def _prepare(self, x2: torch.Tensor) -> tuple:
        """(kernel, packed weight or None, reason) for this device."""
        raise NotImplementedError

    def _stamp(self) -> tuple:
        # Which tensors the plan was built from, and their in-place versions
        # (load_state_dict copies into them), read from the module's own
        # dicts: this runs on every call.
        p, b = self._parameters, self._buffers
        out = [self.kernel_choice if self.use_int_mm else K.DEQUANTIZE]
        for name in self._STORED:
            t = p.get(name)
            if t is None:
                t = b.get(name)
            if t is not None:
                out += (id(t), t._version)
        return tuple(out)

    def _plan(self, x: torch.Tensor) -> tuple:
        """The cache (device, stamp, kernel, packed weight, reason)."""
        c = self._cache
        stamp = self._stamp()
        if c is not None and c[0] == x.device and c[1] == stamp:
            return c
        forced = stamp[0]
        if forced == K.DEQUANTIZE:
            plan = (K.DEQUANTIZE, None, "chosen by the caller")
        else:
            plan = self._prepare(x)
            if forced is not None and plan[0] != forced:
                raise RuntimeError("kernel_choice %r is not available here (this input's "
                                   "device runs %r%s)" % (forced, plan[0], ": " + plan[2]
                                                          if plan[2] else ""))
        self._cache = (x.device, stamp) + plan
        self.kernel, self.kernel_reason = plan[0], plan[2]
        return self._cache

    def _run_kernel(self, x: torch.Tensor, plan: Optional[tuple] = None) -> torch.Tensor:
        kernel, packed = (plan or self._plan(x))[2:4]
        if kernel == K.PACKED or kernel == K.PACKED_FP16:
            # The packed ops take fp32 of any rank (leading dimensions are rows).
            xf = x if x.dtype == torch.float32 else x.to(torch.float32)
            if kernel == K.PACKED:
                y = K.LINEAR_DYNAMIC(xf, packed, K.REDUCE_RANGE[0])
            else:
                y = K.LINEAR_DYNAMIC_FP16(xf, packed)
            return y if y.dtype == x.dtype else y.to(x.dtype)
        x2 = x.reshape(-1, self.in_features)
        if kernel == K.INT_MM and K.int_mm_refusal(x2, self.out_features) is None:
            y = K.run_int_mm(x2, self.weight_int8, self.weight_scale)
            if self.bias is not None:
                y = y + self.bias.to(torch.float32)
        else:
            y = K.linear_dequantized(x2, self.dequantize_weight(x.dtype), self.bias)
        return y.to(x.dtype).reshape(x.shape[:-1] + (self.out_features,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            raise TypeError("%s takes a floating-point input, got %s"
                            % (type(self).__name__, x.dtype))
        plan = self._plan(x)
        kernel = plan[2]
        bias = self._parameters.get("bias")
        if kernel == K.DEQUANTIZE:
            return F.linear(x, self.dequantize_weight(x.dtype),
                            None if bias is None else bias.to(x.dtype))
        if torch.is_grad_enabled() and (x.requires_grad or (
                bias is not None and bias.requires_grad)):
            return K.LinearFunction.apply(x, bias, self)
        return self._run_kernel(x, plan)


class QuantizedLinear(_LinearForward, _Int8Weight):
    """nn.Linear with an int8 weight. See the module docstring for the kernels."""

    def __init__(self, linear: nn.Linear, q: torch.Tensor, scale: torch.Tensor,
                 zero_point: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self._set_weight(q, scale, zero_point, linear.bias, linear.weight.dtype)

    _STORED = ("weight_int8", "weight_scale", "weight_zero_point", "bias")

    def _prepare(self, x2: torch.Tensor) -> tuple:
        if x2.device.type == "cpu":
            packed, why = K.prepack_int8(self.weight_int8, self.weight_scale,
                                         self.weight_zero_point, self.bias)
            if packed is not None:
                return K.PACKED, packed, ""
            return K.DEQUANTIZE, None, why
        if self.weight_zero_point is not None:
            return K.DEQUANTIZE, None, "torch._int_mm takes symmetric weights only"
        if not hasattr(torch, "_int_mm"):
            return K.DEQUANTIZE, None, "this torch has no torch._int_mm"
        return K.INT_MM, None, "inputs of 16 rows or fewer dequantize"

    def __prepare_scriptable__(self) -> nn.Module:
        packed, _ = K.prepack_int8(self.weight_int8.detach().cpu(), self.weight_scale.cpu(),
                                   None if self.weight_zero_point is None
                                   else self.weight_zero_point.cpu(), self.bias)
        if packed is None:
            return _float_linear(self)
        return _ScriptedPacked(packed, self.out_features, K.REDUCE_RANGE[0], False)


class Float16Linear(_LinearForward, _Float16Weight):
    """nn.Linear with an fp16 weight; fp32 (or any float) in, the same dtype out."""

    def __init__(self, linear: nn.Linear, w16: torch.Tensor) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self._set_weight(w16, linear.bias, linear.weight.dtype)

    _STORED = ("weight_fp16", "bias")

    def _prepare(self, x2: torch.Tensor) -> tuple:
        if x2.device.type != "cpu":
            return K.DEQUANTIZE, None, "the packed fp16 kernel is CPU only"
        if x2.dtype != torch.float32:
            return K.DEQUANTIZE, None, "the packed fp16 kernel takes fp32 inputs"
        packed, why = K.prepack_fp16(self.weight_fp16, self.bias)
        if packed is None:
            return K.DEQUANTIZE, None, why
        return K.PACKED_FP16, packed, ""

    def __prepare_scriptable__(self) -> nn.Module:
        packed, _ = K.prepack_fp16(self.weight_fp16.detach().cpu(), self.bias)
        if packed is None:
            return _float_linear(self)
        return _ScriptedPacked(packed, self.out_features, False, True)


class _ScriptedPacked(nn.Module):
    """What torch.jit.script compiles for a Linear on a packed kernel: the same
    packed weight and op, without the Python-side kernel choice."""

    def __init__(self, packed: Any, out_features: int, reduce_range: bool, fp16: bool) -> None:
        super().__init__()
        self.packed = packed
        self.out_features = out_features
        self.reduce_range = reduce_range
        self.fp16 = fp16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1]).to(torch.float32).contiguous()
        if self.fp16:
            y = torch.ops.quantized.linear_dynamic_fp16(x2, self.packed)
        else:
            y = torch.ops.quantized.linear_dynamic(x2, self.packed, self.reduce_range)
        shape = list(x.shape[:-1])
        shape.append(self.out_features)
        return y.to(x.dtype).reshape(shape)


def _float_linear(m: Any) -> nn.Linear:
    lin = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None,
                    dtype=m.float_dtype, device=m.dequantize_weight().device)
    with torch.no_grad():
        lin.weight.copy_(m.dequantize_weight())
        if m.bias is not None:
            lin.bias.copy_(m.bias)
    lin.weight.requires_grad_(False)
    return lin


_CONV_ATTRS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
               "groups", "padding_mode", "_reversed_padding_repeated_twice")


class _ConvForward:
    _conv: Any = None
    _float: Any = None

    def _copy_conv(self, conv: nn.Module) -> None:
        for attr in _CONV_ATTRS:
            setattr(self, attr, getattr(conv, attr))
        self.kernel = K.DEQUANTIZE
        self.kernel_reason = "PyTorch's dynamic convolution is too inexact"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantize_weight(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        conv = type(self)._conv
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return conv(x, w, bias, self.stride, 0, self.dilation, self.groups)
        return conv(x, w, bias, self.stride, self.padding, self.dilation, self.groups)

    def __prepare_scriptable__(self) -> nn.Module:
        w = self.dequantize_weight()
        m = type(self)._float(self.in_channels, self.out_channels, self.kernel_size,
                              stride=self.stride, padding=self.padding, dilation=self.dilation,
                              groups=self.groups, bias=self.bias is not None,
                              padding_mode=self.padding_mode, dtype=w.dtype, device=w.device)
        with torch.no_grad():
            m.weight.copy_(w)
            if self.bias is not None:
                m.bias.copy_(self.bias)
        m.weight.requires_grad_(False)
        return m


class _QuantizedConv(_ConvForward, _Int8Weight):
    def __init__(self, conv: nn.Module, q: torch.Tensor, scale: torch.Tensor,
                 zero_point: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        self._set_weight(q, scale, zero_point, conv.bias, conv.weight.dtype)
        self._copy_conv(conv)


class _Float16Conv(_ConvForward, _Float16Weight):
    def __init__(self, conv: nn.Module, w16: torch.Tensor) -> None:
        super().__init__()
        self._set_weight(w16, conv.bias, conv.weight.dtype)
        self._copy_conv(conv)


class QuantizedConv1d(_QuantizedConv):
    """nn.Conv1d with an int8 weight (dequantized on the fly)."""
    _conv, _float = staticmethod(F.conv1d), nn.Conv1d


class QuantizedConv2d(_QuantizedConv):
    """nn.Conv2d with an int8 weight (dequantized on the fly)."""
    _conv, _float = staticmethod(F.conv2d), nn.Conv2d


class QuantizedConv3d(_QuantizedConv):
    """nn.Conv3d with an int8 weight (dequantized on the fly)."""
    _conv, _float = staticmethod(F.conv3d), nn.Conv3d


class Float16Conv1d(_Float16Conv):
    """nn.Conv1d with an fp16 weight, computed in the input's dtype."""
    _conv, _float = staticmethod(F.conv1d), nn.Conv1d


class Float16Conv2d(_Float16Conv):
    """nn.Conv2d with an fp16 weight, computed in the input's dtype."""
    _conv, _float = staticmethod(F.conv2d), nn.Conv2d


class Float16Conv3d(_Float16Conv):
    """nn.Conv3d with an fp16 weight, computed in the input's dtype."""
    _conv, _float = staticmethod(F.conv3d), nn.Conv3d


# Exact types only: a subclass may override forward (MultiheadAttention's
# out_proj is read as .weight by its parent), so it is left in float.
QUANTIZABLE = {nn.Linear: QuantizedLinear, nn.Conv1d: QuantizedConv1d,
               nn.Conv2d: QuantizedConv2d, nn.Conv3d: QuantizedConv3d}
FLOAT16 = {nn.Linear: Float16Linear, nn.Conv1d: Float16Conv1d,
           nn.Conv2d: Float16Conv2d, nn.Conv3d: Float16Conv3d}
