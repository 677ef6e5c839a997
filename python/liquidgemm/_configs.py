"""The kernel configurations: one typed list that the build, the registry, dispatch and the tuner all read.

A config id reads problem to schedule, e.g. ``w4a8_sm90_bf16_t128x64x128_c1x1_s10_coop_persist``; it names the
generated source file, the C++ entry points, the registry key, the tuning-cache value and ``config=`` overrides.
``c2x1`` (prefill tiles) puts two CTAs of adjacent weight rows in a cluster that shares every activation stage by
TMA multicast; such a config needs an even number of 128-row weight tiles (N % 256 == 0).
``balanced`` (decode) gives every SM one equal run of (tile, k-block) pairs across tile boundaries, the int32
partial tiles summed by the split-K reduce kernel (``splitk`` splits every tile's K into equal slices instead).
``kpairs`` (decode) gives each CTA one 64-row weight slice whose two consumer warp groups take its even and odd
k-blocks, summed in shared memory: twice the CTAs of a 128-row tile without a second kernel; it needs K % 256 == 0.
``_room`` (split-K and balanced, decode) compiles the GEMM within half the register file, without CUTLASS's register
reallocation, so that the reduce kernel's CTAs, launched early by PDL, wait beside it and the next GEMM takes the
SMs the moment this one's CTAs exit; the tuner picks it or the full-register twin per shape.
``_early`` (t8 / t16 balanced room, decode) loads its first stages of weights (those the kernel entry prefetched to L2,
at most a third of a CTA's run) before waiting for the previous kernel (PDL), the activations after it: behind
another GEMM most Llama-3 decode shapes gain 2-4%; the tuner picks per shape.
A trailing ``_fq`` (fused quantization) marks the decode configs that read the fp16/bf16 activations of
``w4a8_linear`` and quantize them inside the GEMM (one kernel per layer): at most tile_n tokens and
K <= ``fused_max_k(tile_n)``, as each CTA keeps its tokens' whole quantized rows in shared memory.

Generator (run by CMake at configure time, stdlib only so it works before the package is installed)::

    python -m liquidgemm._configs --emit DIR --select all|ci|<id>,<id>,...   # writes DIR/<id>.cu + kernel_list.inc
    python -m liquidgemm._configs --list [--select SEL]                      # prints the ids
"""
from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

OUT_TYPES = {"bf16": "cutlass::bfloat16_t", "f16": "cutlass::half_t", "s32": "int32_t"}
SCHEDULES = {"coop": "ScheduleCoop", "pp": "SchedulePingpong"}
# persist: data-parallel persistent tiles; streamk: CUTLASS's stream-K; splitk: K slices as the batch mode of an
# int32 GEMM + one reduce/scale kernel (decode: fills the SMs when output tiles are few); balanced: one equal run of
# (tile, k-block) pairs per SM across tile boundaries, int32 partial tiles summed by the same reduce kernel (decode);
# kpairs: persistent over 64-row weight slices, the two consumer warp groups taking even / odd k-blocks, summed in
# shared memory (decode)
SCHEDULERS = {"persist": "SchedulerPersistent", "streamk": "SchedulerStreamK", "splitk": "SchedulerSplitK",
              "balanced": "SchedulerBalanced", "kpairs": "SchedulerKPairs"}
REDUCING = ("splitk", "balanced")  # schedulers whose GEMM stores int32 partial tiles for the reduce kernel
TILE_K = 128  # one packed k-block; fixed by the weight format
# A `_room` config's GEMM leaves half the register file to the reduce kernel's CTAs, which then wait beside it (PDL)
# instead of taking whole SMs from the next GEMM after it exits. CUTLASS's register reallocation (setmaxnreg) must
# go: its per-CTA pool assumes a CTA that owns the register file (kernel/w4a8_gemm.hpp).
ROOM_PRELUDE = "#define CUDA_CTA_RECONFIG_ACTIVATED 0  // before any CUTLASS header: no setmaxnreg\n"

_ID_RE = re.compile(
    r"w4a8_sm90_(?P<out>[a-z0-9]+)_t(?P<tile_m>[1-9]\d*)x(?P<tile_n>[1-9]\d*)x128_c(?P<cluster_m>[1-9]\d*)x1"
    r"_s(?P<stages>[1-9]\d*)_(?P<schedule>[a-z]+)_(?P<scheduler>[a-z]+)(?P<room>_room)?(?P<early>_early)?(?P<fq>_fq)?"
)
_ID_FORMAT = ("w4a8_sm90_<out>_t<tile_m>x<tile_n>x128_c<cluster_m>x1_s<stages>_<schedule>_<scheduler>"
              "[_room][_early][_fq]")


