"""Which modules of an nn.Module stay in float, so that a Hugging Face model
quantized as a module keeps in float what quantize_dir keeps in float for its
files: the output head (``lm_head``, or any head tied to another module's
weight, whose tie quantizing would break), embeddings (never Linear), MoE
router gates (``gate``, ``shared_expert_gate``) and convolutions. A plain
nn.Module keeps the original design's rule: every Linear and Conv."""
from __future__ import annotations

import fnmatch
import re
import sys
from typing import Any, Iterable, Set

from ._core import QuantizationError

_ROUTERS = ("gate", "shared_expert_gate")


def is_hf_model(model: Any) -> bool:
    tf = sys.modules.get("transformers")
    base = getattr(tf, "PreTrainedModel", None) if tf is not None else None
    return base is not None and isinstance(model, base)


def _matches(pattern: str, name: str) -> bool:
    if pattern.startswith("re:"):
        return re.match(pattern[3:], name) is not None
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern == name


def _forced(include: Iterable[str], name: str) -> bool:
    return any(_matches(p, n) for p in include for n in (name, name + ".weight"))


def kept_in_float(model: Any, include: Iterable[str]) -> Set[str]:
    """Qualified names of the Linear/Conv modules the file path's rules keep in
    float (only for Hugging Face models; `include` patterns override them)."""
    if not is_hf_model(model):
        return set()
    import torch
    from torch import nn
    owners = {}
    for name, m in model.named_modules(remove_duplicate=False):
        w = getattr(m, "weight", None)
        if isinstance(w, torch.Tensor):
            owners.setdefault(id(w), set()).add(name)
    kept = set()
    for name, m in model.named_modules():
        if type(m) not in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d):
            continue
        leaf = name.rsplit(".", 1)[-1]
        tied = len(owners.get(id(m.weight), ())) > 1
        conv = type(m) is not nn.Linear
        if (leaf == "lm_head" or tied or leaf in _ROUTERS or conv) and not _forced(include, name):
            kept.add(name)
    return kept


def check_materialized(model: Any) -> None:
    """A model on the meta device has shapes but no values to quantize."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t is not None and t.device.type == "meta":
            raise QuantizationError(
                "tensor '%s' is on the meta device: it has no values to quantize; load or "
                "materialize the weights first (e.g. model.to_empty(device='cpu') and "
                "load_state_dict, or from_pretrained without a meta device)" % name)
