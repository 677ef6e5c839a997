"""Which compiled kernel config runs a GEMM of a given shape.

`select_config(m, n, k, group_size, out_dtype)` looks, in order, at
1. this GPU's tuning cache (written by `liquidgemm tune`, read once per process): the entry tuned for the same
   (n, k, group, out) at the smallest tuned m >= m (the largest tuned m beyond that);
2. the committed heuristic table `data/heuristic_h100.json`: a config per (m bucket, n class);
and then maps the choice onto a config compiled into this build (same tile with other scheduler or stages,
else the nearest tile_n, else any config of that output dtype), so it never returns an id the build lacks.

`select_linear_config` (what `w4a8_linear` runs) takes that choice, or, when LIQUIDGEMM_FUSED_QUANT=1 switches
it on, at decode sizes its fused-quantization counterpart (a `_fq` config: the GEMM quantizes the activations
itself, one kernel instead of two) where the H100 measurements (`bench/results/h100/fused_decode.json`) found the
fused kernel faster alone: see `FUSED_MAX_M`.

It is memoised and a pure function of its arguments plus the files above, so repeated calls cost well under a
microsecond and are safe inside CUDA-graph capture (no device work, no allocation). Call `clear_caches()` after
changing the cache file or the environment within a process.
"""
from __future__ import annotations

import bisect
import dataclasses
import functools
import json
import math
import os
import warnings
from importlib import resources
from pathlib import Path

from . import _native, tune
from ._configs import CONFIGS, REDUCING, TileConfig, fused_max_k

HEURISTIC_TABLE = "heuristic_h100.json"
_OUT_NAMES = {"bf16": "bf16", "bfloat16": "bf16", "f16": "f16", "fp16": "f16", "float16": "f16", "half": "f16",
              "s32": "s32", "int32": "s32"}


def normalize_out(out_dtype) -> str:
    """"bf16" | "f16" | "s32" from those strings, their long names or a torch dtype (torch.bfloat16, ...)."""
    name = out_dtype.lower() if isinstance(out_dtype, str) else str(out_dtype).removeprefix("torch.")
    try:
        return _OUT_NAMES[name]
    except KeyError:
        raise ValueError(f"out_dtype must be bf16, f16 or s32 (or torch.bfloat16, torch.float16, torch.int32), "
                         f"got {out_dtype!r}") from None


@functools.cache
def _compiled() -> tuple[TileConfig, ...]:
    # Without the extension every defined config counts, so that dispatch (and the CPU path, which ignores
    # the config) works on machines that cannot build or load the kernels.
    ids = _native.configs() if _native.is_available() else [c.id for c in CONFIGS]
    return tuple(TileConfig.parse(i) for i in ids)


@functools.cache
def _compiled_ids(out: str | None, fused_quant: bool | None = None) -> tuple[str, ...]:
    return tuple(c.id for c in _compiled()
                 if (out is None or c.out == out) and (fused_quant is None or c.fused_quant == fused_quant))


def list_configs(out_dtype=None, fused_quant: bool | None = None) -> list[str]:
    """Config ids compiled into this build (all of `_configs.CONFIGS` when the extension is not available),
    optionally only those writing `out_dtype`, and only the GEMM configs (`fused_quant=False`: they take int8
    activations) or only the fused-quantization ones (`True`: `w4a8_linear` only)."""
    return list(_compiled_ids(None if out_dtype is None else normalize_out(out_dtype), fused_quant))


