"""Every bad input gets a TypeError/ValueError that names the argument and the requirement."""
import pytest
import torch

from liquidgemm._validation import check_alignment, check_gemm_problem, check_tensor
from liquidgemm.format import QuantizedWeight
from liquidgemm.quantize import quantize_act_reference, quantize_weight
from liquidgemm.reference import w4a8_gemm_reference


# ---- check_tensor / check_alignment ---------------------------------------------------------------------------
def test_check_tensor_messages():
    x = torch.zeros(4, 8, dtype=torch.float16)
    assert check_tensor("x", x, dtypes=torch.float16, ndim=2, device="cpu") is x
    with pytest.raises(TypeError, match=r"^x_q: expected a torch.Tensor, got list$"):
        check_tensor("x_q", [1, 2], dtypes=torch.int8)
    with pytest.raises(TypeError, match=r"^x_q: expected dtype torch.int8, got torch.float16$"):
        check_tensor("x_q", x, dtypes=torch.int8)
    with pytest.raises(TypeError, match=r"^w: expected dtype torch.float16, torch.bfloat16 or torch.float32, "
                                        r"got torch.int32$"):
        check_tensor("w", x.int(), dtypes=(torch.float16, torch.bfloat16, torch.float32))
    with pytest.raises(ValueError, match=r"^x: expected a 1-D tensor, got shape \(4, 8\)$"):
        check_tensor("x", x, dtypes=torch.float16, ndim=1)
    with pytest.raises(ValueError, match=r"^x: expected a tensor on meta, got cpu$"):
        check_tensor("x", x, dtypes=torch.float16, device="meta")
    with pytest.raises(ValueError, match=r"^x: expected a contiguous tensor \(call .contiguous\(\)\), "
                                         r"got shape \(8, 4\) with strides \(1, 8\)$"):
        check_tensor("x", x.T, dtypes=torch.float16)
    check_tensor("x", x.T, dtypes=torch.float16, contiguous=False)


def test_check_alignment():
    base = torch.zeros(4, 64, dtype=torch.int8)
    assert check_alignment("x_q", base) is base
    with pytest.raises(ValueError, match=r"^x_q: data pointer must be 16-byte aligned, got address 0x"):
        check_alignment("x_q", base[:, 1:17])
    with pytest.raises(ValueError, match=r"^x_q: row stride must be a multiple of 16 bytes, got 40 bytes$"):
        check_alignment("x_q", torch.zeros(4, 40, dtype=torch.int8))
    check_alignment("x_q", torch.zeros(4, 40, dtype=torch.int8), nbytes=8)
    check_alignment("x", torch.zeros(4, 64, device="meta"))  # no storage: strides only


# ---- check_gemm_problem ---------------------------------------------------------------------------------------
@pytest.fixture
def problem():
    qw = quantize_weight(torch.randn(128, 256), 128)
    x_q, x_scale = quantize_act_reference(torch.randn(3, 256))
    return x_q, x_scale, qw


def test_check_gemm_problem_ok(problem):
    x_q, x_scale, qw = problem
    assert check_gemm_problem(x_q, x_scale, qw, None) == (3, 128, 256)
    assert check_gemm_problem(x_q, x_scale, qw, torch.zeros(128, dtype=torch.bfloat16)) == (3, 128, 256)


