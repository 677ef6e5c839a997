"""torch.library ops: ``liquidgemm::quantize_act``, ``liquidgemm::w4a8_gemm``, ``liquidgemm::w4a8_linear``.

Registered with the plain ``torch.library.Library`` define/impl/register_fake form, not the ``@custom_op``
decorator, which adds 4-7 us of Python per call (PyTorch #139500). CPU impls are the pure-torch reference,
CUDA impls call the native kernels, fake impls give torch.compile the output shapes. The CUDA impls allocate
outputs and the workspace with ``torch.empty`` (caching allocator, graph-pool aware), take the current torch
stream, never synchronise and never read device memory on the host: CUDA-graph capture and torch.compile work.

The public functions validate their arguments once (a handful of attribute checks) and call the ops; the ops
themselves trust their inputs.
"""
from __future__ import annotations

import torch

from ._validation import FLOAT_DTYPES, check_alignment, check_gemm_problem
from .format import CHUNK_COLS, CHUNK_ROWS, QuantizedWeight

ACT_DTYPES = (torch.float16, torch.bfloat16)
GEMM_OUT_DTYPES = (torch.float16, torch.bfloat16, torch.int32)  # int32 = raw accumulators (the "s32" configs)

_lib = torch.library.Library("liquidgemm", "DEF")
_lib.define("quantize_act(Tensor x) -> (Tensor, Tensor)")
_lib.define(
    "w4a8_gemm(Tensor x_q, Tensor x_scale, Tensor packed, Tensor params, Tensor s1, Tensor? bias, "
    "int group_size, ScalarType out_dtype, str config=\"\") -> Tensor"
)
_lib.define(
    "w4a8_linear(Tensor x, Tensor packed, Tensor params, Tensor s1, Tensor? bias, int group_size, "
    "str config=\"\") -> Tensor"
)


def _out_features(packed: torch.Tensor) -> int:
    return packed.shape[0] * CHUNK_ROWS


# ---- CPU: the reference ---------------------------------------------------------------------------------
def _weight(packed, params, s1, group_size, dtype) -> QuantizedWeight:
    n, k = _out_features(packed), packed.shape[1] * CHUNK_COLS
    return QuantizedWeight(packed, params, s1, group_size, n, k, dtype if dtype in FLOAT_DTYPES else torch.float32)


def _quantize_act_cpu(x):
    from .quantize import quantize_act_reference

    x_q, x_scale = quantize_act_reference(x.reshape(-1, x.shape[-1]))
    return x_q.view(x.shape), x_scale.view(x.shape[:-1])


def _gemm_cpu(x_q, x_scale, packed, params, s1, bias, group_size, out_dtype, config=""):
    from . import reference

    qw = _weight(packed, params, s1, group_size, out_dtype)
    if out_dtype == torch.int32:
        return reference.w4a8_gemm_reference_int32(x_q, qw)
    return reference.w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=out_dtype, bias=bias)


def _linear_cpu(x, packed, params, s1, bias, group_size, config=""):
    x_q, x_scale = _quantize_act_cpu(x)
    k = x.shape[-1]
    y = _gemm_cpu(x_q.view(-1, k), x_scale.view(-1), packed, params, s1, bias, group_size, x.dtype)
    return y.view(*x.shape[:-1], y.shape[-1])


# ---- CUDA: the native kernels ---------------------------------------------------------------------------
def _fp32(bias):
    """The epilogue reads an fp32 bias (None stays None)."""
    return bias if bias is None or bias.dtype == torch.float32 else bias.float()


def _aligned16(t):
    """`t`, or a 16-byte aligned copy where a view starts elsewhere: the K-pairs configs bulk-copy the scale vectors
    (x_scale, s1, bias) into shared memory. None stays None."""
    return t if t is None or t.data_ptr() % 16 == 0 else t.clone()


