"""Argument checks shared by every module (format, quantize, reference, ops, nn, bench).

Each check raises TypeError (not a tensor / wrong dtype / wrong object) or ValueError (shape, device, layout)
with a message that names the argument and states the requirement, e.g.
``x_q: expected dtype torch.int8, got torch.float16``.
"""
from __future__ import annotations

from typing import Iterable

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

#: int32 accumulator bound: |acc| <= 127 * 127 * K < 2**31 (docs/architecture.md, "Problem").
MAX_K = 131072


def _dtype_list(dtypes: Iterable[torch.dtype]) -> str:
    names = [str(d) for d in dtypes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def same_device(a: torch.device | str, b: torch.device | str) -> bool:
    """True when `a` and `b` name the same device; a missing index ('cuda') matches any index."""
    a, b = torch.device(a), torch.device(b)
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def check_tensor(
    name: str,
    t,
    *,
    dtypes: torch.dtype | Iterable[torch.dtype],
    ndim: int | None = None,
    device: torch.device | str | None = None,
    contiguous: bool = True,
) -> torch.Tensor:
    """Check one tensor argument and return it unchanged."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    dtypes = (dtypes,) if isinstance(dtypes, torch.dtype) else tuple(dtypes)
    if t.dtype not in dtypes:
        raise TypeError(f"{name}: expected dtype {_dtype_list(dtypes)}, got {t.dtype}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D tensor, got shape {tuple(t.shape)}")
    if device is not None and not same_device(t.device, device):
        raise ValueError(f"{name}: expected a tensor on {torch.device(device)}, got {t.device}")
    if contiguous and not t.is_contiguous():
        raise ValueError(
            f"{name}: expected a contiguous tensor (call .contiguous()), got shape {tuple(t.shape)} "
            f"with strides {t.stride()}"
        )
    return t


def check_alignment(name: str, t: torch.Tensor, nbytes: int = 16) -> torch.Tensor:
    """Check that the data pointer and the row stride (in bytes) are multiples of `nbytes` (TMA / vector loads)."""
    if t.dim() >= 2:
        row_bytes = t.stride(-2) * t.element_size()
        if row_bytes % nbytes:
            raise ValueError(f"{name}: row stride must be a multiple of {nbytes} bytes, got {row_bytes} bytes")
    if t.device.type != "meta":
        try:
            ptr = t.data_ptr()
        except RuntimeError:  # fake tensors under torch.compile have no storage to check
            return t
        if ptr % nbytes:
            raise ValueError(f"{name}: data pointer must be {nbytes}-byte aligned, got address {ptr:#x}")
    return t


def check_gemm_problem(x_q, x_scale, qw, bias=None) -> tuple[int, int, int]:
    """Validate the arguments of a W4A8 GEMM and return ``(M, N, K)``.

    x_q: int8 [M, K] contiguous, M >= 1, K == qw.in_features <= 131072; x_scale: float32 [M];
    qw: QuantizedWeight; bias: None or float16/bfloat16/float32 [N] (the native path takes it as float32).
    All tensors on qw's device.
    """
    from .format import QuantizedWeight  # format imports this module

    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw: expected a liquidgemm.QuantizedWeight, got {type(qw).__name__}")
    device = qw.device
    check_tensor("x_q", x_q, dtypes=torch.int8, ndim=2)
    m, k = x_q.shape
    n = qw.out_features
    if m < 1:
        raise ValueError(f"x_q: expected at least one row (M >= 1), got shape {tuple(x_q.shape)}")
    if k != qw.in_features:
        raise ValueError(f"x_q: expected K = qw.in_features = {qw.in_features} columns, got shape {tuple(x_q.shape)}")
    if k > MAX_K:
        raise ValueError(f"x_q: K must be <= {MAX_K} (int32 accumulator), got {k}")
    check_tensor("x_scale", x_scale, dtypes=torch.float32, ndim=1)
    if x_scale.shape[0] != m:
        raise ValueError(f"x_scale: expected shape ({m},) (one scale per row of x_q), got {tuple(x_scale.shape)}")
    if bias is not None:
        check_tensor("bias", bias, dtypes=FLOAT_DTYPES, ndim=1)
        if bias.shape[0] != n:
            raise ValueError(f"bias: expected shape ({n},) (qw.out_features), got {tuple(bias.shape)}")
    for name, t in (("x_q", x_q), ("x_scale", x_scale), ("bias", bias)):
        if t is not None and not same_device(t.device, device):
            raise ValueError(f"{name}: expected a tensor on {device} (the device of qw), got {t.device}")
    return m, n, k
