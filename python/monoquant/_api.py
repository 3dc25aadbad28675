"""dynamic_quantize (nn.Module or state_dict), quantize_file / quantize_dir
(the streaming C path) and devices(). The arithmetic runs in libmonoquant."""
from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import tempfile
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import numpy as np

from . import _core, _tensors
from ._config import SETTINGS, QuantizationConfig, resolve
from ._core import QuantizationError

__all__ = ["dynamic_quantize", "quantize_file", "quantize_dir", "devices", "presets"]

ProgressArg = Union[None, bool, Callable[[int, int, int, int, str], Any]]


def dynamic_quantize(model: Any, dtype: Any = None, symmetric: Optional[bool] = None,
                     per_channel: Optional[bool] = None,
                     config: Union[QuantizationConfig, Mapping[str, Any], None] = None,
                     device: Optional[str] = None, *, preset: Optional[str] = None,
                     group_size: Union[int, str, None] = None,
                     modules: Optional[Iterable[Any]] = None) -> Tuple[Any, List[str]]:
    """Quantizes a copy of `model`; returns ``(quantized_copy, skipped)``.

    `model` is an ``nn.Module`` (any, including nested containers and Hugging
    Face models) or a state_dict (``dict[str, Tensor]``; numpy arrays work
    too). It is never modified: modules are deep-copied first, tensors are read.

    * ``dtype=torch.qint8``: every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` (exact
      types; subclasses such as MultiheadAttention's ``out_proj`` stay float)
      becomes a :mod:`monoquant.nn` module holding int8 weights with
      per-output-channel scales (and zero points when asymmetric) and a float
      bias; on CPU a Linear runs PyTorch's packed quantized kernels on those
      codes (see :mod:`monoquant.nn`). `skipped` lists, by qualified name, the
      leaf modules left alone (e.g. ``"1"`` for the ReLU of
      ``Sequential(Linear, ReLU, Linear)``; ``"(root)"`` for a root module
      left alone that holds tensors).
    * A Hugging Face model (``transformers.PreTrainedModel``) follows the
      file path's rules (:mod:`monoquant._policy`): ``lm_head``, heads tied to
      another module's weight, router gates (``gate``, ``shared_expert_gate``)
      and convolutions stay in float, as :func:`quantize_dir` keeps them;
      ``include`` patterns override this, ``exclude`` wins.
    * ``dtype=torch.float16``: as torch.ao's float16 dynamic quantization,
      every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` becomes a ``Float16*``
      module with an fp16 weight that takes and returns the input's dtype
      (fp32 in, fp32 out); embeddings, norms and buffers are left as they
      were. Values beyond the fp16 range warn (``fp16_saturate=True`` clamps
      them to +-65504).
    * A state_dict gives a state_dict in the library's file layout (``X.weight``
      int8 + ``X.weight_scale``; asymmetric or ``weights_only`` is
      pack-quantized: ``X.weight_packed``, ``X.weight_shape``, packed
      ``X.weight_zero_point``), the same bytes as the ``monoquant`` CLI on the
      same tensors; `skipped` names the tensors left as they were. Every
      preset works here: int4 is pack-quantized (``X.weight_packed`` eight
      codes per int32), fp8 gives ``torch.float8_e4m3fn`` weights (torch
      inputs only: numpy has no fp8 dtype).
    * ``modules=`` (an nn.Module only), as torch.ao's ``qconfig_spec``: a set
      of module types (``{nn.Linear}``) and/or qualified names
      (``{"0", "encoder.fc1"}``); only the Linear/Conv modules it selects are
      quantized (the file rules for Hugging Face models still apply).
      ``nn.LSTM`` / ``nn.GRU`` are quantized only when selected here: they
      become torch.ao's dynamic LSTM / GRU holding our codes (int8 only; an
      LSTM with ``proj_size`` stays float).
    * ``preset=`` (see :func:`presets`) sets the scheme first, and the scheme
      arguments given refine it, as with the CLI's ``--preset``; ``group_size``
      sets groups along the input dimension (``-1`` or ``"channel"``: per
      channel). A module is quantized into :mod:`monoquant.nn` modules in the
      per-channel or per-tensor int8 schemes (W8A8, and W8A16 /
      W8A16_ASYM with ``group_size=-1``) and FP16; there are no int4, fp8 or
      grouped modules, so those presets need a state_dict, :func:`quantize_file`
      or :func:`quantize_dir`.

    Settings resolve as explicit arguments (not None) > `config` > defaults.
    The defaults are the library's: int8, **symmetric**, per channel, device
    "auto". The original design defaulted to ``symmetric=False``; symmetric
    per-channel int8 is what vLLM runs fast (its W8A8 int8 kernels) and what
    compressed-tensors' INT8 preset is, while asymmetric weights have no W8A8
    kernel (only weight-only ones), so symmetric is the default here as in the
    C library and the CLI.

    The quantization runs in libmonoquant, on the host path or an OpenCL device
    (`device`, see :func:`devices`); CUDA tensors are copied to the host first
    and the results put back on their device.

    Raises:
        QuantizationError: NaN/Inf weights, an unsupported dtype, an unknown
            preset (the message lists the valid ones), a bad config, scheme or
            device; the message names the module or tensor and the cause.
    """
    settings = resolve(config, dtype=dtype, symmetric=symmetric, per_channel=per_channel,
                       device=device, preset=preset, group_size=group_size)
    if isinstance(model, Mapping):
        if modules is not None:
            raise QuantizationError("modules= selects modules of an nn.Module; a state_dict "
                                    "takes include/exclude patterns")
        return _quantize_state_dict(model, settings)
    torch = _torch()
    if isinstance(model, torch.nn.Module):
        scheme = _core.scheme(settings)
        if scheme["dtype"] == "fp16":
            return _quantize_module(model, settings, fp16=True, modules=modules)
        if scheme["dtype"] != "int8" or scheme["group_size"] or scheme["block_size"]:
            what = scheme["preset"] or scheme["dtype"]
            if scheme["group_size"]:
                what += " with groups of %d" % scheme["group_size"]
            raise QuantizationError(
                "%s cannot quantize an nn.Module: monoquant.nn has int8 per-channel and "
                "per-tensor modules only; quantize its state_dict(), or save it and use "
                "quantize_file or quantize_dir" % what)
        return _quantize_module(model, settings, modules=modules)
    raise QuantizationError("model must be an nn.Module or a state_dict (dict of tensors), got %s"
                            % type(model).__name__)


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - numpy-only installs
        raise QuantizationError("quantizing an nn.Module needs torch (%s)" % e) from None
    return torch


