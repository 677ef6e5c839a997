"""Weight preparation for the CUTLASS peer: symmetric int4 with group scales, in the formats CUTLASS's Hopper
mixed-input mainloop reads (reordered on the GPU)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._native import native, stream_of

# fp8 group scales are stored relative to a per-channel fp32 scale so that the lookup table entries
# fp8(q * s) with |q| <= 8 stay in range: s <= 32 gives |entries| <= 256 < 448 (e4m3 max).
FP8_GROUP_SCALE_MAX = 32.0
FP8_SMALLEST_SUBNORMAL = 2.0**-9


@dataclass(frozen=True)
class Prepared:
    """An int4 weight [N, K] ready for one of the peer GEMMs.

    Kernel tensors: `weight` (uint8 [N*K/2], reordered nibbles) and `group_scale` (bf16 [K/g, N], or for fp8
    uint8 [K/g, N, 8]: the table fp8(-8 s), ..., fp8(-1 s) per scale). Reference tensors: `qweight` (uint8
    [N, K/2], row-major two's-complement nibbles, even k in the low nibble), `scales` ([N, K/g], bf16 or
    float8_e4m3fn) and `channel_scale` (fp8 only: float32 [N], applied in the epilogue).
    """

    act: str  # "bf16" | "fp8": the activation type this weight was prepared for
    n: int
    k: int
    group_size: int
    weight: torch.Tensor
    group_scale: torch.Tensor
    qweight: torch.Tensor
    scales: torch.Tensor
    channel_scale: torch.Tensor | None = None


def _check_weight(w, group_size: int, *, need_cuda: bool) -> None:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a torch.Tensor, got {type(w).__name__}")
    if w.dim() != 2 or not w.is_floating_point():
        raise ValueError(f"w must be a 2-D floating-point tensor [N, K], got {w.dim()}-D {w.dtype}")
    if not isinstance(group_size, int) or group_size <= 0 or group_size % 128:
        raise ValueError(f"group_size must be a positive multiple of 128 (CUTLASS: a multiple of tile K), got {group_size}")
    n, k = w.shape
    if n % 128 or k % group_size:
        raise ValueError(f"w shape [N, K] = [{n}, {k}] needs N % 128 == 0 and K % group_size ({group_size}) == 0")
    if need_cuda and not w.is_cuda:
        raise ValueError("w must be a CUDA tensor: the weight reorder runs on the GPU")


def _groups(w: torch.Tensor, group_size: int) -> torch.Tensor:
    n, k = w.shape
    return w.detach().to(torch.float32).reshape(n, k // group_size, group_size)


def quantize_int4_bf16(w: torch.Tensor, group_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int4: s = bf16(amax_group / 7), q = clamp(round(w / s), -8, 7). Returns (q int8 [N,K], s bf16 [N,G])."""
    _check_weight(w, group_size, need_cuda=False)
    groups = _groups(w, group_size)
    scale = (groups.abs().amax(-1) / 7).to(torch.bfloat16).float()
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)  # all-zero group
    q = torch.round(groups / scale[..., None]).clamp_(-8, 7).to(torch.int8)
    return q.reshape(w.shape), scale.to(torch.bfloat16)


def quantize_int4_fp8(w: torch.Tensor, group_size: int = 128) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric int4 with fp8 group scales: W ≈ channel[n] · fp8(q · s[n, g]).

    channel = max_g(amax_group / 7) / 32 (fp32), s = fp8(amax_group / 7 / channel) in (0, 32],
    q = clamp(round(w / (s · channel)), -8, 7). Returns (q int8 [N,K], s float8_e4m3fn [N,G], channel f32 [N]).
    """
    _check_weight(w, group_size, need_cuda=False)
    groups = _groups(w, group_size)
    ideal = groups.abs().amax(-1) / 7
    channel = ideal.amax(-1) / FP8_GROUP_SCALE_MAX
    channel = torch.where(channel == 0, torch.ones_like(channel), channel)  # all-zero row
    scale = (ideal / channel[:, None]).to(torch.float8_e4m3fn).float().clamp_(min=FP8_SMALLEST_SUBNORMAL)
    effective = scale * channel[:, None]
    q = torch.round(groups / effective[..., None]).clamp_(-8, 7).to(torch.int8)
    return q.reshape(w.shape), scale.to(torch.float8_e4m3fn), channel


def fp8_unified_nibbles(q: torch.Tensor) -> torch.Tensor:
    """CUTLASS's lookup-table encoding: q <= 0 keeps two's complement, q > 0 becomes 8 - q, so |q| shares its
    low three bits with -|q| and bit 3 alone selects the sign. Returns int8 values 0..15."""
    return torch.where(q > 0, 8 - q, q) & 0xF


def fp8_scale_table(scales: torch.Tensor) -> torch.Tensor:
    """[N, G] float8 scales -> uint8 [G, N, 8]: per scale s the 8 bytes fp8(-8 s), ..., fp8(-1 s) (MN-major, as
    the mainloop loads them); the kernel derives the positive entries by flipping sign bits."""
    multiples = torch.arange(-8, 0, dtype=torch.float32, device=scales.device)
    table = scales.float().t().contiguous()[..., None] * multiples
    return table.to(torch.float8_e4m3fn).view(torch.uint8)


def pack_nibbles(values: torch.Tensor) -> torch.Tensor:
    """int8 tensor (one int4 per element, low nibble used) -> uint8 with element 2i in the low nibble of byte i."""
    flat = values.reshape(-1).view(torch.uint8) & 0xF
    return flat[0::2] | (flat[1::2] << 4)


def _reordered(act: str, nibbles: torch.Tensor) -> torch.Tensor:
    n, k = nibbles.shape
    scattered = torch.empty(n * k, dtype=torch.int8, device=nibbles.device)
    with torch.cuda.device(nibbles.device):
        native().reorder_int4_weight(act, nibbles.contiguous().data_ptr(), scattered.data_ptr(), n, k,
                                     stream_of(nibbles))
    return pack_nibbles(scattered)


def prepare_int4_bf16(w: torch.Tensor, group_size: int = 128) -> Prepared:
    """Quantize w [N, K] (CUDA) for gemm_int4_bf16: int4 weights, bf16 group scales ("scale only" mode)."""
    _check_weight(w, group_size, need_cuda=True)
    q, scales = quantize_int4_bf16(w, group_size)
    n, k = w.shape
    return Prepared("bf16", n, k, group_size,
                    weight=_reordered("bf16", q), group_scale=scales.t().contiguous(),
                    qweight=pack_nibbles(q).reshape(n, k // 2), scales=scales)


def prepare_int4_fp8(w: torch.Tensor, group_size: int = 128) -> Prepared:
    """Quantize w [N, K] (CUDA) for gemm_int4_fp8: int4 weights, fp8 group-scale lookup tables, fp32 channel scale."""
    _check_weight(w, group_size, need_cuda=True)
    q, scales, channel = quantize_int4_fp8(w, group_size)
    n, k = w.shape
    return Prepared("fp8", n, k, group_size,
                    weight=_reordered("fp8", fp8_unified_nibbles(q)), group_scale=fp8_scale_table(scales),
                    qweight=pack_nibbles(q).reshape(n, k // 2), scales=scales, channel_scale=channel.contiguous())
