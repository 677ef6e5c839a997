"""CPU fp32 references: dequantize the prepared int4 weights exactly as the kernels do, then matmul."""
from __future__ import annotations

import torch

from .prepare import Prepared


def unpack_nibbles(packed: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """uint8 [N, K/2] (even k in the low nibble) -> int8 [N, K] in [-8, 7]."""
    packed = packed.cpu().reshape(n, k // 2)
    values = torch.stack((packed & 0xF, packed >> 4), dim=-1).reshape(n, k).to(torch.int8)
    return torch.where(values >= 8, values - 16, values)


def dequantize(prepared: Prepared) -> torch.Tensor:
    """float32 [N, K]: the values the tensor cores multiply. bf16: bf16(q · s). fp8: fp8(q · s) (the lookup
    table entries; the channel scale is applied later, in the epilogue)."""
    q = unpack_nibbles(prepared.qweight, prepared.n, prepared.k).float()
    scales = prepared.scales.cpu().float().repeat_interleave(prepared.group_size, dim=1)
    element = torch.bfloat16 if prepared.act == "bf16" else torch.float8_e4m3fn
    return (q * scales).to(element).float()


def reference_int4_bf16(x: torch.Tensor, prepared: Prepared) -> torch.Tensor:
    """bf16 [M, N] = bf16(float(x) · dequantize(prepared)^T), on CPU."""
    if prepared.act != "bf16":
        raise TypeError(f"prepared must come from prepare_int4_bf16(), got act={prepared.act!r}")
    return (x.cpu().float() @ dequantize(prepared).t()).to(torch.bfloat16)


def reference_int4_fp8(x_fp8: torch.Tensor, prepared: Prepared, x_scale: torch.Tensor | None = None) -> torch.Tensor:
    """bf16 [M, N] = bf16(channel[n] · (x_scale[m] · acc)), acc = float(x_fp8) · dequantize(prepared)^T, on CPU,
    in the epilogue's order."""
    if prepared.act != "fp8":
        raise TypeError(f"prepared must come from prepare_int4_fp8(), got act={prepared.act!r}")
    acc = x_fp8.cpu().float() @ dequantize(prepared).t()
    if x_scale is not None:
        acc = x_scale.cpu().float()[:, None] * acc
    return (prepared.channel_scale.cpu()[None, :] * acc).to(torch.bfloat16)
