"""The GEMMs that `liquidgemm bench` puts side by side, each behind one small interface.

A peer computes `Y[M, N] = X[M, K] . W[N, K]^T`:
  `available(m, n, k) -> (ok, reason)`   cheap checks that need no GPU work (reason is shown as "n/a: ...")
  `prepare(m, n, k, device) -> operands` random weights (cached per (n, k)) in the peer's format + activations
  `copy(operands) -> operands`           an independent copy (new memory) for L2 rotation
  `run(operands) -> Y`                   one call, as its users make it
Only `liquidgemm-linear` includes activation quantization; every other quantized peer gets pre-quantized
activations, i.e. it is timed as the GEMM alone.
"""
from __future__ import annotations

import functools
import importlib
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..shapes import LayerShape, is_supported
from ..timing import clone_tensors, tensor_bytes

CUTLASS_PEER_MODULE = "liquidgemm_cutlass_peer"
CUTLASS_PEER_MISSING = f"{CUTLASS_PEER_MODULE} not built (see bench/cutlass_peer/README.md)"
FP8_MAX = 448.0  # largest finite float8_e4m3fn


class Peer:
    """Base class: weight cache and default rotation copy. Subclasses set `name`, `label` and the three verbs."""

    name: ClassVar[str]
    label: ClassVar[str]  # one line for plots and `--help`

    def __init__(self, *, dtype: torch.dtype = torch.bfloat16, group_size: int = 128, config: str | None = None):
        self.dtype = dtype
        self.group_size = group_size
        self.config = config
        self._weights: dict[tuple, Any] = {}

    def available(self, m: int, n: int, k: int) -> tuple[bool, str]:
        return True, ""

    def prepare(self, m: int, n: int, k: int, device: torch.device) -> tuple:
        raise NotImplementedError

    def run(self, operands: tuple) -> torch.Tensor:
        raise NotImplementedError

    def copy(self, operands: tuple) -> tuple:
        return clone_tensors(operands)

    def bytes_moved(self, operands: tuple, output: Any) -> int:
        """Bytes one call must move at least: its inputs as stored, plus its output."""
        return tensor_bytes(operands) + tensor_bytes(output)

    def clear(self) -> None:
        """Drop cached weights (the runner calls this after each problem)."""
        self._weights.clear()

    def _weight(self, n: int, k: int, device: torch.device, make) -> Any:
        """`make(w_fp32 [n, k])` once per (n, k, device): preparing weights can cost far more than timing them."""
        key = (n, k, str(device))
        if key not in self._weights:
            self._weights[key] = make(random_weight(n, k, device))
        return self._weights[key]

    def __repr__(self) -> str:
        return f"<peer {self.name}>"


def random_weight(n: int, k: int, device: torch.device) -> torch.Tensor:
    """fp32 [n, k] with the scale of a trained linear layer (std 1/sqrt(k))."""
    return torch.randn(n, k, device=device, dtype=torch.float32).mul_(k**-0.5)


def random_act(m: int, k: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(m, k, device=device, dtype=torch.float32).to(dtype)


def per_row_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_fp8 e4m3 [R, C], scale float32 [R, 1]) with one scale per row, amax mapped to the fp8 maximum."""
    scale = x.float().abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / FP8_MAX
    return (x.float() / scale).to(torch.float8_e4m3fn), scale


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


# ---- liquidgemm -----------------------------------------------------------------------------------------------
def liquidgemm_unavailable_reason() -> str | None:
    """None when liquidgemm's CUDA kernels can run, else why not (one line)."""
    try:
        from .. import _native

        if _native.is_available():
            return None
        why = _native.unavailable_reason()
    except Exception as e:  # noqa: BLE001 - a broken install is reported, not raised
        why = f"{type(e).__name__}: {e}"
    return f"liquidgemm native module unavailable: {_first_line(why)}"


class _LiquidgemmPeer(Peer):
    def available(self, m, n, k):
        why = liquidgemm_unavailable_reason()
        if why is not None:
            return False, why
        return is_supported(LayerShape(f"{n}x{k}", n, k), self.group_size)

    def _quantized_weight(self, n, k, device):
        from .. import quantize_weight

        # quantize_weight runs on the weight's device: on the GPU, large shapes take a moment, not minutes.
        return self._weight(n, k, device, lambda w: quantize_weight(w.to(self.dtype), self.group_size))


