"""bench/e2e_llama.py on the CPU with a tiny Llama: repeated timed steps keep the static cache at a fixed position
(transformers >= 5 static caches advance their own write counter), and a bf16 eager smoke run writes real numbers."""
from __future__ import annotations

import importlib.util
import json
import math
import pathlib

import pytest
import torch

pytest.importorskip("transformers")

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "bench" / "e2e_llama.py"
_spec = importlib.util.spec_from_file_location("e2e_llama", SCRIPT)
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)

STEPS = 20  # more than the cache's 16 tokens of headroom: an advancing cache would index out of bounds


@pytest.fixture(scope="module")
def tiny_model():
    return e2e.build_model(e2e.TINY["num_hidden_layers"], "cpu", e2e.TINY).float()  # fp32: tight comparisons


@torch.no_grad()
def test_repeated_decode_steps_stay_at_the_context_position(tiny_model):
    batch, context = 2, 24
    torch.manual_seed(0)
    prompt = torch.randint(0, e2e.TINY["vocab_size"], (batch, context))
    token = torch.randint(0, e2e.TINY["vocab_size"], (batch, 1))
    cache = e2e.static_cache(tiny_model, context + 16)
    e2e.forward(tiny_model, prompt, cache, 0)
    steps = [e2e.forward(tiny_model, token, cache, context) for _ in range(STEPS)]
    reference = tiny_model(input_ids=torch.cat([prompt, token], dim=1), use_cache=False).logits[:, -1:]
    for logits in steps:
        torch.testing.assert_close(logits, steps[0], rtol=0, atol=0)
    torch.testing.assert_close(steps[0], reference, rtol=1e-4, atol=1e-4)
    assert [int(layer.cumulative_length) for layer in cache.layers] == [context + 1] * e2e.TINY["num_hidden_layers"]


@torch.no_grad()
def test_repeated_prefills_reuse_a_cache_of_exactly_the_prompt_length(tiny_model):
    tokens = 32
    torch.manual_seed(1)
    ids = torch.randint(0, e2e.TINY["vocab_size"], (1, tokens))
    cache = e2e.static_cache(tiny_model, tokens)
    first, second = (e2e.forward(tiny_model, ids, cache, 0) for _ in range(2))
    reference = tiny_model(input_ids=ids, use_cache=False).logits[:, -1:]
    torch.testing.assert_close(first, reference, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(second, first, rtol=0, atol=0)


def test_tiny_cpu_bf16_eager_run_writes_positive_finite_throughput(tmp_path):
    e2e.main(["--device", "cpu", "--tiny", "--modes", "bf16_eager", "--batches", "1,2", "--context", "16",
              "--prefill", "32", "--iters", str(STEPS), "--warmup", "2", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "e2e_llama.json").read_text())
    entries = {(e["metric"], e["batch"]): e for e in data["entries"]}
    assert sorted(entries) == [("decode", 1), ("decode", 2), ("prefill", 1)]
    for (metric, batch), entry in entries.items():
        assert "error" not in entry, entry
        assert entry["mode"] == "bf16_eager" and entry["layers"] == e2e.TINY["num_hidden_layers"]
        assert "extrapolated" not in entry
        assert entry["tokens"] == (1 if metric == "decode" else 32)
        assert math.isfinite(entry["tokens_per_s"]) and entry["tokens_per_s"] > 0
        assert entry["tokens_per_s"] == pytest.approx(batch * entry["tokens"] / entry["seconds"])
    assert data["runs"][-1]["argv"][:2] == ["--device", "cpu"]
    assert (tmp_path / "e2e_llama.png").stat().st_size > 0
