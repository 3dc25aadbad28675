"""monoquant: per-channel INT8 / FP16 quantization of neural-network weights
with libmonoquant (C11, OpenCL kernels and a host path).

    import torch, monoquant
    q_model, skipped = monoquant.dynamic_quantize(model, dtype=torch.qint8)
    report = monoquant.quantize_dir("model", "model-int8")

torch is needed only for nn.Modules and torch tensors, and imported lazily.
"""
from ._api import devices, dynamic_quantize, quantize_dir, quantize_file
from ._config import QuantizationConfig
from ._core import VERSION as __version__
from ._core import QuantizationError

__all__ = ["QuantizationConfig", "QuantizationError", "__version__", "devices",
           "dynamic_quantize", "quantize_dir", "quantize_file"]
