"""Config dispatch: total, compiled-only, monotone, tuned cache honoured, fallback chain (CPU only)."""
from __future__ import annotations

import json
from pathlib import Path
import math

import pytest
import torch

from liquidgemm import _native, dispatch, ops, tune
from liquidgemm._configs import CONFIGS, TileConfig, fused_max_k
from liquidgemm.quantize import quantize_weight
from liquidgemm.shapes import PRESETS

ALL_IDS = [c.id for c in CONFIGS]
ROOT = Path(__file__).resolve().parents[1]
PRESET_NKS = sorted({(s.n, s.k) for shapes in PRESETS.values() for s in shapes})
TILE_NS = (8, 16, 32, 64, 128, 256)


def tile(config_id: str) -> TileConfig:
    return TileConfig.parse(config_id)


def ids(out="bf16", **fields) -> list[str]:
    """Ids of CONFIGS writing `out` whose fields match (values may be tuples of allowed values)."""
    def match(c):
        return all(getattr(c, f) in (v if isinstance(v, tuple) else (v,)) for f, v in fields.items())
    return [c.id for c in CONFIGS if c.out == out and match(c)]


@pytest.fixture
def build(monkeypatch, tmp_path):
    """`build(ids)` pretends the extension is loaded with exactly these configs compiled; no tuning cache."""
    monkeypatch.setenv(tune.ENV_CACHE, str(tmp_path / "no-cache.json"))

    def compile_(config_ids):
        monkeypatch.setattr(_native, "is_available", lambda: True)
        monkeypatch.setattr(_native, "configs", lambda: list(config_ids))
        dispatch.clear_caches()

    dispatch.clear_caches()
    yield compile_
    dispatch.clear_caches()


def test_list_configs_without_extension_is_the_full_list(monkeypatch, build):
    monkeypatch.setattr(_native, "is_available", lambda: False)
    dispatch.clear_caches()
    assert dispatch.list_configs() == ALL_IDS
    assert dispatch.list_configs("f16") == [i for i in ALL_IDS if tile(i).out == "f16"]
    assert dispatch.list_configs(torch.int32) == [i for i in ALL_IDS if tile(i).out == "s32"]


def test_list_configs_reports_the_build(build):
    build(ids(tile_n=64) + ids("s32"))
    assert dispatch.list_configs() == ids(tile_n=64) + ids("s32")
    assert dispatch.list_configs(torch.bfloat16) == ids(tile_n=64)
    assert dispatch.list_configs("f16") == []


@pytest.mark.parametrize("out", ["bf16", "f16"])
def test_select_config_is_total_and_compiled(build, out):
    build(ALL_IDS)
    compiled = set(dispatch.list_configs(out))
    for n, k in PRESET_NKS:
        for m in range(1, 16385):
            assert dispatch.select_config(m, n, k, 128, out) in compiled


# Points where the table follows a committed decoder-layer A/B against the GEMM timed alone: 8B gate_up at M = 8 runs
# 5% faster alone under K pairs (tune_decode_s19*.json, tune_decode_s20.json), but K pairs in that cell (M <= 8) made the
# 8B layer 0.9-2.9 us slower (llama3-8b-layer-s19-ab-*.json; session 20's A/B in bench/NOTES.md), so the cell keeps the
# balanced split.
LAYER_DECIDED = {(28672, 4096, 8): "w4a8_sm90_bf16_t128x8x128_c1x1_s17_coop_balanced_room_early"}


