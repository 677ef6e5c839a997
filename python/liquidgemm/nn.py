"""``W4A8Linear`` (a drop-in ``nn.Linear`` with LiquidQuant W4 weights and per-token INT8 activations) and
``quantize_model`` (replace the eligible linears of a model, optionally with SmoothQuant-style smoothing)."""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from . import ops
from .format import CHUNK_BYTES, CHUNK_COLS, CHUNK_ROWS, QuantizedWeight, check_weight_shape, normalize_group_size
from .quantize import quantize_weight
from .smooth import collect_absmax, find_norm_groups, fold_into_norm, smoothing_scales

COMPUTE_DTYPES = (torch.float16, torch.bfloat16)


class W4A8Linear(nn.Module):
    """``y = x Wᵀ + b`` with ``W`` in LiquidQuant W4 (group-wise) and ``x`` quantized per token to INT8.

    Buffers: ``packed``, ``params``, ``s1`` (the :class:`QuantizedWeight` tensors), ``bias`` (fp32, optional) and
    ``smooth`` (fp32 [K], optional): a per-input-channel divisor applied to ``x`` before quantization, for
    smoothing factors that could not be folded into a preceding norm. The group size is implied by the shape of
    ``params`` ([N//64, K//group_size, 64, 2]), so a state dict (or a safetensors file) holds only tensors.

    Inputs of any float dtype work: the GEMM runs in ``compute_dtype`` (fp16/bf16; bf16 for fp32 layers)
    and the output is cast back to the input dtype.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, group_size=128,
                 compute_dtype: torch.dtype = torch.bfloat16, smooth: bool = False, device=None):
        super().__init__()
        check_weight_shape("W4A8Linear", out_features, in_features)
        if compute_dtype not in COMPUTE_DTYPES:
            raise TypeError(f"compute_dtype: expected torch.float16 or torch.bfloat16, got {compute_dtype}")
        self.in_features, self.out_features = in_features, out_features
        self.group_size = normalize_group_size(group_size, in_features)
        self.compute_dtype = compute_dtype
        self.config = ""  # a config id to force for every call; "" = dispatch heuristic / tuning cache
        n, k, g = out_features, in_features, self.group_size
        u8 = dict(dtype=torch.uint8, device=device)
        self.register_buffer("packed", torch.zeros(n // CHUNK_ROWS, k // CHUNK_COLS, CHUNK_BYTES, **u8))
        self.register_buffer("params", torch.zeros(n // CHUNK_ROWS, k // g, CHUNK_ROWS, 2, **u8))
        self.register_buffer("s1", torch.ones(n, dtype=torch.float32, device=device))
        self.register_buffer("bias", torch.zeros(n, dtype=torch.float32, device=device) if bias else None)
        self.register_buffer("smooth", torch.ones(k, dtype=torch.float32, device=device) if smooth else None)

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, group_size=128, smooth: torch.Tensor | None = None) -> "W4A8Linear":
        """Quantize ``linear`` (on its device). ``smooth``: optional per-input-channel divisor ``s`` [K]; the
        module then computes ``(x / s) (W diag(s))ᵀ``, which equals ``x Wᵀ`` before quantization."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear: expected a torch.nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach()
        dtype = w.dtype if w.dtype in COMPUTE_DTYPES else torch.bfloat16
        if smooth is not None:
            if not isinstance(smooth, torch.Tensor) or smooth.shape != (linear.in_features,):
                raise ValueError(f"smooth: expected a tensor of shape ({linear.in_features},) (in_features), "
                                 f"got {getattr(smooth, 'shape', type(smooth).__name__)}")
            smooth = smooth.detach().to(w.device, torch.float32)
            w = w.float() * smooth
        qw = quantize_weight(w, group_size)
        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                     group_size=qw.group_size, compute_dtype=dtype, smooth=smooth is not None, device=w.device)
        module.packed.copy_(qw.packed)
        module.params.copy_(qw.params)
        module.s1.copy_(qw.s1)
        if linear.bias is not None:
            module.bias.copy_(linear.bias.detach().float())
        if smooth is not None:
            module.smooth.copy_(smooth)
        return module

    @property
    def qweight(self) -> QuantizedWeight:
        """The weight as a :class:`QuantizedWeight` (views of the buffers)."""
        return QuantizedWeight(self.packed, self.params, self.s1, self.group_size, self.out_features,
                               self.in_features, self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_dtype = x.dtype
        if self.smooth is not None:
            x = x / self.smooth
        if x.dtype != self.compute_dtype:
            x = x.to(self.compute_dtype)
        if not x.is_contiguous():
            x = x.contiguous()
        y = ops.linear_from_buffers(x, self.packed, self.params, self.s1, self.bias, self.group_size, self.config)
        return y if y.dtype == in_dtype else y.to(in_dtype)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # Optional buffers follow the checkpoint: a smoothed / biased layer loads into a fresh module.
        for name in ("bias", "smooth"):
            t = state_dict.get(prefix + name)
            if t is not None and getattr(self, name) is None:
                setattr(self, name, torch.empty(t.shape, dtype=torch.float32, device=self.packed.device))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.buffers(recurse=False))

    def extra_repr(self) -> str:
        bf16 = 2 * self.out_features * (self.in_features + (self.bias is not None))
        group = "channel" if self.group_size == self.in_features else self.group_size
        extras = ", smooth" if self.smooth is not None else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, group_size={group}, "
                f"bias={self.bias is not None}{extras}, bytes={self.nbytes:,} "
                f"(saves {bf16 - self.nbytes:,} vs bf16, {bf16 / self.nbytes:.2f}x smaller)")