def _run(rows: List[tuple], settings: Dict[str, Any]):
    return _core.quantize(rows, settings)


def _quantize_state_dict(state: Mapping[str, Any], settings: Dict[str, Any]):
    rows, as_torch = _tensors.rows_of(state)
    outs, skipped, info = _run(rows, settings)
    _warn_fp16_overflow(info, settings)
    return _tensors.outputs_dict(outs, as_torch), [name for name, _ in skipped]


def _exact_pattern(name: str) -> str:
    if any(c in name for c in "*?["):
        import re
        return "re:" + re.escape(name) + "$"
    return name


def _replace(root: Any, replacements: Dict[int, Any]) -> Any:
    """Puts each new module wherever its old one is registered (shared modules too)."""
    if id(root) in replacements:
        return replacements[id(root)]
    for parent in root.modules():
        for key, child in list(parent._modules.items()):
            if child is not None and id(child) in replacements:
                parent._modules[key] = replacements[id(child)]
    return root


def _module_error(e: QuantizationError, names: Dict[str, str]) -> QuantizationError:
    msg = str(e)
    hits = [m for w, m in names.items() if "'%s'" % w in msg or w in msg]
    if hits:
        mod = max(hits, key=len)
        err = QuantizationError("module '%s': %s" % (mod or "(root)", msg))
    else:
        err = QuantizationError(msg)
    err.status = getattr(e, "status", None)
    return err


def _selector(modules: Optional[Iterable[Any]]) -> Callable[[str, Any], bool]:
    """qconfig_spec-style selection: module types and qualified names."""
    if modules is None:
        return lambda name, m: True
    if isinstance(modules, (str, type)):
        modules = [modules]
    types, names = set(), set()
    for item in modules:
        if isinstance(item, type):
            types.add(item)
        elif isinstance(item, str):
            names.add(item)
        else:
            raise QuantizationError("modules= takes module types and qualified names, got %r"
                                    % (item,))
    return lambda name, m: type(m) in types or name in names


