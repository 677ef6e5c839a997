"""liquidgemm.ops: registration, CPU impl == reference (exact), fake shapes, validation; GPU: kernel == reference,
torch.compile, CUDA graphs, streams."""
import pytest
import torch

from conftest import capture_graph, skip_unless_compiled, ulp_distance
from liquidgemm import ops
from liquidgemm.quantize import quantize_act_reference, quantize_weight
from liquidgemm.reference import w4a8_gemm_reference, w4a8_gemm_reference_int32


def make_problem(m=5, n=256, k=384, group_size=128, dtype=torch.bfloat16, bias=True, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g)
    x = torch.randn(m, k, generator=g).to(dtype)
    b = torch.randn(n, generator=g) if bias else None
    qw = quantize_weight(w, group_size).to(device)
    return x.to(device), qw, None if b is None else b.to(device)


# ---- registration and CPU impls ------------------------------------------------------------------------------------
def test_ops_registered_with_schemas():
    assert "quantize_act(Tensor x) -> (Tensor, Tensor)" in str(torch.ops.liquidgemm.quantize_act.default._schema)
    gemm = str(torch.ops.liquidgemm.w4a8_gemm.default._schema)
    assert "Tensor? bias" in gemm and "ScalarType out_dtype" in gemm and 'str config=""' in gemm
    linear = str(torch.ops.liquidgemm.w4a8_linear.default._schema)
    assert "int group_size" in linear and linear.endswith("-> Tensor")


@pytest.mark.parametrize("shape", [(7, 256), (2, 3, 128), (128,)])
def test_quantize_act_cpu_equals_reference(shape):
    x = (torch.randn(shape) * 3).to(torch.float16)
    x_q, scale = ops.quantize_act(x)
    ref_q, ref_scale = quantize_act_reference(x.reshape(-1, shape[-1]))
    assert x_q.dtype == torch.int8 and x_q.shape == x.shape and scale.shape == x.shape[:-1]
    assert torch.equal(x_q.reshape(-1, shape[-1]), ref_q)
    assert torch.equal(scale.reshape(-1), ref_scale)


@pytest.mark.parametrize("group_size", [64, 128, None])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_linear_cpu_equals_reference(group_size, dtype):
    x, qw, b = make_problem(group_size=group_size, dtype=dtype)
    y = ops.w4a8_linear(x, qw, bias=b)
    x_q, x_scale = quantize_act_reference(x)
    assert y.dtype == dtype
    assert torch.equal(y, w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=dtype, bias=b))


def test_linear_leading_dims():
    x, qw, b = make_problem(m=6)
    y = ops.w4a8_linear(x.view(2, 3, -1), qw, bias=b)
    assert y.shape == (2, 3, qw.out_features)
    assert torch.equal(y.view(6, -1), ops.w4a8_linear(x, qw, bias=b))


def test_gemm_cpu_equals_reference():
    x, qw, b = make_problem()
    x_q, x_scale = quantize_act_reference(x)
    y = ops.w4a8_gemm(x_q, x_scale, qw, out_dtype=torch.float16, bias=b)
    assert y.dtype == torch.float16
    assert torch.equal(y, w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=torch.float16, bias=b))
    acc = ops.w4a8_gemm(x_q, x_scale, qw, out_dtype=torch.int32)
    assert acc.dtype == torch.int32 and torch.equal(acc, w4a8_gemm_reference_int32(x_q, qw))
    # default output dtype: the weight's if 16-bit, else bf16
    assert ops.w4a8_gemm(x_q, x_scale, qw).dtype == torch.bfloat16
    qw16 = quantize_weight(torch.randn(128, 384).half())
    assert ops.w4a8_gemm(x_q, x_scale, qw16).dtype == torch.float16


# ---- fake impls -----------------------------------------------------------------------------------------------------
def test_meta_shapes():
    x, qw, b = make_problem()
    meta = qw.to("meta")
    xm = torch.empty(2, 3, qw.in_features, dtype=torch.float16, device="meta")
    y = torch.ops.liquidgemm.w4a8_linear(xm, meta.packed, meta.params, meta.s1, None, qw.group_size)
    assert y.shape == (2, 3, qw.out_features) and y.dtype == torch.float16 and y.device.type == "meta"
    x_q, scale = torch.ops.liquidgemm.quantize_act(xm)
    assert (x_q.shape, x_q.dtype, scale.shape, scale.dtype) == (xm.shape, torch.int8, (2, 3), torch.float32)
    out = torch.ops.liquidgemm.w4a8_gemm(x_q.view(6, -1), scale.view(6), meta.packed, meta.params, meta.s1, None,
                                         qw.group_size, torch.int32)
    assert out.shape == (6, qw.out_features) and out.dtype == torch.int32


