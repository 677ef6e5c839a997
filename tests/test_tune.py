"""`liquidgemm tune` and the `liquidgemm` console script: help, dry run, errors, winners, heuristic table (CPU);
one end-to-end tuning run on the GPU."""
from __future__ import annotations

import json

import pytest
import torch

from liquidgemm import __version__, _native, cli, dispatch, tune
from liquidgemm._configs import CONFIGS, TileConfig
from liquidgemm.tune.__main__ import Problem, Result, cache_entries, heuristic_from_results, main, winners

BF16_IDS = [c.id for c in CONFIGS if c.out == "bf16" and not c.fused_quant]  # what tune times


@pytest.fixture(autouse=True)
def no_real_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(tune.ENV_CACHE, str(tmp_path / "cache.json"))
    dispatch.clear_caches()
    yield
    dispatch.clear_caches()


def run(capsys, argv, entry=main):
    code = entry(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_explains_options_and_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--model", "--shape N,K", "--config-json", "--m", "--group-size", "--dtype", "--configs",
                   "--repeats", "--cache", "--write-heuristic", "--dry-run", "--json-out", "examples:",
                   "llama3-70b", "LIQUIDGEMM_TUNE_CACHE"):
        assert needle in text, needle


def test_dry_run_lists_every_point(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # needs no GPU
    code, out, err = run(capsys, ["--model", "llama3-8b", "--m", "1,64", "--dry-run"])
    assert code == 0 and err == ""
    lines = out.splitlines()
    points = [line for line in lines if " m=" in line]
    assert len(points) == 8
    expected = [(name, n, k, m) for name, n, k in [("llama3-8b/qkv", 6144, 4096), ("llama3-8b/o", 4096, 4096),
                                                   ("llama3-8b/gate_up", 28672, 4096),
                                                   ("llama3-8b/down", 4096, 14336)] for m in (1, 64)]
    for line, (name, n, k, m) in zip(points, expected):
        assert line.split()[:5] == [name, f"n={n}", f"k={k}", "g=128", f"m={m}"]
        # token tiles far from m are skipped unless --all-configs
        tiles = [TileConfig.parse(c).tile_n for c in BF16_IDS]
        assert f"configs={sum(min(m, 256) / 4 <= t <= max(16, 4 * m) for t in tiles)}" in line
        assert "heuristic=" + dispatch.heuristic_config(m, n, k, 128, "bf16").removeprefix("w4a8_sm90_") in line
    tiles = [TileConfig.parse(c).tile_n for c in BF16_IDS]
    per_shape = sum(sum(min(m, 256) / 4 <= t <= max(16, 4 * m) for t in tiles) for m in (1, 64))
    assert lines[-1].startswith(f"8 points, {4 * per_shape} measurements")


def test_dry_run_dedupes_shapes_and_reports_unsupported(capsys):
    config = BF16_IDS[0]
    code, out, _ = run(capsys, ["--model", "llama3-8b,mixtral-8x7b", "--shape", "7392,8192", "--m", "16",
                                "--configs", config, "--group-size", "channel", "--dry-run"])
    assert code == 0
    points = [line for line in out.splitlines() if " m=" in line]
    # Mixtral's attention and expert shapes are Llama-3-8B's: measured once each
    assert [line.split()[:2] for line in points] == [["llama3-8b/qkv", "(+1)"], ["llama3-8b/o", "(+1)"],
                                                     ["llama3-8b/gate_up", "(+1)"], ["llama3-8b/down", "(+1)"]]
    assert "g=4096" in points[0] and "g=14336" in points[3]  # per-channel: group = K
    assert "configs=1" in points[0]
    assert "skipped 7392x8192: N=7392 is not a multiple of 128" in out


@pytest.mark.parametrize("argv,message", [
    (["--model", "llama2-7b"], "unknown preset 'llama2-7b'"),
    (["--shape", "4096"], "shape: expected 'N,K'"),
    (["--shape", "4096,4096", "--m", "0,4"], "--m: expected"),
    (["--shape", "4096,4096", "--group-size", "big"], "--group-size"),
    (["--shape", "4096,4096", "--configs", "w4a8_nope"], "not a compiled config"),
    (["--shape", "4096,4096", "--repeats", "0"], "--repeats"),
    (["--shape", "4096,4096", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ([], "nothing to tune"),
])
def test_errors_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run(capsys, argv + ["--dry-run"])
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("python -m liquidgemm.tune: error: ") and message in err


def test_no_gpu_and_no_extension_exit_2(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run(capsys, ["--model", "llama3-8b"])
    assert code == 2 and len(err.splitlines()) == 1 and "no CUDA GPU" in err and "--dry-run" in err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(_native, "is_available", lambda: False)
    monkeypatch.setattr(_native, "unavailable_reason", lambda: "liquidgemm._C was not built")
    code, _, err = run(capsys, ["--model", "llama3-8b"])
    assert code == 2 and err == "python -m liquidgemm.tune: error: liquidgemm extension not available: " \
                                "liquidgemm._C was not built\n"


def results_for(problem, m, times):
    return [Result(problem, m, config, us) for config, us in times.items()]


def test_winners_cache_entries_and_heuristic_table():
    a, b, c = BF16_IDS[0], BF16_IDS[1], BF16_IDS[-1]
    small = Problem(("x/o",), 4096, 4096, 128)
    big = Problem(("x/gate_up",), 57344, 8192, 128)
    results = (results_for(small, 1, {a: 10.0, b: 8.0, c: 30.0}) + results_for(small, 8, {a: 10.0, b: 12.0, c: 30.0})
               + results_for(big, 1, {a: 50.0, b: 60.0}) + [Result(big, 1, c, None, "RuntimeError: boom")])
    best = winners(results)
    assert {(p.n, m): r.config for (p, m), r in best.items()} == {(4096, 1): b, (4096, 8): a, (57344, 1): a}
    assert cache_entries(results, "bf16", "today") == {
        "1,4096,4096,128,bf16": {"config": b, "us": 8.0, "date": "today"},
        "8,4096,4096,128,bf16": {"config": a, "us": 10.0, "date": "today"},
        "1,57344,8192,128,bf16": {"config": a, "us": 50.0, "date": "today"}}

    base = dispatch.heuristic_table()
    table = heuristic_from_results(results, base, {"status": "tuned"})
    assert table.meta == {"status": "tuned"} and (table.m_max, table.size_max) == (base.m_max, base.size_max)
    # cell (m <= 8, n <= 4096): slowdowns vs each point's best are a 1.25x, 1x and b 1x, 1.2x;
    # geometric means a 1.118 > b 1.095, so b wins
    assert table.configs[0][0] == b
    assert table.configs[0][-1] == a  # n = 57344: c failed there, a is fastest
    changed = {(i, j) for i, row in enumerate(table.configs) for j, cfg in enumerate(row) if cfg != base.configs[i][j]}
    assert changed <= {(0, 0), (0, len(base.size_max) - 1)}  # every other cell keeps the committed choice
    assert dispatch.HeuristicTable.from_json(json.loads(table.to_json())) == table


def test_cli_delegates_and_reports(capsys, monkeypatch):
    code, out, err = run(capsys, ["tune", "--model", "nope", "--dry-run"], cli.main)
    assert code == 2 and err.startswith("liquidgemm tune: error: model: unknown preset 'nope'")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"liquidgemm {__version__}"
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    help_text = capsys.readouterr().out
    assert all(word in help_text for word in ("bench", "tune", "info"))

    monkeypatch.setattr(_native, "is_available", lambda: False)
    monkeypatch.setattr(_native, "unavailable_reason", lambda: "not built here")
    code, out, _ = run(capsys, ["info"], cli.main)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith(f"liquidgemm {__version__} (torch {torch.__version__}")
    assert lines[1] == "extension: not available: not built here"
    assert f"compiled configs: none loaded ({len(CONFIGS)} defined)" in lines
    assert lines[-1].startswith(f"tuning cache: {tune.cache_path()} (absent")


def test_tune_flow_on_cpu_with_a_fake_gpu(capsys, monkeypatch, tmp_path):
    """The whole measuring flow, with CPU stand-ins for the GPU pieces: the CPU op is the reference itself, one
    config is made wrong (it must be reported and skipped), time_op returns a known time per config."""
    import liquidgemm
    from liquidgemm import timing
    from liquidgemm.quantize import quantize_weight
    from liquidgemm.tune import __main__ as tune_main

    offered = [c for c in BF16_IDS if TileConfig.parse(c).tile_n in (8, 16, 64)]
    chosen = [c for c in offered if TileConfig.parse(c).takes(256, 384)]  # K = 384: no K-pairs config
    assert len(chosen) < len(offered)
    broken = chosen[1]
    cost = {config: 10.0 + i for i, config in enumerate(chosen)}  # the first config is the fastest
    identity = {"gpu": "Fake GPU", "sm_count": 132, "cc": "9.0", "driver": "12.8"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(_native, "is_available", lambda: True)
    monkeypatch.setattr(_native, "configs", lambda: [c.id for c in CONFIGS])
    monkeypatch.setattr(tune, "gpu_identity", lambda device=None: identity)
    monkeypatch.setattr(tune_main, "random_quantized_weight",
                        lambda problem, dtype: quantize_weight(torch.randn(problem.n, problem.k), problem.group))
    calls = []
    real_gemm = liquidgemm.w4a8_gemm

    def gemm(x_q, x_scale, qw, out_dtype=None, bias=None, config=None):
        calls.append(config)
        y = real_gemm(x_q, x_scale, qw, out_dtype=out_dtype, bias=bias, config=config)
        return y + 1 if config == broken else y

    def fake_time_op(make_operands, fn, *, bytes_per_call, repeats):
        assert bytes_per_call == timing.tensor_bytes(make_operands(0)) + make_operands(0)[0].shape[0] * 256 * 2
        fn(*make_operands(1))  # a rotated copy works too
        us = cost[calls[-1]]
        return timing.Timing(us, us, us, us, "fake", 2, 2 * bytes_per_call, repeats)

    monkeypatch.setattr(liquidgemm, "w4a8_gemm", gemm)
    monkeypatch.setattr(timing, "time_op", fake_time_op)
    cache, table = tmp_path / "tuned.json", tmp_path / "table.json"
    code = main(["--shape", "256,384", "--m", "1,40", "--configs", ",".join(offered), "--repeats", "3",
                 "--cache", str(cache), "--json-out", str(tmp_path / "all.json"), "--write-heuristic", str(table)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"FAILED {broken.removeprefix('w4a8_sm90_')} on 256x384" in err
    assert err.count("FAILED") == 1  # a config that does not take the shape is not timed, not a failure
    entries = tune.load_cache(cache)["entries"]
    assert {key: (e["config"], e["us"]) for key, e in entries.items()} == {
        "1,256,384,128,bf16": (chosen[0], 10.0), "40,256,384,128,bf16": (chosen[0], 10.0)}
    assert tune.load_cache(cache)["meta"]["gpu"] == "Fake GPU"
    rows = json.loads((tmp_path / "all.json").read_text())["measurements"]
    assert [(row["m"], row["config"], row["us"]) for row in rows] == [
        (m, c, None if c == broken else cost[c]) for m in (1, 40) for c in chosen]
    outputs = tune_main.VERIFY_M * 256
    assert all(row["error"].startswith(f"{outputs} of {outputs} outputs differ from the reference")
               for row in rows if row["config"] == broken)
    tuned_table = dispatch.heuristic_table(str(table))
    assert tuned_table.meta["status"] == "tuned"
    assert tuned_table.lookup(1, 256, 384) == chosen[0] and tuned_table.lookup(40, 256, 384) == chosen[0]
    assert "winners" in out and "256x384" in out


@pytest.mark.gpu
def test_tune_end_to_end_on_gpu(capsys, tmp_path):
    cache = tmp_path / "cache.json"
    chosen = [c for c in dispatch.list_configs("bf16", fused_quant=False) if TileConfig.parse(c).tile_n in (8, 64)]
    assert chosen, "the build has no bf16 config with tile_n 8 or 64"
    code = main(["--shape", "512,1024", "--m", "1,40", "--configs", ",".join(chosen), "--repeats", "3",
                 "--cache", str(cache), "--json-out", str(tmp_path / "all.json"),
                 "--write-heuristic", str(tmp_path / "table.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "FAILED" not in err
    entries = tune.load_cache(cache)["entries"]
    assert set(entries) == {"1,512,1024,128,bf16", "40,512,1024,128,bf16"}
    assert all(e["config"] in chosen and e["us"] > 0 for e in entries.values())
    measured = json.loads((tmp_path / "all.json").read_text())["measurements"]
    assert len(measured) == 2 * len(chosen) and all(row["us"] > 0 for row in measured)
    table = dispatch.heuristic_table(str(tmp_path / "table.json"))
    assert table.meta["status"] == "tuned"
