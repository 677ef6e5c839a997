"""LiquidQuant weight quantizer and the reference per-token INT8 activation quantizer (pure torch, any device).

The formulas are the contract of docs/architecture.md ("LiquidQuant weight format", "Activation
quantization"); docs/format.md explains them. Everything is vectorised over whole tensors, so an
8192 x 28672 weight quantizes in seconds on a CPU.
"""
from __future__ import annotations

import torch

from ._validation import FLOAT_DTYPES, check_tensor
from .format import LEVEL1_MAX, QuantizedWeight, check_weight_shape, normalize_group_size

ACT_MAX = 127


def quantize_weight(w: torch.Tensor, group_size=128) -> QuantizedWeight:
    """Quantize a weight ``w [N, K]`` (fp16/bf16/fp32, CPU or CUDA) to LiquidQuant W4.

    group_size: 64, a multiple of 128 dividing K, or None / "channel" for one group per channel.
    N and K must be multiples of 128 and every value finite. Math in fp32; result on ``w.device``.

    Level 1 (per channel): ``s1 = max|w| / 119`` (1.0 for an all-zero row), ``w1 = clamp(rne(w / s1), ±119)``.
    Level 2 (per channel and group): ``v = w1 + 128``, ``z = min v``, ``s2 = max(1, ceil((max v - z) / 15))``,
    ``q = (2 (v - z) + s2) // (2 s2)`` (round half up), so that ``w1' = q s2 + z - 128`` with
    ``|w1' - w1| <= s2 / 2`` and ``|w - w1 s1| <= s1 / 2``.
    """
    check_tensor("w", w, dtypes=FLOAT_DTYPES, ndim=2, contiguous=False)
    n, k = w.shape
    check_weight_shape("w", n, k)
    g = normalize_group_size(group_size, k)
    w1 = w.to(torch.float32, copy=True)  # becomes w1 in place: one full-size buffer for the whole quantizer
    amax = torch.maximum(w1.amax(dim=1), -w1.amin(dim=1))  # two reductions beat aminmax on CPU
    if not bool(torch.isfinite(amax).all()):  # NaN and ±Inf propagate into the row maxima
        bad = int((~torch.isfinite(w)).sum())
        raise ValueError(f"w: all values must be finite, found {bad} NaN/Inf value(s) out of {w.numel()}")

    s1 = _level1_(w1, amax)
    q, s2, z = _level2_(w1, g)
    return QuantizedWeight.pack(q, s2, z, s1, g, dtype=w.dtype)


def _level1_(w: torch.Tensor, amax: torch.Tensor) -> torch.Tensor:
    """Per-channel symmetric quantization to ±119, in place: ``w`` (fp32) becomes w1; returns s1 fp32 [N]."""
    # Divide by a tensor, not a Python number: PyTorch's CUDA kernel turns division by a scalar into a multiply
    # by its reciprocal, which differs from IEEE division in the last bit.
    s1 = amax / torch.full_like(amax, LEVEL1_MAX)
    # All-zero rows (and rows so tiny that max|w| / 119 underflows to 0) get s1 = 1, hence w1 = 0.
    s1 = torch.where(s1 > 0, s1, torch.ones_like(s1))
    w.div_(s1[:, None]).round_().clamp_(-LEVEL1_MAX, LEVEL1_MAX)  # tensor / tensor: IEEE division on any device
    return s1


def _level2_(w1: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-group asymmetric 4-bit quantization of v = w1 + 128: returns (q [N, K], s2 [N, G], z [N, G]) uint8.
    Consumes ``w1`` (overwritten in place).

    Integer formulas of the contract, computed in int32.
    """
    n, k = w1.shape
    # Integer arithmetic from here on: the same bits on every device (a float quotient near a tie may round
    # differently on CPU and GPU).
    grouped = w1.view(n, k // group_size, group_size).to(torch.int32)
    lo, hi = grouped.amin(dim=2), grouped.amax(dim=2)
    s2 = torch.div(hi - lo + 14, 15, rounding_mode="floor").clamp_(min=1)          # ceil((hi - lo) / 15)
    d = grouped.sub_(lo[..., None])
    q = torch.div(2 * d + s2[..., None], 2 * s2[..., None], rounding_mode="floor").clamp_(max=15)
    z = lo + 128
    return q.to(torch.uint8).view(n, k), s2.to(torch.uint8), z.to(torch.uint8)


def quantize_act_reference(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token symmetric INT8 quantization of ``x [M, K]`` (fp16/bf16/fp32): returns ``(x_q int8, scale fp32 [M])``.

    ``amax = max_k |x|`` in fp32, ``scale = amax / 127`` (IEEE fp32 division; 1.0 where amax == 0),
    ``x_q = clamp(round_half_even(x_fp32 / scale), -127, 127)``: true division, not a reciprocal multiply, and
    ties (e.g. 2.5 -> 2, 3.5 -> 4) round to even, exactly as the GPU kernel does. Values must be finite.
    """
    check_tensor("x", x, dtypes=FLOAT_DTYPES, ndim=2, contiguous=False)
    if x.shape[1] == 0:
        raise ValueError(f"x: expected at least one column (K >= 1), got shape {tuple(x.shape)}")
    xf = x.float()
    amax = xf.abs().amax(dim=1)
    scale = torch.where(amax == 0, torch.ones_like(amax), amax / torch.full_like(amax, ACT_MAX))  # see _level1_
    x_q = torch.div(xf, scale[:, None]).round_().clamp_(-ACT_MAX, ACT_MAX).to(torch.int8)
    return x_q, scale
