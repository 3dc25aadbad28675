"""nn.LSTM and nn.GRU, when modules= selects them: torch.ao's dynamic LSTM /
GRU (the packed quantized cells PyTorch ships) holding our codes, scales
and zero points for every weight_ih / weight_hh, the biases in float.
Opt-in only, so that the original design's default (Linear and Conv) holds."""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

RNN_TYPES = (nn.LSTM, nn.GRU)


def supported(m: Any) -> bool:
    return type(m) in RNN_TYPES and not getattr(m, "proj_size", 0)


def weight_params(m: Any) -> List[str]:
    """weight_ih_l0, weight_hh_l0, ... of every layer and direction."""
    names = []
    for layer in range(m.num_layers):
        for suffix in ("", "_reverse") if m.bidirectional else ("",):
            names += ["weight_ih_l%d%s" % (layer, suffix), "weight_hh_l%d%s" % (layer, suffix)]
    return names


def row_name(module: str, param: str) -> str:
    # A name the library treats as a Linear weight (it ends in "weight").
    return "%s%s.weight" % (module + "." if module else "", param)


def _qtensor(codes: torch.Tensor, scale: torch.Tensor, zp: Optional[torch.Tensor]) -> Any:
    s = scale.reshape(-1).to(torch.float64)
    z = (torch.zeros(s.numel(), dtype=torch.int64) if zp is None
         else zp.reshape(-1).to(torch.int64))
    if s.numel() == 1:
        return torch._make_per_tensor_quantized_tensor(codes, float(s[0]), int(z[0]))
    return torch._make_per_channel_quantized_tensor(codes, s, z, 0)


def build(m: Any, weights: Dict[str, Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]]
          ) -> Any:
    """torch.ao's dynamic module for `m` with our codes; None if the packed
    kernels refuse (the caller leaves `m` in float)."""
    from torch.ao.nn.quantized import dynamic as nnqd
    cls = nnqd.LSTM if type(m) is nn.LSTM else nnqd.GRU
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = cls(m.input_size, m.hidden_size, num_layers=m.num_layers, bias=m.bias,
                    batch_first=m.batch_first, dropout=float(m.dropout),
                    bidirectional=m.bidirectional, dtype=torch.qint8)
            wb: Dict[str, Any] = {}
            for param, (codes, scale, zp) in weights.items():
                wb[param] = _qtensor(codes.cpu(), scale.cpu(), None if zp is None else zp.cpu())
                bias = getattr(m, param.replace("weight", "bias"), None)
                wb[param.replace("weight", "bias")] = (None if bias is None
                                                       else bias.detach().float().cpu())
            q.set_weight_bias(wb)
    except (RuntimeError, TypeError, ValueError):
        return None
    return q