# ---- quantize_model --------------------------------------------------------------------------------------------
@dataclass
class QuantizationSummary:
    """What :func:`quantize_model` did. Bytes count every unique parameter and buffer of the model."""

    group_size: object
    converted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # layer name -> reason
    fused: list[str] = field(default_factory=list)  # modules that run sibling layers as one GEMM
    folded_norms: list[str] = field(default_factory=list)  # norms that absorbed 1/s
    smoothed_in_layer: list[str] = field(default_factory=list)  # layers keeping an explicit input divisor
    bytes_before: int = 0
    bytes_after: int = 0

    def __str__(self) -> str:
        mib = 1 << 20
        ratio = self.bytes_before / self.bytes_after if self.bytes_after else float("nan")
        lines = [
            f"liquidgemm: {len(self.converted)} of {len(self.converted) + len(self.skipped)} linear layers -> W4A8 "
            f"(group size {self.group_size})",
            f"  model size {self.bytes_before / mib:,.1f} MiB -> {self.bytes_after / mib:,.1f} MiB ({ratio:.2f}x smaller)",
        ]
        if self.fused:
            lines.append(f"  fused {len(self.fused)} groups of sibling layers into one GEMM each "
                         f"(e.g. {self.fused[0]})")
        if self.folded_norms or self.smoothed_in_layer:
            lines.append(f"  smoothing: 1/s folded into {len(self.folded_norms)} norms, "
                         f"{len(self.smoothed_in_layer)} layers keep an input divisor")
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)}:")
            lines += [f"    {name}: {reason}" for name, reason in self.skipped.items()]
        return "\n".join(lines)


def model_nbytes(model: nn.Module) -> int:
    """Bytes of the unique parameters and buffers of ``model``."""
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def skip_reason(name: str, linear: nn.Linear, skip: Iterable[str], group_size) -> str | None:
    """Why ``linear`` cannot (or must not) become a W4A8Linear, or None."""
    for pattern in skip:
        if name == pattern or name.rsplit(".", 1)[-1] == pattern or fnmatch.fnmatchcase(name, pattern):
            return f"matches skip pattern {pattern!r}"
    n, k = linear.out_features, linear.in_features
    if n % 128:
        return f"out_features {n} is not a multiple of 128"
    if k % 128:
        return f"in_features {k} is not a multiple of 128"
    if not linear.weight.is_floating_point() or linear.weight.is_meta:
        return f"weight is {linear.weight.dtype} on {linear.weight.device}, not a materialised float tensor"
    try:
        normalize_group_size(group_size, k)
    except ValueError as e:
        return str(e)
    return None