def check_config(config_id: str, out_dtype, *, n: int | None = None, k: int | None = None,
                 linear_shape: tuple[int, int] | None = None) -> str:
    """`config_id` if it is a compiled config writing `out_dtype` that can run the call, else ValueError saying
    why (cheap enough for every call that forces a config). `n`, `k`: the weight's output and input channels
    (None: not checked; a 2x1 cluster needs an even number of 128-row tiles, a K-pairs config K % 256 == 0).
    `linear_shape`: (m, k) of a `w4a8_linear` call; None for `w4a8_gemm`, which takes int8 activations and so no
    fused-quantization config."""
    valid = _compiled_ids(normalize_out(out_dtype))
    if config_id not in valid:
        raise ValueError(f"config: {config_id!r} is not a compiled config for out_dtype {normalize_out(out_dtype)}; "
                         f"valid ids: {', '.join(valid) or '(none)'}")
    chosen = TileConfig.parse(config_id)
    if n is not None and not chosen.takes(n):
        raise ValueError(f"config: {config_id!r} pairs 128-row weight tiles in a {chosen.cluster_m}x1 cluster: it "
                         f"needs out_features divisible by {chosen.tile_m * chosen.cluster_m}, got {n}")
    if k is not None and not chosen.takes(0, k):  # n = 0: only k checked here
        raise ValueError(f"config: {config_id!r} splits K into pairs of 128-wide k-blocks: it needs "
                         f"in_features divisible by 256, got {k}")
    if chosen.fused_quant:
        if linear_shape is None:
            raise ValueError(f"config: {config_id!r} quantizes the activations inside the GEMM (an '_fq' config): "
                             "it runs only through w4a8_linear, which passes the fp16/bf16 activations")
        m, k = linear_shape
        if m > chosen.tile_n or k > fused_max_k(chosen.tile_n):
            raise ValueError(f"config: {config_id!r} quantizes at most tile_n = {chosen.tile_n} tokens of K <= "
                             f"{fused_max_k(chosen.tile_n)} in the GEMM, got {m} tokens of K = {k}")
    return config_id


@dataclasses.dataclass(frozen=True)
class HeuristicTable:
    """A config per (m bucket, weight-size class): `configs[i][j]` serves m <= m_max[i] and n*k <= size_max[j]
    weights (the first bucket that fits; the last bound is unbounded, `null` in JSON). The weight size, not n
    alone, says how many tiles and k-blocks there are to spread over the SMs. Only the tile and schedule of an id
    matter: its output dtype is replaced by the requested one, as the epilogue type does not change the best
    tiling."""

    m_max: tuple[float, ...]
    size_max: tuple[float, ...]
    configs: tuple[tuple[str, ...], ...]
    meta: dict = dataclasses.field(default_factory=dict, compare=False)

    def cell(self, m: int, n: int, k: int) -> tuple[int, int]:
        return (min(bisect.bisect_left(self.m_max, m), len(self.m_max) - 1),
                min(bisect.bisect_left(self.size_max, n * k), len(self.size_max) - 1))

    def lookup(self, m: int, n: int, k: int) -> str:
        i, j = self.cell(m, n, k)
        return self.configs[i][j]

    @classmethod
    def from_json(cls, data: dict) -> HeuristicTable:
        def bounds(values):
            return tuple(math.inf if v is None else int(v) for v in values)

        table = cls(bounds(data["m_max"]), bounds(data["size_max"]), tuple(tuple(row) for row in data["configs"]),
                    {key: value for key, value in data.items() if key not in ("m_max", "size_max", "configs")})
        if len(table.configs) != len(table.m_max) or any(len(row) != len(table.size_max) for row in table.configs):
            raise ValueError("heuristic table: configs must have one row per m_max and one column per size_max")
        for config_id in {c for row in table.configs for c in row}:
            TileConfig.parse(config_id)  # a typo in the table fails here, not on some rare shape
        return table

    def to_json(self) -> str:
        """The table as JSON, one row of configs per line so that it reads (and diffs) like a table."""
        def bounds(values):
            return [None if math.isinf(v) else v for v in values]

        fields = [f" {json.dumps(key)}: {json.dumps(value)}" for key, value in self.meta.items()]
        fields += [f' "m_max": {json.dumps(bounds(self.m_max))}', f' "size_max": {json.dumps(bounds(self.size_max))}']
        rows = ",\n".join("  " + json.dumps(list(row)) for row in self.configs)
        return "{\n" + ",\n".join(fields) + ',\n "configs": [\n' + rows + "\n ]\n}\n"


@functools.cache
def heuristic_table(path: str | None = None) -> HeuristicTable:
    """The committed heuristic table (or the one at `path`)."""
    text = Path(path).read_text(encoding="utf-8") if path else \
        resources.files(__package__).joinpath("data", HEURISTIC_TABLE).read_text(encoding="utf-8")
    return HeuristicTable.from_json(json.loads(text))