class LiquidgemmGemm(_LiquidgemmPeer):
    name = "liquidgemm"
    label = "liquidgemm W4A8 GEMM (pre-quantized int8 activations)"

    def prepare(self, m, n, k, device):
        from .. import quantize_act

        x_q, x_scale = quantize_act(random_act(m, k, device, self.dtype))
        return x_q, x_scale, self._quantized_weight(n, k, device)

    def run(self, operands):
        from .. import w4a8_gemm

        x_q, x_scale, qw = operands
        return w4a8_gemm(x_q, x_scale, qw, out_dtype=self.dtype, config=self.config)


class LiquidgemmLinear(_LiquidgemmPeer):
    name = "liquidgemm-linear"
    label = "liquidgemm w4a8_linear (activation quantization + GEMM)"

    def prepare(self, m, n, k, device):
        return random_act(m, k, device, self.dtype), self._quantized_weight(n, k, device)

    def run(self, operands):
        from .. import w4a8_linear

        x, qw = operands
        return w4a8_linear(x, qw, config=self.config)


# ---- cuBLAS and torch's low-precision GEMMs -------------------------------------------------------------------
class _CublasPeer(Peer):
    weight_dtype: ClassVar[torch.dtype]

    def prepare(self, m, n, k, device):
        w = self._weight(n, k, device, lambda w: w.to(self.weight_dtype))
        return random_act(m, k, device, self.weight_dtype), w

    def run(self, operands):
        x, w = operands
        return F.linear(x, w)


class CublasBf16(_CublasPeer):
    name = "cublas-bf16"
    label = "cuBLAS bf16 (F.linear)"
    weight_dtype = torch.bfloat16


class CublasF16(_CublasPeer):
    name = "cublas-f16"
    label = "cuBLAS fp16 (F.linear)"
    weight_dtype = torch.float16


class Int8IntMm(Peer):
    name = "int8-intmm"
    label = "torch._int_mm W8A8 (int32 out)"

    def available(self, m, n, k):
        # torch's CUDA _int_mm checks these itself; saying so up front gives a clearer n/a.
        if m <= 16:
            return False, f"torch._int_mm needs M > 16 (M={m})"
        if k % 8 or n % 8:
            return False, f"torch._int_mm needs K and N multiples of 8 (N={n}, K={k})"
        return True, ""

    def prepare(self, m, n, k, device):
        w = self._weight(n, k, device, lambda w: torch.randint_like(w, -127, 128).to(torch.int8))
        x = torch.randint(-127, 128, (m, k), device=device, dtype=torch.int8)
        return x, w

    def run(self, operands):
        x, w = operands
        return torch._int_mm(x, w.t())  # w.t() of a row-major [N, K]: the column-major [K, N] cuBLASLt wants


class Fp8RowwiseScaledMm(Peer):
    name = "fp8-rowwise"
    label = "torch._scaled_mm fp8 e4m3 row-wise scales (bf16 out)"

    def available(self, m, n, k):
        if not hasattr(torch, "float8_e4m3fn"):
            return False, "this torch has no float8_e4m3fn"
        if k % 16 or n % 16:
            return False, f"torch._scaled_mm needs K and N multiples of 16 (N={n}, K={k})"
        return True, ""

    def prepare(self, m, n, k, device):
        def make(w):
            w_fp8, w_scale = per_row_fp8(w)
            return w_fp8, w_scale.reshape(1, n).contiguous()  # per-channel scales as (1, N)

        w_fp8, w_scale = self._weight(n, k, device, make)
        x_fp8, x_scale = per_row_fp8(random_act(m, k, device, torch.bfloat16))  # per-token scales (M, 1)
        return x_fp8, x_scale, w_fp8, w_scale

    def run(self, operands):
        x_fp8, x_scale, w_fp8, w_scale = operands
        # The second operand must be column-major: w_fp8.t() of the row-major [N, K]. Row-wise scaling needs a
        # bf16 output. Fast accumulation is the mode serving engines use for fp8 GEMMs.
        return torch._scaled_mm(
            x_fp8, w_fp8.t(), scale_a=x_scale, scale_b=w_scale, out_dtype=torch.bfloat16, use_fast_accum=True
        )


