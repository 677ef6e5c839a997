"""The CUTLASS peer (bench/cutlass_peer): quantizer and weight encodings on CPU, GEMMs against the package's own
fp32 reference on an sm_90 GPU. Skipped unless liquidgemm_cutlass_peer imports (installed, or from the source tree)."""
from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest
import torch

if importlib.util.find_spec("liquidgemm_cutlass_peer") is None:  # not installed: the pure-Python parts still test
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "bench" / "cutlass_peer"))
peer = pytest.importorskip("liquidgemm_cutlass_peer")
from liquidgemm_cutlass_peer import prepare as prep  # noqa: E402
from liquidgemm_cutlass_peer.reference import unpack_nibbles  # noqa: E402

peer_gpu = pytest.mark.skipif(not peer.available(), reason=str(peer.unavailable_reason()))


def rel_frobenius(y: torch.Tensor, ref: torch.Tensor) -> float:
    y, ref = y.cpu().float(), ref.cpu().float()
    return ((y - ref).norm() / ref.norm()).item()


def test_int4_bf16_quantizer_round_trip(seed):
    w = torch.randn(256, 512) * 0.02
    q, s = peer.quantize_int4_bf16(w, 128)
    assert q.dtype == torch.int8 and int(q.min()) >= -8 and int(q.max()) <= 7
    assert s.dtype == torch.bfloat16 and s.shape == (256, 4)
    s_full = s.float().repeat_interleave(128, dim=1)
    # Round to nearest: each weight within half a step, plus the bf16 rounding of the scale (amax may clip to 7).
    assert bool(((w - q.float() * s_full).abs() <= s_full * (0.5 + 7 * 2.0**-8) + 1e-12).all())


def test_int4_fp8_quantizer_keeps_lookup_table_in_range(seed):
    w = torch.randn(256, 512) * 0.02
    w[3] = 0  # all-zero row: channel scale 1, no NaN
    q, s, channel = peer.quantize_int4_fp8(w, 128)
    assert s.dtype == torch.float8_e4m3fn and channel.dtype == torch.float32
    assert float(s.float().max()) <= prep.FP8_GROUP_SCALE_MAX and float(s.float().min()) > 0
    assert 8 * prep.FP8_GROUP_SCALE_MAX < float(torch.finfo(torch.float8_e4m3fn).max)
    deq = (q.float() * s.float().repeat_interleave(128, 1)).to(torch.float8_e4m3fn).float() * channel[:, None]
    assert torch.isfinite(deq).all() and not deq[3].any()
    assert rel_frobenius(deq, w) < 0.15  # int4 round-to-nearest on a Gaussian is about 0.12


def test_fp8_lookup_table_decodes_to_the_reference_weights(seed):
    """Emulate CUTLASS's lookup-table converter on our encodings: bits 0-2 index the table of fp8(-8s)..fp8(-s),
    bit 3 set keeps the negative entry, clear flips its sign (index 0 then means zero)."""
    w = torch.randn(128, 256) * 0.05
    q, s, _ = peer.quantize_int4_fp8(w, 128)
    nibbles = prep.fp8_unified_nibbles(q).long()
    table = prep.fp8_scale_table(s).view(torch.float8_e4m3fn).float()  # [G, N, 8]
    per_weight = table.permute(1, 0, 2).repeat_interleave(128, dim=1)  # [N, K, 8]
    negative = per_weight.gather(-1, (nibbles & 7)[..., None])[..., 0]
    positive = torch.where((nibbles & 7) == 0, torch.zeros_like(negative), -negative)
    decoded = torch.where((nibbles & 8) != 0, negative, positive)
    expected = (q.float() * s.float().repeat_interleave(128, 1)).to(torch.float8_e4m3fn).float()
    assert torch.equal(decoded, expected)


def test_nibble_packing_round_trip(seed):
    q = torch.randint(-8, 8, (128, 256), dtype=torch.int8)
    packed = prep.pack_nibbles(q)
    assert packed.dtype == torch.uint8 and packed.numel() == 128 * 128
    assert int(packed[0]) == (int(q[0, 0]) & 0xF) | ((int(q[0, 1]) & 0xF) << 4)
    assert torch.equal(unpack_nibbles(packed, 128, 256), q)


