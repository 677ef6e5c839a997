"""Sibling fusion (liquidgemm.fused): one GEMM per shared input, outputs identical to the unfused layers."""
from __future__ import annotations

import copy

import pytest
import torch
from test_nn import Stack, randomise_norms

from liquidgemm import nn as lg_nn
from liquidgemm.fused import SharedInputW4A8, SiblingSlice
from liquidgemm.nn import W4A8Linear, quantize_model


def quantized_pair(bias=False):
    torch.manual_seed(0)
    model = Stack().to(torch.bfloat16)
    randomise_norms(model)
    if bias:
        for block in model.layers:
            block.self_attn.k_proj.bias = torch.nn.Parameter(torch.randn(256, dtype=torch.bfloat16))
    unfused, fused = copy.deepcopy(model), model
    quantize_model(unfused, progress=False, fuse=False)
    summary = quantize_model(fused, progress=False)
    return unfused, fused, summary


@pytest.mark.parametrize("bias", [False, True])
def test_fused_outputs_equal_unfused(bias):
    unfused, fused, summary = quantized_pair(bias)
    assert summary.fused == [f"layers.{i}.{m}" for i in range(2)
                             for m in ("self_attn.q_proj_k_proj_v_proj_fused", "mlp.gate_proj_up_proj_fused")]
    assert len(summary.converted) == 14 and "fused 4 groups" in str(summary)
    attn = fused.layers[0].self_attn
    assert isinstance(attn.k_proj, SiblingSlice) and isinstance(attn.o_proj, W4A8Linear)
    assert isinstance(attn.q_proj_k_proj_v_proj_fused, SharedInputW4A8)
    x = torch.randn(2, 5, 256).to(torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(fused(x), unfused(x))  # same codes per row: bit-identical


def count_gemms(monkeypatch):
    calls = []
    real = lg_nn.ops.linear_from_buffers

    def counting(x, packed, *args, **kwargs):
        calls.append(packed.shape[0] * 64)
        return real(x, packed, *args, **kwargs)

    monkeypatch.setattr(lg_nn.ops, "linear_from_buffers", counting)
    return calls


def test_one_gemm_per_shared_input(monkeypatch):
    _, fused, _ = quantized_pair()
    calls = count_gemms(monkeypatch)
    with torch.no_grad():
        fused(torch.randn(1, 3, 256).to(torch.bfloat16))
    # per block: q/k/v (768 rows), o (256), gate/up (1024), down (256)
    assert calls == [768, 256, 1024, 256] * 2
    assert all(m._memo is None for m in fused.modules() if isinstance(m, SharedInputW4A8))  # nothing retained


def test_different_inputs_and_inplace_changes_recompute(monkeypatch):
    _, fused, _ = quantized_pair()
    attn = fused.layers[0].self_attn
    calls = count_gemms(monkeypatch)
    x = torch.randn(3, 256).to(torch.bfloat16)
    with torch.no_grad():
        q = attn.q_proj(x)
        x2 = x.clone()
        k_other = attn.k_proj(x2)          # another tensor: computed again, not the memo of x
        x.mul_(2)                          # same object, new version: the memo is stale
        v = attn.v_proj(x)
        assert calls == [768, 768, 768]
        ref = quantized_pair()[0].layers[0].self_attn
        assert torch.equal(q, ref.q_proj(x2)) and torch.equal(k_other, ref.k_proj(x2))
        assert torch.equal(v, ref.v_proj(x))


def test_fused_traces_as_one_gemm_under_dynamo(monkeypatch):
    """fullgraph tracing (the logic torch.compile uses; the eager backend keeps this fast on a CPU)."""
    unfused, fused, _ = quantized_pair()
    x = torch.randn(1, 2, 256).to(torch.bfloat16)
    compiled = torch.compile(fused, backend="eager", fullgraph=True)
    with torch.no_grad():
        expected = unfused(x)
        calls = count_gemms(monkeypatch)
        torch._dynamo.reset()
        assert torch.equal(compiled(x), expected)
    assert calls == [768, 256, 1024, 256] * 2


def test_fused_state_dict_round_trip():
    _, fused, _ = quantized_pair()
    fresh = quantized_pair()[1]
    for module in fresh.modules():
        if isinstance(module, SharedInputW4A8):
            module.packed.zero_()
    fresh.load_state_dict(fused.state_dict())
    assert "layers.0.self_attn.q_proj_k_proj_v_proj_fused.packed" in fused.state_dict()
    x = torch.randn(2, 256).to(torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(fresh(x), fused(x))


def test_inference_mode_inputs():
    """Inference tensors have no version counter: the memo then relies on identity alone."""
    unfused, fused, _ = quantized_pair()
    x = torch.randn(1, 2, 256).to(torch.bfloat16)
    with torch.inference_mode():
        assert torch.equal(fused(x), unfused(x))
