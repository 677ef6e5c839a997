"""liquidgemm._native without a GPU: importing works everywhere, the reason for unavailability is precise, and a
built extension reports exactly the configs its build selected."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import liquidgemm
from liquidgemm import _native
from liquidgemm._configs import select


@pytest.fixture
def fresh_native():
    """_native with its memoised probes cleared before and after the test (which may monkeypatch them)."""
    probes = (_native._load, _native._device_reason)
    for probe in probes:
        probe.cache_clear()
    yield _native
    for probe in probes:
        probe.cache_clear()


def test_import_works_without_extension_or_gpu():
    # A fresh interpreter where `import liquidgemm._C` fails and no GPU is visible.
    code = ("import sys; sys.modules['liquidgemm._C'] = None\n"
            "import liquidgemm\nfrom liquidgemm import _native\n"
            "print(liquidgemm.is_available()); print(_native.unavailable_reason())")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(Path(liquidgemm.__file__).parents[1]))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    available, reason = run.stdout.splitlines()
    assert available == "False"
    assert reason.startswith("the compiled extension liquidgemm._C is not built (")
    assert "pip install ." in reason


def test_calls_without_extension_raise_the_reason(monkeypatch, fresh_native):
    monkeypatch.setitem(sys.modules, "liquidgemm._C", None)  # makes `import liquidgemm._C` raise ImportError
    reason = _native.unavailable_reason()
    assert reason.startswith("the compiled extension liquidgemm._C is not built")
    assert _native.is_available() is False
    with pytest.raises(RuntimeError, match="liquidgemm._C is not built"):
        _native.configs()
    with pytest.raises(RuntimeError, match="liquidgemm._C is not built"):
        _native.gemm_workspace_size(select("ci")[0].id, 16, 4096, 4096, 128)


def test_reason_without_cuda(monkeypatch, fresh_native):
    monkeypatch.setattr(_native, "_load", lambda: (object(), None))  # pretend the extension is built
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _native.unavailable_reason() == "no CUDA GPU: torch.cuda.is_available() is False"
    assert not _native.is_available()


@pytest.mark.parametrize("capability, ok", [((8, 0), False), ((8, 9), False), ((10, 0), False), ((9, 0), True)])
def test_reason_names_the_wrong_architecture(monkeypatch, fresh_native, capability, ok):
    monkeypatch.setattr(_native, "_load", lambda: (object(), None))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Some GPU")
    expected = "" if ok else (f"GPU 0 (Some GPU) is sm_{capability[0]}{capability[1]}; "
                              "liquidgemm's kernels are built for sm_90a only (H100/H200)")
    assert _native.unavailable_reason() == expected
    assert _native.is_available() is ok


def test_reason_on_this_machine_is_consistent(fresh_native):
    reason = _native.unavailable_reason()
    assert _native.is_available() == (reason == "")
    if not torch.cuda.is_available():
        assert reason  # something is always missing on a CPU-only machine


def test_built_extension_lists_exactly_the_selected_configs():
    _C = pytest.importorskip("liquidgemm._C", reason="liquidgemm._C is not built")
    expected = [c.id for c in select(_C.selection)]
    assert _C.configs() == expected
    assert _native.configs() == expected


def test_built_extension_rejects_unknown_configs_and_dtypes():
    _C = pytest.importorskip("liquidgemm._C", reason="liquidgemm._C is not built")
    with pytest.raises(ValueError, match=r"config_id: unknown config 'nope'.*configs\(\)"):
        _C.gemm("nope", 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 128, 128, 128, 0, 0)
    with pytest.raises(ValueError, match="config_id: unknown config 'nope'"):
        _C.gemm_workspace_size("nope", 1, 128, 128, 128, 0)
    config = _C.configs()[0]
    with pytest.raises(ValueError, match="splits: must be >= 0, got -1"):
        _C.gemm_workspace_size(config, 1, 128, 128, 128, -1)
    if "_persist" in config:  # rejected on the host before any launch, so this needs no GPU
        with pytest.raises(RuntimeError, match="splits: only the stream-K and split-K configs split k"):
            _C.gemm(config, 0, 0, 0, 0, 0, 0, 0, 0, 1 << 20, 1, 128, 128, 128, 2, 0)
    with pytest.raises(ValueError, match="x_dtype: must be 'bf16' or 'f16', got 'f32'"):
        _C.quantize_act(0, "f32", 0, 0, 1, 128, 0)
    # rejected on the host before any launch, so this needs no GPU
    with pytest.raises(RuntimeError, match="quantize_act: k must be a positive multiple of 128"):
        _C.quantize_act(0, "bf16", 0, 0, 1, 100, 0)
    with pytest.raises(RuntimeError, match=r"quantize_act: m must be in \[1, 2\^31\)"):
        _C.quantize_act(0, "f16", 0, 0, 0, 128, 0)


def test_built_extension_lays_out_the_linear_scratch():
    _C = pytest.importorskip("liquidgemm._C", reason="liquidgemm._C is not built")
    config = _C.configs()[0]
    for m, n, k in ((1, 128, 128), (7, 4096, 4096), (300, 1024, 28672)):
        workspace = _C.gemm_workspace_size(config, m, n, k, 128, 0)
        # int8 activations (whole multiples of act_row_multiple rows), then fp32 token scales, then the GEMM's
        # workspace, each on a 256-byte boundary
        rows = -(-m // _C.act_row_multiple) * _C.act_row_multiple
        expected = -(-rows * k // 256) * 256 + -(-4 * m // 256) * 256 + workspace
        assert _C.linear_scratch_size(config, m, n, k, 128) == expected
    with pytest.raises(ValueError, match=r"scratch: .* needs \d+ bytes, got 0"):
        _C.linear(config, 0, "bf16", 0, 0, 0, 0, 0, 0, 0, 1, 128, 128, 128, 0)
    with pytest.raises(ValueError, match="x_dtype: must be 'bf16' or 'f16', got 'f32'"):
        _C.linear(config, 0, "f32", 0, 1 << 20, 0, 0, 0, 0, 0, 1, 128, 128, 128, 0)
