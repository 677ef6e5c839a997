"""The LiquidQuant format: overflow proof, chunk layout, pack/unpack, word-level dequant, state dicts."""
import io

import pytest
import torch

from liquidgemm.format import CHUNK_BYTES, QuantizedWeight, from_chunk_planes, to_chunk_planes
from liquidgemm.quantize import _level2_, quantize_weight
from liquidgemm.reference import dequantize, dequantize_int8, dequantize_int8_wordlevel

GROUPS = (64, 128, 256, "channel")


def _all_level1_ranges():
    """Every (min, max) of level-1 weights in a group, -119 <= min <= max <= 119 (int32)."""
    lo, hi = torch.meshgrid(torch.arange(-119, 120, dtype=torch.int32), torch.arange(-119, 120, dtype=torch.int32),
                            indexing="ij")
    keep = lo <= hi
    return lo[keep], hi[keep]


def test_overflow_proof_exhaustive():
    """For every group range and every value in it, the contract's integer formulas give q <= 15, u <= 255,
    and |u - v| <= s2 / 2."""
    lo, hi = _all_level1_ranges()
    z, v_max = (lo + 128)[:, None], (hi + 128)[:, None]
    s2 = torch.clamp((v_max - z + 14) // 15, min=1)  # ceil((max - z) / 15) in integers
    d = torch.arange(0, 239, dtype=torch.int32)[None, :]
    inside = d <= v_max - z  # d = v - z for every v of the group's range
    q = (2 * d + s2) // (2 * s2)  # before the contract's min(15, .)
    u = q * s2 + z
    assert len(lo) == 239 * 240 // 2
    assert int(s2.max()) == 16 and int(s2.min()) == 1
    assert bool((q <= 15)[inside].all()), "the min(15, .) clamp is never needed"
    assert int(u[inside].max()) == 255, "the bound u <= 255 is tight"
    assert bool((u <= 255)[inside].all())
    assert bool((2 * (u - z - d).abs() <= s2)[inside].all())


def test_quantizer_level2_matches_formula_for_every_range():
    """The (fp32, vectorised) quantizer emits exactly the integer formula's codes for every group range."""
    lo, hi = _all_level1_ranges()
    g = 256
    fill = lo[:, None] + torch.arange(g - 2)[None, :] % (hi - lo + 1)[:, None]  # every value of [lo, hi]
    w1 = torch.cat((lo[:, None], hi[:, None], fill), dim=1)
    v = w1 + 128
    q, s2, z = _level2_(w1.float(), g)

    z_ref = lo + 128
    s2_ref = torch.clamp((hi - lo + 14) // 15, min=1)
    q_ref = (2 * (v - z_ref[:, None]) + s2_ref[:, None]) // (2 * s2_ref[:, None])
    assert torch.equal(z.view(-1).int(), z_ref)
    assert torch.equal(s2.view(-1).int(), s2_ref)
    assert torch.equal(q.int(), q_ref)
    assert int((q.int() * s2.int() + z.int()).max()) <= 255


def _chunk_reference(q: torch.Tensor) -> torch.Tensor:
    """docs/architecture.md "Chunk layout", element by element (slow, independent of format.py)."""
    n, k = q.shape
    out = torch.zeros(n // 64, k // 128, 4096, dtype=torch.uint8)
    for s in range(n // 64):
        for kb in range(k // 128):
            block = q[64 * s:64 * s + 64, 128 * kb:128 * kb + 128].tolist()
            chunk = [0] * 4096
            for h in range(2):
                for t in range(128):
                    t0, t1, t2 = t % 4, (t // 4) % 8, t // 32
                    r0 = 16 * t2 + t1
                    r1 = r0 + 8
                    for j in range(4):
                        kstep, which = 2 * h + j // 2, j % 2
                        for b in range(4):
                            kk = 32 * kstep + 16 * which + 4 * t0 + b
                            chunk[h * 2048 + t * 16 + j * 4 + b] = block[r0][kk] | (block[r1][kk] << 4)
            out[s, kb] = torch.tensor(chunk, dtype=torch.uint8)
    return out


def test_chunk_layout_matches_formula(seed):
    n, k = 128, 256
    q = torch.randint(0, 16, (n, k), dtype=torch.uint8)
    s2 = torch.ones(n, k // 128, dtype=torch.uint8)
    qw = QuantizedWeight.pack(q, s2, s2 * 9, torch.ones(n), 128)
    assert torch.equal(qw.packed, _chunk_reference(q))


def test_chunk_layout_a_fragment_view(seed):
    """Thread t's word j of half h holds rows (r0, r0+8) x 4 consecutive k, as CuTe's ALayout_64x32 assigns them."""
    q = torch.randint(0, 16, (64, 128), dtype=torch.uint8)
    planes = to_chunk_planes(q)[0, 0]  # [2, 4096]
    for t in (0, 1, 5, 31, 32, 77, 127):
        t0, t1, t2 = t % 4, (t // 4) % 8, t // 32
        m = t1 + 16 * t2  # ALayout_64x32: thread t holds rows m, m + 8 and k = 4 t0 + {0..3} (+16) per k-step
        for h in range(2):
            for j in range(4):
                kk = 32 * (2 * h + j // 2) + 16 * (j % 2) + 4 * t0
                offset = h * 2048 + t * 16 + j * 4
                assert torch.equal(planes[0, offset:offset + 4], q[m, kk:kk + 4])
                assert torch.equal(planes[1, offset:offset + 4], q[m + 8, kk:kk + 4])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.float32, torch.int64])
def test_chunk_planes_round_trip(seed, dtype):
    x = torch.randint(-100, 100, (192, 384)).to(dtype)
    planes = to_chunk_planes(x)
    assert planes.shape == (3, 3, 2, CHUNK_BYTES)
    assert torch.equal(from_chunk_planes(planes), x)


@pytest.mark.parametrize("shape", [(128, 128), (256, 512), (384, 1024)])
def test_pack_unpack_round_trip(seed, shape):
    n, k = shape
    g = 64
    q = torch.randint(0, 16, (n, k), dtype=torch.uint8)
    s2 = torch.randint(1, 17, (n, k // g), dtype=torch.uint8)
    z = (255 - 15 * s2.int() - torch.randint(0, 20, (n, k // g))).clamp(min=9).to(torch.uint8)
    s1 = torch.rand(n) + 0.1
    qw = QuantizedWeight.pack(q, s2, z, s1, g, torch.float16)
    q2, s2_2, z2 = qw.unpack()
    assert torch.equal(q2, q) and torch.equal(s2_2, s2) and torch.equal(z2, z)
    assert torch.equal(qw.s1, s1) and qw.dtype == torch.float16
    # params layout: [N//64, G, 64, 2], row inside the 64-row slice on dim 2
    last_slice, last_group = n // 64 - 1, k // g - 1
    assert torch.equal(qw.params[last_slice, last_group, :, 0], s2[-64:, last_group])
    assert torch.equal(qw.params[last_slice, last_group, :, 1], z[-64:, last_group])


def _extreme_weights():
    g = torch.Generator().manual_seed(1)
    signs = torch.randint(0, 2, (256, 512), generator=g).float() * 2 - 1
    constant = torch.full((128, 256), 0.37)
    zero_rows = torch.randn(128, 256, generator=g)
    zero_rows[::3] = 0
    outliers = torch.randn(128, 512, generator=g) * 1e-3
    outliers[:, 7] = 100.0
    ramp = torch.linspace(-1, 1, 128 * 384).view(128, 384)
    return {"pm119": signs * 119, "constant": constant, "zero_rows": zero_rows, "outliers": outliers,
            "ramp": ramp, "all_zero": torch.zeros(128, 128), "tiny": torch.randn(128, 128, generator=g) * 1e-30}


@pytest.mark.parametrize("shape", [(128, 256), (256, 768), (384, 1024)])
@pytest.mark.parametrize("group_size", GROUPS)
def test_wordlevel_dequant_equals_per_byte(seed, shape, group_size):
    n, k = shape
    if group_size != "channel" and k % group_size:
        pytest.skip("group does not divide K")
    w = torch.randn(n, k) * torch.rand(n, 1) * 3  # per-row scales vary
    qw = quantize_weight(w, group_size)
    assert torch.equal(dequantize_int8_wordlevel(qw), dequantize_int8(qw))


@pytest.mark.parametrize("name", list(_extreme_weights()))
@pytest.mark.parametrize("group_size", (64, 128, None))
def test_wordlevel_dequant_equals_per_byte_extremes(name, group_size):
    w = _extreme_weights()[name]
    qw = quantize_weight(w, group_size)
    w1 = dequantize_int8(qw)
    assert torch.equal(dequantize_int8_wordlevel(qw), w1)
    if name == "all_zero":
        assert torch.equal(qw.s1, torch.ones(128)) and not w1.any()
    if name == "constant":  # every w1 = 119: one level, s2 = 1, q = 0, z = 247
        assert bool((w1 == 119).all())
    if name == "pm119":  # level 1 is exact; 119 -> q = 15, s2 = 16, z = 9 -> u = 249 -> 121
        assert torch.equal(qw.s1, torch.ones(256))
        assert set(w1.unique().tolist()) == {-119, 121}


def test_wordlevel_catches_carry():
    """A (hand-made, invalid) weight whose u exceeds 255 would carry into the next byte lane: the emulation sees it."""
    qw = quantize_weight(torch.randn(128, 128), 128)
    params = qw.params.clone()
    params[..., 0] = 16
    params[..., 1] = 247  # q * 16 + 247 > 255 for any q >= 1
    bad = QuantizedWeight(qw.packed, params, qw.s1, 128, 128, 128)  # the constructor checks shapes only
    assert not torch.equal(dequantize_int8_wordlevel(bad), dequantize_int8(bad))


def test_pack_rejects_overflow():
    q = torch.full((128, 128), 15, dtype=torch.uint8)
    s2 = torch.full((128, 1), 16, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"q\*s2 \+ z must stay <= 255"):
        QuantizedWeight.pack(q, s2, torch.full((128, 1), 16, dtype=torch.uint8), torch.ones(128), 128)
    with pytest.raises(ValueError, match="4-bit codes must be <= 15"):
        QuantizedWeight.pack(q + 1, s2, s2, torch.ones(128), 128)


def test_properties_and_repr(seed):
    w = torch.randn(256, 512, dtype=torch.bfloat16)
    qw = quantize_weight(w, 128)
    assert qw.shape == (256, 512) and qw.num_groups == 4 and not qw.per_channel
    assert qw.nbytes == 256 * 512 // 2 + 256 * 4 * 2 + 256 * 4
    assert qw.dtype == torch.bfloat16 and qw.device == torch.device("cpu")
    text = repr(qw)
    assert "out_features=256" in text and "in_features=512" in text and "group_size=128" in text
    assert f"nbytes={qw.nbytes:,}" in text and f"{2 * 256 * 512 / qw.nbytes:.2f}x smaller than bf16" in text
    qc = quantize_weight(w, None)
    assert qc.per_channel and qc.group_size == 512 and qc.num_groups == 1 and "group_size=channel" in repr(qc)
    moved = qw.to("meta")
    assert moved.device.type == "meta" and moved.packed.shape == qw.packed.shape and moved.group_size == 128


def _assert_same(a: QuantizedWeight, b: QuantizedWeight):
    assert (a.shape, a.group_size, a.dtype) == (b.shape, b.group_size, b.dtype)
    assert torch.equal(a.packed, b.packed) and torch.equal(a.params, b.params) and torch.equal(a.s1, b.s1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_state_dict_round_trip(seed, dtype):
    qw = quantize_weight(torch.randn(128, 256).to(dtype), 64)
    tensors = qw.to_tensors()
    assert set(tensors) == {"packed", "params", "s1", "meta", "dtype"}
    assert tensors["meta"].tolist() == [1, 128, 256, 64]
    _assert_same(QuantizedWeight.from_tensors(tensors), qw)

    buffer = io.BytesIO()
    torch.save(qw.to_tensors(prefix="layer.weight."), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)
    _assert_same(QuantizedWeight.from_tensors(loaded, prefix="layer.weight."), qw)


def test_safetensors_round_trip(seed, tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    qw = quantize_weight(torch.randn(256, 256, dtype=torch.bfloat16), None)
    path = tmp_path / "w.safetensors"
    safetensors.save_file(qw.to_tensors(prefix="w."), str(path))
    _assert_same(QuantizedWeight.from_tensors(safetensors.load_file(str(path)), prefix="w."), qw)


def test_from_tensors_errors():
    tensors = quantize_weight(torch.randn(128, 128), 128).to_tensors()
    with pytest.raises(ValueError, match=r"missing keys \['s1'\]"):
        QuantizedWeight.from_tensors({key: t for key, t in tensors.items() if key != "s1"})
    with pytest.raises(ValueError, match="format version 7 is not supported"):
        QuantizedWeight.from_tensors({**tensors, "meta": torch.tensor([7, 128, 128, 128])})
    with pytest.raises(ValueError, match="expected shape"):
        QuantizedWeight.from_tensors({**tensors, "meta": torch.tensor([1, 256, 128, 128])})


def test_dequantize_is_w1_times_s1(seed):
    qw = quantize_weight(torch.randn(128, 256), 128)
    assert torch.equal(dequantize(qw), dequantize_int8(qw).float() * qw.s1[:, None])