@functools.cache
def _tuned() -> dict[tuple[int, int, int, str], tuple[tuple[int, ...], tuple[str, ...]]]:
    """(n, k, group, out) -> (tuned m values ascending, their configs), from this GPU's tuning cache."""
    path = tune.cache_path()
    if path is None or not path.exists():
        return {}
    try:
        entries = tune.load_cache(path)["entries"]
        by_problem: dict[tuple, list[tuple[int, str]]] = {}
        for key, entry in entries.items():
            m, n, k, group, out = tune.parse_key(key)
            by_problem.setdefault((n, k, group, out), []).append((m, TileConfig.parse(entry["config"]).id))
    except (ValueError, KeyError, TypeError) as e:
        # A broken cache must not break inference: warn once and use the heuristic.
        warnings.warn(f"liquidgemm: ignoring the tuning cache {str(path)!r}: {e}", RuntimeWarning, stacklevel=3)
        return {}
    return {problem: tuple(zip(*sorted(points))) for problem, points in by_problem.items()}


def _tuned_choice(m: int, n: int, k: int, group_size: int, out: str) -> str | None:
    points = _tuned().get((n, k, group_size, out))
    if points is None:
        return None
    ms, configs = points
    return configs[min(bisect.bisect_left(ms, m), len(ms) - 1)]


@functools.cache
def _resolve(config_id: str, out: str, n: int = 0, k: int = 0) -> str:
    """`config_id` with its output dtype set to `out`, mapped onto a compiled config that takes n output channels
    and k inputs (0: any; a 2x1 cluster needs an even number of weight tiles, a K-pairs config K % 256 == 0).
    Memoised: a table or cache names only a few distinct ids, and a model only a few (n, k)."""
    chosen = TileConfig.parse(config_id)
    # split-K and balanced-split tiles are an int32 GEMM + a float reduction; the raw int32 output is the plain
    # persistent GEMM (no reduce kernel to leave room for)
    scheduler = "persist" if out == "s32" and chosen.scheduler in REDUCING else chosen.scheduler
    wanted = dataclasses.replace(chosen, out=out, scheduler=scheduler,
                                 reduce_room=chosen.reduce_room and scheduler in REDUCING,
                                 early_weights=chosen.early_weights and scheduler == "balanced")
    candidates = [c for c in _compiled() if c.out == out and c.fused_quant == wanted.fused_quant]
    if not candidates:
        raise ValueError(f"out_dtype: this build has no config writing {out}; "
                         f"compiled configs: {', '.join(list_configs()) or '(none)'}")
    candidates = [c for c in candidates if c.takes(n, k)]
    if not candidates:
        raise ValueError(f"n, k: this build has no {out} config for {n} output channels and K = {k} (its configs "
                         f"all pair 128-row weight tiles in 2x1 clusters or split K in pairs of k-blocks); "
                         f"compiled configs: {', '.join(list_configs())}")

    def distance(c: TileConfig) -> tuple:
        # same tile first (other scheduler, then other stages), then the nearest tile_n (the larger on a tie:
        # it still covers m), then anything else of this output dtype; the id makes the order total.
        return (abs(math.log2(c.tile_n / wanted.tile_n)), c.tile_n < wanted.tile_n, c.tile_m != wanted.tile_m,
                c.schedule != wanted.schedule, c.scheduler != wanted.scheduler, c.reduce_room != wanted.reduce_room,
                c.early_weights != wanted.early_weights, c.cluster_m != wanted.cluster_m,
                abs(c.stages - wanted.stages), c.id)

    return min(candidates, key=distance).id


