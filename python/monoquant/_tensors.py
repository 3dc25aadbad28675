"""Tensors in and out of libmonoquant: torch tensors and numpy arrays to
(name, safetensors dtype, shape, buffer) rows and back. Contiguous CPU inputs
are handed over as they are (the buffer protocol, no copy here); CUDA and
non-contiguous tensors are first made contiguous on the host."""
from __future__ import annotations

import sys
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from ._core import QuantizationError

_NP_TO_ST = {"float32": "F32", "float16": "F16", "float64": "F64", "int8": "I8", "uint8": "U8",
             "int16": "I16", "uint16": "U16", "int32": "I32", "uint32": "U32", "int64": "I64",
             "uint64": "U64", "bool": "BOOL"}
_ST_TO_NP = {v: k for k, v in _NP_TO_ST.items()}


def _torch_maps():
    import torch
    t2s = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.float64: "F64", torch.int8: "I8", torch.uint8: "U8", torch.int16: "I16",
           torch.int32: "I32", torch.int64: "I64", torch.bool: "BOOL"}
    for name, st in (("uint16", "U16"), ("uint32", "U32"), ("uint64", "U64"),
                     ("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2")):
        if hasattr(torch, name):
            t2s[getattr(torch, name)] = st
    return t2s, {v: k for k, v in t2s.items()}


def is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_row(name: str, x: Any) -> Tuple[str, str, Tuple[int, ...], Any]:
    """(name, dtype, shape, buffer) of a tensor or array; QuantizationError if unfit."""
    if is_torch_tensor(x):
        import torch
        t2s, _ = _torch_maps()
        t = x.detach()
        if t.is_quantized or t.is_sparse or t.dtype not in t2s:
            raise QuantizationError("tensor '%s': unsupported dtype %s" % (name, t.dtype))
        if t.device.type != "cpu":
            t = t.cpu()
        if not t.is_contiguous():
            t = t.contiguous()
        # numpy has no bf16/fp8: the bytes travel as uint8 (a view, not a copy).
        buf = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b""
        return name, t2s[t.dtype], tuple(t.shape), buf
    if isinstance(x, np.ndarray) or np.isscalar(x):
        a = np.asarray(x)
        st = _NP_TO_ST.get(a.dtype.name)
        if st is None:
            raise QuantizationError("tensor '%s': unsupported dtype %s" % (name, a.dtype))
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        a = np.ascontiguousarray(a)
        return name, st, tuple(a.shape), a
    raise QuantizationError("tensor '%s': expected a torch.Tensor or numpy array, got %s"
                            % (name, type(x).__name__))


def from_row(dtype: str, shape: Tuple[int, ...], data: bytearray, as_torch: bool) -> Any:
    """A torch tensor or numpy array over an output row's bytes (no copy)."""
    if as_torch:
        import torch
        _, s2t = _torch_maps()
        if len(data) == 0:
            return torch.empty(shape, dtype=s2t[dtype])
        return torch.frombuffer(data, dtype=torch.uint8).view(s2t[dtype]).reshape(shape)
    if dtype not in _ST_TO_NP:
        raise QuantizationError("output dtype %s has no numpy equivalent; pass torch tensors"
                                % dtype)
    return np.frombuffer(data, dtype=_ST_TO_NP[dtype]).reshape(shape)


def unpack_int8(packed: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Codes of a pack-quantized weight: four codes + 128 per little-endian int32
    word along the last dimension (README "Output layout")."""
    words = np.ascontiguousarray(packed, dtype="<i4")
    b = words.view(np.uint8).reshape(words.shape[:-1] + (-1,))[..., :shape[-1]]
    return (b.astype(np.int16) - 128).astype(np.int8).reshape(shape)


def unpack_zero_point(zp: np.ndarray, channels: int) -> np.ndarray:
    """Per-channel zero points packed four to an int32 word along dimension 0
    ([ceil(out/4), 1]); per-tensor ones are a plain I8 [1]."""
    if zp.dtype == np.int8:
        return zp.reshape(-1)
    b = np.ascontiguousarray(zp, dtype="<i4").reshape(-1).view(np.uint8)[:channels]
    return (b.astype(np.int16) - 128).astype(np.int8)


def rows_of(state: Mapping[str, Any]) -> Tuple[List[tuple], bool]:
    rows, any_torch = [], False
    for name, x in state.items():
        if not isinstance(name, str):
            raise QuantizationError("state_dict key %r is not a string" % (name,))
        any_torch = any_torch or is_torch_tensor(x)
        rows.append(to_row(name, x))
    return rows, any_torch


def outputs_dict(outs: List[tuple], as_torch: bool) -> Dict[str, Any]:
    return {name: from_row(dtype, shape, data, as_torch) for name, dtype, shape, data in outs}
