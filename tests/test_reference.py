"""Reference W4A8 GEMM: exact int32 accumulators, the epilogue's operation order, extremes, accuracy report."""
import pytest
import torch

from liquidgemm.quantize import quantize_act_reference, quantize_weight
from liquidgemm.reference import (
    accuracy_report,
    dequantize_int8,
    w4a8_gemm_reference,
    w4a8_gemm_reference_int32,
)


def _int64_gemm(x_q: torch.Tensor, w1: torch.Tensor) -> torch.Tensor:
    """Brute force: every product in int64, summed over K."""
    return (x_q.long()[:, None, :] * w1.long()[None, :, :]).sum(dim=2)


@pytest.mark.parametrize("m,n,k,group_size", [(1, 128, 128, 64), (3, 128, 256, 128), (17, 256, 512, None)])
def test_int32_gemm_exact(seed, m, n, k, group_size):
    qw = quantize_weight(torch.randn(n, k), group_size)
    x_q = torch.randint(-127, 128, (m, k), dtype=torch.int8)
    acc = w4a8_gemm_reference_int32(x_q, qw)
    assert acc.dtype == torch.int32 and acc.shape == (m, n)
    assert torch.equal(acc.long(), _int64_gemm(x_q, dequantize_int8(qw)))


def test_int32_gemm_python_loop(seed):
    """A few entries by a plain Python loop, independent of torch's matmul and broadcasting."""
    qw = quantize_weight(torch.randn(128, 128), 64)
    x_q = torch.randint(-127, 128, (2, 128), dtype=torch.int8)
    acc = w4a8_gemm_reference_int32(x_q, qw)
    w1 = dequantize_int8(qw).tolist()
    xs = x_q.tolist()
    for m, n in ((0, 0), (1, 77), (0, 127)):
        assert int(acc[m, n]) == sum(a * b for a, b in zip(xs[m], w1[n]))


def test_extreme_accumulators_k8192():
    """All weights +-119 and activations +-127 with K = 8192: |acc| near 1.3e8, no overflow, exact."""
    n, k = 128, 8192
    g = torch.Generator().manual_seed(3)
    w_signs = torch.randint(0, 2, (n, k), generator=g) * 2 - 1
    qw = quantize_weight(w_signs.float() * 119, 128)
    x_signs = torch.stack([w_signs[0], -w_signs[1], torch.ones(k, dtype=torch.long), w_signs[5]])
    x_q = (x_signs * 127).to(torch.int8)
    acc = w4a8_gemm_reference_int32(x_q, qw)
    ref = _int64_gemm(x_q, dequantize_int8(qw))
    assert torch.equal(acc.long(), ref)
    assert int(acc.abs().max()) > 1.2e8


def test_accumulator_bound_at_max_k():
    """K = 131072 (the largest allowed) with every w1' = 127 (u = 255) and x_q = 127: acc = 127*127*K < 2**31."""
    n, k = 128, 131072
    # Each group of 128 spans [-113, 119]: z = 15, s2 = 16, and 119 -> q = 15 -> u = 255 -> w1' = 127.
    w = torch.full((n, k), 119.0)
    w[:, ::128] = -113.0
    qw = quantize_weight(w, 128)
    w1 = dequantize_int8(qw)
    assert int(w1.max()) == 127
    x_q = torch.full((1, k), 127, dtype=torch.int8)
    acc = w4a8_gemm_reference_int32(x_q, qw)
    expected = 127 * (127 * (k - k // 128) + (-113) * (k // 128))
    assert bool((acc == expected).all()) and expected < 2**31
    assert 127 * 127 * 131072 < 2**31 - 1


@pytest.mark.parametrize("weight_dtype,expected_out", [
    (torch.bfloat16, torch.bfloat16), (torch.float16, torch.float16), (torch.float32, torch.bfloat16)])
def test_gemm_epilogue_order_and_dtype(seed, weight_dtype, expected_out):
    qw = quantize_weight(torch.randn(256, 384).to(weight_dtype), 128)
    x_q, x_scale = quantize_act_reference(torch.randn(5, 384))
    acc = w4a8_gemm_reference_int32(x_q, qw)
    y = w4a8_gemm_reference(x_q, x_scale, qw)
    assert y.dtype == expected_out and y.shape == (5, 256)
    expected = ((acc.float() * x_scale[:, None]) * qw.s1[None, :]).to(expected_out)
    assert torch.equal(y, expected)

    bias = torch.randn(256, dtype=torch.bfloat16)
    y_bias = w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=torch.float16, bias=bias)
    expected_bias = (((acc.float() * x_scale[:, None]) * qw.s1[None, :]) + bias.float()).to(torch.float16)
    assert y_bias.dtype == torch.float16 and torch.equal(y_bias, expected_bias)

    y32 = w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=torch.float32)
    assert torch.equal(y32, (acc.float() * x_scale[:, None]) * qw.s1[None, :])


def test_gemm_close_to_float_gemm(seed):
    """The W4A8 product approximates x @ w.T within the format's error (loose, distribution-level check)."""
    x, w = torch.randn(32, 1024), torch.randn(256, 1024)
    x_q, x_scale = quantize_act_reference(x)
    y = w4a8_gemm_reference(x_q, x_scale, quantize_weight(w, 128), out_dtype=torch.float32)
    exact = x.double() @ w.double().T
    rel = float(torch.linalg.norm(y.double() - exact) / torch.linalg.norm(exact))
    assert 0.01 < rel < 0.15


def test_gemm_on_meta_device_rejected_mixed(seed):
    qw = quantize_weight(torch.randn(128, 128), 128)
    x_q, x_scale = quantize_act_reference(torch.randn(2, 128))
    with pytest.raises(ValueError, match="x_q: expected a tensor on cpu"):
        w4a8_gemm_reference(x_q.to("meta"), x_scale, qw)


def test_accuracy_report(seed):
    x, w = torch.randn(32, 1024), torch.randn(256, 1024)
    report = accuracy_report(x, w, group_size=128)
    print("\n", report)
    assert report["group_size"] == 128 and report["shape"] == (32, 256, 1024)
    w4a8, w8a8, w4a16 = report["w4a8"], report["w8a8"], report["w4a16_rtn"]
    for errors in (w4a8, w8a8, w4a16):
        assert set(errors) == {"weight", "output"}
        assert 0 < errors["weight"] < 0.2 and 0 < errors["output"] < 0.2
    # 8-bit weights are an order of magnitude closer than any 4-bit scheme.
    assert w8a8["weight"] * 5 < w4a8["weight"] and w8a8["weight"] * 5 < w4a16["weight"]
    # Gaussian weights: LiquidQuant's two-level 4 bits land within 25% of plain per-group RTN.
    assert w4a8["weight"] < 1.25 * w4a16["weight"]
    assert accuracy_report(x, w, group_size=None)["w4a8"]["weight"] > w4a8["weight"]  # coarser groups, more error


def test_qw_type_checked():
    with pytest.raises(TypeError, match="qw: expected a liquidgemm.QuantizedWeight"):
        w4a8_gemm_reference_int32(torch.zeros(1, 128, dtype=torch.int8), torch.zeros(128, 128))
    with pytest.raises(TypeError, match="qw: expected a liquidgemm.QuantizedWeight"):
        dequantize_int8("weight")
