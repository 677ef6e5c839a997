"""Lazy access to the compiled extension ``liquidgemm._C``: tensors in, raw pointers and the current stream out.

Importing this module needs neither the extension nor a GPU; the first call that needs them loads ``_C`` and a
missing piece is reported by ``unavailable_reason()``. The wrappers assume ops.py validated every argument (only
cheap asserts here), take the stream from torch so CUDA-graph capture and stream semantics just work, and never
allocate or synchronise.
"""
from __future__ import annotations

import functools
import importlib

import torch

_ACT_DTYPES = {torch.bfloat16: "bf16", torch.float16: "f16"}


@functools.cache
def _load():
    """(module, None) or (None, why it cannot be imported)."""
    try:
        return importlib.import_module("liquidgemm._C"), None
    except ImportError as err:
        return None, (f"the compiled extension liquidgemm._C is not built ({err}); "
                      "install the package with `pip install .` with nvcc (CUDA 12 or newer) on PATH")


@functools.cache
def _device_reason(index: int) -> str:
    major, minor = torch.cuda.get_device_capability(index)
    if (major, minor) != (9, 0):
        return (f"GPU {index} ({torch.cuda.get_device_name(index)}) is sm_{major}{minor}; "
                "liquidgemm's kernels are built for sm_90a only (H100/H200)")
    return ""


def unavailable_reason() -> str:
    """Why the CUDA kernels cannot run here (extension not built, no CUDA GPU, not sm_90), or "" if they can."""
    _, why = _load()
    if why is not None:
        return why
    if not torch.cuda.is_available():
        return "no CUDA GPU: torch.cuda.is_available() is False"
    return _device_reason(torch.cuda.current_device())


def is_available() -> bool:
    """True when the extension is built and the current CUDA device is an sm_90 GPU."""
    return unavailable_reason() == ""


def _lib():
    module, why = _load()
    if module is None:
        raise RuntimeError(why)
    return module


def configs() -> list[str]:
    """Ids of the kernel configs compiled into the extension (needs the extension, not a GPU)."""
    return _lib().configs()


def _stream(t: torch.Tensor) -> int:
    """The raw handle of torch's current stream on t's device (the private getter costs ~0.3 us instead of the
    several us of building a torch.cuda.Stream object)."""
    if _raw_stream is not None:
        return _raw_stream(t.get_device())
    return torch.cuda.current_stream(t.device).cuda_stream


_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def gemm(config: str, x_q, x_scale, packed, params, s1, bias, out, workspace, group_size: int,
         splits: int = 0) -> None:
    """out[M, N] = (x_q · w1'ᵀ) · x_scale[:, None] · s1 (+ bias) with config `config`, on torch's current stream.
    splits: stream-K and split-K configs only; 0 = the config's own choice (stream-K heuristic, split-K cost
    model), s >= 1 = s slices of K."""
    m, k = x_q.shape
    n = out.shape[1]
    assert x_q.is_cuda and out.shape[0] == m, "ops.py validates before calling _native.gemm"
    workspace_ptr, workspace_bytes = (0, 0) if workspace is None else (workspace.data_ptr(), workspace.nbytes)
    _lib().gemm(config, x_q.data_ptr(), x_scale.data_ptr(), packed.data_ptr(), params.data_ptr(), s1.data_ptr(),
                0 if bias is None else bias.data_ptr(), out.data_ptr(), workspace_ptr, workspace_bytes,
                m, n, k, group_size, splits, _stream(x_q), readable_rows(x_q))


def readable_rows(x_q) -> int:
    """Rows of K int8 values in x_q's storage from its first element on (>= its M rows when contiguous): the kernel
    may read up to a whole token tile of them, so that the activation TMA never zero-fills a box (`quantize_act`
    allocates whole multiples of `act_row_multiple()` rows for that)."""
    k = x_q.shape[-1]
    return (x_q.untyped_storage().nbytes() - x_q.storage_offset() * x_q.element_size()) // (k * x_q.element_size())


def act_row_multiple() -> int:
    """The row multiple of the library's int8 activation buffers (the largest decode token tile)."""
    return int(_lib().act_row_multiple)


def set_programmatic_launch(enabled: bool) -> None:
    """Programmatic dependent launch for the GEMMs (default on): each GEMM's prologue and weight prefetch overlap
    the previous kernel in the stream. Off = plain stream order (for A/B measurements)."""
    _lib().set_programmatic_launch(bool(enabled))


@functools.lru_cache(maxsize=4096)
def gemm_workspace_size(config: str, m: int, n: int, k: int, group_size: int, splits: int = 0) -> int:
    """Bytes of workspace (a uint8 tensor) `config` needs for this problem; 0 for most configs (memoised: it is
    on the hot path of every call)."""
    return _lib().gemm_workspace_size(config, m, n, k, group_size, splits)


@functools.lru_cache(maxsize=4096)
def linear_scratch_size(config: str, m: int, n: int, k: int, group_size: int) -> int:
    """Bytes of the uint8 scratch `linear` needs: int8 activations, token scales and the GEMM's workspace
    (memoised: it is on the hot path of every call)."""
    return _lib().linear_scratch_size(config, m, n, k, group_size)


def linear(config: str, x, scratch, packed, params, s1, bias, out, m: int, n: int, k: int, group_size: int) -> None:
    """out = w4a8_linear(x) with config `config`: x [.., K] (bf16/f16, m rows) is quantized into `scratch` and the
    GEMM writes out [.., N], in one call of the extension (two kernels) on torch's current stream."""
    assert x.is_cuda and x.dtype in _ACT_DTYPES, "ops.py validates first"
    _lib().linear(config, x.data_ptr(), _ACT_DTYPES[x.dtype], scratch.data_ptr(), scratch.nbytes, packed.data_ptr(),
                  params.data_ptr(), s1.data_ptr(), 0 if bias is None else bias.data_ptr(), out.data_ptr(),
                  m, n, k, group_size, _stream(x))


def quantize_act(x, x_q, x_scale) -> None:
    """Per-token INT8 quantization of x [..., K] (bf16/f16, contiguous) into x_q (int8, x's shape) and x_scale
    (fp32, one per row)."""
    k = x.shape[-1]
    assert x.is_cuda and x.dtype in _ACT_DTYPES and x_q.shape == x.shape, "ops.py validates first"
    _lib().quantize_act(x.data_ptr(), _ACT_DTYPES[x.dtype], x_q.data_ptr(), x_scale.data_ptr(), x.numel() // k, k,
                        _stream(x))
