"""The two peer GEMMs, Y[M, N] = X[M, K] · W[N, K]^T in bf16, on torch's current stream."""
from __future__ import annotations

import re

import torch

from ._native import configs, native, stream_of
from .prepare import Prepared

_TILE = re.compile(r"_t(\d+)x(\d+)x(\d+)_")


def tile_tokens(config: str) -> int:
    """Tokens per CTA tile (the kernel's N, after the operand swap) of a config id."""
    match = _TILE.search(config)
    if match is None:
        raise ValueError(f"config id {config!r} has no _t<M>x<N>x<K>_ tile")
    return int(match.group(2))


def select_config(act: str, m: int) -> str:
    """The smallest token tile that covers m (decode), else the widest one."""
    candidates = sorted((tile_tokens(c), c) for c, a in configs() if a == act)
    if not candidates:
        raise RuntimeError(f"no CUTLASS peer kernel compiled for act={act!r}")
    for tokens, config in candidates:
        if tokens >= m:
            return config
    return candidates[-1][1]


def _check_call(x, prepared, act: str, dtype: torch.dtype, config: str | None) -> str:
    if not isinstance(prepared, Prepared) or prepared.act != act:
        raise TypeError(f"prepared must come from prepare_int4_{act}(), got "
                        f"{getattr(prepared, 'act', type(prepared).__name__)!r}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != dtype or x.dim() != 2 or not x.is_contiguous():
        raise ValueError(f"x must be a contiguous 2-D {dtype} tensor [M, K], got {x.dim()}-D {x.dtype}"
                         f"{'' if x.is_contiguous() else ' (non-contiguous)'}")
    if x.device != prepared.weight.device:
        raise ValueError(f"x must be on {prepared.weight.device} (where the weight is), got {x.device}")
    if x.shape[0] < 1 or x.shape[1] != prepared.k:
        raise ValueError(f"x must be [M >= 1, K = {prepared.k}], got {list(x.shape)}")
    if x.data_ptr() % 16:
        raise ValueError("x must be 16-byte aligned (TMA)")
    if config is None:
        return select_config(act, x.shape[0])
    known = [c for c, a in configs() if a == act]
    if config not in known:
        raise ValueError(f"config must be one of {known}, got {config!r}")
    return config


def _run(config: str, x: torch.Tensor, prepared: Prepared, x_scale: torch.Tensor | None) -> torch.Tensor:
    m, n, k, g = x.shape[0], prepared.n, prepared.k, prepared.group_size
    out = torch.empty((m, n), dtype=torch.bfloat16, device=x.device)
    C = native()
    workspace_bytes = C.workspace_size(config, m, n, k, g)
    workspace = torch.empty(workspace_bytes, dtype=torch.uint8, device=x.device) if workspace_bytes else None
    with torch.cuda.device(x.device):
        C.gemm(config, prepared.weight.data_ptr(), prepared.group_scale.data_ptr(), x.data_ptr(),
               0 if x_scale is None else x_scale.data_ptr(),
               0 if prepared.channel_scale is None else prepared.channel_scale.data_ptr(),
               out.data_ptr(), 0 if workspace is None else workspace.data_ptr(), workspace_bytes,
               m, n, k, g, stream_of(x))
    return out


def gemm_int4_bf16(x: torch.Tensor, prepared: Prepared, config: str | None = None) -> torch.Tensor:
    """bf16 [M, N] = x (bf16 [M, K]) · dequant(prepared)^T, dequant = bf16(q) · bf16 group scale in the mainloop."""
    config = _check_call(x, prepared, "bf16", torch.bfloat16, config)
    return _run(config, x, prepared, None)


def gemm_int4_fp8(x_fp8: torch.Tensor, prepared: Prepared, x_scale: torch.Tensor | None = None,
                  config: str | None = None) -> torch.Tensor:
    """bf16 [M, N] = x_scale[m] · channel[n] · (x_fp8 · fp8(q · s)^T): fp8 e4m3 tensor-core GEMM, per-token
    (optional, float32 [M]) and per-channel scales applied in the epilogue."""
    config = _check_call(x_fp8, prepared, "fp8", torch.float8_e4m3fn, config)
    if x_scale is not None:
        if not isinstance(x_scale, torch.Tensor):
            raise TypeError(f"x_scale must be a torch.Tensor or None, got {type(x_scale).__name__}")
        if (x_scale.dtype != torch.float32 or x_scale.shape != (x_fp8.shape[0],) or not x_scale.is_contiguous()
                or x_scale.device != x_fp8.device):
            raise ValueError(f"x_scale must be a contiguous float32 [M = {x_fp8.shape[0]}] tensor on {x_fp8.device}, "
                             f"got {x_scale.dtype} {list(x_scale.shape)} on {x_scale.device}")
    return _run(config, x_fp8, prepared, x_scale)
