"""monoquant: quantization of neural-network weights into compressed-tensors'
layout (INT8 per channel by default; the W8A16, W4A16, FP8_DYNAMIC, FP8_BLOCK
and FP16 presets) with libmonoquant (C11, OpenCL kernels and a host path).

    import torch, monoquant
    q_model, skipped = monoquant.dynamic_quantize(model, dtype=torch.qint8)
    report = monoquant.quantize_dir("model", "model-int8")
    report = monoquant.quantize_dir("model", "model-w4a16", preset="W4A16")
    model = monoquant.load_quantized("model-int8", model_skeleton)

torch is needed only for nn.Modules and torch tensors, and imported lazily.
"""
from ._api import devices, dynamic_quantize, presets, quantize_dir, quantize_file
from ._config import QuantizationConfig
from ._hf import load_quantized, save_pretrained
from ._core import VERSION as __version__
from ._core import QuantizationError

__all__ = ["QuantizationConfig", "QuantizationError", "__version__", "devices",
           "dynamic_quantize", "load_quantized", "presets", "quantize_dir", "quantize_file",
           "save_pretrained"]
