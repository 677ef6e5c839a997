"""CPU reference for LiquidQuant dequantization and the W4A8 GEMM: the source of truth every kernel must match.

Two dequantizations that must agree bit for bit: :func:`dequantize_int8` (plain per-byte math) and
:func:`dequantize_int8_wordlevel` (what the GPU does: one 32-bit multiply-add and one XOR per four weights).
"""
from __future__ import annotations

import torch

from ._validation import FLOAT_DTYPES, MAX_K, check_gemm_problem, check_tensor
from .format import QuantizedWeight, from_chunk_planes, to_chunk_planes
from .quantize import quantize_act_reference, quantize_weight

_BYTES_X4 = 0x01010101  # broadcasts a byte to the four byte lanes of a word
_LOW_NIBBLES = 0x0F0F0F0F
_SIGN_FLIP = 0x80808080  # u XOR 0x80 == (u - 128) read as int8
_WORD = 0xFFFFFFFF


def _check_qw(qw) -> None:
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw: expected a liquidgemm.QuantizedWeight, got {type(qw).__name__}")


def _per_element(params: torch.Tensor, group_size: int) -> torch.Tensor:
    """Expand a per-group tensor [N, G] to [N, G * group_size]."""
    return params.repeat_interleave(group_size, dim=1)


def dequantize_int8(qw: QuantizedWeight) -> torch.Tensor:
    """Level-1 weights ``w1' = q*s2 + z - 128`` as int8 [N, K] (plain per-byte arithmetic)."""
    _check_qw(qw)
    q, s2, z = qw.unpack()
    n, k, g = qw.out_features, qw.in_features, qw.group_size
    u = q.view(n, -1, g).int() * s2.int()[..., None] + z.int()[..., None]
    return (u - 128).to(torch.int8).view(n, k)


def dequantize_int8_wordlevel(qw: QuantizedWeight) -> torch.Tensor:
    """Same result as :func:`dequantize_int8`, computed the GPU's way on the packed bytes.

    Each chunk is read as little-endian 32-bit words ``w``; ``w & 0x0F0F0F0F`` holds four codes of row r0 and
    ``(w >> 4) & 0x0F0F0F0F`` four codes of row r0 + 8 (one group each), then
    ``u = (nibbles * s2 + z * 0x01010101) mod 2**32`` and ``u ^ 0x80808080`` gives four int8 weights. Any carry
    between byte lanes (a format violation) would show up as a mismatch against the per-byte result.
    """
    _check_qw(qw)
    qw = qw.cpu()
    s, kb = qw.packed.shape[:2]
    byte = qw.packed.view(s, kb, 1, 1024, 4).long()
    words = byte[..., 0] | byte[..., 1] << 8 | byte[..., 2] << 16 | byte[..., 3] << 24
    nibbles = torch.cat((words & _LOW_NIBBLES, (words >> 4) & _LOW_NIBBLES), dim=2)  # [S, KB, 2, 1024]

    # The s2 / z each word uses: a word is four consecutive k of one row and never straddles a group.
    _, s2, z = qw.unpack()
    g = qw.group_size
    s2_word = to_chunk_planes(_per_element(s2, g))[..., ::4].long()
    z_word = to_chunk_planes(_per_element(z, g))[..., ::4].long()

    u = ((nibbles * s2_word + z_word * _BYTES_X4) & _WORD) ^ _SIGN_FLIP
    lanes = torch.stack([(u >> (8 * i)) & 0xFF for i in range(4)], dim=-1)  # little-endian bytes
    planes = lanes.to(torch.uint8).view(torch.int8).reshape(s, kb, 2, 4096)
    return from_chunk_planes(planes).to(qw.device)


def dequantize(qw: QuantizedWeight) -> torch.Tensor:
    """The effective fp32 weight ``w1' * s1`` [N, K] (on qw's device)."""
    return dequantize_int8(qw).float() * qw.s1[:, None]


def w4a8_gemm_reference_int32(x_q: torch.Tensor, qw: QuantizedWeight) -> torch.Tensor:
    """Exact int32 accumulators ``acc[m, n] = sum_k x_q[m, k] * w1'[n, k]`` for int8 ``x_q [M, K]``.

    Computed as a float64 matmul on the CPU: every partial sum is an integer below 2**53, so it is exact in
    any summation order. Returned on ``x_q.device``.
    """
    _check_qw(qw)
    check_tensor("x_q", x_q, dtypes=torch.int8, ndim=2, contiguous=False)
    if x_q.shape[1] != qw.in_features:
        raise ValueError(f"x_q: expected K = qw.in_features = {qw.in_features} columns, got shape {tuple(x_q.shape)}")
    if qw.in_features > MAX_K:
        raise ValueError(f"x_q: K must be <= {MAX_K} (int32 accumulator), got {qw.in_features}")
    w1 = dequantize_int8(qw.cpu())
    acc = x_q.cpu().double() @ w1.double().T
    assert acc.numel() == 0 or acc.abs().max() < 2**31, "int32 accumulator overflow: the format invariant is broken"
    return acc.to(torch.int32).to(x_q.device)