@pytest.mark.parametrize("bad, match", [
    (dict(w=torch.zeros(128, 256)), "CUDA"),
    (dict(w=torch.zeros(128, 256, dtype=torch.int8)), "floating"),
    (dict(w=torch.zeros(100, 256)), "N % 128"),
    (dict(w=torch.zeros(128, 256), group_size=64), "group_size"),
])
@pytest.mark.parametrize("prepare", [peer.prepare_int4_bf16, peer.prepare_int4_fp8])
def test_prepare_rejects_bad_input(prepare, bad, match):
    with pytest.raises(ValueError, match=match):
        prepare(**bad)


SHAPES = [(1, 256, 512), (7, 128, 256), (16, 384, 1024), (33, 256, 512), (200, 512, 768)]


@pytest.mark.parametrize("m, n, k", SHAPES)
@pytest.mark.parametrize("config", [None, "int4_bf16_t128x128x64_coop", "int4_bf16_t64x16x64_pp"])
@pytest.mark.usefixtures("seed")
@pytest.mark.gpu
@peer_gpu
def test_gemm_int4_bf16_matches_reference(m, n, k, config):
    w = torch.randn(n, k, device="cuda") * 0.02
    x = torch.randn(m, k, device="cuda").to(torch.bfloat16)
    prepared = peer.prepare_int4_bf16(w, 128)
    y = peer.gemm_int4_bf16(x, prepared, config=config)
    assert y.dtype == torch.bfloat16 and y.shape == (m, n)
    assert rel_frobenius(y, peer.reference_int4_bf16(x, prepared)) < 1e-2
    # and it is a usable approximation of the unquantized product
    assert rel_frobenius(y, x.float() @ w.t()) < 0.2


@pytest.mark.parametrize("m, n, k", SHAPES)
@pytest.mark.parametrize("config", [None, "int4_fp8_t128x128x128_coop", "int4_fp8_t64x16x128_pp"])
@pytest.mark.parametrize("with_x_scale", [False, True])
@pytest.mark.usefixtures("seed")
@pytest.mark.gpu
@peer_gpu
def test_gemm_int4_fp8_matches_reference(m, n, k, config, with_x_scale):
    w = torch.randn(n, k, device="cuda") * 0.02
    x = torch.randn(m, k, device="cuda")
    x_scale = x.abs().amax(dim=1) / 448 if with_x_scale else None
    x_fp8 = (x / x_scale[:, None] if with_x_scale else x).to(torch.float8_e4m3fn)
    prepared = peer.prepare_int4_fp8(w, 128)
    y = peer.gemm_int4_fp8(x_fp8, prepared, x_scale, config=config)
    assert y.dtype == torch.bfloat16 and y.shape == (m, n)
    assert rel_frobenius(y, peer.reference_int4_fp8(x_fp8, prepared, x_scale)) < 1e-2
    assert rel_frobenius(y, x.float() @ w.t()) < 0.2


@pytest.mark.gpu
@peer_gpu
def test_decode_uses_the_small_token_tile_and_bad_calls_raise():
    assert peer.select_config("bf16", 1).endswith("t64x16x64_pp")
    assert peer.select_config("fp8", 4096).endswith("t128x128x128_coop")
    prepared = peer.prepare_int4_bf16(torch.randn(128, 256, device="cuda"), 128)
    with pytest.raises(ValueError, match="K = 256"):
        peer.gemm_int4_bf16(torch.zeros(4, 128, dtype=torch.bfloat16, device="cuda"), prepared)
    with pytest.raises(TypeError, match="prepare_int4_fp8"):
        peer.gemm_int4_fp8(torch.zeros(4, 256, device="cuda").to(torch.float8_e4m3fn), prepared)
    with pytest.raises(ValueError, match="config"):
        peer.gemm_int4_bf16(torch.zeros(4, 256, dtype=torch.bfloat16, device="cuda"), prepared, config="nope")
