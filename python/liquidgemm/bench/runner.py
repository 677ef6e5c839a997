"""Measure every (problem, M, peer) point: availability, preparation, GPU time, rooflines, speedups.

A problem is one GEMM shape, or several run back to back as one timed call (the `--layer` benchmark: all linear
layers of a decoder layer captured in one graph). A peer that is unavailable or raises becomes an "n/a" point
with the reason; the run itself never stops for a peer.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..shapes import LayerShape
from ..timing import Timing, tensor_bytes, time_op
from .peers import LIQUIDGEMM_PEER, REFERENCE_PEER, Peer

OK = "ok"
NA = "n/a"


@dataclass(frozen=True)
class Problem:
    """GEMMs timed together as one call (one for a shape, four for a decoder layer)."""

    name: str
    gemms: tuple[LayerShape, ...]

    @classmethod
    def single(cls, shape: LayerShape) -> "Problem":
        return cls(shape.name, (shape,))

    @property
    def n(self) -> int | None:
        return self.gemms[0].n if len(self.gemms) == 1 else None

    @property
    def k(self) -> int | None:
        return self.gemms[0].k if len(self.gemms) == 1 else None

    def flops(self, m: int) -> int:
        return sum(2 * m * g.n * g.k for g in self.gemms)


@dataclass(frozen=True)
class Roofline:
    """Measured machine limits: HBM bytes/s (read + write) and dense int8 tensor-core TOPS."""

    hbm_bytes_per_s: float
    int8_tops: float

    def hbm_us(self, nbytes: int) -> float:
        return nbytes / self.hbm_bytes_per_s * 1e6

    def compute_us(self, flops: int) -> float:
        return flops / (self.int8_tops * 1e12) * 1e6


@dataclass
class Point:
    """One measurement (or one n/a) of one peer on one problem at one M; times in microseconds."""

    problem: str
    n: int | None
    k: int | None
    m: int
    peer: str
    status: str = OK
    reason: str = ""
    median_us: float | None = None
    min_us: float | None = None
    p20_us: float | None = None
    p80_us: float | None = None
    method: str | None = None
    rotations: int | None = None
    rotation_bytes: int | None = None
    bytes_moved: int | None = None
    flops: int | None = None
    tops: float | None = None
    gbps: float | None = None
    hbm_us: float | None = None  # bytes_moved at the measured HBM bandwidth
    compute_us: float | None = None  # flops at the measured int8 peak
    roofline_pct: float | None = None  # max(hbm_us, compute_us) / median_us, in percent
    vs_bf16: float | None = None  # cuBLAS bf16 time / this time (> 1: faster than bf16)
    liquidgemm_speedup: float | None = None  # this time / liquidgemm time (> 1: liquidgemm is faster)

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = [f.name for f in dataclasses.fields(Point)]

TimeFn = Callable[..., Timing]


def describe_error(e: BaseException) -> str:
    """`Type: first line of the message`: enough to see why, short enough for a table cell."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def measure_point(
    peer: Peer, problem: Problem, m: int, *, device: torch.device | str, repeats: int,
    roofline: Roofline | None = None, time_fn: TimeFn = time_op,
) -> Point:
    point = Point(problem.name, problem.n, problem.k, m, peer.name, flops=problem.flops(m))
    try:
        for g in problem.gemms:
            ok, reason = peer.available(m, g.n, g.k)
            if not ok:
                return dataclasses.replace(point, status=NA, reason=reason)
        base = tuple(peer.prepare(m, g.n, g.k, device) for g in problem.gemms)

        def run_all(operands: tuple) -> list:
            return [peer.run(ops) for ops in operands]

        outputs = run_all(base)  # eager once: a failing peer fails here, not inside graph capture
        bytes_moved = sum(peer.bytes_moved(ops, y) for ops, y in zip(base, outputs))
        input_bytes = bytes_moved - tensor_bytes(outputs)
        del outputs

        def make_operands(i: int) -> tuple:
            return (base if i == 0 else tuple(peer.copy(ops) for ops in base),)

        timing = time_fn(make_operands, run_all, bytes_per_call=input_bytes, repeats=repeats, device=device)
    except Exception as e:  # noqa: BLE001 - a peer that raises is reported, never fatal
        return dataclasses.replace(point, status=NA, reason=describe_error(e))
    return _with_timing(point, timing, bytes_moved, roofline)


def _with_timing(point: Point, t: Timing, bytes_moved: int, roofline: Roofline | None) -> Point:
    if not (math.isfinite(t.median_us) and t.median_us > 0):
        return dataclasses.replace(point, status=NA, reason=f"timing gave {t.median_us} us")
    seconds = t.median_us * 1e-6
    point = dataclasses.replace(
        point, median_us=t.median_us, min_us=t.min_us, p20_us=t.p20_us, p80_us=t.p80_us, method=t.method,
        rotations=t.rotations, rotation_bytes=t.rotation_bytes, bytes_moved=bytes_moved,
        tops=point.flops / seconds / 1e12, gbps=bytes_moved / seconds / 1e9,
    )
    if roofline is not None:
        hbm, compute = roofline.hbm_us(bytes_moved), roofline.compute_us(point.flops)
        point = dataclasses.replace(
            point, hbm_us=hbm, compute_us=compute, roofline_pct=100.0 * max(hbm, compute) / t.median_us
        )
    return point


def add_speedups(points: Iterable[Point]) -> None:
    """Fill `vs_bf16` and `liquidgemm_speedup` of every point measured at the same (problem, M)."""
    groups: dict[tuple[str, int], list[Point]] = {}
    for p in points:
        groups.setdefault((p.problem, p.m), []).append(p)
    for group in groups.values():
        by_peer = {p.peer: p for p in group if p.ok}
        ref, lg = by_peer.get(REFERENCE_PEER), by_peer.get(LIQUIDGEMM_PEER)
        for p in by_peer.values():
            p.vs_bf16 = ref.median_us / p.median_us if ref else None
            p.liquidgemm_speedup = p.median_us / lg.median_us if lg else None


def run_problems(
    problems: Sequence[Problem], ms: Sequence[int], peers: Sequence[Peer], *, device: torch.device | str,
    repeats: int = 20, roofline: Roofline | None = None, time_fn: TimeFn = time_op,
    on_point: Callable[[Point], None] | None = None, cooldown_s: float = 0.0,
) -> list[Point]:
    """Every point, problem by problem (peers cache weights per problem), M by M, peer by peer.

    `cooldown_s` of idle GPU before each (problem, M) after the first: seconds of large GEMMs lower the clocks
    (power and thermal limits), and the next point's first peer would otherwise pay for its predecessor."""
    points: list[Point] = []
    first = True
    for problem in problems:
        for m in ms:
            if not first and cooldown_s > 0:
                time.sleep(cooldown_s)
            first = False
            for peer in peers:
                point = measure_point(
                    peer, problem, m, device=device, repeats=repeats, roofline=roofline, time_fn=time_fn
                )
                points.append(point)
                if on_point is not None:
                    on_point(point)
        for peer in peers:
            peer.clear()
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    add_speedups(points)
    return points