def _quantize_module(model: Any, settings: Dict[str, Any], fp16: bool = False,
                     modules: Optional[Iterable[Any]] = None):
    torch = _torch()
    from . import _policy
    from .nn import FLOAT16, QUANTIZABLE
    table = FLOAT16 if fp16 else QUANTIZABLE
    _policy.check_materialized(model)
    q = copy.deepcopy(model)
    from . import _rnn
    candidates: Dict[str, Any] = {}
    rnns: Dict[str, Any] = {}
    weight_names: Dict[str, str] = {}
    rows = []
    kept = _policy.kept_in_float(q, settings["include"])
    selected = _selector(modules)
    for name, m in q.named_modules():
        if name in kept or not selected(name, m):
            continue
        if type(m) in table and isinstance(getattr(m, "weight", None), torch.Tensor):
            w = name + ".weight" if name else "weight"
            candidates[name] = m
            weight_names[w] = name
            rows.append(_tensors.to_row(w, m.weight))
        elif modules is not None and not fp16 and _rnn.supported(m):
            rnns[name] = m
            for param in _rnn.weight_params(m):
                w = _rnn.row_name(name, param)
                weight_names[w] = name
                rows.append(_tensors.to_row(w, getattr(m, param)))
    run = dict(settings)
    # Every candidate is asked for, whatever its name: the library's name rules
    # are for files, the module rules are _policy's; exclude still wins.
    run["include"] = list(settings["include"]) + [_exact_pattern(w) for w in weight_names]
    try:
        outs, skipped, info = _run(rows, run)
    except QuantizationError as e:
        raise _module_error(e, weight_names) from None
    _warn_fp16_overflow(info, settings)
    out = {name: (dtype, shape, data) for name, dtype, shape, data in outs}
    left = {name for name, _ in skipped}
    replacements: Dict[int, Any] = {}

    def get(key):
        dtype_, shape_, data_ = out[key]
        return _tensors.from_row(dtype_, shape_, data_, True)

    for name, m in rnns.items():
        params = {p: _rnn.row_name(name, p) for p in _rnn.weight_params(m)}
        if any(w in left or w not in out and w + "_packed" not in out
               for w in params.values()):
            continue  # all of a module's weights quantized, or none
        new = _rnn.build(m, {p: _codes_of(get, w, out) for p, w in params.items()})
        if new is not None:
            new.train(m.training)
            replacements[id(m)] = new
    for w, name in weight_names.items():
        if name not in candidates or w in left or w not in out and w + "_packed" not in out:
            continue
        m = candidates[name]
        dev = m.weight.device

        if fp16:
            if out[w][0] != "F16":
                continue
            new = table[type(m)](m, get(w).to(dev))
        else:
            codes, scale, zp = _codes_of(get, w, out)
            new = table[type(m)](m, codes.to(dev), scale.to(dev),
                                 None if zp is None else zp.to(dev))
            if w + "_packed" in out:
                new.weight_format = "pack-quantized"
        new.train(m.training)
        replacements[id(m)] = new
    leaves = [n or "(root)" for n, m in q.named_modules()
              if not m._modules and id(m) not in replacements and _holds_tensors(m, n)]
    q = _replace(q, replacements)
    if not fp16 and replacements and _policy.is_hf_model(q):
        from . import _hf
        _hf.set_quantization_config(q)
    return q, leaves


def _holds_tensors(m: Any, name: str) -> bool:
    """A leaf worth naming as skipped: any module below the root, or a root
    that holds tensors (an empty container holds nothing to skip)."""
    return bool(name) or any(True for _ in m.parameters()) or any(True for _ in m.buffers())


def _codes_of(get: Callable[[str], Any], w: str, out: Mapping[str, Any]):
    """(codes, scale, zero point or None) of a weight in the file layout."""
    torch = _torch()
    zp = None
    if w in out:
        codes = get(w)
    else:
        shape = tuple(int(v) for v in get(w + "_shape").tolist())
        codes = torch.from_numpy(_tensors.unpack_int8(get(w + "_packed").numpy(), shape))
        if w + "_zero_point" in out:
            zp = torch.from_numpy(
                _tensors.unpack_zero_point(get(w + "_zero_point").numpy(), shape[0]).copy())
    return codes, get(w + "_scale"), zp


def _warn_fp16_overflow(info: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    n = int(info.get("fp16_overflow", 0) or 0)
    if n and not settings.get("fp16_saturate"):
        import warnings
        warnings.warn("%d value(s) beyond the fp16 range became +-inf; pass fp16_saturate=True "
                      "to saturate them to +-65504 instead" % n, RuntimeWarning, stacklevel=3)


# ---- files ------------------------------------------------------------------

def _progress_callback(progress: ProgressArg, src: str):
    if progress is False:
        return None, None
    if callable(progress) and progress is not True:
        return progress, None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None, None
    if progress is None and not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return None, None
    # delay: the bar appears only on runs longer than a second.
    bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, delay=1.0,
               desc=os.path.basename(os.path.normpath(src)), leave=False)

    def update(done: int, total: int, bytes_done: int, bytes_total: int, file: str) -> None:
        if bar.total != bytes_total:
            bar.total = bytes_total
        bar.update(bytes_done - bar.n)

    return update, bar


