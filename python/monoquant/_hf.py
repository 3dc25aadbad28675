"""Hugging Face models quantized as modules: the compressed-tensors
``quantization_config`` their config carries, so that ``save_pretrained``
writes what quantize_dir writes (the modules' state_dict is already the file
layout) and ``from_pretrained`` reloads it; and load_quantized, which builds
quantized modules from our files without dequantizing."""
from __future__ import annotations

import json
import os
import struct
from typing import Any, Dict, List, Union

from ._core import QuantizationError

# compressed-tensors' version the library writes (src/quant/layout.h MQ_CT_VERSION).
CT_VERSION = "0.20.1"
_INT_ACT = {"dynamic": True, "group_size": None, "num_bits": 8, "strategy": "token",
            "symmetric": True, "type": "int"}


def quantization_config(model: Any) -> Dict[str, Any]:
    """The block quantize_dir writes into config.json for the same layers and
    scheme (keys in its order); QuantizationError if the layers differ in scheme."""
    from torch import nn
    from .nn import QuantizedLinear
    schemes = set()
    ignore: List[str] = []
    for name, m in model.named_modules():
        if isinstance(m, QuantizedLinear):
            schemes.add((m.weight_format, m.weight_zero_point is None,
                         m.weight_scale.numel() > 1))
        elif isinstance(m, nn.Linear):
            ignore.append(name)
    if len(schemes) != 1:
        raise QuantizationError("the model's quantized Linear layers have %d schemes; a "
                                "compressed-tensors config holds one" % len(schemes))
    fmt, symmetric, per_channel = schemes.pop()
    weights = {"dynamic": False, "group_size": None, "num_bits": 8,
               "strategy": "channel" if per_channel else "tensor", "symmetric": symmetric,
               "type": "int"}
    group = {"format": fmt,
             "input_activations": dict(_INT_ACT) if fmt == "int-quantized" else None,
             "output_activations": None, "targets": ["Linear"], "weights": weights}
    return {"config_groups": {"group_0": group}, "format": fmt,
            "global_compression_ratio": None, "ignore": sorted(ignore),
            "kv_cache_scheme": None, "moe_sparsity_config": None,
            "quant_method": "compressed-tensors", "quantization_status": "compressed",
            "sparsity_config": {}, "transform_config": {}, "version": CT_VERSION}


def set_quantization_config(model: Any) -> None:
    model.config.quantization_config = quantization_config(model)


def _scheme_name(qc: Dict[str, Any]) -> str:
    w = qc["config_groups"]["group_0"]["weights"]
    name = "int8-%s-%s" % ("sym" if w["symmetric"] else "asym", w["strategy"])
    if w["symmetric"] and qc["format"] == "pack-quantized":
        name += "-weights-only"
    return name


def _read_header(path: str):
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise QuantizationError("'%s': not a safetensors file (too short)" % path)
        (n,) = struct.unpack("<Q", head)
        size = os.fstat(f.fileno()).st_size
        if n > size - 8 or n > (100 << 20):
            raise QuantizationError("'%s': not a safetensors file (bad header length)" % path)
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise QuantizationError("'%s': not a safetensors file (%s)" % (path, e)) from None
        return header, 8 + n


# The order in which the library writes a quantized weight's tensors, in the
# place of the float weight (the float file's tensors are in name order).
_RANK = {"_packed": 0, "_scale": 1, "_zero_point": 2, "_shape": 3}


def _file_order(name: str):
    for suffix, rank in _RANK.items():
        if name.endswith("weight" + suffix):
            return (name[:-len(suffix)], rank)
    return (name, 0)


def _rewrite_safetensors(path: str, extra: Dict[str, str]) -> None:
    """The file as the library writes it: the input's metadata then ours, the
    tensors in name order, a compact header padded with spaces to 8 bytes."""
    header, start = _read_header(path)
    meta = dict(header.pop("__metadata__", None) or {})
    meta.update(extra)
    with open(path, "rb") as f:
        blob = f.read()[start:]
    names = sorted(header, key=_file_order)
    out: Dict[str, Any] = {"__metadata__": meta}
    chunks, off = [], 0
    for name in names:
        a, b = header[name]["data_offsets"]
        chunks.append(blob[a:b])
        out[name] = {"dtype": header[name]["dtype"], "shape": header[name]["shape"],
                     "data_offsets": [off, off + (b - a)]}
        off += b - a
    text = json.dumps(out, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)
    os.replace(tmp, path)


