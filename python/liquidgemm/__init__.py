"""liquidgemm: W4A8 GEMM (4-bit LiquidQuant weights, 8-bit activations) for NVIDIA Hopper.

Importing works everywhere (no GPU, no compiled extension needed); the CUDA kernels are loaded lazily on
first use and a clear error says what is missing. The CPU reference path is the source of truth.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (PEP 562 lazy attributes keep `import liquidgemm` cheap)
_EXPORTS = {
    "QuantizedWeight": "format",
    "quantize_weight": "quantize",
    "quantize_act_reference": "quantize",
    "w4a8_gemm_reference": "reference",
    "w4a8_gemm_reference_int32": "reference",
    "dequantize_int8": "reference",
    "accuracy_report": "reference",
    "quantize_act": "ops",
    "w4a8_gemm": "ops",
    "w4a8_linear": "ops",
    "list_configs": "dispatch",
    "select_config": "dispatch",
    "W4A8Linear": "nn",
    "quantize_model": "nn",
    "is_available": "_native",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'liquidgemm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