@pytest.mark.parametrize("case,error,message", [
    ("x_q_dtype", TypeError, r"^x_q: expected dtype torch.int8, got torch.float16$"),
    ("x_q_rank", ValueError, r"^x_q: expected a 2-D tensor, got shape \(768,\)$"),
    ("x_q_k", ValueError, r"^x_q: expected K = qw.in_features = 256 columns, got shape \(3, 128\)$"),
    ("x_q_empty", ValueError, r"^x_q: expected at least one row \(M >= 1\), got shape \(0, 256\)$"),
    ("x_q_strided", ValueError, r"^x_q: expected a contiguous tensor"),
    ("x_scale_dtype", TypeError, r"^x_scale: expected dtype torch.float32, got torch.float16$"),
    ("x_scale_shape", ValueError, r"^x_scale: expected shape \(3,\) \(one scale per row of x_q\), got \(4,\)$"),
    ("bias_dtype", TypeError,
     r"^bias: expected dtype torch.float16, torch.bfloat16 or torch.float32, got torch.int64$"),
    ("bias_shape", ValueError, r"^bias: expected shape \(128,\) \(qw.out_features\), got \(256,\)$"),
    ("qw_type", TypeError, r"^qw: expected a liquidgemm.QuantizedWeight, got Tensor$"),
    ("x_q_device", ValueError, r"^x_q: expected a tensor on cpu \(the device of qw\), got meta$"),
    ("x_scale_device", ValueError, r"^x_scale: expected a tensor on cpu \(the device of qw\), got meta$"),
    ("bias_device", ValueError, r"^bias: expected a tensor on cpu \(the device of qw\), got meta$"),
])
def test_check_gemm_problem_errors(problem, case, error, message):
    x_q, x_scale, qw = problem
    bias = None
    if case == "x_q_dtype":
        x_q = x_q.half()
    elif case == "x_q_rank":
        x_q = x_q.view(-1)
    elif case == "x_q_k":
        x_q = x_q[:, :128].contiguous()
    elif case == "x_q_empty":
        x_q = x_q[:0]
    elif case == "x_q_strided":
        x_q = torch.zeros(256, 3, dtype=torch.int8).T
    elif case == "x_scale_dtype":
        x_scale = x_scale.half()
    elif case == "x_scale_shape":
        x_scale = torch.ones(4)
    elif case == "bias_dtype":
        bias = torch.zeros(128, dtype=torch.long)
    elif case == "bias_shape":
        bias = torch.zeros(256)
    elif case == "qw_type":
        qw = torch.zeros(128, 256)
    elif case == "x_q_device":
        x_q = x_q.to("meta")
    elif case == "x_scale_device":
        x_scale = x_scale.to("meta")
    elif case == "bias_device":
        bias = torch.zeros(128, device="meta")
    with pytest.raises(error, match=message):
        check_gemm_problem(x_q, x_scale, qw, bias)
    with pytest.raises(error, match=message):  # the reference GEMM validates the same way
        w4a8_gemm_reference(x_q, x_scale, qw, bias=bias)