def save_pretrained(model: Any, save_directory: Union[str, os.PathLike], **kwargs: Any) -> None:
    """model.save_pretrained, then the files in quantize_dir's form: config.json
    with ``quantization_config`` last, safetensors headers with the library's
    metadata. For a single-file model the bytes equal quantize_dir's output
    of the float model with the same settings (sharded saves keep
    transformers' shard boundaries)."""
    from .nn import QuantizedLinear
    from ._core import VERSION
    directory = os.fspath(save_directory)
    qc = getattr(model.config, "quantization_config", None)
    if not any(isinstance(m, QuantizedLinear) for m in model.modules()) or not isinstance(qc, dict):
        model.save_pretrained(directory, **kwargs)
        return
    model.save_pretrained(directory, **kwargs)
    cfg_path = os.path.join(directory, "config.json")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["quantization_config"] = cfg.pop("quantization_config")
    with open(cfg_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(cfg, indent=2) + "\n")
    extra = {"quantized_by": "monoquant " + VERSION, "quantization_scheme": _scheme_name(qc),
             "quantization_format": qc["format"]}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".safetensors"):
            _rewrite_safetensors(os.path.join(directory, name), extra)


def _files(path: str) -> List[str]:
    if not os.path.isdir(path):
        return [path]
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(path, s) for s in shards]
    found = sorted(n for n in os.listdir(path) if n.endswith(".safetensors"))
    if not found:
        raise QuantizationError("'%s' holds no .safetensors file" % path)
    return [os.path.join(path, n) for n in found]


def _read_tensors(path: str) -> Dict[str, Any]:
    import torch
    from ._tensors import _torch_maps
    _, s2t = _torch_maps()
    header, start = _read_header(path)
    header.pop("__metadata__", None)
    with open(path, "rb") as f:
        blob = bytearray(f.read()[start:])
    out = {}
    for name, e in header.items():
        if e["dtype"] not in s2t:
            raise QuantizationError("'%s': tensor '%s' has dtype %s, which torch lacks"
                                    % (path, name, e["dtype"]))
        a, b = e["data_offsets"]
        t = torch.frombuffer(blob, dtype=torch.uint8, offset=a, count=b - a) if b > a else \
            torch.empty(0, dtype=torch.uint8)
        out[name] = t.view(s2t[e["dtype"]]).reshape(e["shape"]).clone()
    return out


def load_quantized(path: Union[str, os.PathLike], model: Any) -> Any:
    """Loads our int8 files (a .safetensors file or a model directory, as
    quantize_file / quantize_dir / save_pretrained write them) into `model`
    (the float architecture, e.g. from_config): each Linear whose weight is
    stored quantized becomes a QuantizedLinear holding the stored codes,
    scales and zero points (nothing dequantized); the other tensors are loaded
    as they are. Modifies and returns `model`. Raises QuantizationError for a
    file tensor the model lacks, a model tensor the files lack, or a layer
    that is not 8-bit."""
    import torch
    from torch import nn
    from .nn import QuantizedLinear
    path = os.fspath(path)
    if not os.path.exists(path):
        raise QuantizationError("'%s' does not exist" % path)
    tensors: Dict[str, Any] = {}
    for f in _files(path):
        tensors.update(_read_tensors(f))
    replacements = {}
    for name, m in model.named_modules():
        if type(m) is not nn.Linear:
            continue
        pre = name + "." if name else ""
        if pre + "weight_scale" not in tensors:
            continue
        # Read, not taken: load_state_dict below loads them into the new
        # module again (its state_dict is this file layout) along with the bias.
        found = {k: tensors[pre + k] for k in ("weight", "weight_packed", "weight_shape",
                                                   "weight_scale", "weight_zero_point")
                 if pre + k in tensors}
        if "weight_packed" in found and found["weight_packed"].shape[-1] * 4 < m.in_features:
            raise QuantizationError("layer '%s' is stored with fewer than 8 bits per weight; "
                                    "load_quantized takes int8 layers only" % name)
        from . import _layout
        codes, scale, zp = _layout.from_file(found)
        if codes.dtype != torch.int8 or tuple(codes.shape) != tuple(m.weight.shape):
            raise QuantizationError("layer '%s': stored weight %s %s does not fit %s" % (
                name, codes.dtype, tuple(codes.shape), tuple(m.weight.shape)))
        new = QuantizedLinear(m, codes.contiguous(), scale, zp)
        new.weight_format = "pack-quantized" if "weight_packed" in found else "int-quantized"
        replacements[id(m)] = new
    from ._api import _replace
    model = _replace(model, replacements)
    result = model.load_state_dict(tensors, strict=False)
    if result.unexpected_keys:
        raise QuantizationError("'%s': tensor(s) the model does not have: %s"
                                % (path, ", ".join(result.unexpected_keys[:5])))
    state = model.state_dict(keep_vars=True)
    loaded = {id(t) for k, t in state.items() if k not in result.missing_keys}
    missing = [k for k in result.missing_keys if id(state[k]) not in loaded]
    if missing:
        raise QuantizationError("'%s' lacks tensor(s) of the model: %s"
                                % (path, ", ".join(missing[:5])))
    if replacements and _policy_hf(model):
        set_quantization_config(model)
    return model


def _policy_hf(model: Any) -> bool:
    from ._policy import is_hf_model
    return is_hf_model(model)
