"""Settings of a run: QuantizationConfig and how explicit arguments, a config
and the library's defaults resolve into the dict that _core maps to mq_config."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ._core import QuantizationError

__all__ = ["QuantizationConfig", "resolve", "dtype_name"]


@dataclass
class QuantizationConfig:
    """Settings of a quantization run; the fields of the C library's mq_config.

    A field left at None is not set: an explicit argument of the call wins over
    it, and the library's default (int8, symmetric, per channel, W8A8, device
    "auto") applies when neither sets it.

    Attributes:
        dtype: ``torch.qint8`` / ``"int8"`` or ``torch.float16`` / ``"fp16"``.
        symmetric: int8 symmetric (no zero point) or asymmetric (zero points).
        per_channel: one scale per output channel, or one per tensor.
        include: patterns forced into quantization (shell globs, exact names, or
            ``"re:REGEX"`` with Python ``re.match`` semantics).
        exclude: patterns kept in float; they win over ``include``.
        device: ``"auto"``, ``"host"``, ``"opencl"``, ``"gpu"``, ``"cpu"``,
            ``"P:D"`` or part of a device name (see :func:`monoquant.devices`).
        weights_only: int8 symmetric weights packed for weight-only kernels
            (compressed-tensors ``pack-quantized``) instead of W8A8.
        skip_nonfinite: leave a weight holding NaN/Inf in float instead of failing.
        fp16_saturate: fp16 overflow becomes +-65504 instead of +-inf.
    """

    dtype: Any = None
    symmetric: Optional[bool] = None
    per_channel: Optional[bool] = None
    include: Sequence[str] = field(default_factory=list)
    exclude: Sequence[str] = field(default_factory=list)
    device: Optional[str] = None
    weights_only: Optional[bool] = None
    skip_nonfinite: Optional[bool] = None
    fp16_saturate: Optional[bool] = None


_INT8 = {"int8", "qint8", "i8", "torch.qint8", "torch.int8"}
_FP16 = {"fp16", "float16", "half", "f16", "torch.float16", "torch.half"}
_BOOLS = ("symmetric", "per_channel", "weights_only", "skip_nonfinite", "fp16_saturate",
          "follow_symlinks")
# Settings of the file calls beyond QuantizationConfig's fields.
FILE_ONLY = ("memory_limit", "follow_symlinks")


def dtype_name(dtype: Any) -> Optional[str]:
    """"int8", "fp16" or None for a dtype given as torch/numpy dtype or string."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        key = dtype.lower()
    else:
        key = None
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(dtype, torch.dtype):
            key = {torch.qint8: "int8", torch.int8: "int8", torch.float16: "fp16"}.get(dtype, "")
        else:
            np = sys.modules.get("numpy")
            try:
                if np is not None:
                    key = {"int8": "int8", "float16": "fp16"}.get(np.dtype(dtype).name, "")
            except TypeError:
                key = None
    if key in _INT8:
        return "int8"
    if key in _FP16:
        return "fp16"
    raise QuantizationError("unsupported dtype %r: use torch.qint8 (int8) or torch.float16 (fp16)"
                            % (dtype,))


def _check_patterns(key: str, value: Any) -> List[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise QuantizationError("bad config: %s must be a list of patterns, got %r" % (key, value))
    for p in value:
        if not isinstance(p, str):
            raise QuantizationError("bad config: %s pattern %r is not a string" % (key, p))
    return list(value)


def resolve(config: Union[QuantizationConfig, Mapping[str, Any], None],
            **explicit: Any) -> Dict[str, Any]:
    """Explicit arguments (not None) > config fields (not None) > defaults.

    Returns the dict _core reads (dtype "int8"/"fp16", booleans, patterns,
    device); None leaves the library's default. Raises QuantizationError on a
    bad config or value.
    """
    if config is None:
        base: Dict[str, Any] = {}
    elif isinstance(config, QuantizationConfig):
        base = {f.name: getattr(config, f.name) for f in fields(config)}
    elif isinstance(config, Mapping):
        known = {f.name for f in fields(QuantizationConfig)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise QuantizationError("bad config: unknown setting(s) %s" % ", ".join(unknown))
        base = dict(config)
    else:
        raise QuantizationError("bad config: expected a QuantizationConfig or a dict, got %s"
                                % type(config).__name__)
    settings = dict(base)
    for key, value in explicit.items():
        if value is not None:
            settings[key] = value
    out: Dict[str, Any] = {"dtype": dtype_name(settings.get("dtype"))}
    for key in _BOOLS:
        v = settings.get(key)
        if v is not None and not isinstance(v, bool):
            raise QuantizationError("bad config: %s must be True, False or None, got %r"
                                    % (key, v))
        out[key] = v
    out["include"] = _check_patterns("include", settings.get("include"))
    out["exclude"] = _check_patterns("exclude", settings.get("exclude"))
    device = settings.get("device")
    if device is not None and not isinstance(device, str):
        raise QuantizationError("bad config: device must be a string, got %r" % (device,))
    out["device"] = device
    limit = settings.get("memory_limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise QuantizationError("bad config: memory_limit must be bytes (an int >= 0), got %r"
                                % (limit,))
    out["memory_limit"] = limit
    return out