def test_committed_heuristic_is_within_5_percent_of_the_measured_best(build):
    """The committed table is derived from H100 tuning runs (bench/results/h100/tune.json, all M; then re-tuned:
    tune_decode.json, M <= 64; tune_prefill.json, M >= 128; tune_decode_kpairs.json, Llama-3-70B o and down at M <= 64
    with the K-pairs config; tune_decode_o.json, 70B o at M <= 16; tune_decode_balanced.json, M <= 64 with the
    balanced-split configs; tune_decode_room.json, M <= 64 with the `_room` configs; tune_decode_evict.json and
    tune_prefill_evict.json, M <= 64 and M = 128 / 256 with evict-first weight streaming; tune_decode_entry.json and
    tune_prefill_entry.json, the same with the weight prefetch at kernel entry; tune_decode_final.json and
    tune_prefill_final.json with its depth rule, and tune_recheck_final.json, which re-measured the two points of
    tune_decode_final.json that were single-run outliers (8B gate_up M = 4, 8B down M = 32); tune_decode_s13.json, M <=
    64 with the `_room_early` twin, measured again by tune_decode_s13b.json and, on 8B gate_up, tune_recheck_s13*.json;
    tune_decode_s16.json, M <= 16 with the t8 / t16 `_room_early` twins loading early_stage_count() stages, measured
    again by tune_decode_s16b.json; tune_decode_s16c.json, the table's M <= 16 configs after K pairs' short streams
    began loading early too; tune_decode_s18_o.json, 70B o at M <= 16 after K pairs began scaling in the mainloop;
    tune_decode_s19.json and tune_decode_s19b.json, M <= 16 with that change; tune_decode_s20.json, M <= 16 after K
    pairs split its loads over two producer warps):
    at every measured (shape, M) point its choice must be within 5% of the fastest compiled config (LAYER_DECIDED:
    where a decoder-layer A/B decided instead). A later code version's points replace earlier ones; runs of one version
    count each config's fastest measurement, since about one tuning measurement in a hundred is slowed as a whole by
    something outside the kernels (bench/NOTES.md). (The measurements are not monotone in tile_n: small weights prefer
    smaller token tiles, i.e. more CTAs, up to M = 256.)"""
    results = ROOT / "bench" / "results" / "h100"
    points: dict[tuple[int, int, int], dict[str, float]] = {}
    # one tuple per code version, oldest first
    versions = (("tune.json",), ("tune_decode.json",), ("tune_prefill.json",), ("tune_decode_kpairs.json",),
                ("tune_decode_o.json",), ("tune_decode_balanced.json",), ("tune_decode_room.json",),
                ("tune_decode_evict.json",), ("tune_prefill_evict.json",),
                ("tune_decode_entry.json",), ("tune_prefill_entry.json",),
                ("tune_decode_final.json", "tune_recheck_final.json"), ("tune_prefill_final.json",),
                ("tune_decode_s13.json", "tune_decode_s13b.json", "tune_recheck_s13.json", "tune_recheck_s13_2.json"),
                ("tune_decode_s16.json", "tune_decode_s16b.json"), ("tune_decode_s16c.json",),
                ("tune_decode_s18_o.json",), ("tune_decode_s19.json", "tune_decode_s19b.json"),
                ("tune_decode_s20.json",))
    for runs in versions:
        version_points: dict[tuple[int, int, int], dict[str, float]] = {}
        for run in runs:
            for row in json.loads((results / run).read_text())["measurements"]:
                if not row["error"]:
                    times = version_points.setdefault((row["n"], row["k"], row["m"]), {})
                    times[row["config"]] = min(row["us"], times.get(row["config"], row["us"]))
        points.update(version_points)
    build(sorted({config for times in points.values() for config in times}))
    assert len(points) >= 48
    for (n, k, m), times in points.items():
        chosen = dispatch.heuristic_config(m, n, k, 128, "bf16")
        if (n, k, m) in LAYER_DECIDED:
            assert chosen == LAYER_DECIDED[(n, k, m)] and times[chosen] <= 1.06 * min(times.values()), (n, k, m, chosen)
            continue
        assert times[chosen] <= 1.05 * min(times.values()), (n, k, m, chosen)


