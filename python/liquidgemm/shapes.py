"""GEMM shapes of real models: one list shared by `liquidgemm tune` and `liquidgemm bench`.

A linear layer `y = x W^T` with `W[out_features, in_features]` is the problem `N = out_features`,
`K = in_features`; the token count M is chosen at run time. Fused projections are one GEMM each, as serving
engines run them: q, k and v are one `qkv` weight, gate and up one `gate_up` weight.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Iterable

# Kernel limits (docs/architecture.md "Shape rules"): 128-row weight slices and 128-wide k-blocks, and an int32
# accumulator that cannot overflow: |acc| <= 127 * 127 * K < 2**31.
_ALIGN = 128
_MAX_K = 131072


@dataclass(frozen=True)
class LayerShape:
    """One weight matrix: `n` = out_features (rows of W), `k` = in_features."""

    name: str
    n: int
    k: int

    def __str__(self) -> str:
        size = f"{self.n}x{self.k}"
        return size if self.name == size else f"{self.name} ({size})"


def transformer_shapes(hidden: int, heads: int, kv_heads: int, head_dim: int, intermediate: int,
                       moe: bool = False) -> list[LayerShape]:
    """The four projections of a Llama-style decoder layer (GQA attention + gated MLP).

    qkv:     N = (heads + 2 * kv_heads) * head_dim,  K = hidden
    o:       N = hidden,                             K = heads * head_dim
    gate_up: N = 2 * intermediate,                   K = hidden
    down:    N = hidden,                             K = intermediate
    With `moe`, the MLP shapes are those of one expert (each expert is its own GEMM), named expert_*.
    """
    mlp = "expert_" if moe else ""
    return [
        LayerShape("qkv", (heads + 2 * kv_heads) * head_dim, hidden),
        LayerShape("o", hidden, heads * head_dim),
        LayerShape(f"{mlp}gate_up", 2 * intermediate, hidden),
        LayerShape(f"{mlp}down", hidden, intermediate),
    ]


# From each model's config.json (hidden_size, num_attention_heads, num_key_value_heads, head_dim, intermediate_size):
#   llama3-8b     4096, 32, 8, 128, 14336  -> qkv 6144x4096,  o 4096x4096, gate_up 28672x4096, down 4096x14336
#   llama3-70b    8192, 64, 8, 128, 28672  -> qkv 10240x8192, o 8192x8192, gate_up 57344x8192, down 8192x28672
#   qwen2.5-7b    3584, 28, 4, 128, 18944  -> qkv 4608x3584,  o 3584x3584, gate_up 37888x3584, down 3584x18944
#   mixtral-8x7b  4096, 32, 8, 128, 14336 per expert (8 experts)
#                 -> qkv 6144x4096, o 4096x4096, expert_gate_up 28672x4096, expert_down 4096x14336
PRESETS: dict[str, list[LayerShape]] = {
    "llama3-8b": transformer_shapes(4096, 32, 8, 128, 14336),
    "llama3-70b": transformer_shapes(8192, 64, 8, 128, 28672),
    "qwen2.5-7b": transformer_shapes(3584, 28, 4, 128, 18944),
    "mixtral-8x7b": transformer_shapes(4096, 32, 8, 128, 14336, moe=True),
}

# Hugging Face names for the expert count and the per-expert MLP width, across MoE families.
_EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
_EXPERT_WIDTH_KEYS = ("moe_intermediate_size", "intermediate_size")


def from_hf_config(path: str | os.PathLike) -> list[LayerShape]:
    """The four projection shapes of a Hugging Face decoder, from its config.json (a file or its directory).

    Reads hidden_size, num_attention_heads, num_key_value_heads (default: = heads), head_dim (default:
    hidden_size // heads) and intermediate_size; for mixture-of-experts models (num_local_experts /
    num_experts / n_routed_experts > 0) the MLP shapes are per expert (moe_intermediate_size if present).
    Multimodal configs that nest the language model under "text_config" are read from there.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"config_json: cannot read a JSON config from {path!r}: {e}") from None
    if "hidden_size" not in cfg and isinstance(cfg.get("text_config"), dict):
        cfg = cfg["text_config"]

    def need(key: str) -> int:
        value = cfg.get(key)
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"config_json: {path!r} needs a positive integer {key!r} (got {value!r})")
        return value

    hidden, heads = need("hidden_size"), need("num_attention_heads")
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or hidden // heads
    moe = any(cfg.get(key) for key in _EXPERT_COUNT_KEYS)
    width_key = next((key for key in _EXPERT_WIDTH_KEYS if cfg.get(key)), "intermediate_size") if moe \
        else "intermediate_size"
    return transformer_shapes(hidden, heads, kv_heads, head_dim, need(width_key), moe=moe)