def _quantize_act_cuda(x):
    from . import _native

    if not x.is_contiguous():  # compiled graphs may hand over other strides; the kernel reads dense rows
        x = x.contiguous()
    # whole multiples of act_row_multiple() rows behind x_q, so that a decode GEMM's activation TMA loads whole token
    # tiles (the rows past M are never written; their products are never stored)
    k = x.shape[-1]
    rows = x.numel() // k
    step = _native.act_row_multiple()
    x_q = torch.empty(-(-rows // step) * step * k, dtype=torch.int8, device=x.device)[: rows * k].view(x.shape)
    x_scale = torch.empty(x.shape[:-1], dtype=torch.float32, device=x.device)
    _native.quantize_act(x, x_q, x_scale)  # rows = all leading dims: no reshape of x
    return x_q, x_scale


def _gemm_cuda(x_q, x_scale, packed, params, s1, bias, group_size, out_dtype, config=""):
    from . import _native, dispatch

    m, k = x_q.shape
    n = _out_features(packed)
    if not x_q.is_contiguous():
        x_q = x_q.contiguous()
    if not config:
        config = dispatch.select_config(m, n, k, group_size, out_dtype)  # memoised: safe under graph capture
    x_scale, s1, bias = _aligned16(x_scale), _aligned16(s1), _aligned16(_fp32(bias))
    out = torch.empty((m, n), dtype=out_dtype, device=x_q.device)
    workspace_bytes = _native.gemm_workspace_size(config, m, n, k, group_size)  # 0 for most configs
    workspace = torch.empty(workspace_bytes, dtype=torch.uint8, device=x_q.device) if workspace_bytes else None
    _native.gemm(config, x_q, x_scale, packed, params, s1, bias, out, workspace, group_size)
    return out


def _linear_cuda(x, packed, params, s1, bias, group_size, config=""):
    from . import _native, dispatch

    if not x.is_contiguous():
        x = x.contiguous()
    k = x.shape[-1]
    m = x.numel() // k
    n = _out_features(packed)
    if not config:
        config = dispatch.select_linear_config(m, n, k, group_size, x.dtype)  # memoised: safe under graph capture
    s1, bias = _aligned16(s1), _aligned16(_fp32(bias))
    out = torch.empty((*x.shape[:-1], n), dtype=x.dtype, device=x.device)
    # int8 activations, their scales and the GEMM's workspace in one allocation, filled by one native call
    scratch = torch.empty(_native.linear_scratch_size(config, m, n, k, group_size), dtype=torch.uint8,
                          device=x.device)
    _native.linear(config, x, scratch, packed, params, s1, bias, out, m, n, k, group_size)
    return out


# ---- fake (meta) impls: shapes and dtypes only ------------------------------------------------------------
def _quantize_act_fake(x):
    return x.new_empty(x.shape, dtype=torch.int8), x.new_empty(x.shape[:-1], dtype=torch.float32)


def _gemm_fake(x_q, x_scale, packed, params, s1, bias, group_size, out_dtype, config=""):
    return x_q.new_empty((x_q.shape[0], _out_features(packed)), dtype=out_dtype)


def _linear_fake(x, packed, params, s1, bias, group_size, config=""):
    return x.new_empty((*x.shape[:-1], _out_features(packed)))


for _name, _cpu, _cuda, _fake in (
    ("quantize_act", _quantize_act_cpu, _quantize_act_cuda, _quantize_act_fake),
    ("w4a8_gemm", _gemm_cpu, _gemm_cuda, _gemm_fake),
    ("w4a8_linear", _linear_cpu, _linear_cuda, _linear_fake),
):
    _lib.impl(_name, _cpu, "CPU")
    _lib.impl(_name, _cuda, "CUDA")
    torch.library.register_fake(f"liquidgemm::{_name}", _fake, lib=_lib)

# OpOverloads looked up once: attribute access on torch.ops costs ~1 us per call.
_quantize_act_op = torch.ops.liquidgemm.quantize_act.default
_gemm_op = torch.ops.liquidgemm.w4a8_gemm.default
_linear_op = torch.ops.liquidgemm.w4a8_linear.default


# ---- validation shared by the public functions -------------------------------------------------------------
_cuda_ready: dict[int, bool] = {}  # device index -> checked (sm_90 + extension loaded)


def _check_cuda(device: torch.device) -> None:
    """RuntimeError unless ``device`` is an sm_90 GPU and the native extension is loaded (cached per device)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index in _cuda_ready:
        return
    from . import _native

    major, minor = torch.cuda.get_device_capability(index)
    if (major, minor) != (9, 0):
        raise RuntimeError(f"liquidgemm's CUDA kernels need an sm_90 (Hopper) GPU; {device} "
                           f"({torch.cuda.get_device_name(index)}) is sm_{major}{minor}. "
                           "Move the tensors to the CPU to use the reference implementation.")
    if not _native.is_available():
        raise RuntimeError(f"liquidgemm's CUDA extension is not available: {_native.unavailable_reason()}")
    _cuda_ready[index] = True


def _check_device_ready(t: torch.Tensor) -> None:
    if t.is_cuda and not torch.compiler.is_compiling():
        _check_cuda(t.device)


def _check_act(name: str, x) -> None:
    """fp16/bf16 [..., K] contiguous, 16-byte aligned, at least one row."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in ACT_DTYPES:
        raise TypeError(f"{name}: expected dtype torch.float16 or torch.bfloat16, got {x.dtype}")
    if x.dim() < 1 or x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty tensor [..., K], got shape {tuple(x.shape)}")
    if not x.is_contiguous():
        raise ValueError(f"{name}: expected a contiguous tensor (call .contiguous()), got shape {tuple(x.shape)} "
                         f"with strides {x.stride()}")
    if x.is_cuda and not torch.compiler.is_compiling():  # fake tensors have no data pointer
        check_alignment(name, x)


def _check_linear(x, packed, s1, bias, n: int, k: int) -> None:
    _check_act("x", x)
    if x.shape[-1] != k:
        raise ValueError(f"x: expected last dim K = in_features = {k}, got shape {tuple(x.shape)}")
    if x.device != packed.device:
        raise ValueError(f"x: expected a tensor on {packed.device} (the device of the weight), got {x.device}")
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or bias.dtype not in FLOAT_DTYPES:
            raise TypeError(f"bias: expected a float16/bfloat16/float32 tensor, got "
                            f"{getattr(bias, 'dtype', type(bias).__name__)}")
        if bias.shape != s1.shape:
            raise ValueError(f"bias: expected shape ({n},) (out_features), got {tuple(bias.shape)}")
        if bias.device != packed.device:
            raise ValueError(f"bias: expected a tensor on {packed.device} (the device of the weight), got {bias.device}")
    _check_device_ready(x)


def _check_config(config, out_dtype, n: int, k: int, linear_x: torch.Tensor | None = None) -> str:
    """`config` ("" for none) checked for `out_dtype` and the weight's `n` x `k` shape; `linear_x`: the
    activations of a w4a8_linear call, whose (m, k) a forced fused-quantization config must take (read only when a
    config is forced: this is the hot path)."""
    if config is None or config == "":
        return ""
    if not isinstance(config, str):
        raise TypeError(f"config: expected a config id string or None, got {type(config).__name__}")
    from . import dispatch

    linear_shape = None if linear_x is None else (linear_x.numel() // linear_x.shape[-1], linear_x.shape[-1])
    dispatch.check_config(config, out_dtype, n=n, k=k, linear_shape=linear_shape)
    return config


def _eager_cuda(t: torch.Tensor) -> bool:
    """Eager calls on CUDA tensors skip the dispatcher (10-20 us of Python per call) and run the very CUDA impl
    the op would run; under torch.compile (or for CPU / meta tensors) the registered op is used."""
    return t.is_cuda and not torch.compiler.is_compiling()


# ---- public API -----------------------------------------------------------------------------------------------
def quantize_act(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token INT8 quantization of ``x [..., K]`` (fp16/bf16): ``(x_q int8 [..., K], scale fp32 [...])``.

    ``scale = max|x| / 127`` per row, ``x_q = round_half_even(x / scale)`` (docs/architecture.md). On the GPU x_q
    is a view into a buffer of whole multiples of 16 rows: ``w4a8_gemm`` then loads whole token tiles instead of
    zero-filling the rows past M (0.4-0.6 µs per decode GEMM on H100); a copy of exactly M rows works the same,
    only that much slower.
    """
    _check_act("x", x)
    _check_device_ready(x)
    if _eager_cuda(x):
        return _quantize_act_cuda(x)
    return _quantize_act_op(x)


def w4a8_gemm(x_q: torch.Tensor, x_scale: torch.Tensor, qw: QuantizedWeight, out_dtype=None, bias=None,
              config=None) -> torch.Tensor:
    """``Y = (x_q · w1'ᵀ) · x_scale[m] · s1[n] (+ bias)``: x_q int8 [M, K], x_scale fp32 [M] -> [M, N].

    out_dtype: torch.float16 / torch.bfloat16 (default ``qw.dtype`` if 16-bit, else bfloat16), or torch.int32
    for the raw accumulators (no scales, no bias). config: a config id to force (``dispatch.list_configs()``).
    The kernel may read (never use) rows of x_q's buffer past M, up to its last token tile (``quantize_act``).
    """
    check_gemm_problem(x_q, x_scale, qw, bias)
    if out_dtype is None:
        out_dtype = qw.dtype if qw.dtype in ACT_DTYPES else torch.bfloat16
    if out_dtype not in GEMM_OUT_DTYPES:
        raise TypeError(f"out_dtype: expected torch.float16, torch.bfloat16 or torch.int32, got {out_dtype}")
    if out_dtype == torch.int32 and bias is not None:
        raise ValueError("bias: must be None when out_dtype is torch.int32 (raw accumulators)")
    if x_q.is_cuda and not torch.compiler.is_compiling():
        check_alignment("x_q", x_q)
    _check_device_ready(x_q)
    config = _check_config(config, out_dtype, qw.out_features, qw.in_features)
    gemm = _gemm_cuda if _eager_cuda(x_q) else _gemm_op
    return gemm(x_q, x_scale, qw.packed, qw.params, qw.s1, bias, qw.group_size, out_dtype, config)


def w4a8_linear(x: torch.Tensor, qw: QuantizedWeight, bias=None, config=None) -> torch.Tensor:
    """``quantize_act`` + ``w4a8_gemm`` in one op: x fp16/bf16 [..., K] -> same dtype [..., N]."""
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw: expected a liquidgemm.QuantizedWeight, got {type(qw).__name__}")
    _check_linear(x, qw.packed, qw.s1, bias, qw.out_features, qw.in_features)
    config = _check_config(config, x.dtype, qw.out_features, qw.in_features, linear_x=x)
    linear = _linear_cuda if _eager_cuda(x) else _linear_op
    return linear(x, qw.packed, qw.params, qw.s1, bias, qw.group_size, config)


def linear_from_buffers(x, packed, params, s1, bias, group_size: int, config: str = "") -> torch.Tensor:
    """:func:`w4a8_linear` on the raw buffers of a weight whose layout is already known to be valid
    (``nn.W4A8Linear`` holds them as module buffers); checks only ``x``, ``bias`` and a forced ``config``."""
    n, k = s1.shape[0], packed.shape[1] * CHUNK_COLS
    _check_linear(x, packed, s1, bias, n, k)
    config = _check_config(config, x.dtype, n, k, linear_x=x)  # a forced config must write x's dtype and take the call
    linear = _linear_cuda if _eager_cuda(x) else _linear_op
    return linear(x, packed, params, s1, bias, group_size, config)


__all__ = ["quantize_act", "w4a8_gemm", "w4a8_linear", "linear_from_buffers"]
