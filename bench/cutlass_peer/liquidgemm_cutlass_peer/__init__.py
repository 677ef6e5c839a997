"""liquidgemm_cutlass_peer: CUTLASS 4.2's own Hopper mixed-input GEMMs (int4 x bf16, int4 x fp8), the strongest
peer in liquidgemm's benchmarks. Benchmark-only; not part of the liquidgemm wheel. Imports without a GPU."""
from ._native import available, configs, unavailable_reason
from .gemm import gemm_int4_bf16, gemm_int4_fp8, select_config
from .prepare import Prepared, prepare_int4_bf16, prepare_int4_fp8, quantize_int4_bf16, quantize_int4_fp8
from .reference import dequantize, reference_int4_bf16, reference_int4_fp8

__all__ = [
    "Prepared", "available", "configs", "dequantize", "gemm_int4_bf16", "gemm_int4_fp8", "prepare_int4_bf16",
    "prepare_int4_fp8", "quantize_int4_bf16", "quantize_int4_fp8", "reference_int4_bf16", "reference_int4_fp8",
    "select_config", "unavailable_reason",
]