def _check_dims(m, n, k, group_size) -> None:
    for name, value in (("m", m), ("n", n), ("k", k), ("group_size", group_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


@functools.lru_cache(maxsize=1 << 16)
def heuristic_config(m: int, n: int, k: int, group_size: int, out_dtype) -> str:
    """The heuristic table's choice for this problem (ignoring any tuning cache), mapped onto a compiled config."""
    _check_dims(m, n, k, group_size)
    return _resolve(heuristic_table().lookup(m, n, k), normalize_out(out_dtype), n, k)


@functools.lru_cache(maxsize=1 << 16)
def select_config(m: int, n: int, k: int, group_size: int, out_dtype) -> str:
    """The config id to run `Y[m, n] = X[m, k] W[n, k]^T` with `group_size` and `out_dtype` on this GPU."""
    _check_dims(m, n, k, group_size)
    out = normalize_out(out_dtype)
    tuned = _tuned_choice(m, n, k, group_size, out)
    return heuristic_config(m, n, k, group_size, out) if tuned is None else _resolve(tuned, out, n, k)


# The fused-quantization rule, from `bench/fused_decode.py` on the H100 (bench/results/h100/fused_decode.json). A
# fused config is persistent (each CTA holds its tokens' whole quantized rows), so it can only replace a persistent
# GEMM choice: where the heuristic splits K to fill the SMs, one kernel with fewer CTAs would lose more than the
# separate quantize kernel costs. Its prologue (scales, then codes of m rows of K, read from L2 by every CTA) runs
# before the first WGMMA; timed alone, it is hidden behind the first weights only for the smallest problems:
# Llama-3-8B qkv / gate_up 1.15-1.19x faster than quantize + GEMM at M = 1, 1.10-1.13x at M = 2, 0.99-1.00x at
# M = 4; 70B gate_up (K = 8192) 1.00x at M = 1.
# It is OFF by default: inside a model the two-kernel path overlaps the quantizer with the GEMM's launch and
# weight prefetch (PDL), which the fused prologue cannot, and the full 32-layer Llama-3-8B decode at batch 1 ran
# 241.8 tok/s with it vs 269.6 without (H100, same run: bench/results/h100/e2e_llama_fused_ab.json).
FUSED_MAX_M = 2
FUSED_MAX_ELEMS = 8192
FUSED_QUANT_ENV = "LIQUIDGEMM_FUSED_QUANT"  # "1": w4a8_linear uses the rule above; "0" (default): never fused


@functools.cache
def _fused_quant_enabled() -> bool:
    value = os.environ.get(FUSED_QUANT_ENV, "0").strip()
    if value not in ("0", "1"):
        raise ValueError(f"{FUSED_QUANT_ENV} must be 0 or 1, got {value!r}")
    return value == "1"


def uses_fused_quant(m: int, k: int) -> bool:
    """Whether w4a8_linear quantizes inside a persistent GEMM: fused quantization switched on with
    LIQUIDGEMM_FUSED_QUANT=1 and the problem small enough (the H100 rule above)."""
    return _fused_quant_enabled() and m <= FUSED_MAX_M and m * k <= FUSED_MAX_ELEMS


@functools.cache
def _fused_counterpart(config_id: str, m: int, k: int) -> str | None:
    """The compiled fused-quantization config closest to the persistent `config_id` that takes m tokens and K = k,
    or None."""
    chosen = TileConfig.parse(config_id)
    if chosen.scheduler != "persist":
        return None
    candidates = [c for c in _compiled() if c.fused_quant and c.out == chosen.out and c.tile_n >= m
                  and k <= fused_max_k(c.tile_n)]
    if not candidates:
        return None
    return min(candidates, key=lambda c: (abs(math.log2(c.tile_n / chosen.tile_n)), c.tile_n < chosen.tile_n,
                                          abs(c.stages - chosen.stages), c.id)).id


@functools.lru_cache(maxsize=1 << 16)
def select_linear_config(m: int, n: int, k: int, group_size: int, out_dtype) -> str:
    """The config `w4a8_linear` runs: `select_config`'s GEMM config (after a separate quantize kernel), or at
    decode sizes (`uses_fused_quant`) the fused-quantization counterpart of a persistent choice, when compiled."""
    gemm = select_config(m, n, k, group_size, out_dtype)
    if not uses_fused_quant(m, k):
        return gemm
    return _fused_counterpart(gemm, m, k) or gemm


def clear_caches() -> None:
    """Forget memoised choices, compiled configs, the tuning cache and the heuristic table (tests, re-tuning)."""
    for cached in (select_config, select_linear_config, heuristic_config, heuristic_table, _tuned, _resolve,
                   _fused_counterpart, _fused_quant_enabled, _compiled_ids, _compiled):
        cached.cache_clear()
