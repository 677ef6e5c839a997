"""liquidgemm.nn / liquidgemm.smooth on CPU: W4A8Linear == reference, state dicts, quantize_model, smoothing folds."""
import pytest
import torch
from torch import nn

from liquidgemm.nn import W4A8Linear, quantize_model
from liquidgemm.quantize import quantize_act_reference, quantize_weight
from liquidgemm.reference import w4a8_gemm_reference
from liquidgemm.smooth import find_norm_groups, fold_into_norm, smoothing_scales


def make_linear(k=384, n=256, bias=True, dtype=torch.bfloat16, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(k, n, bias=bias).to(dtype)


def reference_linear(x, w, bias, group_size=128, smooth=None):
    if smooth is not None:
        x = (x / smooth).to(x.dtype)
        w = w.float() * smooth
    qw = quantize_weight(w, group_size)
    x_q, x_scale = quantize_act_reference(x.reshape(-1, x.shape[-1]))
    y = w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=x.dtype, bias=None if bias is None else bias.float())
    return y.view(*x.shape[:-1], -1)


@pytest.mark.parametrize("group_size", [64, 128, None])
def test_forward_equals_reference(group_size):
    linear = make_linear()
    module = W4A8Linear.from_linear(linear, group_size=group_size)
    x = torch.randn(2, 3, 384).to(torch.bfloat16)
    y = module(x)
    assert y.shape == (2, 3, 256) and y.dtype == torch.bfloat16
    assert torch.equal(y, reference_linear(x, linear.weight, linear.bias, group_size))


def test_forced_config_is_checked(monkeypatch):
    """A config forced on the module is checked like w4a8_linear's: right dtype, and what a fused config takes."""
    from liquidgemm import dispatch
    from liquidgemm._configs import CONFIGS

    monkeypatch.setattr(dispatch._native, "is_available", lambda: False)  # every defined config counts as compiled
    dispatch.clear_caches()
    linear = make_linear()
    module = W4A8Linear.from_linear(linear)
    x = torch.randn(9, 384).to(torch.bfloat16)
    module.config = next(c.id for c in CONFIGS if c.out == "f16" and not c.fused_quant)
    with pytest.raises(ValueError, match="not a compiled config for out_dtype bf16"):
        module(x)
    module.config = next(c.id for c in CONFIGS if c.out == "bf16" and c.fused_quant and c.tile_n == 8)
    with pytest.raises(ValueError, match="at most tile_n = 8 tokens"):
        module(x)
    assert torch.equal(module(x[:8]), reference_linear(x[:8], linear.weight, linear.bias))
    dispatch.clear_caches()


def test_forward_fp32_model_computes_in_bf16():
    linear = make_linear(dtype=torch.float32)
    module = W4A8Linear.from_linear(linear)
    assert module.compute_dtype == torch.bfloat16
    x = torch.randn(4, 384)
    y = module(x)
    assert y.dtype == torch.float32
    assert torch.equal(y, reference_linear(x.bfloat16(), linear.weight, linear.bias).float())


def test_forward_with_smooth_divisor():
    linear = make_linear(bias=False)
    s = torch.rand(384) * 4 + 0.25
    module = W4A8Linear.from_linear(linear, smooth=s)
    x = torch.randn(5, 384).to(torch.bfloat16)
    assert torch.equal(module(x), reference_linear(x, linear.weight, None, smooth=s))
    assert torch.equal(module.smooth, s)
    with pytest.raises(ValueError, match="smooth: expected a tensor of shape \\(384,\\)"):
        W4A8Linear.from_linear(linear, smooth=s[:128])


def test_non_contiguous_input():
    module = W4A8Linear.from_linear(make_linear())
    x = torch.randn(384, 6).to(torch.bfloat16).t()
    assert torch.equal(module(x), module(x.contiguous()))


def test_state_dict_round_trip_exact(tmp_path):
    from safetensors.torch import load_file, save_file

    linear = make_linear()
    module = W4A8Linear.from_linear(linear, group_size=64, smooth=torch.rand(384) + 0.5)
    state = module.state_dict()
    assert set(state) == {"packed", "params", "s1", "bias", "smooth"}
    path = tmp_path / "layer.safetensors"
    save_file(state, str(path))
    x = torch.randn(7, 384).to(torch.bfloat16)
    for loaded_state in (state, load_file(str(path))):
        # A fresh module without bias/smooth buffers picks them up from the checkpoint.
        fresh = W4A8Linear(384, 256, bias=False, group_size=64)
        fresh.load_state_dict(loaded_state)
        for name, t in state.items():
            assert torch.equal(fresh.state_dict()[name], t), name
        assert torch.equal(fresh(x), module(x))