def test_opcheck_cpu():
    x, qw, b = make_problem()
    x_q, x_scale = quantize_act_reference(x)
    w = (qw.packed, qw.params, qw.s1)
    torch.library.opcheck(torch.ops.liquidgemm.quantize_act.default, (x,))
    torch.library.opcheck(torch.ops.liquidgemm.w4a8_gemm.default, (x_q, x_scale, *w, b, qw.group_size, torch.bfloat16))
    torch.library.opcheck(torch.ops.liquidgemm.w4a8_linear.default, (x.view(1, 5, -1), *w, b, qw.group_size))


def test_compile_cpu_fullgraph_matches_eager():
    x, qw, b = make_problem()
    fn = torch.compile(lambda t: ops.w4a8_linear(t, qw, bias=b), fullgraph=True, backend="aot_eager")
    assert torch.equal(fn(x), ops.w4a8_linear(x, qw, bias=b))


# ---- validation -----------------------------------------------------------------------------------------------------
def test_linear_validation_messages():
    x, qw, b = make_problem()
    cases = [
        (lambda: ops.w4a8_linear(x.float(), qw), TypeError, "x: expected dtype"),
        (lambda: ops.w4a8_linear(x[:, :256], qw), ValueError, "x: expected a contiguous"),
        (lambda: ops.w4a8_linear(x[:, :256].contiguous(), qw), ValueError, "in_features = 384"),
        (lambda: ops.w4a8_linear(x[:0], qw), ValueError, "x: expected a non-empty"),
        (lambda: ops.w4a8_linear(x.tolist(), qw), TypeError, "x: expected a torch.Tensor"),
        (lambda: ops.w4a8_linear(x, qw.packed), TypeError, "qw: expected a liquidgemm.QuantizedWeight"),
        (lambda: ops.w4a8_linear(x, qw, bias=b[:128]), ValueError, "bias: expected shape (256,)"),
        (lambda: ops.w4a8_linear(x, qw, bias=b.int()), TypeError, "bias: expected a float16/bfloat16/float32"),
        (lambda: ops.w4a8_linear(x.to("meta"), qw), ValueError, "x: expected a tensor on cpu"),
        (lambda: ops.w4a8_linear(x, qw, bias=b.to("meta")), ValueError, "bias: expected a tensor on cpu"),
        (lambda: ops.w4a8_linear(x, qw, config=3), TypeError, "config: expected a config id"),
    ]
    for call, exc, text in cases:
        with pytest.raises(exc, match=None) as info:
            call()
        assert text in str(info.value), (text, str(info.value))


def test_gemm_validation_messages():
    x, qw, b = make_problem()
    x_q, x_scale = quantize_act_reference(x)
    cases = [
        (lambda: ops.w4a8_gemm(x_q.float(), x_scale, qw), TypeError, "x_q"),
        (lambda: ops.w4a8_gemm(x_q, x_scale[:2], qw), ValueError, "x_scale"),
        (lambda: ops.w4a8_gemm(x_q[:, :128].contiguous(), x_scale, qw), ValueError, "x_q"),
        (lambda: ops.w4a8_gemm(x_q, x_scale, qw, out_dtype=torch.float64), TypeError, "out_dtype"),
        (lambda: ops.w4a8_gemm(x_q, x_scale, qw, out_dtype=torch.int32, bias=b), ValueError, "bias: must be None"),
    ]
    for call, exc, text in cases:
        with pytest.raises(exc) as info:
            call()
        assert text in str(info.value), (text, str(info.value))


# ---- GPU: the kernel path ---------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("m", [1, 16, 200])
@pytest.mark.parametrize("group_size", [64, 128, None])
def test_kernel_int32_equals_reference(m, group_size):
    from liquidgemm import dispatch

    configs = dispatch.list_configs("s32")
    if not configs:
        pytest.skip("no s32 (raw accumulator) config compiled into this build")
    x, qw, _ = make_problem(m=m, n=512, k=1024, group_size=group_size)
    x_q, x_scale = quantize_act_reference(x)
    ref = w4a8_gemm_reference_int32(x_q, qw)
    qw_gpu = qw.cuda()
    for config in configs:
        acc = ops.w4a8_gemm(x_q.cuda(), x_scale.cuda(), qw_gpu, out_dtype=torch.int32, config=config)
        assert torch.equal(acc.cpu(), ref), config


@pytest.mark.gpu
@pytest.mark.parametrize("m", [1, 13, 64, 300])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("bias", [False, True])
def test_kernel_linear_matches_reference(m, dtype, bias):
    skip_unless_compiled(dtype)
    x, qw, b = make_problem(m=m, n=512, k=1024, dtype=dtype, bias=bias)
    ref = ops.w4a8_linear(x, qw, bias=b)
    x_q, x_scale = ops.quantize_act(x.cuda())
    ref_q, ref_scale = quantize_act_reference(x)
    assert torch.equal(x_q.cpu(), ref_q) and torch.equal(x_scale.cpu(), ref_scale)
    y = ops.w4a8_linear(x.cuda(), qw.cuda(), bias=None if b is None else b.cuda()).cpu()
    # Same operations in the same order: exact without bias; with bias FMA contraction may differ by 1 ulp.
    assert int(ulp_distance(y, ref).max()) <= (1 if bias else 0)


