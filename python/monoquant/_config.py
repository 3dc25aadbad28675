"""Settings of a run: QuantizationConfig and how explicit arguments, a config
and the library's defaults resolve into the dict that _core maps to mq_config."""
from __future__ import annotations

import math
import os
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

    A `preset` sets the scheme fields (dtype, symmetric, per_channel,
    weights_only, group_size and FP8 blocks) first; the scheme fields given
    beside it refine it, as the CLI's flags refine ``--preset``. A preset given
    as an argument of the call replaces the config's preset and scheme fields.

    Attributes:
        preset: a compressed-tensors preset name, case-insensitive: ``"W8A8"``
            (= ``"INT8"``, the default), ``"W8A16"``, ``"W8A16_ASYM"``,
            ``"W4A16"``, ``"W4A16_ASYM"``, ``"FP8_DYNAMIC"``, ``"FP8_BLOCK"``,
            ``"MXFP4A16"``, ``"MXFP4"``, ``"MXFP8A16"``, ``"MXFP8"``,
            ``"NVFP4A16"`` (files and state dicts), ``"FP16"`` (see
            :func:`monoquant.presets`).
        dtype: ``torch.qint8`` / ``"int8"``, ``torch.float16`` / ``"fp16"``,
            ``"int4"`` (weights only, packed), ``torch.float8_e4m3fn`` /
            ``"fp8"`` (e4m3 weights, dynamic fp8 activations), ``"mxfp4"`` /
            ``"mxfp8"`` (e2m1 / e4m3 codes with e8m0 scales per 32 values), or
            ``"nvfp4"`` (e2m1 codes, e4m3 scales per 16 under a global scale).
        symmetric: symmetric (no zero point) or asymmetric (zero points; int only).
        per_channel: one scale per output channel, or one per tensor.
        group_size: values per group along the input dimension, each group with
            its own scale (int8 weights only and int4); ``-1`` or ``"channel"``:
            per channel.
        include: patterns forced into quantization (shell globs, exact names, or
            ``"re:REGEX"`` with Python ``re.match`` semantics).
        exclude: patterns kept in float; they win over ``include``.
        device: ``"auto"``, ``"host"``, ``"opencl"``, ``"gpu"``, ``"cpu"``,
            ``"P:D"`` or part of a device name (see :func:`monoquant.devices`).
        weights_only: int8 symmetric weights packed for weight-only kernels
            (compressed-tensors ``pack-quantized``) instead of W8A8.
        skip_nonfinite: leave a weight holding NaN/Inf in float instead of failing.
        fp16_saturate: fp16 overflow becomes +-65504 instead of +-inf.
        observer: how each group's range is chosen: ``"minmax"`` (the default)
            or ``"mse"``, llm-compressor's memoryless MSE search of the
            clipping range with its default options (the CLI's ``--observer``).
        imatrix: with ``observer="mse"``, the path of llama.cpp's importance
            matrix (its GGUF or legacy ``.dat`` file, from ``llama-imatrix``):
            each weight's search then weighs column j's error by the mean
            square of that input column on the calibration text (the CLI's
            ``--imatrix``).
        observer_maxshrink, observer_grid, observer_norm, observer_patience:
            the ``mse`` search's options (the CLI's ``--observer-maxshrink``
            ... and the config file's keys of these names): the search tries
            ``int(observer_maxshrink * observer_grid)`` steps, the range
            shrunk by ``1 / observer_grid`` a step, each step's error the sum
            of ``|error|^observer_norm``, and stops after
            ``observer_patience`` steps in which no group improved. A number
            in (0, 1] (default 0.2), a positive number (100), a positive
            number (2.4) and a positive integer up to 1000000 (5); None keeps
            the default. Without ``observer="mse"`` they are not used.
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
    # Last, so that the fields before them keep their positions.
    preset: Optional[str] = None
    group_size: Union[int, str, None] = None
    observer: Optional[str] = None
    imatrix: Union[str, "os.PathLike[str]", None] = None
    observer_maxshrink: Optional[float] = None
    observer_grid: Optional[float] = None
    observer_norm: Optional[float] = None
    observer_patience: Optional[int] = None

    def __post_init__(self) -> None:
        # A bad value (dtype, preset, an impossible scheme) fails here, at
        # construction, not at the first call.
        from . import _core
        _core.scheme(resolve(self))


_INT8 = {"int8", "qint8", "i8", "torch.qint8", "torch.int8"}
_FP16 = {"fp16", "float16", "half", "f16", "torch.float16", "torch.half"}
_INT4 = {"int4", "qint4", "i4"}
_FP8 = {"fp8", "float8", "float8_e4m3", "float8_e4m3fn", "f8_e4m3", "torch.float8_e4m3fn"}
# The settings a preset sets; an explicit preset replaces the config's.
_SCHEME = ("preset", "dtype", "symmetric", "per_channel", "weights_only", "group_size")
_BOOLS = ("symmetric", "per_channel", "weights_only", "skip_nonfinite", "fp16_saturate",
          "follow_symlinks")
# Settings of the file calls beyond QuantizationConfig's fields.
FILE_ONLY = ("memory_limit", "follow_symlinks")
# Every setting the file calls take as a keyword.
SETTINGS = tuple(f.name for f in fields(QuantizationConfig)) + FILE_ONLY


def dtype_name(dtype: Any) -> Optional[str]:
    """"int8", "fp16", "int4", "fp8" or None for a dtype given as torch/numpy
    dtype or string."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        key = dtype.lower()
    else:
        key = None
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(dtype, torch.dtype):
            key = {torch.qint8: "int8", torch.int8: "int8", torch.float16: "fp16",
                   getattr(torch, "float8_e4m3fn", None): "fp8"}.get(dtype, "")
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
    if key in _INT4:
        return "int4"
    if key in _FP8:
        return "fp8"
    raise QuantizationError("unsupported dtype %r: use torch.qint8 (int8), torch.float16 (fp16), "
                            "\"int4\" or torch.float8_e4m3fn (\"fp8\"), or a preset" % (dtype,))


def _group_size(value: Any) -> Optional[int]:
    """The library's group_size (0: per channel) of -1, "channel" or a count."""
    if value is None:
        return None
    if isinstance(value, str) and value.lower() == "channel":
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value == 0 or value < -1:
        raise QuantizationError("bad config: group_size must be a positive count, -1 or "
                                "\"channel\" (per channel), got %r" % (value,))
    return 0 if value == -1 else value


def _observer_options(settings: Mapping[str, Any]) -> Dict[str, Any]:
    """The mse search's options, checked as the config file checks its keys:
    maxshrink in (0, 1], grid and norm positive, patience an integer in
    [1, 1000000]; None keeps the library's default."""
    out: Dict[str, Any] = {}
    for key in ("observer_maxshrink", "observer_grid", "observer_norm"):
        v = settings.get(key)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < math.inf:
                raise QuantizationError("bad config: %s must be a positive number, got %r"
                                        % (key, v))
            if key == "observer_maxshrink" and v > 1.0:
                raise QuantizationError("bad config: observer_maxshrink must be a number in "
                                        "(0, 1], got %r" % (v,))
            v = float(v)
        out[key] = v
    v = settings.get("observer_patience")
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1000000):
        raise QuantizationError("bad config: observer_patience must be a positive integer "
                                "(at most 1000000), got %r" % (v,))
    out["observer_patience"] = v
    return out


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

    A preset among the explicit arguments replaces the config's preset and
    scheme fields (the others given refine whichever preset applies; _core
    applies it first). Returns the dict _core reads (preset, dtype
    "int8"/"fp16"/"int4"/"fp8", group_size with 0 for per channel, booleans,
    patterns, device); None leaves the library's default. Raises
    QuantizationError on a bad config or value.
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
    if explicit.get("preset") is not None:
        for key in _SCHEME:
            settings.pop(key, None)
    for key, value in explicit.items():
        if value is not None:
            settings[key] = value
    preset = settings.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise QuantizationError("bad config: preset must be a string, got %r" % (preset,))
    out: Dict[str, Any] = {"preset": preset, "dtype": dtype_name(settings.get("dtype")),
                           "group_size": _group_size(settings.get("group_size"))}
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
    observer = settings.get("observer")
    if observer is not None and observer not in ("minmax", "mse"):
        raise QuantizationError("bad config: observer must be \"minmax\" or \"mse\", got %r"
                                % (observer,))
    out["observer"] = observer
    out.update(_observer_options(settings))
    imatrix = settings.get("imatrix")
    if imatrix is not None:
        if not isinstance(imatrix, (str, os.PathLike)) or not os.fspath(imatrix):
            raise QuantizationError("bad config: imatrix must be a file path, got %r"
                                    % (imatrix,))
        imatrix = os.fsdecode(os.fspath(imatrix))
    out["imatrix"] = imatrix
    return out
