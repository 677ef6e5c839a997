"""Split-K and balanced-split configs (int32 partial tiles of K slices or of per-SM k-ranges + the PDL-launched
reduce kernel): exact for every split count and for runs that cross tiles, with bias, repeated, under CUDA-graph
replay and on two streams at once."""
from __future__ import annotations

import pytest
import torch

from conftest import capture_graph
from liquidgemm import ops
from liquidgemm._configs import TileConfig
from liquidgemm.quantize import quantize_act_reference, quantize_weight
from liquidgemm.reference import w4a8_gemm_reference


def _configs(*schedulers: str) -> list[str]:
    from liquidgemm import dispatch

    return [c for c in dispatch.list_configs(torch.bfloat16, fused_quant=False)
            if TileConfig.parse(c).scheduler in schedulers]


def _split_k_configs() -> list[str]:
    return _configs("splitk")


def _reducing_configs() -> list[str]:
    return _configs("splitk", "balanced")


def _problem(m: int, n: int = 512, k: int = 2048, seed: int = 0, group_size: int = 128):
    gen = torch.Generator().manual_seed(seed)
    qw = quantize_weight(torch.randn(n, k, generator=gen) * 0.05, group_size)
    x = torch.randn(m, k, generator=gen).to(torch.bfloat16)
    return x, qw, torch.randn(n, generator=gen)


@pytest.mark.gpu
@pytest.mark.parametrize("m", (1, 8, 9, 40))
def test_every_split_count_is_exact(m):
    from liquidgemm import _native

    configs = _split_k_configs()
    if not configs:
        pytest.skip("no bf16 split-K config compiled into this build")
    x, qw, _ = _problem(m)
    x_q, x_scale = quantize_act_reference(x)
    want = w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=torch.bfloat16)
    x_q, x_scale, qw = x_q.cuda(), x_scale.cuda(), qw.cuda()
    n, k = qw.shape
    out = torch.empty(m, n, dtype=torch.bfloat16, device="cuda")
    for config in configs:
        for splits in (0, 1, 2, 4, 8, 16):  # 0 = the cost model's count; 16 slices of k = 2048: one k-block each
            workspace = torch.empty(_native.gemm_workspace_size(config, m, n, k, 128, splits), dtype=torch.uint8,
                                    device="cuda")
            out.fill_(0)
            _native.gemm(config, x_q, x_scale, qw.packed, qw.params, qw.s1, None, out, workspace, 128, splits)
            assert torch.equal(out.cpu(), want), (config, splits)


# (n, k, group size): each CTA's run of (tile, k-block) pairs is >= 4 k-blocks, so on a 132-SM GPU these give
# runs that cross tile boundaries mid-group (kb = 9, 25 and 19 k-blocks per tile), tiles summed from 1 to 7 partials,
# one CTA running four whole tiles (k = 128) and a single tile split over many CTAs.
BALANCED_SHAPES = [(1280, 1152, 128), (384, 3200, 64), (512, 128, 128), (128, 4096, 256), (2048, 2432, 128)]


@pytest.mark.gpu
@pytest.mark.parametrize("m", (1, 16, 40))
@pytest.mark.parametrize("n, k, group_size", BALANCED_SHAPES)
def test_balanced_split_is_exact(m, n, k, group_size):
    from liquidgemm import _native

    configs = _configs("balanced")
    if not configs:
        pytest.skip("no bf16 balanced-split config compiled into this build")
    x, qw, _ = _problem(m, n, k, seed=n + k, group_size=group_size)
    x_q, x_scale = quantize_act_reference(x)
    want = w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=torch.bfloat16)
    x_q, x_scale, qw = x_q.cuda(), x_scale.cuda(), qw.cuda()
    out = torch.empty(m, n, dtype=torch.bfloat16, device="cuda")
    for config in configs:
        workspace = torch.empty(_native.gemm_workspace_size(config, m, n, k, group_size, 0), dtype=torch.uint8,
                                device="cuda")
        workspace.fill_(0x5A)  # slots no unit writes must never be read
        out.fill_(0)
        _native.gemm(config, x_q, x_scale, qw.packed, qw.params, qw.s1, None, out, workspace, group_size, 0)
        assert torch.equal(out.cpu(), want), config
        with pytest.raises(RuntimeError, match="splits: only the stream-K and split-K configs split k"):
            _native.gemm(config, x_q, x_scale, qw.packed, qw.params, qw.s1, None, out, workspace, group_size, 2)


@pytest.mark.gpu
def test_split_k_with_bias_graph_replays_and_two_streams():
    configs = _reducing_configs()
    if not configs:
        pytest.skip("no bf16 split-K or balanced-split config compiled into this build")
    x, qw, bias = _problem(5, n=1024, k=4096, seed=1)
    want = ops.w4a8_linear(x, qw, bias=bias)  # the CPU reference
    x, qw, bias = x.cuda(), qw.cuda(), bias.cuda()
    for config in configs:
        assert torch.equal(ops.w4a8_linear(x, qw, bias=bias, config=config).cpu(), want), config
        graph, static_y = capture_graph(lambda config=config: ops.w4a8_linear(x, qw, bias=bias, config=config))
        for _ in range(3):
            static_y.fill_(0)
            graph.replay()
            torch.cuda.synchronize()
            assert torch.equal(static_y.cpu(), want), config
        streams = [torch.cuda.Stream() for _ in range(2)]
        for stream in streams:
            stream.wait_stream(torch.cuda.current_stream())
        outs = []
        for _ in range(4):
            for stream in streams:
                with torch.cuda.stream(stream):
                    outs.append(ops.w4a8_linear(x, qw, bias=bias, config=config))
        torch.cuda.synchronize()
        assert all(torch.equal(y.cpu(), want) for y in outs), config