def test_state_dict_group_size_mismatch_is_an_error():
    module = W4A8Linear.from_linear(make_linear(), group_size=64)
    with pytest.raises(RuntimeError, match="params"):
        W4A8Linear(384, 256, group_size=128).load_state_dict(module.state_dict())


def test_extra_repr_and_bytes():
    module = W4A8Linear.from_linear(make_linear(k=512, n=256))
    # packed N*K/2, params N*(K/128)*2, s1 4N, bias 4N
    expected = 256 * 512 // 2 + 256 * 4 * 2 + 4 * 256 + 4 * 256
    assert module.nbytes == expected
    text = repr(module)
    assert "in_features=512, out_features=256, group_size=128" in text
    assert f"bytes={expected:,}" in text and f"saves {2 * 256 * 513 - expected:,} vs bf16" in text


def test_constructor_validation():
    with pytest.raises(ValueError, match="multiple of 128"):
        W4A8Linear(384, 100)
    with pytest.raises(ValueError, match="group_size"):
        W4A8Linear(384, 256, group_size=256)
    with pytest.raises(TypeError, match="compute_dtype"):
        W4A8Linear(384, 256, compute_dtype=torch.float32)
    with pytest.raises(TypeError, match="linear: expected a torch.nn.Linear"):
        W4A8Linear.from_linear(nn.Conv1d(3, 3, 1))


# ---- quantize_model ---------------------------------------------------------------------------------------------------
class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(256, 384)
        self.odd = nn.Linear(384, 100)
        self.down = nn.Linear(100, 128, bias=False)
        self.lm_head = nn.Linear(128, 256, bias=False)

    def forward(self, x):
        return self.lm_head(self.down(torch.relu(self.odd(torch.relu(self.up(x))))))


def test_quantize_model_tiny():
    torch.manual_seed(0)
    model = TinyModel().to(torch.bfloat16)
    x = torch.randn(3, 256).to(torch.bfloat16)
    expected_up = reference_linear(x, model.up.weight, model.up.bias)
    summary = quantize_model(model, progress=False)
    assert summary.converted == ["up"]
    assert set(summary.skipped) == {"odd", "down", "lm_head"}
    assert "out_features 100 is not a multiple of 128" in summary.skipped["odd"]
    assert "in_features 100 is not a multiple of 128" in summary.skipped["down"]
    assert "skip pattern 'lm_head'" in summary.skipped["lm_head"]
    assert isinstance(model.up, W4A8Linear) and isinstance(model.lm_head, nn.Linear)
    # bf16 weight + bias of `up` -> packed + params + s1 + fp32 bias
    before = 384 * 256 * 2 + 384 * 2
    after = 384 * 256 // 2 + 384 * 2 * 2 + 384 * 4 + 384 * 4
    assert summary.bytes_before - summary.bytes_after == before - after
    assert torch.equal(model.up(x), expected_up)
    text = str(summary)
    assert "1 of 4 linear layers" in text and "odd: out_features 100" in text


def test_quantize_model_skip_patterns():
    model = TinyModel()
    summary = quantize_model(model, skip=("u*",), progress=False)
    assert summary.converted == ["lm_head"] and "skip pattern 'u*'" in summary.skipped["up"]


# ---- smoothing ----------------------------------------------------------------------------------------------------------
class Block(nn.Module):
    """A pre-norm Llama-style block with the attribute names that smoothing recognises."""

    def __init__(self, d=256, ffn=512, norm=nn.RMSNorm):
        super().__init__()
        self.input_layernorm = norm(d)
        self.self_attn = nn.Module()
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            setattr(self.self_attn, name, nn.Linear(d, d, bias=False))
        self.post_attention_layernorm = norm(d)
        self.mlp = nn.Module()
        self.mlp.gate_proj, self.mlp.up_proj = nn.Linear(d, ffn, bias=False), nn.Linear(d, ffn, bias=False)
        self.mlp.down_proj = nn.Linear(ffn, d, bias=False)

    def forward(self, x):
        h = self.input_layernorm(x)
        a = self.self_attn
        x = x + a.o_proj(torch.tanh(a.q_proj(h)) * a.k_proj(h) + a.v_proj(h))
        h = self.post_attention_layernorm(x)
        return x + self.mlp.down_proj(nn.functional.silu(self.mlp.gate_proj(h)) * self.mlp.up_proj(h))


