"""The file layout of one quantized layer (README "Output layout") as torch
tensors: what a quantized module's state_dict holds, so that save_pretrained,
torch.save and load_quantized see the tensors quantize_dir writes.

Symmetric int8 (``int-quantized``): ``weight`` I8 in the original shape and
``weight_scale`` ``[out, 1]`` (per tensor ``[1]``). Asymmetric int8 Linear
(``pack-quantized``): ``weight_packed`` I32, four codes + 128 per word along
the last dimension, a row's last word padded with zero bytes;
``weight_shape`` I64; ``weight_scale``; ``weight_zero_point`` packed the same
way along dimension 0 (``[ceil(out/4), 1]``; per tensor a plain I8 ``[1]``)."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch


def _pack_rows(b: torch.Tensor) -> torch.Tensor:
    """uint8 [rows, n] -> int32 [rows, ceil(n/4)], little-endian, zero padded."""
    rows, n = b.shape
    words = (n + 3) // 4
    padded = torch.zeros((rows, words * 4), dtype=torch.uint8)
    padded[:, :n] = b
    return padded.view(torch.int32) if _little() else _swap(padded).view(torch.int32)


def _little() -> bool:
    import sys
    return sys.byteorder == "little"


def _swap(b: torch.Tensor) -> torch.Tensor:
    return b.reshape(b.shape[0], -1, 4).flip(-1).reshape(b.shape[0], -1)


def _unpack_rows(words: torch.Tensor, n: int) -> torch.Tensor:
    b = words.contiguous().view(torch.uint8)
    if not _little():
        b = _swap(b)
    return b[:, :n]


def _offset(codes: torch.Tensor) -> torch.Tensor:
    return (codes.to(torch.int16) + 128).to(torch.uint8)


def _unoffset(b: torch.Tensor) -> torch.Tensor:
    return (b.to(torch.int16) - 128).to(torch.int8)


def to_file(codes: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor],
            packed: bool = False) -> Dict[str, torch.Tensor]:
    """The layer's tensors under their file names (without the module prefix);
    `packed`: pack-quantized even when symmetric (weights-only)."""
    codes, scale = codes.detach(), scale.detach()
    file_scale = scale.reshape(-1, 1) if scale.numel() > 1 else scale.reshape(1)
    if (zero_point is None and not packed) or codes.dim() != 2:
        out = {"weight": codes, "weight_scale": file_scale}
        if zero_point is not None:
            out["weight_zero_point"] = zero_point.detach().reshape(-1)
        return out
    dev = codes.device
    c = codes.cpu()
    out = {"weight_packed": _pack_rows(_offset(c)).to(dev),
           "weight_shape": torch.tensor(list(c.shape), dtype=torch.int64, device=dev),
           "weight_scale": file_scale}
    if zero_point is None:
        return out
    zp = zero_point.detach().cpu().reshape(-1)
    if zp.numel() == 1:
        out["weight_zero_point"] = zp.to(torch.int8).to(dev)
    else:
        packed = _pack_rows(_offset(zp.to(torch.int8)).reshape(1, -1))
        out["weight_zero_point"] = packed.reshape(-1, 1).to(dev)
    return out


def from_file(t: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor,
                                                   Optional[torch.Tensor]]:
    """(codes, flat scale, flat zero point or None) from the file names."""
    scale = t["weight_scale"].reshape(-1)
    zp = t.get("weight_zero_point")
    if "weight_packed" in t:
        shape = [int(v) for v in t["weight_shape"].tolist()]
        codes = _unoffset(_unpack_rows(t["weight_packed"].cpu(), shape[-1])).reshape(shape)
        codes = codes.to(t["weight_packed"].device)
        if zp is not None and zp.dtype == torch.int32:
            zp = _unoffset(_unpack_rows(zp.cpu().reshape(1, -1), shape[0]).reshape(-1))
    else:
        codes = t["weight"]
    return codes, scale, None if zp is None else zp.reshape(-1).to(torch.int8)


FILE_KEYS = ("weight", "weight_packed", "weight_shape", "weight_scale", "weight_zero_point")
