"""Lazy loader for the compiled `_C` extension: importing the package never needs a GPU."""
from __future__ import annotations

import functools


@functools.cache
def _load():
    try:
        from . import _C
    except ImportError as exc:
        return None, f"liquidgemm_cutlass_peer._C is not built ({exc}); pip install ./bench/cutlass_peer --no-build-isolation"
    return _C, ""


def native():
    """The `_C` module, or RuntimeError saying why it is missing."""
    module, reason = _load()
    if module is None:
        raise RuntimeError(reason)
    return module


def unavailable_reason() -> str | None:
    """None if the GEMMs can run here, else why not."""
    import torch

    if _load()[0] is None:
        return _load()[1]
    if not torch.cuda.is_available():
        return "no CUDA device"
    capability = torch.cuda.get_device_capability()
    if capability != (9, 0):
        return f"CUTLASS's Hopper mixed-input kernels need sm_90a, found sm_{capability[0]}{capability[1]}"
    return None


def available() -> bool:
    """True if the extension is built and an sm_90 GPU is present."""
    return unavailable_reason() is None


def configs() -> list[tuple[str, str]]:
    """[(config_id, act)] of every compiled kernel."""
    return [tuple(entry) for entry in native().configs()]


def stream_of(tensor) -> int:
    import torch

    return torch.cuda.current_stream(tensor.device).cuda_stream