def parse_shape(text: str) -> LayerShape:
    """`"N,K"` (or `"NxK"`) -> LayerShape named `"NxK"`."""
    parts = text.lower().replace("x", ",").split(",")
    try:
        n, k = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"shape: expected 'N,K' with two positive integers, got {text!r}") from None
    if n <= 0 or k <= 0:
        raise ValueError(f"shape: N and K must be positive, got {text!r}")
    return LayerShape(f"{n}x{k}", n, k)


def resolve_shapes(model: str | Iterable[str] | None = None,
                   shapes: Iterable[str | tuple[int, int] | LayerShape] | None = None,
                   config_json: str | os.PathLike | None = None) -> list[LayerShape]:
    """Shapes named by presets (`"llama3-8b"`, a list, or a comma list), explicit shapes (`"N,K"` strings,
    `(n, k)` tuples or LayerShape) and/or a Hugging Face config.json, in that order.

    Preset and config shapes are named `"<model>/<projection>"`. Duplicates are kept: callers that measure
    each (n, k) once dedupe themselves.
    """
    out: list[LayerShape] = []
    names = [model] if isinstance(model, str) else list(model or [])
    for name in (n.strip() for entry in names for n in entry.split(",") if n.strip()):
        if name not in PRESETS:
            raise ValueError(f"model: unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
        out += [LayerShape(f"{name}/{s.name}", s.n, s.k) for s in PRESETS[name]]
    for s in shapes or []:
        if isinstance(s, LayerShape):
            out.append(s)
        elif isinstance(s, str):
            out.append(parse_shape(s))
        else:
            out.append(parse_shape(",".join(str(v) for v in s)))
    if config_json is not None:
        # Hub snapshots are directories named after the model: use that name as the label.
        model_dir = os.path.abspath(config_json)
        if not os.path.isdir(model_dir):
            model_dir = os.path.dirname(model_dir)
        label = os.path.basename(model_dir) or "config"
        out += [LayerShape(f"{label}/{s.name}", s.n, s.k) for s in from_hf_config(config_json)]
    if not out:
        raise ValueError(f"no shapes: give a model preset ({', '.join(PRESETS)}), shapes 'N,K' or a config.json")
    return out


def is_supported(shape: LayerShape, group_size: int | None = None) -> tuple[bool, str]:
    """Whether the kernel can run this shape (and group size): `(True, "")` or `(False, reason)`.

    Unsupported shapes are kept in preset lists and reports (users want to see them), just not measured.
    """
    if shape.n % _ALIGN:
        return False, f"N={shape.n} is not a multiple of {_ALIGN}"
    if shape.k % _ALIGN:
        return False, f"K={shape.k} is not a multiple of {_ALIGN}"
    if shape.k > _MAX_K:
        return False, f"K={shape.k} > {_MAX_K} could overflow the int32 accumulator"
    if group_size is not None and not (group_size == 64 or (group_size % _ALIGN == 0 and shape.k % group_size == 0)):
        return False, f"group_size={group_size} must be 64 or a multiple of {_ALIGN} dividing K={shape.k}"
    return True, ""