def test_small_m_tiles_hold_few_tokens(build):
    """Decode never pays for a token tile far larger than the batch: for M <= 64 the tile is at most 64 wide."""
    build(ALL_IDS)
    for n, k in PRESET_NKS:
        for m in range(1, 65):
            assert tile(dispatch.select_config(m, n, k, 128, "bf16")).tile_n <= 64


def test_fallback_chain(build):
    # 1. same tile, other scheduler
    decode_tile = tile(dispatch.heuristic_table().lookup(1, 4096, 4096)).tile_n
    build(ids(scheduler="persist"))
    assert dispatch.select_config(1, 4096, 4096, 128, "bf16") == ids(tile_n=decode_tile, scheduler="persist")[0]
    # 2. nearest tile_n (in log2 distance): twice the table's tile, not eight times
    build(ids(tile_n=(2 * decode_tile, 8 * decode_tile)))
    assert tile(dispatch.select_config(1, 4096, 4096, 128, "bf16")).tile_n == 2 * decode_tile
    # ... the larger on a tie (it still covers m): wanted the table's tile for m = 200 (64, 128 or 256),
    # compiled only the tiles half and twice as wide (or the nearest ones that exist)
    wanted = tile(dispatch.heuristic_table().lookup(200, 4096, 4096)).tile_n
    narrower, wider = max(t for t in TILE_NS if t < wanted), min((t for t in TILE_NS if t > wanted), default=None)
    if wider is not None and wanted / narrower == wider / wanted:
        build(ids(tile_n=(narrower, wider)))
        assert tile(dispatch.select_config(200, 4096, 4096, 128, "bf16")).tile_n == wider
    # 3. any compiled config of the output dtype
    build(ids(tile_n=256) + ids("s32"))
    assert dispatch.select_config(1, 4096, 4096, 128, "bf16") == ids(tile_n=256)[0]
    assert dispatch.select_config(1, 4096, 4096, 128, torch.int32) == ids("s32")[0]
    with pytest.raises(ValueError, match="no config writing f16"):
        dispatch.select_config(1, 4096, 4096, 128, "f16")


def test_out_dtype_spellings_and_errors(build):
    build(ALL_IDS)
    bf16 = dispatch.select_config(100, 6144, 4096, 128, "bf16")
    assert tile(bf16).out == "bf16"
    assert dispatch.select_config(100, 6144, 4096, 128, torch.bfloat16) == bf16
    assert dispatch.select_config(100, 6144, 4096, 128, "bfloat16") == bf16
    f16 = dispatch.select_config(100, 6144, 4096, 128, torch.float16)
    assert f16 == bf16.replace("_bf16_", "_f16_")  # the tiling does not depend on the epilogue type
    with pytest.raises(ValueError, match="out_dtype"):
        dispatch.select_config(100, 6144, 4096, 128, torch.float32)
    for bad in (0, -3, 1.5, "8"):
        with pytest.raises(ValueError, match="m must be a positive int"):
            dispatch.select_config(bad, 6144, 4096, 128, "bf16")
    with pytest.raises(ValueError, match="group_size"):
        dispatch.select_config(1, 6144, 4096, 0, "bf16")


def test_select_config_is_memoised(build):
    build(ALL_IDS)
    dispatch.select_config(7, 6144, 4096, 128, "bf16")
    hits = dispatch.select_config.cache_info().hits
    dispatch.select_config(7, 6144, 4096, 128, "bf16")
    assert dispatch.select_config.cache_info().hits == hits + 1


def test_check_config(build):
    build(ids(tile_n=(8, 64)) + ids("s32"))
    good = ids(tile_n=64)[0]
    assert dispatch.check_config(good, torch.bfloat16) == good
    with pytest.raises(ValueError, match=f"valid ids: .*{good}"):
        dispatch.check_config(ids(tile_n=128)[0], "bf16")  # defined but not compiled
    with pytest.raises(ValueError, match="out_dtype f16"):
        dispatch.check_config(good, "f16")
    with pytest.raises(ValueError, match="not a compiled config"):
        dispatch.check_config("nonsense", "bf16")


