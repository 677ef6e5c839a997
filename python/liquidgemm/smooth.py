"""SmoothQuant-style smoothing: move activation outliers into the weights before W4A8 quantization.

For a linear ``y = W x`` and a per-input-channel factor ``s``, ``y = (W diag(s)) (x / s)``. Choosing
``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` (Xiao et al., SmoothQuant) flattens the per-token INT8 range of
``x / s`` at the cost of a slightly harder weight. ``1 / s`` is folded into the norm that produces ``x`` when the
linear's input is exactly that norm's output (pre-norm Llama blocks); otherwise the divisor stays in
``W4A8Linear`` as an explicit per-channel input scale. Post-norm BERT blocks cannot fold: their LayerNorm output
also feeds the residual branch, which must keep seeing the unscaled value.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

# (norm attribute, linears reading exactly norm(x)) inside one decoder block: Llama, Mistral, Qwen2/3, ...
NORM_GROUPS = (
    ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
)


@dataclass
class NormGroup:
    """A norm whose output feeds only ``linears`` (names relative to the model)."""

    norm_name: str
    norm: nn.Module
    linear_names: tuple[str, ...]


def find_norm_groups(model: nn.Module) -> list[NormGroup]:
    """Norm -> linears groups of pre-norm blocks (see NORM_GROUPS) where every module is present."""
    groups = []
    for block_name, block in model.named_modules():
        for norm_attr, linear_attrs in NORM_GROUPS:
            norm = getattr(block, norm_attr, None)
            linears = [block.get_submodule(a) if _has(block, a) else None for a in linear_attrs]
            if norm is None or getattr(norm, "weight", None) is None or any(
                    not isinstance(m, nn.Linear) for m in linears):
                continue
            prefix = f"{block_name}." if block_name else ""
            groups.append(NormGroup(prefix + norm_attr, norm, tuple(prefix + a for a in linear_attrs)))
    return groups


def _has(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
        return True
    except AttributeError:
        return False


class ActivationAbsMax:
    """Forward pre-hooks that record the per-input-channel ``max |x|`` of the given linears (fp32, on CPU)."""

    def __init__(self, linears: Mapping[str, nn.Linear]):
        self.absmax: dict[str, torch.Tensor] = {}
        self._handles = [m.register_forward_pre_hook(self._hook(name)) for name, m in linears.items()]

    def _hook(self, name: str):
        def record(module, args):
            x = args[0].detach()
            amax = x.reshape(-1, x.shape[-1]).abs().amax(dim=0).float().cpu()
            prev = self.absmax.get(name)
            self.absmax[name] = amax if prev is None else torch.maximum(prev, amax)

        return record

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@torch.no_grad()
def collect_absmax(model: nn.Module, linears: Mapping[str, nn.Linear], calibration: Iterable) -> dict[str, torch.Tensor]:
    """Run ``model`` on every calibration item (a dict -> ``model(**item)``, a tuple/list -> ``model(*item)``,
    anything else -> ``model(item)``) and return ``{linear name: max|x| per input channel}``."""
    recorder = ActivationAbsMax(linears)
    try:
        for item in calibration:
            if isinstance(item, Mapping):
                model(**item)
            elif isinstance(item, (tuple, list)):
                model(*item)
            else:
                model(item)
    finally:
        recorder.remove()
    missing = [name for name in linears if name not in recorder.absmax]
    if missing:
        raise ValueError(f"calibration: these linears never ran on the calibration inputs: {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}")
    return recorder.absmax


def smoothing_scales(act_absmax: torch.Tensor, weights: Iterable[torch.Tensor], alpha: float = 0.5) -> torch.Tensor:
    """``s_j = max|X_j|^alpha / max|W_j|^(1-alpha)`` (fp32 [K]); ``W_j`` is column j of every weight sharing X.

    Both maxima are clamped to 1e-5 so that dead channels give finite, positive factors.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"smooth_alpha: expected a value in [0, 1], got {alpha}")
    w_absmax = torch.stack([w.detach().abs().amax(dim=0).float().cpu() for w in weights]).amax(dim=0)
    x = act_absmax.float().cpu().clamp(min=1e-5)
    return (x.pow(alpha) / w_absmax.clamp(min=1e-5).pow(1.0 - alpha)).clamp(min=1e-5)


@torch.no_grad()
def fold_into_norm(norm: nn.Module, linears: Iterable[nn.Linear], s: torch.Tensor) -> bool:
    """Fold ``1/s`` into ``norm`` (weight and bias) and ``s`` into the columns of ``linears``.

    Checks on a probe input that the norm is affine in its weight (``norm'(x) == norm(x) / s``); norms that
    are not (e.g. Gemma's ``x * (1 + w)``) are left unchanged and False is returned.
    """
    linears = list(linears)
    weight = norm.weight
    bias = getattr(norm, "bias", None)
    s_w = s.to(weight.device, weight.dtype)
    probe = torch.randn(4, weight.shape[0], device=weight.device, dtype=weight.dtype)
    before = norm(probe).float()
    old_weight, old_bias = weight.detach().clone(), None if bias is None else bias.detach().clone()
    weight.div_(s_w)
    if bias is not None:
        bias.div_(s_w)
    after = norm(probe).float() * s.to(weight.device)
    tol = 1e-5 if weight.dtype == torch.float32 else 2e-2
    if not torch.allclose(after, before, rtol=tol, atol=tol * before.abs().max().item()):
        weight.copy_(old_weight)
        if bias is not None:
            bias.copy_(old_bias)
        return False
    for linear in linears:
        linear.weight.mul_(s.to(linear.weight.device, linear.weight.dtype))
    return True