@pytest.mark.gpu
def test_kernel_every_config_matches_reference():
    from liquidgemm import dispatch

    x, qw, b = make_problem(m=40, n=512, k=1024, bias=True)
    ref = ops.w4a8_linear(x, qw, bias=b)
    x_g, qw_g, b_g = x.cuda(), qw.cuda(), b.cuda()
    for config in dispatch.list_configs(torch.bfloat16):
        rows = 8 if config.endswith("_fq") else 40  # a fused-quantization config takes at most tile_n tokens
        y = ops.w4a8_linear(x_g[:rows], qw_g, bias=b_g, config=config).cpu()
        assert int(ulp_distance(y, ref[:rows]).max()) <= 1, config


@pytest.mark.gpu
def test_rows_past_m_of_the_activation_buffer_never_reach_the_output():
    # x_q a view into a larger buffer whose other rows hold anything: every config's activation TMA may read whole
    # token tiles of it (_native.readable_rows), and the extra rows' products must never be stored
    from liquidgemm import dispatch

    x, qw, _ = make_problem(m=3, n=256, k=512, bias=False)
    x_q, x_scale = quantize_act_reference(x)
    want = w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=torch.bfloat16)
    buffer = torch.full((40, 512), 127, dtype=torch.int8)
    buffer[:3] = x_q
    x_q_view, qw_g, x_scale_g = buffer.cuda()[:3], qw.cuda(), x_scale.cuda()
    for config in dispatch.list_configs(torch.bfloat16, fused_quant=False):
        got = ops.w4a8_gemm(x_q_view, x_scale_g, qw_g, out_dtype=torch.bfloat16, config=config).cpu()
        assert torch.equal(got, want), config


def test_readable_rows_counts_the_storage_behind_a_view():
    from liquidgemm import _native

    buffer = torch.zeros(48, 256, dtype=torch.int8)
    assert _native.readable_rows(buffer[:5]) == 48
    assert _native.readable_rows(buffer[16:21]) == 32
    assert _native.readable_rows(torch.zeros(5, 256, dtype=torch.int8)) == 5


@pytest.mark.gpu
def test_quantize_act_leaves_whole_token_tiles_behind_its_rows():
    from liquidgemm import _native

    x_q, _ = ops.quantize_act(torch.randn(2, 3, 256, dtype=torch.bfloat16, device="cuda"))
    assert x_q.shape == (2, 3, 256) and x_q.is_contiguous()
    assert _native.readable_rows(x_q.view(-1, 256)) == _native.act_row_multiple()


@pytest.mark.gpu
def test_torch_compile_fullgraph_module():
    from liquidgemm.nn import W4A8Linear

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.SiLU(), torch.nn.Linear(1024, 256))
    model = model.to(torch.bfloat16).cuda()
    model[0] = W4A8Linear.from_linear(model[0])
    model[2] = W4A8Linear.from_linear(model[2])
    x = torch.randn(3, 7, 512, dtype=torch.bfloat16, device="cuda")
    compiled = torch.compile(model, fullgraph=True)
    assert torch.equal(compiled(x), model(x))


@pytest.mark.gpu
@pytest.mark.parametrize("fused", (False, True), ids=("two_kernels", "fused_quant"))
def test_cuda_graph_capture_replay(fused):
    from liquidgemm import dispatch

    config = None
    if fused:  # one kernel that quantizes x itself: the graph must pick up each replay's new x and scales
        configs = dispatch.list_configs(torch.bfloat16, fused_quant=True)
        if not configs:
            pytest.skip("no bf16 fused-quantization config compiled into this build")
        config = configs[0]
    x, qw, b = make_problem(m=1 if fused else 8, n=512, k=1024)
    qw, b = qw.cuda(), b.cuda()
    static_x = x.cuda()
    ops.w4a8_linear(static_x, qw, bias=b, config=config)  # warm up: load the module, pick the config
    graph, static_y = capture_graph(lambda: ops.w4a8_linear(static_x, qw, bias=b, config=config))
    for seed in (1, 2):
        new_x = torch.randn(static_x.shape, generator=torch.Generator().manual_seed(seed)).to(static_x.dtype)
        static_x.copy_(new_x.cuda())
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(static_y, ops.w4a8_linear(static_x, qw, bias=b, config=config))


@pytest.mark.gpu
def test_respects_current_stream():
    x, qw, b = make_problem(m=8, n=512, k=1024)
    qw, b = qw.cuda(), b.cuda()
    x_gpu = torch.zeros_like(x, device="cuda")
    expected = ops.w4a8_linear(x.cuda(), qw, bias=b)
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        torch.cuda._sleep(50_000_000)  # the copy below lands late: a kernel on another stream would read zeros
        x_gpu.copy_(x.cuda(), non_blocking=True)
        y = ops.w4a8_linear(x_gpu, qw, bias=b)
    stream.synchronize()
    assert torch.equal(y, expected)