def test_check_config_refuses_a_cluster_config_on_unpaired_weight_tiles(build):
    (pair,) = ids(tile_n=128, cluster_m=2)
    build([pair])
    assert dispatch.check_config(pair, "bf16", n=512) == pair
    with pytest.raises(ValueError, match="needs out_features divisible by 256, got 384"):
        dispatch.check_config(pair, "bf16", n=384)
    # the public op checks a forced config before it runs anything (here on the CPU reference path)
    x_q = torch.zeros(2, 256, dtype=torch.int8)
    qw = quantize_weight(torch.randn(384, 256), 128)
    with pytest.raises(ValueError, match="needs out_features divisible by 256, got 384"):
        ops.w4a8_gemm(x_q, torch.ones(2), qw, out_dtype=torch.bfloat16, config=pair)


def test_k_pairs_configs_take_only_whole_pairs_of_k_blocks(build):
    (pairs,) = ids(tile_n=16, scheduler="kpairs")
    (split,) = ids(tile_n=16, scheduler="splitk", reduce_room=False)
    build([pairs, split])
    assert dispatch.check_config(pairs, "bf16", n=384, k=512) == pairs
    with pytest.raises(ValueError, match="in_features divisible by 256, got 384"):
        dispatch.check_config(pairs, "bf16", n=384, k=384)
    x_q = torch.zeros(2, 384, dtype=torch.int8)
    qw = quantize_weight(torch.randn(256, 384), 128)
    with pytest.raises(ValueError, match="in_features divisible by 256, got 384"):
        ops.w4a8_gemm(x_q, torch.ones(2), qw, out_dtype=torch.bfloat16, config=pairs)
    # the dispatcher maps a K-pairs choice onto a compiled config that takes K (here the split-K twin)
    assert dispatch._resolve(pairs, "bf16", 256, 384) == split
    assert dispatch._resolve(pairs, "bf16", 256, 512) == pairs


def test_room_configs_resolve_to_their_twins(build):
    (room,) = ids(tile_n=8, scheduler="splitk", reduce_room=True)
    (plain,) = ids(tile_n=8, scheduler="splitk", reduce_room=False)
    build([room, plain, *ids("s32")])
    assert dispatch._resolve(room, "bf16") == room and dispatch._resolve(plain, "bf16") == plain
    build([plain, *ids("s32")])
    assert dispatch._resolve(room, "bf16") == plain  # a build without the room twin runs the plain one
    assert dispatch._resolve(room, "s32") == ids("s32")[0]  # the raw int32 output has no reduce kernel


def test_early_twins_resolve_to_their_room_twins(build):
    (early,) = ids(tile_n=8, scheduler="balanced", reduce_room=True, early_weights=True)
    (room,) = ids(tile_n=8, scheduler="balanced", reduce_room=True, early_weights=False)
    (plain,) = ids(tile_n=8, scheduler="balanced", reduce_room=False)
    build([early, room, plain, *ids("s32")])
    assert [dispatch._resolve(c, "bf16") for c in (early, room, plain)] == [early, room, plain]
    build([room, plain, *ids("s32")])
    assert dispatch._resolve(early, "bf16") == room  # next best: same tile, register budget and scheduler
    assert dispatch._resolve(early, "s32") == ids("s32")[0]  # the raw int32 output: the plain persistent GEMM


