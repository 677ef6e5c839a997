"""The CUDA activation quantizer is bit-exact with quantize_act_reference (CPU) on every row shape it serves:
one warp per row (K <= 2048), one CTA per row with the row in registers (K <= 16384), rows reread in pass 2, and
rows of K > 16384 split over a cluster of CTAs (small M: M = 1, 7 -> 4 parts at K = 28672, M = 64 -> 2 parts)."""
from __future__ import annotations

import pytest
import torch

from liquidgemm import _native, quantize_act_reference

pytestmark = pytest.mark.gpu

MS = (1, 7, 64, 1000)
KS = (128, 4096, 8192, 20480, 28672)
DTYPES = (torch.bfloat16, torch.float16)


def quantize_on_gpu(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.cuda()
    x_q = torch.full(x.shape, 99, dtype=torch.int8, device="cuda")   # poison: every element must be written
    x_scale = torch.full((x.shape[0],), float("nan"), device="cuda")
    _native.quantize_act(x, x_q, x_scale)
    torch.cuda.synchronize()
    return x_q.cpu(), x_scale.cpu()


def assert_bit_exact(x: torch.Tensor) -> None:
    ref_q, ref_scale = quantize_act_reference(x)
    x_q, x_scale = quantize_on_gpu(x)
    assert torch.equal(x_scale.view(torch.int32), ref_scale.view(torch.int32)), "scales differ in some bit"
    mismatch = (x_q != ref_q).nonzero()
    assert mismatch.numel() == 0, f"{len(mismatch)} codes differ, first at (m, k) = {mismatch[0].tolist()}"


def random_rows(m: int, k: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Gaussian rows with per-row magnitudes over 2^-8 .. 2^8, one outlier column as real activations have."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=gen) * torch.exp2(torch.randint(-8, 9, (m, 1), generator=gen).float())
    x[:, torch.randint(0, k, (1,), generator=gen)] *= 20
    return x.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("m", MS)
def test_random_rows_bit_exact(m, k, dtype):
    assert_bit_exact(random_rows(m, k, dtype, seed=m * 100003 + k))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("k", KS)
def test_zero_rows_get_scale_one_and_zero_codes(k, dtype):
    x = random_rows(7, k, dtype, seed=k)
    x[0] = 0
    x[3] = 0
    x[6] = -0.0
    assert_bit_exact(x)
    x_q, x_scale = quantize_on_gpu(x)
    assert x_scale[[0, 3, 6]].tolist() == [1.0, 1.0, 1.0]
    assert not x_q[[0, 3, 6]].any()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("k", KS)
def test_ties_round_half_to_even(k, dtype):
    # amax = 127 gives scale = 1 exactly, so x / scale = x: every half-integer is a tie.
    halves = torch.arange(-127, 127, dtype=torch.float32) + 0.5      # -126.5 ... 126.5
    row = halves.repeat(k // len(halves) + 1)[:k].clone()
    row[k // 3] = 127.0
    row[k // 2] = -127.0
    x = torch.stack([row, -row.flip(0)]).to(dtype)
    assert_bit_exact(x)
    x_q, _ = quantize_on_gpu(x)
    representable = x.float() == torch.stack([row, -row.flip(0)])    # bf16 cannot hold every half-integer
    expected = torch.round(torch.stack([row, -row.flip(0)]))          # round-half-even, e.g. 2.5 -> 2, 3.5 -> 4
    assert torch.equal(x_q[representable].long(), expected[representable].long())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_extremes(dtype):
    finfo = torch.finfo(dtype)
    k = 4096
    x = random_rows(5, k, dtype, seed=7).float()
    x[0, 5] = finfo.max                      # largest finite activation
    x[1] = torch.randn(k, generator=torch.Generator().manual_seed(1)) * finfo.tiny  # bf16: subnormal scale, 1/scale = inf
    x[2, :: 2] = finfo.smallest_normal * 0.5  # subnormal inputs beside normal ones
    x[3] = 0
    x[3, -1] = -1.0                          # a single nonzero element, negative
    x[4] = finfo.tiny * torch.sign(x[4])     # every element at the smallest normal magnitude
    assert_bit_exact(x.to(dtype))


def test_respects_the_current_stream():
    x = random_rows(64, 8192, torch.bfloat16, seed=3).cuda()
    x_q = torch.empty(x.shape, dtype=torch.int8, device="cuda")
    x_scale = torch.empty(64, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        _native.quantize_act(x, x_q, x_scale)
    stream.synchronize()
    ref_q, ref_scale = quantize_act_reference(x.cpu())
    assert torch.equal(x_q.cpu(), ref_q) and torch.equal(x_scale.cpu(), ref_scale)
