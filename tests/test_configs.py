"""The config list, its ids and the TU generator (CPU only; stdlib only on the code side)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from liquidgemm._configs import CI_CONFIGS, CONFIGS, TileConfig, emit, fused_max_k, select, stages_that_fit

TEMPLATE = Path(__file__).resolve().parents[1] / "kernels" / "w4a8_gemm.cu.in"


def only(out: str, tile_n: int = 64, scheduler: str = "persist", fused_quant: bool = False,
         cluster_m: int = 1, reduce_room: bool = False, early_weights: bool = False) -> TileConfig:
    """The one config of CONFIGS with these fields (stage counts are tuned, so tests never spell them)."""
    wanted = (out, tile_n, scheduler, fused_quant, cluster_m, reduce_room, early_weights)
    (config,) = [c for c in CONFIGS
                 if (c.out, c.tile_n, c.scheduler, c.fused_quant, c.cluster_m, c.reduce_room, c.early_weights) == wanted]
    return config


BF16_64 = only("bf16").id
S32_64 = only("s32").id
FQ_8 = only("bf16", 8, fused_quant=True).id
SPLITK_8 = only("bf16", 8, "splitk", reduce_room=True).id
PAIR_128 = only("bf16", 128, cluster_m=2).id
KPAIRS_16 = only("bf16", 16, "kpairs").id
BALANCED_16 = only("bf16", 16, "balanced").id
CI_IDS = [BF16_64, S32_64, FQ_8, SPLITK_8, PAIR_128, KPAIRS_16, BALANCED_16]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.id)
def test_id_round_trip(config):
    assert TileConfig.parse(config.id) == config
    assert TileConfig.parse(config.id).id == config.id


def test_id_spells_every_field():
    config = TileConfig("f16", 64, 24, 7, "pp", "persist")
    assert config.id == "w4a8_sm90_f16_t64x24x128_c1x1_s7_pp_persist"


def test_config_list_is_the_documented_one():
    ids = [c.id for c in CONFIGS]
    assert len(ids) == len(set(ids)) == 59
    for out in ("bf16", "f16"):
        fused = [c for c in CONFIGS if c.out == out and c.fused_quant]
        assert sorted((c.tile_n, c.scheduler) for c in fused) == [(8, "persist"), (16, "persist")]
        assert all(c.id.endswith("_fq") and c.schedule == "coop" for c in fused)
        mine = [c for c in CONFIGS if c.out == out and not c.fused_quant]
        assert sorted({c.tile_n for c in mine}) == [8, 16, 32, 64, 128, 256]
        assert all(c.tile_m == 128 and c.schedule == "coop" for c in mine)
        assert sorted(c.tile_n for c in mine if c.scheduler == "streamk") == [8, 16, 32, 64]
        for scheduler in ("splitk", "balanced"):
            assert sorted(c.tile_n for c in mine if c.scheduler == scheduler and not c.reduce_room) == [8, 16, 32, 64]
            room = [c for c in mine if c.scheduler == scheduler and c.reduce_room and not c.early_weights]
            assert [c.tile_n for c in room] == [8, 16] and all(c.id.endswith("_room") for c in room)
        early = [c for c in mine if c.early_weights]
        assert [(c.tile_n, c.scheduler, c.reduce_room) for c in early] == [(8, "balanced", True),
                                                                            (16, "balanced", True)]
        assert all(c.id.endswith("_room_early") for c in early)
        assert not any(c.reduce_room for c in CONFIGS if c.scheduler not in ("splitk", "balanced"))
        assert sorted((c.tile_n, c.scheduler) for c in mine if c.cluster_m == 2) == [(128, "persist"), (256, "persist")]
        assert [c.tile_n for c in mine if c.scheduler == "kpairs"] == [16]
    (s32,) = [c for c in CONFIGS if c.out == "s32"]
    assert (s32.tile_m, s32.tile_n, s32.schedule, s32.scheduler) == (128, 64, "coop", "persist")
    assert re.fullmatch(r"w4a8_sm90_bf16_t128x64x128_c1x1_s\d+_coop_persist", BF16_64)


def test_stages_come_from_the_shared_memory_budget():
    for c in CONFIGS:
        kernel_out = "s32" if c.scheduler in ("splitk", "balanced") else c.out  # they store int32 partials
        assert c.stages == stages_that_fit(kernel_out, c.tile_m, c.tile_n, fused_quant=c.fused_quant,
                                           k_pairs=c.scheduler == "kpairs") >= 2, c.id
    for out in ("bf16", "s32"):
        depths = [stages_that_fit(out, 128, tile_n) for tile_n in (8, 16, 32, 64, 128, 256)]
        assert depths == sorted(depths, reverse=True)  # larger activation tiles, fewer stages
    assert stages_that_fit("s32", 128, 64) <= stages_that_fit("bf16", 128, 64)  # int32 output needs more room


@pytest.mark.parametrize("bad, message", [
    ("", "malformed config id"),
    ("w4a8_sm90_bf16_t128x64x128_c1x1_s10_coop", "malformed config id"),       # scheduler missing
    ("w4a8_sm90_bf16_t128x64x64_c1x1_s10_coop_persist", "malformed config id"),  # tile K is always 128
    ("w4a8_sm90_bf16_t128x64x128_c1x2_s10_coop_persist", "malformed config id"),  # clusters run along M only
    ("w4a8_sm90_bf16_t128x64x128_c4x1_s10_coop_persist", "cluster_m must be 1 or 2"),
    ("w4a8_sm90_bf16_t128x16x128_c1x1_s15_coop_kpairs_room", "only the reducing schedulers"),
    ("w4a8_sm90_bf16_t128x8x128_c1x1_s20_coop_persist_room", "only the reducing schedulers"),
    ("w4a8_sm90_bf16_t128x16x128_c1x1_s15_coop_kpairs_early", "a twin of the 'balanced' scheduler"),
    ("w4a8_sm90_bf16_t128x16x128_c1x1_s15_coop_splitk_room_early", "a twin of the 'balanced' scheduler"),
    ("w4a8_sm90_bf16_t128x16x128_c1x1_s15_coop_balanced_early_room", "malformed config id"),  # suffix order
    ("w4a8_sm90_bf16_t128x64x128_c2x1_s10_coop_splitk", "scheduler 'persist'"),
    ("w4a8_sm90_bf16_t0128x64x128_c1x1_s10_coop_persist", "malformed config id"),  # would not round-trip
    (BF16_64 + "_x", "malformed config id"),
    (BF16_64.upper(), "malformed config id"),
    ("w4a8_sm90_fp8_t128x64x128_c1x1_s10_coop_persist", "out must be one of"),
    ("w4a8_sm90_bf16_t96x64x128_c1x1_s10_coop_persist", "tile_m must be 64 or 128"),
    ("w4a8_sm90_bf16_t128x12x128_c1x1_s10_coop_persist", "tile_n must be a multiple of 8"),
    ("w4a8_sm90_bf16_t128x264x128_c1x1_s10_coop_persist", "tile_n must be a multiple of 8"),
    ("w4a8_sm90_bf16_t128x64x128_c1x1_s10_wide_persist", "schedule must be one of"),
    ("w4a8_sm90_bf16_t128x64x128_c1x1_s10_coop_splitq", "scheduler must be one of"),
    ("w4a8_sm90_s32_t128x64x128_c1x1_s10_coop_splitk", "the s32 debug output uses 'persist'"),
    ("w4a8_sm90_bf16_t64x64x128_c1x1_s10_pp_splitk", "'splitk' is only implemented for schedule 'coop'"),
    ("w4a8_sm90_bf16_t64x64x128_c1x1_s10_coop_persist", "'coop' needs tile_m == 128"),
    ("w4a8_sm90_bf16_t128x64x128_c1x1_s10_pp_persist", "'pp' needs tile_m == 64"),
    ("w4a8_sm90_bf16_t64x64x128_c1x1_s10_pp_streamk", "'streamk' is only implemented for schedule 'coop'"),
    ("w4a8_sm90_s32_t128x16x128_c1x1_s10_coop_balanced", "the s32 debug output uses 'persist'"),
    ("w4a8_sm90_bf16_t64x16x128_c1x1_s10_pp_balanced", "'balanced' is only implemented for schedule 'coop'"),
    ("w4a8_sm90_bf16_t128x16x128_c2x1_s10_coop_balanced", "scheduler 'persist'"),
])
def test_parse_rejects_malformed_and_invalid_ids(bad, message):
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        TileConfig.parse(bad)
    assert repr(bad) in str(err.value)  # the message names the offending id


def test_parse_rejects_non_strings():
    with pytest.raises(ValueError, match="malformed config id"):
        TileConfig.parse(None)


@pytest.mark.parametrize("kwargs, message", [
    (dict(out="s8"), "out must be one of"),
    (dict(tile_m=256), "tile_m must be 64 or 128"),
    (dict(tile_n=0), "tile_n must be a multiple of 8"),
    (dict(tile_n=272), "tile_n must be a multiple of 8"),
    (dict(stages=0), "stages must be a positive int"),
    (dict(schedule="pp"), "'pp' needs tile_m == 64"),
    (dict(tile_m=64), "'coop' needs tile_m == 128"),
    (dict(tile_m=64, schedule="pp", scheduler="streamk"), "'streamk' is only implemented"),
])
def test_validity_rules(kwargs, message):
    fields = dict(out="bf16", tile_m=128, tile_n=64, stages=4, schedule="coop", scheduler="persist") | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        TileConfig(**fields)


def test_pingpong_with_64_rows_is_valid():
    assert TileConfig("bf16", 64, 128, 5, "pp", "persist").tile_m == 64


def test_select():
    assert select("all") == CONFIGS and select("all") is not CONFIGS
    assert [c.id for c in select("ci")] == CI_IDS == [c.id for c in CI_CONFIGS]
    assert [c.id for c in select(f" {S32_64} ,{BF16_64},{S32_64},")] == [S32_64, BF16_64]  # order kept, deduped
    novel = "w4a8_sm90_f16_t64x24x128_c1x1_s7_pp_persist"  # any valid id, not only those in CONFIGS
    assert select(novel) == [TileConfig.parse(novel)]


@pytest.mark.parametrize("bad, error, message", [
    ("", ValueError, "got an empty string"),
    (" , ", ValueError, "got an empty string"),
    ("CI", ValueError, "malformed config id 'CI'"),
    (f"{BF16_64},nope", ValueError, "malformed config id 'nope'"),
    (["ci"], TypeError, "selection must be a str"),
])
def test_select_rejects(bad, error, message):
    with pytest.raises(error, match=re.escape(message)):
        select(bad)


def test_emit_writes_one_tu_per_config_and_the_list(tmp_path):
    configs = select("ci")
    sources = emit(tmp_path, configs, TEMPLATE)
    assert sources == [tmp_path / f"{i}.cu" for i in CI_IDS]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{i}.cu" for i in CI_IDS] + ["kernel_list.inc"])

    bf16 = sources[0].read_text()
    assert "@" not in bf16  # every placeholder substituted
    assert '#include "cutlass/numeric_types.h"' in bf16
    assert '#include "liquidgemm/kernel/w4a8_gemm.hpp"' in bf16
    stages = only("bf16").stages
    assert f"GemmConfig<cutlass::bfloat16_t, 128, 64, {stages}, ScheduleCoop, SchedulerPersistent, false, 1,\n" in bf16
    assert f"Status {BF16_64}_run(GemmArgs const& args) {{ return run_gemm<Config>(args); }}" in bf16
    assert f"size_t {BF16_64}_workspace(GemmArgs const& args)" in bf16
    assert (f"GemmConfig<int32_t, 128, 64, {only('s32').stages}, ScheduleCoop, SchedulerPersistent, false, 1,\n"
            in sources[1].read_text())

    rows = [line for line in (tmp_path / "kernel_list.inc").read_text().splitlines() if not line.startswith("//")]
    assert rows == [f"LIQUIDGEMM_KERNEL({BF16_64}, false)", f"LIQUIDGEMM_KERNEL({S32_64}, false)",
                    f"LIQUIDGEMM_KERNEL({FQ_8}, true)", f"LIQUIDGEMM_KERNEL({SPLITK_8}, false)",
                    f"LIQUIDGEMM_KERNEL({PAIR_128}, false)", f"LIQUIDGEMM_KERNEL({KPAIRS_16}, false)",
                    f"LIQUIDGEMM_KERNEL({BALANCED_16}, false)"]


def test_room_configs_compile_without_register_reallocation(tmp_path):
    # Their GEMM leaves half the register file to the reduce kernel: CUTLASS's setmaxnreg must be compiled out
    # before any CUTLASS header (kernel/w4a8_gemm.hpp static_asserts it); every other config keeps it.
    sources = dict(zip(CI_IDS, emit(tmp_path, select("ci"), TEMPLATE)))
    define = "#define CUDA_CTA_RECONFIG_ACTIVATED 0"
    for config_id, source in sources.items():
        code = [line for line in source.read_text().splitlines() if line and not line.startswith("//")]
        if config_id == SPLITK_8:
            assert code[0].startswith(define)
            assert code[1] == '#include "cutlass/numeric_types.h"'
        else:
            assert not any(define in line for line in code)


def test_emit_maps_every_field(tmp_path):
    template = tmp_path / "t.in"
    template.write_text("@ID@|@OUT_TYPE@|@TILE_M@|@TILE_N@|@STAGES@|@SCHEDULE@|@SCHEDULER@|@FUSED_QUANT@|@CLUSTER_M@")
    config = TileConfig("f16", 64, 24, 7, "pp", "persist")
    (source,) = emit(tmp_path / "gen", [config], template)
    assert source.read_text() == f"{config.id}|cutlass::half_t|64|24|7|SchedulePingpong|SchedulerPersistent|false|1"
    streamk = TileConfig("s32", 128, 8, 3, "coop", "streamk")
    (source,) = emit(tmp_path / "gen", [streamk], template)
    assert source.read_text() == f"{streamk.id}|int32_t|128|8|3|ScheduleCoop|SchedulerStreamK|false|1"
    fused = TileConfig("bf16", 128, 16, 9, "coop", "persist", fused_quant=True)
    (source,) = emit(tmp_path / "gen", [fused], template)
    assert source.read_text() == f"{fused.id}|cutlass::bfloat16_t|128|16|9|ScheduleCoop|SchedulerPersistent|true|1"
    cluster = TileConfig("bf16", 128, 256, 4, "coop", "persist", cluster_m=2)
    (source,) = emit(tmp_path / "gen", [cluster], template)
    assert source.read_text() == f"{cluster.id}|cutlass::bfloat16_t|128|256|4|ScheduleCoop|SchedulerPersistent|false|2"
    assert cluster.id == "w4a8_sm90_bf16_t128x256x128_c2x1_s4_coop_persist"
    assert cluster.takes(512) and not cluster.takes(384)  # an even number of 128-row weight tiles
    pairs = TileConfig("bf16", 128, 16, 15, "coop", "kpairs")
    (source,) = emit(tmp_path / "gen", [pairs], template)
    assert source.read_text() == f"{pairs.id}|cutlass::bfloat16_t|128|16|15|ScheduleCoop|SchedulerKPairs|false|1"
    assert pairs.takes(128, 256) and pairs.takes(384, 8192) and not pairs.takes(128, 384)  # pairs of k-blocks
    assert stages_that_fit("bf16", 128, 16, k_pairs=True) < stages_that_fit("bf16", 128, 16)  # two activation tiles
    assert fused.id == "w4a8_sm90_bf16_t128x16x128_c1x1_s9_coop_persist_fq"
    assert (fused_max_k(8), fused_max_k(16)) == (8192, 4096)  # 64 KB of resident int8 activations


@pytest.mark.parametrize("fields,why", [
    (("s32", 128, 8, 4, "coop", "persist"), "bf16/f16 output"),
    (("bf16", 64, 8, 4, "pp", "persist"), "schedule 'coop'"),
    (("bf16", 128, 8, 4, "coop", "streamk"), "scheduler 'persist'"),
    (("bf16", 128, 8, 4, "coop", "splitk"), "scheduler 'persist'"),
])
def test_fused_quantization_needs_a_16_bit_cooperative_persistent_config(fields, why):
    with pytest.raises(ValueError, match=why):
        TileConfig(*fields, fused_quant=True)
    with pytest.raises(ValueError, match=why):
        TileConfig.parse(TileConfig(*fields).id + "_fq")


def test_emit_rejects_unknown_placeholders(tmp_path):
    template = tmp_path / "t.in"
    template.write_text("@ID@ @TILE_K@")
    with pytest.raises(ValueError, match="unknown placeholder @TILE_K@"):
        emit(tmp_path / "gen", select("ci"), template)


def test_emit_keeps_unchanged_files_and_drops_stale_ones(tmp_path):
    emit(tmp_path, select("all"), TEMPLATE)
    kept = tmp_path / f"{BF16_64}.cu"
    mtime = kept.stat().st_mtime_ns
    emit(tmp_path, select("ci"), TEMPLATE)
    assert kept.stat().st_mtime_ns == mtime  # a reconfigure does not force a recompile
    assert sorted(p.name for p in tmp_path.glob("*.cu")) == sorted(f"{i}.cu" for i in CI_IDS)


def test_generator_cli(tmp_path):
    python_dir = Path(__file__).resolve().parents[1] / "python"
    env = {"PYTHONPATH": str(python_dir)}
    run = [sys.executable, "-m", "liquidgemm._configs"]
    listed = subprocess.run(run + ["--list"], capture_output=True, text=True, check=True, env=env)
    assert listed.stdout.split() == [c.id for c in CONFIGS]
    emitted = subprocess.run(run + ["--emit", str(tmp_path), "--select", "ci", "--template", str(TEMPLATE)],
                             capture_output=True, text=True, check=True, env=env)
    assert emitted.stdout.split() == CI_IDS
    assert (tmp_path / f"{BF16_64}.cu").exists() and (tmp_path / "kernel_list.inc").exists()
    bad = subprocess.run(run + ["--emit", str(tmp_path), "--select", "nope"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("python -m liquidgemm._configs: error: malformed config id 'nope'")


def test_fused_activation_budget_is_the_collectives():
    """_configs budgets the shared memory (and dispatch the largest K) the collective reserves for a fused config."""
    from liquidgemm._configs import FUSED_ACT_BYTES

    header = (TEMPLATE.parents[1] / "include" / "liquidgemm" / "collective" / "sm90_mma_liquid_w4a8.hpp").read_text()
    (value,) = re.findall(r"kFusedActBytes = (\d+) \* (\d+);", header)
    assert int(value[0]) * int(value[1]) == FUSED_ACT_BYTES