def test_check_gemm_problem_max_k():
    k = 131072 + 128
    qw = QuantizedWeight(torch.empty(2, k // 128, 4096, dtype=torch.uint8, device="meta"),
                         torch.empty(2, k // 128, 64, 2, dtype=torch.uint8, device="meta"),
                         torch.empty(128, device="meta"), 128, 128, k)
    x_q = torch.empty(1, k, dtype=torch.int8, device="meta")
    with pytest.raises(ValueError, match=r"^x_q: K must be <= 131072 \(int32 accumulator\), got 131200$"):
        check_gemm_problem(x_q, torch.empty(1, device="meta"), qw)


def test_reference_out_dtype_checked(problem):
    x_q, x_scale, qw = problem
    with pytest.raises(TypeError, match=r"^out_dtype: expected one of"):
        w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=torch.int8)


# ---- quantize_weight ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("w,group_size,error,message", [
    ([[1.0]], 128, TypeError, r"^w: expected a torch.Tensor, got list$"),
    (torch.zeros(128, 128, dtype=torch.int32), 128, TypeError,
     r"^w: expected dtype torch.float16, torch.bfloat16 or torch.float32, got torch.int32$"),
    (torch.zeros(128 * 128), 128, ValueError, r"^w: expected a 2-D tensor, got shape \(16384,\)$"),
    (torch.zeros(2, 128, 128), 128, ValueError, r"^w: expected a 2-D tensor, got shape \(2, 128, 128\)$"),
    (torch.zeros(100, 128), 128, ValueError,
     r"^w: N \(out_features, dim 0\) must be a positive multiple of 128, got 100$"),
    (torch.zeros(128, 192), 64, ValueError,
     r"^w: K \(in_features, dim 1\) must be a positive multiple of 128, got 192$"),
    (torch.zeros(0, 128), 128, ValueError, r"^w: N \(out_features, dim 0\) must be a positive multiple of 128, got 0$"),
    (torch.zeros(128, 512), 96, ValueError,
     r"^group_size: expected 64, a multiple of 128, or None/'channel' \(per-channel\), got 96$"),
    (torch.zeros(128, 512), 32, ValueError, r"^group_size: expected 64, a multiple of 128"),
    (torch.zeros(128, 512), 0, ValueError, r"^group_size: expected 64, a multiple of 128"),
    (torch.zeros(128, 512), -128, ValueError, r"^group_size: expected 64, a multiple of 128"),
    (torch.zeros(128, 512), 384, ValueError, r"^group_size: 384 does not divide K = 512 \(in_features\)$"),
    (torch.zeros(128, 512), 1024, ValueError, r"^group_size: 1024 does not divide K = 512 \(in_features\)$"),
    (torch.zeros(128, 512), True, TypeError, r"^group_size: expected an int, None or 'channel', got True$"),
    (torch.zeros(128, 512), "row", TypeError, r"^group_size: expected an int, None or 'channel', got 'row'$"),
    (torch.zeros(128, 512), 128.0, TypeError, r"^group_size: expected an int, None or 'channel', got float$"),
])
def test_quantize_weight_errors(w, group_size, error, message):
    with pytest.raises(error, match=message):
        quantize_weight(w, group_size)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_quantize_weight_non_finite(bad):
    w = torch.randn(128, 256, dtype=torch.bfloat16)
    w[3, 5] = bad
    w[100, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^w: all values must be finite, found 2 NaN/Inf value\(s\) out of 32768$"):
        quantize_weight(w)


def test_quantize_act_errors():
    with pytest.raises(TypeError, match=r"^x: expected dtype"):
        quantize_act_reference(torch.zeros(2, 8, dtype=torch.int8))
    with pytest.raises(ValueError, match=r"^x: expected a 2-D tensor, got shape \(2, 3, 8\)$"):
        quantize_act_reference(torch.zeros(2, 3, 8))
    with pytest.raises(ValueError, match=r"^x: expected at least one column \(K >= 1\), got shape \(2, 0\)$"):
        quantize_act_reference(torch.zeros(2, 0))


# ---- QuantizedWeight construction -----------------------------------------------------------------------------
def test_quantized_weight_constructor_errors():
    qw = quantize_weight(torch.randn(128, 256), 128)
    with pytest.raises(ValueError, match=r"^packed: expected shape \(2, 2, 4096\) for N=128, K=256, group_size=128, "
                                         r"got \(2, 1, 4096\)$"):
        QuantizedWeight(qw.packed[:, :1], qw.params, qw.s1, 128, 128, 256)
    with pytest.raises(ValueError, match=r"^params: expected shape \(2, 4, 64, 2\)"):
        QuantizedWeight(qw.packed, qw.params, qw.s1, 64, 128, 256)
    with pytest.raises(TypeError, match=r"^s1: expected dtype torch.float32, got torch.float16$"):
        QuantizedWeight(qw.packed, qw.params, qw.s1.half(), 128, 128, 256)
    with pytest.raises(ValueError, match=r"^s1: expected a tensor on cpu, got meta$"):
        QuantizedWeight(qw.packed, qw.params, qw.s1.to("meta"), 128, 128, 256)
    with pytest.raises(ValueError, match=r"^QuantizedWeight: N \(out_features, dim 0\) must be a positive multiple"):
        QuantizedWeight(qw.packed, qw.params, qw.s1, 128, 64, 256)
    with pytest.raises(TypeError, match=r"^dtype: expected one of"):
        QuantizedWeight(qw.packed, qw.params, qw.s1, 128, 128, 256, torch.int8)


def test_pack_errors():
    q = torch.zeros(128, 256, dtype=torch.uint8)
    s2 = torch.ones(128, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"^s2: expected shape \(128, 4\) \(N, K // group_size\), got \(128, 2\)$"):
        QuantizedWeight.pack(q, s2, s2, torch.ones(128), 64)
    with pytest.raises(TypeError, match=r"^z: expected dtype torch.uint8, got torch.int64$"):
        QuantizedWeight.pack(q, s2, s2.long(), torch.ones(128), 128)
    with pytest.raises(TypeError, match=r"^q: expected dtype torch.uint8, got torch.float32$"):
        QuantizedWeight.pack(q.float(), s2, s2, torch.ones(128), 128)
