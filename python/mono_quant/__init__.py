"""The original design's name for the monoquant package:
``from mono_quant import dynamic_quantize, QuantizationConfig`` works."""
from monoquant import *  # noqa: F401,F403
from monoquant import __all__, __version__  # noqa: F401