def test_tuned_cache_is_honoured(build, monkeypatch, tmp_path):
    path = tmp_path / "tuned.json"
    monkeypatch.setenv(tune.ENV_CACHE, str(path))
    wide, mid, narrow = (ids(tile_n=256, cluster_m=1)[0], ids(tile_n=32, scheduler="persist")[0],
                         ids(tile_n=128, cluster_m=1)[0])
    tune.save_cache(path, {tune.cache_key(1, 4096, 4096, 128, "bf16"): {"config": wide, "us": 9.0, "date": "d"},
                           tune.cache_key(64, 4096, 4096, 128, "bf16"): {"config": mid, "us": 19.0, "date": "d"},
                           tune.cache_key(64, 4096, 4096, 64, "bf16"): {"config": narrow, "us": 20.0, "date": "d"}},
                    {"gpu": "test"})
    build(ALL_IDS)
    assert dispatch.select_config(1, 4096, 4096, 128, "bf16") == wide
    assert dispatch.select_config(2, 4096, 4096, 128, "bf16") == mid  # the next tuned m up
    assert dispatch.select_config(64, 4096, 4096, 128, "bf16") == mid
    assert dispatch.select_config(5000, 4096, 4096, 128, "bf16") == mid  # beyond: the largest tuned m
    assert dispatch.select_config(1, 4096, 4096, 64, "bf16") == narrow  # group size is part of the key
    heuristic = dispatch.heuristic_config(1, 4096, 4096, 128, "bf16")
    assert heuristic != wide
    assert dispatch.select_config(1, 4096, 4096, 256, "bf16") == heuristic  # untuned group: heuristic
    assert dispatch.select_config(1, 4096, 8192, 128, "bf16") == \
        dispatch.heuristic_config(1, 4096, 8192, 128, "bf16")  # untuned k: heuristic
    assert dispatch.select_config(1, 4096, 4096, 128, "f16") == heuristic.replace("_bf16_", "_f16_")  # untuned out
    # a tuned config that this build lacks maps onto the nearest compiled one: the same tile in a 2x1 cluster, else
    # the nearest token tile
    build([i for i in ALL_IDS if i != wide])
    assert dispatch.select_config(1, 4096, 4096, 128, "bf16") == ids(tile_n=256, cluster_m=2)[0]
    build([i for i in ALL_IDS if tile(i).tile_n != 256])
    assert tile(dispatch.select_config(1, 4096, 4096, 128, "bf16")).tile_n == 128


def test_cluster_configs_fall_back_where_the_weight_tiles_do_not_pair(build, monkeypatch, tmp_path):
    """A 2x1 cluster takes an even number of 128-row weight tiles: on other shapes the dispatcher runs the same tile
    without the cluster, whether the choice came from a tuning cache or the table."""
    path = tmp_path / "tuned.json"
    monkeypatch.setenv(tune.ENV_CACHE, str(path))
    (pair,) = ids(tile_n=256, cluster_m=2)
    tune.save_cache(path, {tune.cache_key(4096, n, 4096, 128, "bf16"): {"config": pair, "us": 1.0, "date": "d"}
                           for n in (4096, 4224)}, {"gpu": "test"})
    build(ALL_IDS)
    assert dispatch.select_config(4096, 4096, 4096, 128, "bf16") == pair
    assert dispatch.select_config(4096, 4224, 4096, 128, "bf16") == ids(tile_n=256, cluster_m=1)[0]  # 33 tiles
    assert TileConfig.parse(dispatch.heuristic_config(4096, 4224, 4096, 128, "bf16")).cluster_m == 1
    # a build of cluster configs only: a clear error for the shapes none of them takes, never a config that fails
    build(ids(cluster_m=2))
    assert dispatch.select_config(4096, 4096, 4096, 128, "bf16") == pair
    with pytest.raises(ValueError, match="no bf16 config for 4224 output channels"):
        dispatch.select_config(4096, 4224, 4096, 128, "bf16")


def test_broken_tuned_cache_warns_and_falls_back(build, monkeypatch, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"schema": 1, "meta": {}, "entries": {"1,4096,4096,128,bf16": {"config": "bad"}}}))
    monkeypatch.setenv(tune.ENV_CACHE, str(path))
    build(ALL_IDS)
    with pytest.warns(RuntimeWarning, match="ignoring the tuning cache"):
        chosen = dispatch.select_config(1, 4096, 4096, 128, "bf16")
    assert chosen == dispatch.heuristic_config(1, 4096, 4096, 128, "bf16")