def default_out_dtype(qw: QuantizedWeight) -> torch.dtype:
    """The GEMM's output dtype when none is given: the original weight dtype if fp16/bf16, else bf16."""
    return qw.dtype if qw.dtype in (torch.float16, torch.bfloat16) else torch.bfloat16


def w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=None, bias=None) -> torch.Tensor:
    """Reference W4A8 GEMM: ``y = (float(acc) * x_scale[:, None]) * s1[None, :] (+ bias)`` cast to ``out_dtype``.

    The fp32 operations happen in this order, each rounded to nearest even, as in the kernel's epilogue.
    ``out_dtype``: float16, bfloat16 or float32; default :func:`default_out_dtype`. Returned on x_q's device.
    """
    check_gemm_problem(x_q, x_scale, qw, bias)
    out_dtype = default_out_dtype(qw) if out_dtype is None else out_dtype
    if out_dtype not in FLOAT_DTYPES:
        raise TypeError(f"out_dtype: expected one of {FLOAT_DTYPES}, got {out_dtype}")
    acc = w4a8_gemm_reference_int32(x_q, qw).cpu()
    y = (acc.float() * x_scale.cpu()[:, None]) * qw.s1.cpu()[None, :]
    if bias is not None:
        y = y + bias.cpu().float()
    return y.to(out_dtype).to(x_q.device)


def _relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    exact = exact.double()
    return float(torch.linalg.norm(approx.double() - exact) / torch.linalg.norm(exact).clamp_min(1e-300))


def _w8_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-channel int8 weights (the W8A8 baseline): (w_q as float64, scale [N] float64)."""
    amax = w.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
    return torch.round(w / scale[:, None]).clamp(-127, 127), scale


def _w4_rtn_asymmetric(w: torch.Tensor, group_size: int) -> torch.Tensor:
    """Per-group asymmetric 4-bit round-to-nearest (the usual W4A16 baseline), dequantized."""
    n, k = w.shape
    grouped = w.view(n, k // group_size, group_size)
    lo, hi = grouped.amin(dim=2, keepdim=True), grouped.amax(dim=2, keepdim=True)
    scale = torch.where(hi > lo, (hi - lo) / 15, torch.ones_like(hi))
    zero = torch.round(-lo / scale)
    q = (torch.round(grouped / scale) + zero).clamp(0, 15)
    return ((q - zero) * scale).view(n, k)


def accuracy_report(x: torch.Tensor, w: torch.Tensor, group_size=128) -> dict:
    """Where W4A8 LiquidQuant stands: relative Frobenius errors of the weight and of the GEMM output
    ``x @ w.T`` (exact reference in float64) for W4A8 and two baselines.

    x: float [M, K] activations, w: float [N, K] weight. Returns ::

        {"group_size": g, "shape": (M, N, K),
         "w4a8":      {"weight": e, "output": e},   # LiquidQuant weights + per-token int8 activations
         "w8a8":      {"weight": e, "output": e},   # per-channel int8 weights + per-token int8 activations
         "w4a16_rtn": {"weight": e, "output": e}}   # per-group asymmetric 4-bit RTN weights, float activations
    """
    check_tensor("x", x, dtypes=FLOAT_DTYPES, ndim=2, contiguous=False)
    check_tensor("w", w, dtypes=FLOAT_DTYPES, ndim=2, contiguous=False)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x: expected {w.shape[1]} columns (w.shape[1]), got shape {tuple(x.shape)}")
    x, w = x.cpu(), w.cpu()
    qw = quantize_weight(w, group_size)
    g = qw.group_size
    x64, w64 = x.double(), w.double()
    exact = x64 @ w64.T

    x_q, x_scale = quantize_act_reference(x)
    y_w4a8 = w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=torch.float32)

    w8, w8_scale = _w8_per_channel(w64)
    y_w8a8 = (x_q.double() @ w8.T) * x_scale.double()[:, None] * w8_scale[None, :]

    w4 = _w4_rtn_asymmetric(w64, g)
    return {
        "group_size": g,
        "shape": (x.shape[0], w.shape[0], w.shape[1]),
        "w4a8": {"weight": _relative_error(dequantize(qw), w64), "output": _relative_error(y_w4a8, exact)},
        "w8a8": {"weight": _relative_error(w8 * w8_scale[:, None], w64), "output": _relative_error(y_w8a8, exact)},
        "w4a16_rtn": {"weight": _relative_error(w4, w64), "output": _relative_error(x64 @ w4.T, exact)},
    }
