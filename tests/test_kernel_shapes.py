"""The kernel against an independent fp64 GEMM on >= 200 random problems, the Llama layer shapes and the extreme
values that overflow naive integer paths (issue 4's correctness list).

The check itself is device-agnostic: on the CPU it runs the reference ops (so this file's logic is exercised
everywhere), on the GPU the CUDA kernels. Accumulators must match exactly (the int32 debug configs), outputs to
the last rounding of the cast (no bias: the epilogue does the reference's operations in the same order).
"""
from __future__ import annotations

import random

import pytest
import torch

from liquidgemm import ops
from liquidgemm.quantize import quantize_act_reference, quantize_weight
from liquidgemm.reference import dequantize_int8

M_VALUES = (1, 2, 7, 8, 9, 63, 64, 65, 127, 255, 256, 257, 1000, 4096)
LLAMA_SHAPES = ((6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336),      # Llama-3-8B qkv, o, gate_up, down
                (10240, 8192), (8192, 8192), (8192, 28672))                   # Llama-3-70B qkv, o, down


def random_problems(count: int, seed: int = 2026):
    rng = random.Random(seed)
    sizes = (128, 256, 384, 512, 768, 1024, 2048)
    for i in range(count):
        m = M_VALUES[i % len(M_VALUES)] if i < 2 * len(M_VALUES) else rng.randint(1, 600)
        n, k = rng.choice(sizes), rng.choice(sizes)
        group = rng.choice((64, 128, None))
        dtype = rng.choice((torch.bfloat16, torch.float16))
        yield m, n, k, group, dtype


def exact_reference(x_q, x_scale, qw, w1, dtype):
    """int32 accumulators from an fp64 GEMM (exact below 2^53) and the epilogue in the contract's order."""
    acc = (x_q.double() @ w1.double().T).round().to(torch.int64)
    assert int(acc.abs().max()) < 2**31
    y = (acc.to(torch.float32) * x_scale[:, None]) * qw.s1[None, :]
    return acc.to(torch.int32), y.to(dtype)


def check(m, n, k, group, dtype, device, *, x=None, w=None, qw=None):
    gen = torch.Generator().manual_seed(m * 131 + n * 7 + k)
    if qw is None:
        w = torch.randn(n, k, generator=gen) * 0.05 if w is None else w
        qw = quantize_weight(w, group)
    x = torch.randn(m, k, generator=gen).to(dtype) if x is None else x
    w1 = dequantize_int8(qw)
    x_q, x_scale = quantize_act_reference(x)
    acc_ref, y_ref = exact_reference(x_q, x_scale, qw, w1, dtype)

    qw_d, x_q_d, x_scale_d = qw.to(device), x_q.to(device), x_scale.to(device)
    s32 = [c for c in _configs("s32")] if device == "cuda" else [None]
    for config in s32:
        acc = ops.w4a8_gemm(x_q_d, x_scale_d, qw_d, out_dtype=torch.int32, config=config).cpu()
        assert torch.equal(acc, acc_ref), (m, n, k, group, config)
    y = ops.w4a8_gemm(x_q_d, x_scale_d, qw_d, out_dtype=dtype).cpu()
    assert torch.equal(y, y_ref), (m, n, k, group, dtype)
    # and the whole user path: quantize on the device + GEMM
    y_linear = ops.w4a8_linear(x.to(device), qw_d).cpu()
    assert torch.equal(y_linear, y_ref), (m, n, k, group, dtype)
    # every fused-quantization config that takes m tokens: quantization inside the GEMM, the same bits
    for config in (_fused_configs(dtype, m, k) if device == "cuda" else []):
        y_fused = ops.w4a8_linear(x.to(device), qw_d, config=config).cpu()
        assert torch.equal(y_fused, y_ref), (m, n, k, group, dtype, config)


def _configs(out) -> list[str]:
    from liquidgemm import dispatch

    return dispatch.list_configs(out, fused_quant=False)


