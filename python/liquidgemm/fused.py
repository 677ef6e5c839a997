"""Sibling projections that read the same input (q/k/v, gate/up) as one W4A8 GEMM.

At decode sizes every GEMM pays a fixed launch-and-pipeline cost of a few microseconds and every separate call
quantizes the same activations again; a 1024-row ``k_proj`` also has far too few tiles for 132 SMs. Fusing the
siblings' rows into one weight makes one quantization and one GEMM that fills the GPU. The model's own code keeps
calling ``q_proj(x)``, ``k_proj(x)``, ``v_proj(x)``: each call returns its column slice of the fused output, which
the first call computes and the others reuse while ``x`` is the very same tensor (same object, same version).
That works eagerly and inside ``torch.compile(fullgraph=True)`` (the memo is a traced module attribute); a call
with any other input (or, eagerly, an input changed in place) computes the fused GEMM again, so the result never
depends on call order.

Rows are quantized per output channel (level 1) and per row group (level 2), so quantizing the concatenated
weight gives exactly the per-layer codes: fused and unfused modules produce identical outputs.
"""
from __future__ import annotations

import torch
from torch import nn

from .nn import W4A8Linear

# Sibling linears of one parent module that models call with one shared input.
SIBLING_SETS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"), ("query", "key", "value"))


class SharedInputW4A8(W4A8Linear):
    """A :class:`W4A8Linear` over the row-concatenation of sibling layers, plus the memo of its last output."""

    def __init__(self, *args, siblings: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.siblings = siblings  # layers that read each output
        self._memo = None  # (x, x version, y, sibling calls left), or None

    @classmethod
    @torch.no_grad()
    def from_linears(cls, linears: list[nn.Linear], group_size=128) -> "SharedInputW4A8":
        has_bias = [lin.bias is not None for lin in linears]
        weight = torch.cat([lin.weight.detach() for lin in linears])
        merged = nn.Linear(linears[0].in_features, weight.shape[0], bias=any(has_bias), device="meta")
        merged.weight = nn.Parameter(weight, requires_grad=False)
        if any(has_bias):
            merged.bias = nn.Parameter(torch.cat([
                lin.bias.detach() if lin.bias is not None else weight.new_zeros(lin.out_features)
                for lin in linears]), requires_grad=False)
        module = cls.from_linear(merged, group_size)
        module.siblings = len(linears)
        return module

    def shared_output(self, x: torch.Tensor) -> torch.Tensor:
        """The fused output for ``x``, computed once per input and handed to each sibling in turn."""
        # Eagerly the memo also checks x's version counter (an in-place change of x between the sibling calls
        # recomputes). Dynamo cannot read it; a compiled region (or inference mode) trusts that x is not modified
        # in place between the sibling calls, as no model does.
        # (Inference-mode tensors have no version counter either.)
        version = 0 if torch.compiler.is_compiling() or x.is_inference() else x._version
        memo = self._memo
        if memo is not None and memo[0] is x and memo[1] == version:
            left = memo[3] - 1
            self._memo = (memo[0], memo[1], memo[2], left) if left > 0 else None
            return memo[2]
        y = super().forward(x)
        self._memo = (x, version, y, self.siblings - 1) if self.siblings > 1 else None
        return y


class SiblingSlice(nn.Module):
    """Stands in for one sibling linear: its column slice of the :class:`SharedInputW4A8` output."""

    def __init__(self, fused: SharedInputW4A8, start: int, end: int):
        super().__init__()
        object.__setattr__(self, "fused", fused)  # not a child: the fused module is registered once, on the parent
        self.start, self.end = start, end
        self.in_features, self.out_features = fused.in_features, end - start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused.shared_output(x)[..., self.start:self.end]

    def extra_repr(self) -> str:
        return f"columns [{self.start}, {self.end}) of the fused W4A8 GEMM"


def fuse_siblings(parent: nn.Module, names: tuple[str, ...], group_size=128) -> str:
    """Replace ``parent.<names>`` (nn.Linear with one in_features) by slices of one fused W4A8 module, registered
    as ``parent.<names joined by '_'>_fused``. Returns that attribute name."""
    linears = [getattr(parent, name) for name in names]
    fused = SharedInputW4A8.from_linears(linears, group_size)
    fused_name = "_".join(names) + "_fused"
    parent.add_module(fused_name, fused)
    start = 0
    for name, linear in zip(names, linears):
        setattr(parent, name, SiblingSlice(fused, start, start + linear.out_features))
        start += linear.out_features
    return fused_name
