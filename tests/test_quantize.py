"""Weight and activation quantizers: exact agreement with the contract's formulas and error bounds derived from them."""
import pytest
import torch

from liquidgemm.quantize import quantize_act_reference, quantize_weight
from liquidgemm.reference import dequantize, dequantize_int8


def _fp32_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Correctly rounded fp32 a / b, computed independently: float64 division then rounding to fp32 is exact
    (53 >= 2 * 24 + 2 bits, so the double rounding is innocuous)."""
    return (a.double() / b.double()).float()


def _level1_reference(w: torch.Tensor):
    wf = w.float()
    s1 = wf.abs().amax(dim=1) / 119
    s1 = torch.where(s1 > 0, s1, torch.ones_like(s1))
    w1 = torch.round(_fp32_div(wf, s1[:, None])).clamp(-119, 119)
    return w1.long(), s1


def _level2_reference(w1: torch.Tensor, g: int):
    """The integer formulas of docs/architecture.md on int64."""
    n, k = w1.shape
    v = (w1 + 128).view(n, k // g, g)
    z = v.amin(dim=2)
    s2 = torch.clamp((v.amax(dim=2) - z + 14) // 15, min=1)
    q = torch.clamp((2 * (v - z[..., None]) + s2[..., None]) // (2 * s2[..., None]), max=15)
    return q.view(n, k), s2, z


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("group_size", [64, 128, 512, None])
def test_quantizer_matches_formulas_and_bounds(seed, dtype, group_size):
    n, k = 128, 1024
    w = (torch.randn(n, k) * torch.rand(n, 1) * 4).to(dtype)
    qw = quantize_weight(w, group_size)
    g = k if group_size is None else group_size
    assert qw.group_size == g and qw.dtype == dtype

    # Exactly the contract's formulas.
    w1, s1 = _level1_reference(w)
    q_ref, s2_ref, z_ref = _level2_reference(w1, g)
    q, s2, z = qw.unpack()
    assert torch.equal(qw.s1, s1)
    assert torch.equal(q.long(), q_ref) and torch.equal(s2.long(), s2_ref) and torch.equal(z.long(), z_ref)

    # Level 1: |w - w1 s1| <= s1 / 2, up to the fp32 rounding of the quotient w / s1 (|w / s1| <= 119 + tiny, so
    # that rounding moves it by <= 2**-24 * 120 < 2**-16: a near-tie may round to the farther integer).
    w64, s1_64 = w.double(), s1.double()[:, None]
    err1 = (w64 - w1.double() * s1_64).abs()
    assert bool((err1 <= s1_64 * (0.5 + 2**-16)).all())
    # Level 2, exact integers: |w1' - w1| <= s2 / 2.
    w1_prime = dequantize_int8(qw).long()
    s2_elem = s2.long().repeat_interleave(g, dim=1)
    assert bool((2 * (w1_prime - w1).abs() <= s2_elem).all())
    # Together: |w - w1' s1| <= (1 + s2) / 2 * s1.
    err = (w64 - dequantize(qw).double()).abs()
    assert bool((err <= s1_64 * (0.5 * (1 + s2_elem.double()) + 2**-16)).all())

    rel = float(torch.linalg.norm(w64 - dequantize(qw).double()) / torch.linalg.norm(w64))
    print(f"\n{dtype} group_size={group_size}: relative Frobenius error of W4 {rel:.4f}")
    assert rel < 0.2  # Gaussian rows: ~0.06 (g=64) ... ~0.2 (per-channel)


def test_quantizer_vectorised_equals_row_by_row(seed):
    """Rows and groups are independent: quantizing slices gives the same codes as quantizing the whole."""
    w = torch.randn(256, 512)
    whole = quantize_weight(w, 128)
    top, bottom = quantize_weight(w[:128], 128), quantize_weight(w[128:], 128)
    q, s2, z = whole.unpack()
    for part, rows in ((top, slice(0, 128)), (bottom, slice(128, 256))):
        pq, ps2, pz = part.unpack()
        assert torch.equal(pq, q[rows]) and torch.equal(ps2, s2[rows]) and torch.equal(pz, z[rows])
        assert torch.equal(part.s1, whole.s1[rows])


def test_quantizer_accepts_non_contiguous(seed):
    w = torch.randn(512, 256)
    assert torch.equal(quantize_weight(w.T, 128).packed, quantize_weight(w.T.contiguous(), 128).packed)


def test_quantizer_group_size_spellings(seed):
    w = torch.randn(128, 256)
    channel = quantize_weight(w, None)
    for spelling in ("channel", 256):
        other = quantize_weight(w, spelling)
        assert other.group_size == 256 and torch.equal(other.packed, channel.packed)
        assert torch.equal(other.params, channel.params)


def test_quantizer_known_values():
    """A hand-checked row: max |w| = 119 -> s1 = 1, w1 = rne(w); one group spanning [-119, 119] -> z = 9, s2 = 16."""
    row = torch.zeros(128)
    row[:9] = torch.tensor([119.0, -119.0, 0.0, 0.5, 1.5, 10.0, -111.0, -95.0, -79.0])
    qw = quantize_weight(row.repeat(128, 1), 128)
    q, s2, z = qw.unpack()
    assert float(qw.s1[0]) == 1.0 and int(s2[0, 0]) == 16 and int(z[0, 0]) == 9
    # w1 = 119, -119, 0, 0 (0.5 ties to even), 2 (1.5 ties to even), 10, -111, -95, -79
    # d = v - z = 238, 0, 119, 119, 121, 129, 8, 24, 40;  q = (2 d + 16) // 32 rounds d / 16 half up:
    # 8 / 16 = 0.5 -> 1, 24 / 16 = 1.5 -> 2, 40 / 16 = 2.5 -> 3 (not 2: half up, not half even)
    assert q[0, :9].tolist() == [15, 0, 7, 7, 8, 8, 1, 2, 3]
    assert dequantize_int8(qw)[0, :9].tolist() == [121, -119, -7, -7, 9, 9, -103, -87, -71]


# ---- activations -----------------------------------------------------------------------------------------------
def test_act_quant_hand_examples():
    x = torch.tensor([
        [1.0, -2.0, 0.5, 127.0, 0.0],     # scale 1: 0.5 ties to even -> 0
        [2.5, 3.5, -2.5, -0.5, 127.0],    # ties to even: 2, 4, -2, -0
        [0.0, 0.0, 0.0, 0.0, 0.0],        # zero row: scale 1, all zero
        [-254.0, 254.0, 127.0, 1.0, 3.0],  # scale 2: 63.5 -> 64 (even), 0.5 -> 0, 1.5 -> 2
    ])
    x_q, scale = quantize_act_reference(x)
    assert scale.dtype == torch.float32 and x_q.dtype == torch.int8
    assert scale.tolist() == [1.0, 1.0, 1.0, 2.0]
    assert x_q.tolist() == [[1, -2, 0, 127, 0], [2, 4, -2, 0, 127], [0, 0, 0, 0, 0], [-127, 127, 64, 0, 2]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_act_quant_matches_true_division(seed, dtype):
    x = (torch.randn(64, 512) * torch.rand(64, 1) * 10).to(dtype)
    x[3] = 0
    x_q, scale = quantize_act_reference(x)
    amax = x.float().abs().amax(dim=1)
    scale_ref = torch.where(amax == 0, torch.ones_like(amax), _fp32_div(amax, torch.full_like(amax, 127)))
    assert torch.equal(scale, scale_ref)
    x_q_ref = torch.round(_fp32_div(x.float(), scale_ref[:, None])).clamp(-127, 127).to(torch.int8)
    assert torch.equal(x_q, x_q_ref)
    assert bool((x_q.abs().amax(dim=1)[amax > 0] == 127).all()), "each row's max maps to +-127"
    # Round-trip error <= scale / 2, plus the fp32 rounding of the quotient (|x / scale| <= 127 + tiny).
    err = (x.double() - x_q.double() * scale.double()[:, None]).abs()
    assert bool((err <= scale.double()[:, None] * (0.5 + 2**-16)).all())


@pytest.mark.gpu
@pytest.mark.parametrize("group_size", [64, 128, None])
def test_quantizers_on_cuda_match_cpu(seed, group_size):
    """The same torch code on the GPU gives the same bits (IEEE division and rounding on both devices)."""
    w = torch.randn(384, 1024, dtype=torch.bfloat16) * 3
    cpu, gpu = quantize_weight(w, group_size), quantize_weight(w.cuda(), group_size)
    assert gpu.device.type == "cuda"
    for name in ("packed", "params", "s1"):
        assert torch.equal(getattr(gpu, name).cpu(), getattr(cpu, name)), name
    assert torch.equal(dequantize_int8(gpu).cpu(), dequantize_int8(cpu))
    x = torch.randn(33, 1024, dtype=torch.float16) * 5
    x_q, scale = quantize_act_reference(x.cuda())
    x_q_ref, scale_ref = quantize_act_reference(x)
    assert torch.equal(x_q.cpu(), x_q_ref) and torch.equal(scale.cpu(), scale_ref)