def _fused_configs(dtype, m, k) -> list[str]:
    """The compiled fused-quantization configs that take m tokens of K = k."""
    from liquidgemm import dispatch
    from liquidgemm._configs import TileConfig, fused_max_k

    tiles = {c: TileConfig.parse(c).tile_n for c in dispatch.list_configs(dtype, fused_quant=True)}
    return [c for c, tile_n in tiles.items() if tile_n >= m and k <= fused_max_k(tile_n)]


def test_check_logic_on_cpu_reference():
    """The CPU reference ops agree with the independent fp64 computation (validates this file's checker)."""
    for problem in list(random_problems(12)):
        check(*problem, device="cpu")


@pytest.mark.gpu
def test_kernel_on_200_random_problems():
    if not _configs("s32"):
        pytest.skip("no s32 (raw accumulator) config compiled into this build")
    from liquidgemm._configs import TileConfig

    checked = 0
    for m, n, k, group, dtype in random_problems(200):
        # a LIQUIDGEMM_CONFIGS subset may lack one output dtype, or have only configs that do not take (n, k)
        if any(TileConfig.parse(c).takes(n, k) for c in _configs(dtype)):
            check(m, n, k, group, dtype, device="cuda")
            checked += 1
    assert checked >= 80, f"only {checked} of 200 problems had a compiled config for their dtype"


@pytest.mark.gpu
@pytest.mark.parametrize("n,k", LLAMA_SHAPES)
def test_kernel_on_llama_shapes(n, k):
    qw = quantize_weight(torch.randn(n, k, generator=torch.Generator().manual_seed(n + k)) * 0.05, 128)
    for m in (1, 16, 257):  # one (slow, CPU) weight quantization per shape
        check(m, n, k, 128, torch.bfloat16, "cuda", qw=qw)


@pytest.mark.gpu
@pytest.mark.parametrize("group", (64, 128, None))
def test_kernel_on_extreme_values(group):
    """All weights at +-max (level-1 codes +-119 in every group, so s2 = 16, the largest), activations at +-127:
    |acc| reaches 119 * 127 * K = 1.2e8 at K = 8192, far past fp16 and any 16-bit integer path."""
    n, k, m = 256, 8192, 64
    signs = torch.where(torch.arange(n * k).view(n, k) % 3 == 0, -1.0, 1.0)
    w = signs * 2.0
    w[:, ::64] = -2.0                    # every group spans the full range: s2 = 16 somewhere in each row
    x = torch.full((m, k), 3.0, dtype=torch.bfloat16)
    x[:, 1::2] = -3.0
    x[0] = 3.0                           # one row of constant sign: the largest accumulators
    check(m, n, k, group, torch.bfloat16, "cuda", x=x, w=w)
    check(8, n, k, group, torch.bfloat16, "cuda", x=x[:8], w=w)  # 8 tokens: the fused-quantization configs too


@pytest.mark.gpu
def test_fused_quantization_with_bias_and_leading_dims():
    """The fused path's epilogue (token scales it computed itself, bias) and its token limit."""
    configs = _fused_configs(torch.bfloat16, 5, 1024)
    if not configs:
        pytest.skip("no bf16 fused-quantization config compiled into this build")
    gen = torch.Generator().manual_seed(5)
    qw = quantize_weight(torch.randn(512, 1024, generator=gen) * 0.05, 128)
    x = torch.randn(1, 5, 1024, generator=gen).to(torch.bfloat16)
    bias = torch.randn(512, generator=gen)
    want = ops.w4a8_linear(x, qw, bias=bias)  # the CPU reference
    qw_d = qw.to("cuda")
    for config in configs:
        assert torch.equal(ops.w4a8_linear(x.cuda(), qw_d, bias=bias.cuda(), config=config).cpu(), want), config
    from liquidgemm._configs import TileConfig

    small = min(configs, key=lambda c: TileConfig.parse(c).tile_n)
    with pytest.raises(ValueError, match="at most tile_n"):
        ops.w4a8_linear(torch.randn(257, 1024, dtype=torch.bfloat16, device="cuda"), qw_d, config=small)