def _quantize_path(src: Any, dst: Any, settings: Dict[str, Any], want_dir: bool) -> Dict[str, Any]:
    progress = settings.pop("progress", None)
    config = settings.pop("config", None)
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise QuantizationError("bad config: unknown setting(s) %s" % ", ".join(unknown))
    cfg = resolve(config, **settings)
    src, dst = os.fspath(src), os.fspath(dst)
    if want_dir and not os.path.isdir(src):
        raise QuantizationError("'%s' is not a model directory" % src)
    if not want_dir and os.path.isdir(src):
        raise QuantizationError("'%s' is a directory: use quantize_dir" % src)
    if not want_dir and os.path.exists(src):  # a missing src: the library's message
        _check_safetensors(src)
        if os.path.lexists(dst):
            # One rule for both calls: quantize_dir refuses an existing output.
            raise QuantizationError("output file '%s' exists: remove it or name another "
                                    "(an existing output is never overwritten)" % dst)
    callback, bar = _progress_callback(progress, src)
    cfg["progress"] = callback
    tmp = tempfile.mkdtemp(prefix="monoquant-report-")
    try:
        report = os.path.join(tmp, "report.json")
        _core.quantize_file(src, dst, cfg, report)
        with open(report, encoding="utf-8") as f:
            return json.load(f)
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _check_safetensors(path: str) -> None:
    """A file that cannot be safetensors (a PyTorch .pt/.bin pickle or zip,
    anything whose header length exceeds the file) is named as such, rather
    than by the header length its first bytes happen to spell."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return  # the library reports a missing or unreadable file
    n = int.from_bytes(head[:8], "little") if len(head) >= 8 else None
    if n is None or n > size - 8 or (len(head) > 8 and head[8:9] != b"{"):
        kind = ""
        if head[:2] == b"PK" or head[:1] == b"\x80":
            kind = " (it looks like a PyTorch checkpoint: torch.load it and pass its state_dict " \
                   "to dynamic_quantize, or save it with safetensors first)"
        raise QuantizationError("'%s' is not a safetensors file%s" % (path, kind))


def quantize_file(src: Union[str, os.PathLike], dst: Union[str, os.PathLike],
                  **settings: Any) -> Dict[str, Any]:
    """Quantizes the safetensors file `src` into `dst`, streaming with bounded
    memory (mq_quantize_file), and returns the run's report as a dict (the
    ``--report`` JSON of the CLI: quantized, skipped, bytes, device, seconds).

    Settings: the fields of :class:`QuantizationConfig` as keywords (``preset=``,
    ``group_size=``, ``dtype=``, ...; a preset is applied first and the scheme
    keywords refine it, as the CLI does), ``config=`` (explicit keywords win
    over it), ``memory_limit`` (bytes of staging
    memory), ``follow_symlinks``, and ``progress``: None (default) shows a tqdm
    bar on a terminal for runs over a second when tqdm is installed, True
    always when tqdm is installed, False never, or a callable
    ``f(tensors_done, tensors_total, bytes_done, bytes_total, file)``.
    `dst` appears only when complete; an existing `dst` is refused, as
    quantize_dir refuses an existing output. Raises QuantizationError (a
    file that is not safetensors, such as a ``.pt``, is named as such).
    """
    return _quantize_path(src, dst, dict(settings), want_dir=False)


def quantize_dir(src: Union[str, os.PathLike], dst: Union[str, os.PathLike],
                 **settings: Any) -> Dict[str, Any]:
    """Quantizes a Hugging Face model directory into a new directory `dst` (same
    shards, rewritten index, a compressed-tensors ``quantization_config`` in
    config.json, other files copied), as :func:`quantize_file` does a file."""
    return _quantize_path(src, dst, dict(settings), want_dir=True)


def presets() -> List[str]:
    """The valid preset names (``preset=``), as the library lists them:
    ``["W8A8", "INT8", "W8A16", ...]``; names are matched case-insensitively."""
    return [n.strip() for n in _core.preset_names().split(",") if n.strip()]


def devices() -> List[Dict[str, Any]]:
    """The devices the library can run on, as dicts ``{"spec", "kind",
    "platform", "name", "type", "auto"}``: the host path (``spec`` ``"host"``)
    and every OpenCL device (``spec`` ``"P:D"``), as ``monoquant devices``
    lists them. ``auto`` marks the one ``device="auto"`` (the default) picks:
    the first GPU, else the first accelerator, else the host path (a CPU
    OpenCL device such as PoCL runs only when named). Pass ``spec`` as
    ``device=``."""
    listed = _core.device_list()
    out = [{"spec": "host", "kind": "host", "platform": "", "name": "reference", "type": "CPU",
            "auto": not any(d["auto"] for d in listed)}]
    for d in listed:
        out.append({"spec": d["spec"], "kind": "opencl", "platform": d["platform"],
                    "name": d["name"], "type": d["type"], "auto": d["auto"]})
    return out
