"""K-pairs configs (one 64-row weight slice per CTA, its two consumer warp groups taking its even and odd k-blocks,
summed in shared memory): exact against the reference for every group size, token counts across tile edges, several
slices per CTA (the exchange buffer reused), streams loading their first stages of weights before the PDL wait (a whole
ring for long ones), under CUDA-graph replay; with a bias exactly too (warp group 0 applies the scales and the
bias itself, rounding after every operation as the reference does); scale vectors that are views starting off a
16-byte boundary (they are bulk-copied); K not a multiple of 256 is refused."""
from __future__ import annotations

import pytest
import torch

from conftest import capture_graph
from liquidgemm import ops
from liquidgemm.quantize import quantize_act_reference, quantize_weight
from liquidgemm.reference import w4a8_gemm_reference


def _k_pair_configs(dtype=torch.bfloat16) -> list[str]:
    from liquidgemm import dispatch

    return [c for c in dispatch.list_configs(dtype, fused_quant=False) if c.endswith("_kpairs")]


def _problem(m: int, n: int, k: int, group: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    qw = quantize_weight(torch.randn(n, k, generator=gen) * 0.05, group)
    x = torch.randn(m, k, generator=gen).to(torch.bfloat16)
    return x, qw, torch.randn(n, generator=gen)


@pytest.mark.gpu
@pytest.mark.parametrize(("m", "n", "k", "group"), [
    (1, 512, 2048, 128),
    (8, 256, 256, 64),       # one pair of k-blocks
    (9, 384, 1024, 64),
    (16, 512, 1536, None),   # per-channel: both warp groups read the one group
    (17, 256, 512, 128),     # two token tiles
    (40, 128, 768, 384),     # groups of three k-blocks: a pair straddles two groups
    (12, 384, 3072, 384),    # one token tile: the entry loads the first stages, pairs straddling groups among them
    (64, 256, 512, 64),
    (3, 12800, 512, 128),    # 200 slices: more than one per CTA
    (16, 256, 16384, 128),   # a long stream: the CTA's first ring of weights is loaded before the PDL wait
    (5, 128, 15360, 64),     # 60 pairs per CTA, four rings: the shortest stream that loads a whole ring early
])
def test_outputs_are_exact(m, n, k, group):
    from liquidgemm import _native

    configs = _k_pair_configs()
    if not configs:
        pytest.skip("no bf16 K-pairs config compiled into this build")
    x, qw, bias = _problem(m, n, k, group)
    x_q, x_scale = quantize_act_reference(x)
    bias = bias.to(torch.bfloat16)
    want = w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=torch.bfloat16)
    want_bias = w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=torch.bfloat16, bias=bias)
    x_q, x_scale, qw, bias = x_q.cuda(), x_scale.cuda(), qw.cuda(), bias.cuda()
    for config in configs:
        got = ops.w4a8_gemm(x_q, x_scale, qw, out_dtype=torch.bfloat16, config=config)
        assert torch.equal(got.cpu(), want), config
        got = ops.w4a8_gemm(x_q, x_scale, qw, out_dtype=torch.bfloat16, bias=bias, config=config)
        assert torch.equal(got.cpu(), want_bias), config
        workspace = torch.empty(_native.gemm_workspace_size(config, m, n, k, qw.group_size, 0), dtype=torch.uint8,
                                device="cuda")
        assert workspace.numel() == 0, config  # no partial tiles, no second kernel


@pytest.mark.gpu
def test_with_fp16_and_graph_replays():
    configs = _k_pair_configs(torch.float16)
    if not configs:
        pytest.skip("no fp16 K-pairs config compiled into this build")
    gen = torch.Generator().manual_seed(2)
    qw = quantize_weight((torch.randn(1024, 4096, generator=gen) * 0.05).to(torch.float16), 128)
    x = torch.randn(5, 4096, generator=gen).to(torch.float16)
    want = ops.w4a8_linear(x, qw)  # the CPU reference
    x, qw = x.cuda(), qw.cuda()
    for config in configs:
        assert torch.equal(ops.w4a8_linear(x, qw, config=config).cpu(), want), config
        graph, static_y = capture_graph(lambda config=config: ops.w4a8_linear(x, qw, config=config))
        for _ in range(3):
            static_y.fill_(0)
            graph.replay()
            torch.cuda.synchronize()
            assert torch.equal(static_y.cpu(), want), config


@pytest.mark.gpu
def test_k_not_a_multiple_of_256_is_refused():
    from liquidgemm import _native

    configs = _k_pair_configs()
    if not configs:
        pytest.skip("no bf16 K-pairs config compiled into this build")
    x, qw, _ = _problem(4, 256, 384, 128)  # three k-blocks: not a whole number of pairs
    x_q, x_scale = quantize_act_reference(x)
    x_q, x_scale, qw = x_q.cuda(), x_scale.cuda(), qw.cuda()
    out = torch.empty(4, 256, dtype=torch.bfloat16, device="cuda")
    for config in configs:
        with pytest.raises(ValueError, match="divisible by 256"):
            ops.w4a8_gemm(x_q, x_scale, qw, out_dtype=torch.bfloat16, config=config)
        with pytest.raises(RuntimeError, match="multiple of 256"):
            _native.gemm(config, x_q, x_scale, qw.packed, qw.params, qw.s1, None, out, None, 128, 0)


@pytest.mark.gpu
def test_scale_vectors_off_16_byte_boundaries():
    configs = _k_pair_configs()
    if not configs:
        pytest.skip("no bf16 K-pairs config compiled into this build")
    m, n, k = 5, 256, 1024
    x, qw, bias = _problem(m, n, k, 128, seed=3)
    x_q, x_scale = quantize_act_reference(x)
    want = w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=torch.bfloat16, bias=bias)
    # views one float into a larger buffer: their data pointers are 4 bytes past a 16-byte boundary
    scale_view = torch.cat([torch.zeros(1), x_scale]).cuda()[1:]
    bias_view = torch.cat([torch.zeros(1), bias]).cuda()[1:]
    assert scale_view.data_ptr() % 16 and bias_view.data_ptr() % 16
    for config in configs:
        got = ops.w4a8_gemm(x_q.cuda(), scale_view, qw.cuda(), out_dtype=torch.bfloat16, bias=bias_view,
                            config=config)
        assert torch.equal(got.cpu(), want), config