@dataclasses.dataclass(frozen=True)
class TileConfig:
    """One kernel instance. tile_m = weight rows (output channels) per CTA, tile_n = tokens per CTA."""

    out: str
    tile_m: int
    tile_n: int
    stages: int
    schedule: str = "coop"
    scheduler: str = "persist"
    fused_quant: bool = False  # reads the 16-bit activations and quantizes them in the kernel (w4a8_linear only)
    cluster_m: int = 1  # CTAs per cluster along the weight rows, sharing each activation stage (TMA multicast)
    reduce_room: bool = False  # splitk / balanced: the GEMM keeps to half the register file, the reduce kernel waits
                               # beside it (decode)
    early_weights: bool = False  # balanced: the first stages' weights are loaded before the PDL wait (decode)

    def __post_init__(self):
        if self.out not in OUT_TYPES:
            raise ValueError(f"out must be one of {sorted(OUT_TYPES)}, got {self.out!r}")
        if self.tile_m not in (64, 128):
            raise ValueError(f"tile_m must be 64 or 128, got {self.tile_m!r}")
        if not (isinstance(self.tile_n, int) and 8 <= self.tile_n <= 256 and self.tile_n % 8 == 0):
            raise ValueError(f"tile_n must be a multiple of 8 in [8, 256] (the WGMMA N range), got {self.tile_n!r}")
        if not (isinstance(self.stages, int) and self.stages >= 1):
            raise ValueError(f"stages must be a positive int, got {self.stages!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {self.schedule!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {self.scheduler!r}")
        # coop: two consumer warp groups split a 128-row tile; pp: each warp group owns a whole 64-row tile
        need_m = {"coop": 128, "pp": 64}[self.schedule]
        if self.tile_m != need_m:
            raise ValueError(f"schedule {self.schedule!r} needs tile_m == {need_m}, got {self.tile_m}")
        if self.scheduler != "persist" and self.schedule != "coop":
            raise ValueError(f"scheduler {self.scheduler!r} is only implemented for schedule 'coop'")
        if self.fused_quant and (self.out == "s32" or self.schedule != "coop" or self.scheduler != "persist"):
            raise ValueError("fused quantization needs a bf16/f16 output (the activations' type), schedule 'coop' "
                             "and scheduler 'persist' (each CTA holds all of K: no K split)")
        if self.cluster_m not in (1, 2):
            raise ValueError(f"cluster_m must be 1 or 2, got {self.cluster_m!r}")
        if self.cluster_m > 1 and (self.schedule != "coop" or self.scheduler != "persist" or self.fused_quant):
            raise ValueError("a 2x1 cluster (activation multicast) is built for schedule 'coop', scheduler 'persist' "
                             "and int8 activations (no fused quantization)")
        if self.reduce_room and self.scheduler not in REDUCING:
            raise ValueError(f"reduce_room: only the reducing schedulers {REDUCING} launch a reduce kernel, "
                             f"not {self.scheduler!r}")
        if self.early_weights and self.scheduler != "balanced":
            raise ValueError(f"early_weights: a twin of the 'balanced' scheduler (K pairs loads its first "
                             f"stages early by itself), not {self.scheduler!r}")
        if self.scheduler in REDUCING and self.out == "s32":
            raise ValueError(f"scheduler {self.scheduler!r} reduces int32 partials into bf16/f16; the s32 debug "
                             "output uses 'persist'")

    @property
    def id(self) -> str:
        return (f"w4a8_sm90_{self.out}_t{self.tile_m}x{self.tile_n}x{TILE_K}_c{self.cluster_m}x1_s{self.stages}"
                f"_{self.schedule}_{self.scheduler}" + ("_room" if self.reduce_room else "")
                + ("_early" if self.early_weights else "") + ("_fq" if self.fused_quant else ""))

    @classmethod
    def parse(cls, config_id: str) -> TileConfig:
        match = _ID_RE.fullmatch(config_id) if isinstance(config_id, str) else None
        if match is None:
            raise ValueError(f"malformed config id {config_id!r}: expected {_ID_FORMAT}, "
                             f"e.g. {CONFIGS[0].id!r}")
        fields = match.groupdict()
        try:
            return cls(out=fields["out"], tile_m=int(fields["tile_m"]), tile_n=int(fields["tile_n"]),
                       stages=int(fields["stages"]), schedule=fields["schedule"], scheduler=fields["scheduler"],
                       fused_quant=fields["fq"] is not None, cluster_m=int(fields["cluster_m"]),
                       reduce_room=fields["room"] is not None, early_weights=fields["early"] is not None)
        except ValueError as err:
            raise ValueError(f"invalid config id {config_id!r}: {err}") from None

    def takes(self, n: int, k: int = 0) -> bool:
        """Whether this config can run a weight of n output channels and k inputs (multiples of 128; k = 0: any): a 2x1
        cluster needs an even number of 128-row tiles, a K-pairs config pairs of 128-wide k-blocks."""
        return n % (self.tile_m * self.cluster_m) == 0 and (self.scheduler != "kpairs" or k % (2 * TILE_K) == 0)

    def template_fields(self) -> dict[str, str]:
        """Substitutions for kernels/w4a8_gemm.cu.in (@NAME@ placeholders)."""
        return {"ID": self.id, "OUT_TYPE": OUT_TYPES[self.out], "TILE_M": str(self.tile_m),
                "TILE_N": str(self.tile_n), "STAGES": str(self.stages),
                "SCHEDULE": SCHEDULES[self.schedule], "SCHEDULER": SCHEDULERS[self.scheduler],
                "FUSED_QUANT": str(self.fused_quant).lower(), "CLUSTER_M": str(self.cluster_m),
                "REDUCE_ROOM": str(self.reduce_room).lower(), "EARLY_WEIGHTS": str(self.early_weights).lower(),
                "PRELUDE": ROOM_PRELUDE if self.reduce_room else ""}


