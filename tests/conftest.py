"""Shared test setup: the `gpu` marker (skipped with a reason unless an sm_90 GPU and the compiled extension are
present) and a `seed` fixture. Works from a source checkout without installing the package."""
from __future__ import annotations

import functools
import importlib.util
import pathlib
import random
import sys

import pytest
import torch

if importlib.util.find_spec("liquidgemm") is None:  # not installed: test the source tree
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))

SEED = 0


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs an sm_90 (Hopper) GPU and the compiled liquidgemm._C extension")


@functools.cache
def gpu_unavailable_reason() -> str | None:
    """None if GPU tests can run here, else why not."""
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) != (9, 0):
        return f"needs an sm_90 (Hopper) GPU, found sm_{major}{minor} ({torch.cuda.get_device_name()})"
    try:
        from liquidgemm import _native
    except ImportError as exc:
        return f"liquidgemm._native cannot be imported: {exc}"
    if not _native.is_available():
        reason = getattr(_native, "unavailable_reason", lambda: "")()
        return f"liquidgemm._C is not available: {reason}".rstrip(": ")
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    reason = gpu_unavailable_reason()
    if reason is not None:
        skip = pytest.mark.skip(reason=reason)
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture
def seed() -> int:
    """Seed torch and random; returns the seed."""
    torch.manual_seed(SEED)
    random.seed(SEED)
    return SEED


def skip_unless_compiled(out_dtype) -> None:
    """Skip (with the reason) when this build compiled no config writing `out_dtype` (LIQUIDGEMM_CONFIGS subsets)."""
    from liquidgemm import dispatch

    if not dispatch.list_configs(out_dtype):
        pytest.skip(f"this build has no config writing {out_dtype} (LIQUIDGEMM_CONFIGS subset)")


def capture_graph(fn):
    """(graph, output) of `fn()` captured in a CUDA graph after one warm-up call on a side stream, as capture needs."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = fn()
    return graph, output


def ulp_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance in units in the last place between two fp16/bf16 tensors (sign-magnitude bit patterns)."""
    def ordered(t):
        bits = t.contiguous().view(torch.int16).int()
        magnitude = bits & 0x7FFF
        return torch.where(bits < 0, -magnitude, magnitude)

    return (ordered(a) - ordered(b)).abs()
