"""GPU-time measurement shared by `liquidgemm bench` and `liquidgemm tune`.

Why not host clocks: a decode GEMM takes 5-100 us of GPU time while an eager Python launch costs 10-25 us of host
time, so timing eager launches measures Python. Instead `time_op`:

1. builds R independent operand sets whose bytes together exceed 4x the L2 cache, so that every call reads its
   weights from HBM (a weight reused call after call would sit in the 50 MB L2 and look impossibly fast);
2. captures a CUDA graph that makes `calls >= R` calls, cycling through the R operand sets;
3. replays the graph for at least WARMUP_S seconds (and `warmup` times), then `repeats` times between CUDA
   events; one sample = replay time / calls. The timed warm-up matters after any idle period (the bench's
   cool-down, host work): the clocks drop to ~345 MHz when idle and take tens of ms to come back, so a fixed handful
   of sub-millisecond warm-up replays left the first peer of every point timed partly at low clocks.

When a callable cannot be captured, it falls back to the sum of device kernel durations seen by
`torch.profiler`, and says so in `Timing.method`.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

#: each call of a graph replay reads operands last touched this many L2 sizes ago
L2_ROTATION_FACTOR = 4
#: graphs have at least this many calls, so the replay's own launch gap is a small share of a sample
MIN_CALLS_PER_REPLAY = 10
#: and at most this many operand sets (tiny problems then stay partly in L2: `Timing.rotation_bytes` says so)
MAX_ROTATIONS = 256
#: rotated copies may take at most this share of the free GPU memory
MAX_MEMORY_SHARE = 0.5
#: seconds of graph replays before the timed ones: enough for the clocks to ramp up from idle
WARMUP_S = 0.1


@dataclasses.dataclass(frozen=True)
class Timing:
    """Per-call GPU time in microseconds over `samples` samples, and how it was measured."""

    median_us: float
    min_us: float
    p20_us: float
    p80_us: float
    method: str  # "cuda-graph" | "profiler"
    rotations: int  # independent operand sets cycled through
    rotation_bytes: int = 0  # bytes of all operand sets together (compare with the L2 size)
    samples: int = 0


def summarize(samples_us: Sequence[float]) -> tuple[float, float, float, float]:
    """(median, min, p20, p80) of per-call samples; percentiles interpolate linearly between order statistics."""
    if not samples_us:
        raise ValueError("summarize: samples_us must not be empty")
    xs = sorted(float(s) for s in samples_us)
    if len(xs) == 1:
        return xs[0], xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=5, method="inclusive")  # 20th, 40th, 60th, 80th percentiles
    return statistics.median(xs), xs[0], q[0], q[3]


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor inside tuples, lists, dicts and dataclasses (e.g. a QuantizedWeight)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(tensor_bytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(tensor_bytes(o) for o in obj.values())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(tensor_bytes(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return 0


def _clone_with_storage(t: torch.Tensor) -> torch.Tensor:
    storage = t.untyped_storage()
    if storage.nbytes() == t.numel() * t.element_size() and t.storage_offset() == 0 and t.is_contiguous():
        return t.clone()
    base = torch.empty(storage.nbytes(), dtype=torch.uint8, device=t.device)
    base.untyped_storage().copy_(storage)
    return base.view(t.dtype).as_strided(t.shape, t.stride(), t.storage_offset())


def clone_tensors(obj: Any) -> Any:
    """A copy of `obj` with every tensor cloned into new memory (same containers, other values shared). A view into
    a larger buffer stays one (same storage size, offset and strides): `quantize_act` leaves whole token tiles behind
    its rows, which the GEMM reads, so a rotated copy must keep them to time what a model runs."""
    if isinstance(obj, torch.Tensor):
        return _clone_with_storage(obj)
    if isinstance(obj, tuple):
        return tuple(clone_tensors(o) for o in obj)
    if isinstance(obj, list):
        return [clone_tensors(o) for o in obj]
    if isinstance(obj, dict):
        return {key: clone_tensors(o) for key, o in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: clone_tensors(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **changes)
    return obj


def l2_cache_bytes(device: torch.device | int | None = None) -> int:
    return int(torch.cuda.get_device_properties(_device(device)).L2_cache_size)


def rotation_count(bytes_per_call: int, min_rotation_bytes: int, free_bytes: int | None = None) -> int:
    """How many operand sets make `min_rotation_bytes`, capped by MAX_ROTATIONS and by free memory."""
    if bytes_per_call <= 0:
        return 1
    count = max(1, math.ceil(min_rotation_bytes / bytes_per_call))
    if free_bytes is not None:
        count = min(count, max(1, int(free_bytes * MAX_MEMORY_SHARE) // bytes_per_call))
    return min(count, MAX_ROTATIONS)


def time_op(
    make_operands: Callable[[int], tuple],
    fn: Callable[..., Any],
    *,
    bytes_per_call: int,
    min_rotation_bytes: int | None = None,
    repeats: int = 20,
    warmup: int = 3,
    device: torch.device | int | None = None,
) -> Timing:
    """GPU time of one `fn(*make_operands(i))` call, with operands rotated past the L2 cache.

    `make_operands(i)` returns the i-th independent operand set (i = 0, 1, ...); `bytes_per_call` is how many bytes
    one set holds. `min_rotation_bytes` defaults to 4x the L2 size; pass 0 to reuse a single set. Exceptions from
    `fn` itself propagate (it runs eagerly once first); only a failing graph capture falls back to the profiler.
    """
    if repeats < 1:
        raise ValueError(f"time_op: repeats must be >= 1, got {repeats}")
    dev = _device(device)
    with torch.cuda.device(dev):
        if min_rotation_bytes is None:
            min_rotation_bytes = L2_ROTATION_FACTOR * l2_cache_bytes(dev)
        free_bytes, _ = torch.cuda.mem_get_info(dev)
        rotations = rotation_count(bytes_per_call, min_rotation_bytes, free_bytes)
        operand_sets = [make_operands(i) for i in range(rotations)]
        calls = max(rotations, MIN_CALLS_PER_REPLAY)
        run_all = _caller(fn, operand_sets, calls)
        rotation_bytes = rotations * bytes_per_call

        # Eager warm-up on a side stream, as graph capture requires (cuBLAS workspaces, lazy inits, autotuners).
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            run_all()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()

        graph = _try_capture(run_all)
        if graph is None:
            samples = _profiler_samples(run_all, calls, repeats)
            method = "profiler"
        else:
            samples = _graph_samples(graph, calls, repeats, warmup)
            method = "cuda-graph"
            del graph
        median, low, p20, p80 = summarize(samples)
        return Timing(median, low, p20, p80, method, rotations, rotation_bytes, len(samples))


def _device(device: torch.device | int | None) -> torch.device:
    if device is None:
        return torch.device("cuda", torch.cuda.current_device())
    dev = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
    if dev.type != "cuda":
        raise ValueError(f"device must be a CUDA device, got {dev}")
    return torch.device("cuda", torch.cuda.current_device()) if dev.index is None else dev


def _caller(fn: Callable[..., Any], operand_sets: list[tuple], calls: int) -> Callable[[], None]:
    def run_all() -> None:
        for i in range(calls):
            fn(*operand_sets[i % len(operand_sets)])

    return run_all


def _try_capture(run_all: Callable[[], None]) -> torch.cuda.CUDAGraph | None:
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            run_all()
    except Exception:  # noqa: BLE001 - anything that cannot be captured is timed by the profiler instead
        return None
    return graph


def _graph_samples(graph: torch.cuda.CUDAGraph, calls: int, repeats: int, warmup: int) -> list[float]:
    start = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - start < WARMUP_S:
        graph.replay()
        torch.cuda.synchronize()  # keeps the host clock in step with the GPU's work
        done += 1
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for start, end in zip(starts, ends):
        start.record()
        graph.replay()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) * 1000.0 / calls for start, end in zip(starts, ends)]


def _profiler_samples(run_all: Callable[[], None], calls: int, repeats: int) -> list[float]:
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            run_all()
        torch.cuda.synchronize()
    kernels = sorted(
        (e.time_range.start, e.time_range.elapsed_us())
        for e in prof.events()
        if e.device_type == DeviceType.CUDA
    )
    return kernel_samples([duration for _, duration in kernels], repeats, calls)


def kernel_samples(durations_us: Sequence[float], repeats: int, calls: int) -> list[float]:
    """Per-call samples from device-ordered kernel durations of `repeats` rounds of `calls` calls each.

    Every round launches the same kernels, so equal consecutive chunks are rounds; if the count does not split
    evenly (a kernel was dropped by the profiler), only the mean over all rounds is reported."""
    if not durations_us:
        raise RuntimeError("the profiler saw no GPU kernels: is the callable running on the GPU?")
    if len(durations_us) % repeats:
        return [sum(durations_us) / (repeats * calls)]
    per_round = len(durations_us) // repeats
    return [
        sum(durations_us[r * per_round : (r + 1) * per_round]) / calls for r in range(repeats)
    ]


def measure_hbm_bandwidth(
    nbytes: int = 1 << 30, repeats: int = 20, device: torch.device | int | None = None
) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus bytes written (median of `repeats`)."""
    dev = _device(device)
    src = torch.empty(nbytes, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    # One copy of 1 GiB takes ~0.7 ms, long enough for events around eager launches.
    for _ in range(3):
        dst.copy_(src)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for start, end in zip(starts, ends):
        start.record()
        dst.copy_(src)
        end.record()
    torch.cuda.synchronize()
    median_s = statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends)) / 1000.0
    return 2 * nbytes / median_s