SMEM_PER_BLOCK = 232448          # Hopper: 227 KB of shared memory per CTA
EPILOGUE_RESERVE = 32 * 1024     # TMA-store subtiles, broadcast vectors, pipeline barriers (measured < 24 KB)
KPAIRS_EPILOGUE_RESERVE = 16 * 1024  # K pairs: TMA-store subtiles and barriers only (measured 7 KB)
FUSED_ACT_BYTES = 64 * 1024      # a fused config's resident int8 activations (kFusedActBytes in the collective)


def fused_max_k(tile_n: int) -> int:
    """Largest K a fused-quantization config with this token tile takes: its tile_n rows of int8 codes, all of K,
    stay in FUSED_ACT_BYTES of shared memory (8192 for tile_n 8, 4096 for 16)."""
    return FUSED_ACT_BYTES // (tile_n * TILE_K) * TILE_K


def stages_that_fit(out: str, tile_m: int, tile_n: int, max_stages: int = 24, fused_quant: bool = False,
                    k_pairs: bool = False) -> int:
    """Deepest ring that fits: decode tiles are tiny, so many stages keep enough weight bytes in flight to cover
    HBM latency; large tiles get >= 4 stages so loads stay ahead of the tensor cores.
    The kernel static_asserts that the whole shared storage fits."""
    stage = tile_m * TILE_K // 2 + tile_m * 4                    # 4-bit weights + group params
    stage += 0 if fused_quant else tile_n * TILE_K * (2 if k_pairs else 1)  # + int8 activations (fused: resident)
    stage += (-(-tile_n * 4 // 128) * 128 + 2 * 64 * 4) if k_pairs else 0  # + token scales, s1, bias (mainloop scales)
    reserve = EPILOGUE_RESERVE * (2 if out == "s32" else 1) + (FUSED_ACT_BYTES if fused_quant else 0)
    if k_pairs:  # no broadcast vectors in the epilogue; one warp group's int32 partial sums
        reserve = KPAIRS_EPILOGUE_RESERVE + tile_n * 64 * 4
    return max(2, min(max_stages, (SMEM_PER_BLOCK - reserve) // stage))


def _coop(out: str, tile_n: int, scheduler: str, fused_quant: bool = False, cluster_m: int = 1,
          reduce_room: bool = False, early_weights: bool = False) -> TileConfig:
    kernel_out = "s32" if scheduler in REDUCING else out  # split-K tiles store int32 partials
    stages = stages_that_fit(kernel_out, 128, tile_n, fused_quant=fused_quant, k_pairs=scheduler == "kpairs")
    return TileConfig(out, 128, tile_n, stages, "coop", scheduler, fused_quant, cluster_m, reduce_room, early_weights)


# THE list. Stream-K, split-K and the balanced split only where tiles are small enough that few CTAs would leave
# SMs idle.
CONFIGS: list[TileConfig] = [
    _coop(out, tile_n, scheduler)
    for out in ("bf16", "f16")
    for tile_n in (8, 16, 32, 64, 128, 256)
    for scheduler in (("persist", "streamk", "splitk", "balanced") if tile_n <= 64 else ("persist",))
] + [
    _coop(out, tile_n, scheduler, reduce_room=True)  # decode M <= 16: the reduce kernel waits beside the GEMM
    for out in ("bf16", "f16")
    for tile_n in (8, 16)
    for scheduler in REDUCING
] + [
    _coop(out, tile_n, "balanced", reduce_room=True, early_weights=True)  # decode: weights before the PDL wait
    for out in ("bf16", "f16")
    for tile_n in (8, 16)
] + [
    _coop(out, 16, "kpairs")  # decode shapes with half as many 128-row weight tiles as SMs (Llama-3-70B o)
    for out in ("bf16", "f16")
] + [
    _coop(out, tile_n, "persist", fused_quant=True)  # decode: quantize inside the GEMM, one kernel per layer
    for out in ("bf16", "f16")
    for tile_n in (8, 16)
] + [
    _coop(out, tile_n, "persist", cluster_m=2)  # prefill: two CTAs share each activation stage (TMA multicast)
    for out in ("bf16", "f16")
    for tile_n in (128, 256)
] + [_coop("s32", 64, "persist")]  # raw int32 accumulators: the exact debug path

# What CI compiles on a 2-core machine: one production config, the int32 debug config, one fused-quantization
# config (the mainloop's other activation path), one split-K config (int32 partials + the reduce kernel; the `_room`
# twin: the kernel entry within half the register file), one 2x1-cluster config (activation multicast, a cluster
# launch), one K-pairs config (warp groups splitting K) and one balanced-split config (its own tile scheduler; the
# entry with the whole register file).
CI_CONFIGS: list[TileConfig] = [_coop("bf16", 64, "persist"), _coop("s32", 64, "persist"),
                                _coop("bf16", 8, "persist", fused_quant=True),
                                _coop("bf16", 8, "splitk", reduce_room=True),
                                _coop("bf16", 128, "persist", cluster_m=2), _coop("bf16", 16, "kpairs"),
                                _coop("bf16", 16, "balanced")]


def select(selection: str) -> list[TileConfig]:
    """'all' -> CONFIGS, 'ci' -> CI_CONFIGS, else a comma list of ids (any valid id, so new tiles can be tried)."""
    if not isinstance(selection, str):
        raise TypeError(f"selection must be a str, got {type(selection).__name__}")
    name = selection.strip()
    if name == "all":
        return list(CONFIGS)
    if name == "ci":
        return list(CI_CONFIGS)
    ids = [part.strip() for part in name.split(",") if part.strip()]
    if not ids:
        raise ValueError("selection must be 'all', 'ci' or a comma-separated list of config ids, got an empty string")
    return list(dict.fromkeys(TileConfig.parse(i) for i in ids))  # dedupe, keep order


def render(template: str, config: TileConfig) -> str:
    fields = config.template_fields()

    def substitute(match: re.Match) -> str:
        if match.group(1) not in fields:
            raise ValueError(f"unknown placeholder @{match.group(1)}@ in the kernel template; "
                             f"known: {sorted(fields)}")
        return fields[match.group(1)]

    return re.sub(r"@([A-Z_]+)@", substitute, template)


def _write_if_changed(path: Path, text: str) -> None:
    # Unchanged files keep their mtime, so a reconfigure does not recompile every instance.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "kernels" / "w4a8_gemm.cu.in"


def emit(directory: Path, configs: list[TileConfig], template: Path = DEFAULT_TEMPLATE) -> list[Path]:
    """Write one <id>.cu per config and kernel_list.inc (one LIQUIDGEMM_KERNEL(id) row each) into directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = Path(template).read_text()
    sources = []
    for config in configs:
        sources.append(directory / f"{config.id}.cu")
        _write_if_changed(sources[-1], render(text, config))
    for stale in set(directory.glob("*.cu")) - set(sources):  # left over from an earlier selection
        stale.unlink()
    rows = "".join(f"LIQUIDGEMM_KERNEL({config.id}, {str(config.fused_quant).lower()})\n" for config in configs)
    _write_if_changed(directory / "kernel_list.inc",
                      "// Generated by python/liquidgemm/_configs.py: one row per compiled config.\n" + rows)
    return sources


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m liquidgemm._configs", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--emit", metavar="DIR", type=Path, help="write <id>.cu and kernel_list.inc into DIR")
    action.add_argument("--list", action="store_true", help="print the selected config ids")
    parser.add_argument("--select", default="all", help="all | ci | comma-separated config ids (default: all)")
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE, help="kernel TU template")
    args = parser.parse_args(argv)
    try:
        configs = select(args.select)
        if args.emit is not None:
            emit(args.emit, configs, args.template)
    except ValueError as err:  # one clear line (CMake shows it as the configure error), no usage text
        raise SystemExit(f"{parser.prog}: error: {err}") from None
    print("\n".join(config.id for config in configs))  # CMake reads the emitted ids from stdout


if __name__ == "__main__":
    main()
