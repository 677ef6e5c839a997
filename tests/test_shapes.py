"""Model shape presets, Hugging Face config parsing and shape support checks (CPU)."""
from __future__ import annotations

import json

import pytest

from liquidgemm.shapes import PRESETS, LayerShape, from_hf_config, is_supported, parse_shape, resolve_shapes

EXPECTED = {
    "llama3-8b": {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336)},
    "llama3-70b": {"qkv": (10240, 8192), "o": (8192, 8192), "gate_up": (57344, 8192), "down": (8192, 28672)},
    "qwen2.5-7b": {"qkv": (4608, 3584), "o": (3584, 3584), "gate_up": (37888, 3584), "down": (3584, 18944)},
    "mixtral-8x7b": {"qkv": (6144, 4096), "o": (4096, 4096), "expert_gate_up": (28672, 4096),
                     "expert_down": (4096, 14336)},
}

# The fields that matter, as published in each model's config.json on the Hugging Face hub.
HF_CONFIGS = {
    "llama3-8b": {"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
                  "intermediate_size": 14336, "vocab_size": 128256},
    "llama3-70b": {"model_type": "llama", "hidden_size": 8192, "num_attention_heads": 64, "num_key_value_heads": 8,
                   "intermediate_size": 28672},
    "qwen2.5-7b": {"model_type": "qwen2", "hidden_size": 3584, "num_attention_heads": 28, "num_key_value_heads": 4,
                   "intermediate_size": 18944},
    "mixtral-8x7b": {"model_type": "mixtral", "hidden_size": 4096, "num_attention_heads": 32,
                     "num_key_value_heads": 8, "intermediate_size": 14336, "num_local_experts": 8,
                     "num_experts_per_tok": 2},
}


def write_config(tmp_path, cfg, name="model") -> str:
    directory = tmp_path / name
    directory.mkdir()
    path = directory / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


@pytest.mark.parametrize("model", sorted(EXPECTED))
def test_presets_match_published_shapes(model):
    assert {s.name: (s.n, s.k) for s in PRESETS[model]} == EXPECTED[model]


@pytest.mark.parametrize("model", sorted(HF_CONFIGS))
def test_presets_equal_shapes_derived_from_hf_config(tmp_path, model):
    assert from_hf_config(write_config(tmp_path, HF_CONFIGS[model])) == PRESETS[model]


def test_from_hf_config_uses_explicit_head_dim(tmp_path):
    # Gemma-2-2B: head_dim 256 with 8 heads, so heads * head_dim (2048) != hidden_size (2304)
    cfg = {"hidden_size": 2304, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
           "intermediate_size": 9216}
    got = {s.name: (s.n, s.k) for s in from_hf_config(write_config(tmp_path, cfg))}
    assert got == {"qkv": ((8 + 2 * 4) * 256, 2304), "o": (2304, 8 * 256), "gate_up": (2 * 9216, 2304),
                   "down": (2304, 9216)}


def test_from_hf_config_moe_is_per_expert_and_prefers_moe_intermediate_size(tmp_path):
    # Qwen1.5-MoE-A2.7B: 60 experts of width 1408; intermediate_size (5632) is the dense/shared width
    cfg = {"hidden_size": 2048, "num_attention_heads": 16, "num_key_value_heads": 16, "intermediate_size": 5632,
           "moe_intermediate_size": 1408, "num_experts": 60}
    got = {s.name: (s.n, s.k) for s in from_hf_config(write_config(tmp_path, cfg))}
    assert got == {"qkv": (6144, 2048), "o": (2048, 2048), "expert_gate_up": (2816, 2048),
                   "expert_down": (2048, 1408)}


def test_from_hf_config_defaults_kv_heads_and_reads_directories_and_text_config(tmp_path):
    cfg = {"text_config": {"hidden_size": 1024, "num_attention_heads": 8, "intermediate_size": 4096}}
    path = write_config(tmp_path, cfg)
    shapes = from_hf_config(path.removesuffix("/config.json"))  # the directory works too
    assert [(s.name, s.n, s.k) for s in shapes] == [("qkv", 3072, 1024), ("o", 1024, 1024),
                                                    ("gate_up", 8192, 1024), ("down", 1024, 4096)]


def test_from_hf_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="'intermediate_size'"):
        from_hf_config(write_config(tmp_path, {"hidden_size": 1024, "num_attention_heads": 8}))
    with pytest.raises(ValueError, match="config_json"):
        from_hf_config(tmp_path / "missing.json")


def test_resolve_shapes_combines_presets_shapes_and_config(tmp_path):
    path = write_config(tmp_path, HF_CONFIGS["qwen2.5-7b"], name="Qwen2.5-7B")
    got = resolve_shapes(["llama3-8b,llama3-70b"], ["256,512", (128, 384), LayerShape("mine", 128, 128)], path)
    assert [s.name for s in got[:2]] == ["llama3-8b/qkv", "llama3-8b/o"]
    assert [(s.n, s.k) for s in got[4:8]] == [(10240, 8192), (8192, 8192), (57344, 8192), (8192, 28672)]
    assert [(s.name, s.n, s.k) for s in got[8:11]] == [("256x512", 256, 512), ("128x384", 128, 384),
                                                       ("mine", 128, 128)]
    assert [(s.name, s.n, s.k) for s in got[11:]] == [
        ("Qwen2.5-7B/qkv", 4608, 3584), ("Qwen2.5-7B/o", 3584, 3584), ("Qwen2.5-7B/gate_up", 37888, 3584),
        ("Qwen2.5-7B/down", 3584, 18944)]


def test_resolve_shapes_errors():
    with pytest.raises(ValueError, match="unknown preset 'llama2'.*llama3-8b"):
        resolve_shapes("llama2")
    with pytest.raises(ValueError, match="no shapes"):
        resolve_shapes()
    for bad in ("4096", "4096,abc", "0,128", "1,2,3"):
        with pytest.raises(ValueError, match="shape"):
            parse_shape(bad)
    assert parse_shape("6144x4096") == LayerShape("6144x4096", 6144, 4096)


def test_is_supported():
    assert is_supported(LayerShape("qwen o", 3584, 3584)) == (True, "")  # 3584 = 28 * 128
    assert is_supported(LayerShape("qwen down", 3584, 18944), group_size=128) == (True, "")  # 18944 = 148 * 128
    ok, reason = is_supported(LayerShape("qwen2-72b gate", 7392, 8192))
    assert not ok and "N=7392" in reason
    ok, reason = is_supported(LayerShape("gpt-oss", 2880, 2880))
    assert not ok and "2880" in reason
    ok, reason = is_supported(LayerShape("huge k", 128, 131072 + 128))
    assert not ok and "int32" in reason
    assert is_supported(LayerShape("g64", 256, 3584), group_size=64) == (True, "")
    assert is_supported(LayerShape("g256", 256, 3584), group_size=256) == (True, "")  # 3584 = 14 * 256
    ok, reason = is_supported(LayerShape("g384", 256, 4096), group_size=384)
    assert not ok and "group_size=384" in reason
    assert all(is_supported(s, 128)[0] for shapes in PRESETS.values() for s in shapes)
