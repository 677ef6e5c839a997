"""2x1-cluster configs (two CTAs of adjacent weight rows share every activation stage through TMA multicast): exact
against the reference on one cluster, on many tiles per CTA, with group size 64 and per-channel groups and fp16;
a weight with an odd number of 128-row tiles is refused (ValueError) instead of read past its end."""
from __future__ import annotations

import pytest
import torch

from liquidgemm import _native, ops
from liquidgemm._configs import TileConfig
from liquidgemm.quantize import quantize_act_reference, quantize_weight
from liquidgemm.reference import w4a8_gemm_reference


def _cluster_configs(dtype) -> list[str]:
    from liquidgemm import dispatch

    return [c for c in dispatch.list_configs(dtype, fused_quant=False) if TileConfig.parse(c).cluster_m > 1]


def _problem(m: int, n: int, k: int, group: int | None, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    qw = quantize_weight(torch.randn(n, k, generator=gen) * 0.05, group)
    x_q, x_scale = quantize_act_reference(torch.randn(m, k, generator=gen).to(torch.bfloat16))
    return x_q, x_scale, qw


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16))
@pytest.mark.parametrize("m,n,k,group", [
    (1, 256, 128, 128),      # one cluster, one k-block
    (300, 512, 2048, 64),    # two clusters, several token tiles, two groups per k-block
    (1000, 4096, 1024, None),  # 256-1024 tiles: every CTA runs several, per-channel groups
])
def test_cluster_configs_are_exact(dtype, m, n, k, group):
    configs = _cluster_configs(dtype)
    if not configs:
        pytest.skip(f"no {dtype} 2x1-cluster config compiled into this build")
    x_q, x_scale, qw = _problem(m, n, k, group)
    want = w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=dtype)
    x_q, x_scale, qw = x_q.cuda(), x_scale.cuda(), qw.cuda()
    for config in configs:
        got = ops.w4a8_gemm(x_q, x_scale, qw, out_dtype=dtype, config=config)
        assert torch.equal(got.cpu(), want), (config, m, n, k, group)


@pytest.mark.gpu
def test_cluster_config_refuses_an_odd_number_of_weight_tiles():
    configs = _cluster_configs(torch.bfloat16)
    if not configs:
        pytest.skip("no bf16 2x1-cluster config compiled into this build")
    x_q, x_scale, qw = _problem(16, 384, 256, 128)  # three 128-row tiles
    x_q, x_scale, qw = x_q.cuda(), x_scale.cuda(), qw.cuda()
    for config in configs:
        with pytest.raises(ValueError, match="needs out_features divisible by 256, got 384"):
            ops.w4a8_gemm(x_q, x_scale, qw, out_dtype=torch.bfloat16, config=config)
        with pytest.raises(RuntimeError, match="not supported by this kernel config"):  # the kernel's own check
            _native.gemm(config, x_q, x_scale, qw.packed, qw.params, qw.s1, None,
                         torch.empty(16, 384, dtype=torch.bfloat16, device="cuda"), None, 128)