def test_cache_round_trip_and_merge(tmp_path):
    path = tmp_path / "sub" / "cache.json"
    first = {tune.cache_key(8, 6144, 4096, 128, "bf16"): {"config": ALL_IDS[0], "us": 10.5, "date": "d1"},
             tune.cache_key(1, 6144, 4096, 128, "bf16"): {"config": ALL_IDS[1], "us": 9.25, "date": "d1"}}
    tune.save_cache(path, first, {"gpu": "H", "version": "1"})
    data = tune.load_cache(path)
    assert data["schema"] == tune.SCHEMA and data["meta"] == {"gpu": "H", "version": "1"}
    assert data["entries"] == first
    assert list(data["entries"]) == ["1,6144,4096,128,bf16", "8,6144,4096,128,bf16"]  # sorted by m per problem
    second = {tune.cache_key(8, 6144, 4096, 128, "bf16"): {"config": ALL_IDS[2], "us": 8.0, "date": "d2"}}
    tune.save_cache(path, second, {"date": "d2"})
    data = tune.load_cache(path)
    assert data["entries"] == {**first, **second}
    assert data["meta"] == {"gpu": "H", "version": "1", "date": "d2"}
    assert tune.parse_key(tune.cache_key(3, 4, 5, 6, "f16")) == (3, 4, 5, 6, "f16")
    assert tune.load_cache(tmp_path / "absent.json")["entries"] == {}
    (tmp_path / "other.json").write_text('{"schema": 99}')
    with pytest.raises(ValueError, match="not a schema-1"):
        tune.load_cache(tmp_path / "other.json")