def measure_peak_tops(
    dtype: torch.dtype = torch.int8, size: int = 8192, device: torch.device | int | None = None
) -> float:
    """Dense GEMM throughput (1e12 multiply-adds x 2 per second) of a size^3 problem in `dtype`.

    int8: `torch._int_mm`; float8_e4m3fn: `torch._scaled_mm` (tensor-wise scales, bf16 out, fast accumulation);
    bfloat16 / float16: `torch.matmul`. These are the compute-roofline lines of the benchmark plots.
    """
    dev = _device(device)
    a = torch.randn(size, size, device=dev)
    b = torch.randn(size, size, device=dev)
    if dtype == torch.int8:
        a, b = (t.mul(30).clamp_(-127, 127).to(torch.int8) for t in (a, b))

        def fn(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return torch._int_mm(x, w.t())

    elif dtype == torch.float8_e4m3fn:
        a, b = a.to(dtype), b.to(dtype)
        one = torch.ones((), device=dev, dtype=torch.float32)

        def fn(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return torch._scaled_mm(
                x, w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16, use_fast_accum=True
            )

    elif dtype in (torch.bfloat16, torch.float16):
        a, b = a.to(dtype), b.to(dtype)

        def fn(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return torch.matmul(x, w.t())

    else:
        raise ValueError(f"measure_peak_tops: dtype must be int8, float8_e4m3fn, bfloat16 or float16, got {dtype}")
    timing = time_op(lambda i: (a, b), fn, bytes_per_call=0, min_rotation_bytes=0, repeats=10, device=dev)
    return 2 * size**3 / (timing.median_us * 1e-6) / 1e12