@torch.no_grad()
def quantize_model(model: nn.Module, group_size=128, skip: Iterable[str] = ("lm_head",), calibration=None,
                   smooth_alpha: float = 0.5, progress: bool = True, fuse: bool = True) -> QuantizationSummary:
    """Replace every eligible ``nn.Linear`` of ``model`` (in place) with a :class:`W4A8Linear`.

    Eligible: N and K multiples of 128, not matching ``skip`` (exact name, last name component, or a glob).
    calibration: optional iterable of model inputs (dict -> ``model(**item)``, tuple -> ``model(*item)``, else
    ``model(item)``). When given, per-input-channel activation maxima are recorded and SmoothQuant-style factors
    ``s = max|X|^alpha / max|W|^(1-alpha)`` applied: folded into the preceding RMSNorm/LayerNorm of pre-norm
    blocks (q/k/v after ``input_layernorm``, gate/up after ``post_attention_layernorm``), else kept in the layer.
    fuse: run sibling layers that share their input (q/k/v, gate/up; ``fused.SIBLING_SETS``) as one GEMM with one
    activation quantization (identical outputs; the state dict then holds ``<parent>.q_proj_k_proj_v_proj_fused``).
    """
    if isinstance(skip, str):
        skip = (skip,)
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    summary = QuantizationSummary(group_size="channel" if group_size in (None, "channel") else group_size,
                                  bytes_before=model_nbytes(model))
    eligible = {}
    for name, linear in linears.items():
        reason = skip_reason(name, linear, skip, group_size)
        if reason is None:
            eligible[name] = linear
        else:
            summary.skipped[name] = reason

    divisors = _smooth(model, eligible, calibration, smooth_alpha, summary) if calibration is not None else {}

    groups = _sibling_groups(model, eligible, divisors) if fuse else []
    grouped = {f"{parent}.{name}" if parent else name for parent, names in groups for name in names}
    items = [(name, linear) for name, linear in eligible.items() if name not in grouped] + \
            [(parent, names) for parent, names in groups]
    if progress:
        items = _progress(items)
    for name, linear in items:
        if isinstance(linear, tuple):  # a sibling group under the module `name`
            from .fused import fuse_siblings

            fused_name = fuse_siblings(model.get_submodule(name) if name else model, linear, group_size)
            summary.fused.append(f"{name}.{fused_name}" if name else fused_name)
            summary.converted += [f"{name}.{child}" if name else child for child in linear]
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, W4A8Linear.from_linear(linear, group_size, smooth=divisors.get(name)))
        summary.converted.append(name)
    summary.bytes_after = model_nbytes(model)
    return summary


def _sibling_groups(model, eligible, divisors) -> list[tuple[str, tuple[str, ...]]]:
    """(parent name, sibling names) for every complete sibling set of eligible linears that can share one GEMM:
    same in_features, dtype and device, and no per-layer smoothing divisor (each would need its own input)."""
    from .fused import SIBLING_SETS

    groups = []
    for parent_name, parent in model.named_modules():
        for names in SIBLING_SETS:
            full = [f"{parent_name}.{n}" if parent_name else n for n in names]
            if not all(f in eligible and f not in divisors for f in full):
                continue
            layers = [eligible[f] for f in full]
            w = layers[0].weight
            if all(m.in_features == layers[0].in_features and m.weight.dtype == w.dtype and
                   m.weight.device == w.device for m in layers):
                groups.append((parent_name, names))
    return groups


def _smooth(model, eligible, calibration, alpha, summary) -> dict[str, torch.Tensor]:
    """Calibrate, fold what can be folded, return the divisors the remaining layers keep."""
    absmax = collect_absmax(model, eligible, calibration)
    folded = set()
    for group in find_norm_groups(model):
        if not all(name in eligible for name in group.linear_names):
            continue
        layers = [eligible[name] for name in group.linear_names]
        x_max = torch.stack([absmax[name] for name in group.linear_names]).amax(dim=0)
        s = smoothing_scales(x_max, [m.weight for m in layers], alpha)
        if fold_into_norm(group.norm, layers, s):
            folded.update(group.linear_names)
            summary.folded_norms.append(group.norm_name)
    divisors = {}
    for name, linear in eligible.items():
        if name not in folded:
            divisors[name] = smoothing_scales(absmax[name], [linear.weight], alpha)
            summary.smoothed_in_layer.append(name)
    return divisors


def _progress(items):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional
        return items
    return tqdm(items, desc="liquidgemm: quantizing", unit="layer")