def test_cache_path(monkeypatch, tmp_path):
    identity = {"gpu": "NVIDIA H100 80GB HBM3", "sm_count": 132, "cc": "9.0", "driver": "12.8"}
    assert tune.cache_file_name(identity, "0.1.0") == "nvidia-h100-80gb-hbm3-132sm-cc90-drv12.8-v0.1.0.json"
    monkeypatch.delenv(tune.ENV_CACHE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    import liquidgemm

    expected = tmp_path / "liquidgemm" / "tune-v1" / tune.cache_file_name(identity, liquidgemm.__version__)
    assert tune.cache_path(identity) == expected
    monkeypatch.setenv(tune.ENV_CACHE, str(tmp_path / "mine.json"))
    assert tune.cache_path(identity) == tmp_path / "mine.json"


def test_committed_heuristic_table_is_valid():
    table = dispatch.heuristic_table()
    assert table.m_max[-1] == math.inf and table.size_max[-1] == math.inf
    assert list(table.m_max) == sorted(table.m_max) and list(table.size_max) == sorted(table.size_max)
    assert {c for row in table.configs for c in row} <= set(ALL_IDS)
    assert dispatch.HeuristicTable.from_json(json.loads(table.to_json())) == table
    assert table.cell(1, 1, 1) == (0, 0)
    assert table.cell(10**9, 10**9, 10**9) == (len(table.m_max) - 1, len(table.size_max) - 1)
    first = int(table.size_max[0])
    assert table.cell(8, first, 1) == (0, 0) and table.cell(9, first + 1, 1) == (1, 1)  # bounds are inclusive


# ---- fused quantization (w4a8_linear at decode sizes) --------------------------------------------------------
def test_gemm_dispatch_never_picks_a_fused_config(build):
    build(ALL_IDS)
    for n, k in PRESET_NKS:
        for m in (1, 4, 16, 64, 4096):
            assert not tile(dispatch.select_config(m, n, k, 128, "bf16")).fused_quant
    assert dispatch.list_configs("bf16", fused_quant=False) == ids(fused_quant=False)
    assert dispatch.list_configs("bf16", fused_quant=True) == ids(fused_quant=True)


@pytest.mark.parametrize("compiled", ["all", "persistent and fused only"])
def test_linear_dispatch_follows_the_fused_rule(build, monkeypatch, compiled):
    monkeypatch.setenv(dispatch.FUSED_QUANT_ENV, "1")
    # The committed table has no persistent choice at decode sizes any more; a build of only persistent and fused
    # configs makes the dispatcher fall back to persistent ones there, where the fused rule must take over.
    build(ALL_IDS if compiled == "all" else ids(scheduler="persist"))
    fused_somewhere = False
    for n, k in PRESET_NKS:
        for m in (1, 2, 8, 16, 32, 64, 65, 256):
            gemm = tile(dispatch.select_config(m, n, k, 128, "bf16"))
            linear = tile(dispatch.select_linear_config(m, n, k, 128, "bf16"))
            if linear.fused_quant:  # only in place of a persistent choice, within the rule and the config's limits
                fused_somewhere = True
                assert dispatch.uses_fused_quant(m, k) and gemm.scheduler == "persist", (m, n, k)
                assert m <= linear.tile_n and k <= fused_max_k(linear.tile_n), (m, n, k)
            else:
                assert linear == gemm, (m, n, k)
                assert not (dispatch.uses_fused_quant(m, k) and gemm.scheduler == "persist" and gemm.tile_n >= m
                            and k <= fused_max_k(gemm.tile_n)), (m, n, k)
    assert fused_somewhere or compiled == "all"
    assert dispatch.uses_fused_quant(1, 4096) and not dispatch.uses_fused_quant(3, 128)


def test_linear_dispatch_without_fused_configs_runs_two_kernels(build):
    build(ids(fused_quant=False) + ids("s32"))
    assert dispatch.select_linear_config(1, 4096, 4096, 128, "bf16") == \
        dispatch.select_config(1, 4096, 4096, 128, "bf16")


def test_forcing_a_fused_config_is_checked(build):
    build(ALL_IDS)
    (fq8,) = ids(tile_n=8, scheduler="persist", fused_quant=True)
    with pytest.raises(ValueError, match="runs only through w4a8_linear"):
        dispatch.check_config(fq8, "bf16")
    with pytest.raises(ValueError, match="at most tile_n = 8 tokens of K <= 8192 .* got 9 tokens of K = 4096"):
        dispatch.check_config(fq8, "bf16", linear_shape=(9, 4096))
    with pytest.raises(ValueError, match="got 1 tokens of K = 8320"):
        dispatch.check_config(fq8, "bf16", linear_shape=(1, 8320))
    assert dispatch.check_config(fq8, "bf16", linear_shape=(8, 8192)) == fq8
    plain = ids(tile_n=8, scheduler="persist", fused_quant=False)[0]
    assert dispatch.check_config(plain, "bf16", linear_shape=(1000, 28672)) == plain


def test_fused_quantization_is_off_unless_switched_on(build, monkeypatch):
    monkeypatch.delenv(dispatch.FUSED_QUANT_ENV, raising=False)
    build(ids(scheduler="persist"))  # persistent GEMMs (the fused path's only stand-in) and their fused twins
    assert dispatch.select_linear_config(1, 28672, 4096, 128, "bf16") == \
        dispatch.select_config(1, 28672, 4096, 128, "bf16")
    monkeypatch.setenv(dispatch.FUSED_QUANT_ENV, "1")
    dispatch.clear_caches()
    assert tile(dispatch.select_linear_config(1, 28672, 4096, 128, "bf16")).fused_quant
    monkeypatch.setenv(dispatch.FUSED_QUANT_ENV, "yes")
    dispatch.clear_caches()
    with pytest.raises(ValueError, match="LIQUIDGEMM_FUSED_QUANT must be 0 or 1"):
        dispatch.select_linear_config(1, 28672, 4096, 128, "bf16")