# ---- CUTLASS's own mixed-input GEMM (optional extension built under bench/cutlass_peer) -----------------------
@functools.cache
def load_cutlass_peer() -> tuple[Any, str]:
    """(module, "") or (None, why it cannot be used); checked once per process, so `run` stays a plain call."""
    try:
        module = importlib.import_module(CUTLASS_PEER_MODULE)
    except ImportError:
        return None, CUTLASS_PEER_MISSING
    try:
        if not module.available():
            return None, f"{CUTLASS_PEER_MODULE}.available() is False (needs an sm_90a GPU)"
    except Exception as e:  # noqa: BLE001 - an optional peer must never stop the run
        return None, f"{CUTLASS_PEER_MODULE}.available() raised {type(e).__name__}: {_first_line(str(e))}"
    return module, ""


class _CutlassPeer(Peer):
    """Operands are (activation tensors..., prepared weight, (n, k)); the prepared weight may be opaque, so
    rotation copies are prepared again from the cached bf16 weight instead of cloned."""

    def available(self, m, n, k):
        module, reason = load_cutlass_peer()
        if module is None:
            return False, reason
        if n % 128 or k % self.group_size:
            return False, f"CUTLASS mixed-input GEMM here needs N % 128 == 0 and K % {self.group_size} == 0"
        return True, ""

    def _prepared(self, n, k, device):
        """A new prepared weight each call (the bf16 source is cached)."""
        module, reason = load_cutlass_peer()
        if module is None:
            raise RuntimeError(reason)
        return self._prepare_weight(module, self._weight(n, k, device, lambda w: w.to(torch.bfloat16)))

    def prepare(self, m, n, k, device):
        return (*self._activations(m, k, device), self._prepared(n, k, device), (n, k))

    def copy(self, operands):
        *acts, prepared, (n, k) = operands
        return (*clone_tensors(tuple(acts)), self._prepared(n, k, acts[0].device), (n, k))

    def bytes_moved(self, operands, output):
        *acts, prepared, (n, k) = operands
        weight = tensor_bytes(prepared)
        if weight == 0:  # opaque handle: int4 codes + one bf16 scale per group
            weight = n * k // 2 + n * (k // self.group_size) * 2
        return tensor_bytes(tuple(acts)) + weight + tensor_bytes(output)


class CutlassInt4Bf16(_CutlassPeer):
    name = "cutlass-int4-bf16"
    label = "CUTLASS mixed-input int4 x bf16 (grouped scales)"

    def _activations(self, m, k, device):
        return (random_act(m, k, device, torch.bfloat16),)

    def _prepare_weight(self, module, w_bf16):
        return module.prepare_int4_bf16(w_bf16, self.group_size)

    def run(self, operands):
        x, prepared, _ = operands
        return load_cutlass_peer()[0].gemm_int4_bf16(x, prepared)


class CutlassInt4Fp8(_CutlassPeer):
    name = "cutlass-int4-fp8"
    label = "CUTLASS mixed-input int4 x fp8 (grouped scales)"

    def _activations(self, m, k, device):
        x_fp8, x_scale = per_row_fp8(random_act(m, k, device, torch.bfloat16))
        return x_fp8, x_scale.reshape(m).contiguous()

    def _prepare_weight(self, module, w_bf16):
        return module.prepare_int4_fp8(w_bf16, self.group_size)

    def run(self, operands):
        x_fp8, x_scale, prepared, _ = operands
        return load_cutlass_peer()[0].gemm_int4_fp8(x_fp8, prepared, x_scale)


PEERS: dict[str, type[Peer]] = {
    cls.name: cls
    for cls in (
        LiquidgemmGemm,
        LiquidgemmLinear,
        CublasBf16,
        CublasF16,
        Int8IntMm,
        Fp8RowwiseScaledMm,
        CutlassInt4Bf16,
        CutlassInt4Fp8,
    )
}
REFERENCE_PEER = "cublas-bf16"  # speedups in the plots are relative to this peer
LIQUIDGEMM_PEER = "liquidgemm"  # "liquidgemm x" columns: how many times faster liquidgemm is than each peer


def make_peers(
    names: list[str] | None = None, *, dtype: torch.dtype = torch.bfloat16, group_size: int = 128,
    config: str | None = None,
) -> list[Peer]:
    """Peer objects by name (default: all, in the PEERS order)."""
    names = list(PEERS) if names is None else names
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise ValueError(f"peers: unknown {', '.join(unknown)}; known peers: {', '.join(PEERS)}")
    return [PEERS[n](dtype=dtype, group_size=group_size, config=config) for n in names]