class Stack(nn.Module):
    def __init__(self, norm=nn.RMSNorm):
        super().__init__()
        self.layers = nn.ModuleList([Block(norm=norm) for _ in range(2)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def randomise_norms(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.RMSNorm, nn.LayerNorm)):
                m.weight.uniform_(0.5, 1.5)
                if getattr(m, "bias", None) is not None:
                    m.bias.uniform_(-0.1, 0.1)


@pytest.mark.parametrize("norm", [nn.RMSNorm, nn.LayerNorm])
def test_fold_keeps_fp32_function(norm):
    torch.manual_seed(0)
    model = Stack(norm)
    randomise_norms(model)
    x = torch.randn(4, 9, 256) * torch.linspace(0.1, 8, 256)  # outlier channels
    before = model(x)
    groups = find_norm_groups(model)
    assert [g.norm_name for g in groups] == [f"layers.{i}.{n}" for i in range(2)
                                             for n in ("input_layernorm", "post_attention_layernorm")]
    assert groups[0].linear_names == ("layers.0.self_attn.q_proj", "layers.0.self_attn.k_proj",
                                      "layers.0.self_attn.v_proj")
    for g in groups:
        layers = [model.get_submodule(n) for n in g.linear_names]
        s = smoothing_scales(torch.rand(256) * 10, [m.weight for m in layers], alpha=0.5)
        assert fold_into_norm(g.norm, layers, s)
    after = model(x)
    assert torch.allclose(after, before, rtol=1e-5, atol=1e-5 * before.abs().max().item())


def test_fold_refuses_non_affine_norm():
    class OnePlusRMSNorm(nn.RMSNorm):  # Gemma: x * (1 + w)
        def forward(self, x):
            return nn.functional.rms_norm(x, self.normalized_shape, eps=self.eps) * (1 + self.weight)

    norm, linear = OnePlusRMSNorm(256), nn.Linear(256, 256)
    w_before, n_before = linear.weight.detach().clone(), norm.weight.detach().clone()
    assert not fold_into_norm(norm, [linear], torch.rand(256) + 0.5)
    assert torch.equal(linear.weight, w_before) and torch.equal(norm.weight, n_before)


def test_smoothing_scales_formula():
    x = torch.tensor([4.0, 0.0, 9.0] + [1.0] * 125)
    w = torch.ones(8, 128)
    w[0, 2] = -4.0
    s = smoothing_scales(x, [w, 2 * torch.ones(8, 128)], alpha=0.5)
    assert torch.allclose(s[:3], torch.tensor([2.0 / 2 ** 0.5, 1e-5 ** 0.5 / 2 ** 0.5, 3.0 / 2.0]))
    with pytest.raises(ValueError, match="smooth_alpha"):
        smoothing_scales(x, [w], alpha=1.5)


def test_quantize_model_with_calibration_folds_and_stays_close():
    torch.manual_seed(0)
    model = Stack()
    randomise_norms(model)
    calibration = [torch.randn(2, 16, 256) * torch.linspace(0.1, 8, 256) for _ in range(3)]
    x = torch.randn(2, 16, 256) * torch.linspace(0.1, 8, 256)
    with torch.no_grad():
        ref = model(x)
    summary = quantize_model(model, calibration=calibration, progress=False, fuse=False)
    assert summary.folded_norms == [f"layers.{i}.{n}" for i in range(2)
                                    for n in ("input_layernorm", "post_attention_layernorm")]
    assert sorted(summary.smoothed_in_layer) == [f"layers.{i}.{n}" for i in range(2)
                                                 for n in ("mlp.down_proj", "self_attn.o_proj")]
    assert len(summary.converted) == 14 and "folded into 4 norms" in str(summary)
    assert model.layers[0].self_attn.q_proj.smooth is None and model.layers[0].mlp.down_proj.smooth is not None
    with torch.no_grad():
        y = model(x)
    cos = nn.functional.cosine_similarity(y.flatten(), ref.flatten(), dim=0)
    assert cos > 0.99  # W4 g128 of random Gaussian weights: ~10% per-layer error, mostly averaged by the residual


def test_quantize_model_calibration_must_reach_layers():
    model = Stack()
    with pytest.raises(ValueError, match="never ran on the calibration inputs"):
        quantize_model(model, calibration=[], progress=False)
