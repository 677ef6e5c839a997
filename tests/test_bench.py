"""`liquidgemm bench` and `liquidgemm.timing`: CLI, runner, reports and plots on CPU with fake peers and fake
timings; one GPU smoke test."""
from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from liquidgemm.bench import __main__ as cli
from liquidgemm.bench import report
from liquidgemm.bench.peers import PEERS, Peer, make_peers
from liquidgemm.bench.runner import FIELDS, NA, OK, Point, Problem, Roofline, measure_point, run_problems
from liquidgemm.shapes import LayerShape
from liquidgemm.timing import (
    MAX_ROTATIONS,
    Timing,
    clone_tensors,
    kernel_samples,
    rotation_count,
    summarize,
    tensor_bytes,
    time_op,
)


# ---- command line ----------------------------------------------------------------------------------------------
def test_defaults_benchmark_llama3_8b_with_every_peer():
    args = cli.parse_args([])
    assert args.models == ["llama3-8b"]
    assert [(s.n, s.k) for s in args.shapes] == [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]
    assert args.m == [1, 16, 64, 256, 1024, 4096]
    assert args.peers == list(PEERS)
    assert (args.group_size, args.dtype, args.repeats, args.name) == (128, "bf16", 20, "llama3-8b")
    assert args.out is None and not args.layer and not args.no_plot


def test_explicit_shapes_ms_and_peers():
    args = cli.parse_args(["--shape", "4096,4096", "--shape", "8192x1024", "--m", "1,64", "--peers",
                           "liquidgemm,cublas-bf16", "--group-size", "channel", "--dtype", "f16", "--repeats", "30",
                           "--out", "/tmp/x", "--no-plot"])
    assert args.models == []
    assert [(s.name, s.n, s.k) for s in args.shapes] == [("4096x4096", 4096, 4096), ("8192x1024", 8192, 1024)]
    assert args.m == [1, 64]
    assert args.peers == ["liquidgemm", "cublas-bf16"]
    assert (args.group_size, args.dtype, args.repeats, str(args.out), args.no_plot) == ("channel", "f16", 30,
                                                                                       "/tmp/x", True)
    assert args.name == "shapes"


def test_models_are_repeatable_and_comma_separated():
    args = cli.parse_args(["--model", "llama3-8b,qwen2.5-7b", "--model", "llama3-70b", "--quick"])
    assert args.models == ["llama3-8b", "qwen2.5-7b", "llama3-70b"]
    assert len(args.shapes) == 12
    assert args.m == [1, 64, 1024]
    assert args.name == "llama3-8b+qwen2.5-7b+llama3-70b"


def test_layer_defaults():
    args = cli.parse_args(["--layer"])
    assert args.m == [1, 16, 64, 256]
    assert args.peers == ["liquidgemm-linear", "cublas-bf16"]
    assert args.name == "llama3-8b-layer"
    assert [(s.n, s.k) for s in args.shapes] == [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]


@pytest.mark.parametrize("argv, message", [
    (["--m", "0,1"], "positive integers"),
    (["--m", "a"], "positive integers"),
    (["--repeats", "0"], "positive integer"),
    (["--peers", "liquidgemm,nope"], "unknown nope"),
    (["--model", "gpt5"], "unknown preset 'gpt5'"),
    (["--shape", "4096"], "N,K"),
    (["--dtype", "f32"], "invalid choice"),
    (["--layer", "--shape", "128,128"], "--layer takes one --model"),
])
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.parse_args(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_help_lists_options_peers_and_examples(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for option in ("--model", "--shape", "--m ", "--group-size", "--dtype", "--peers", "--config", "--out",
                   "--repeats", "--no-plot", "--layer", "--quick", "llama3-70b"):
        assert option in text, option
    for name, cls in PEERS.items():
        assert name in text and cls.label in text
    assert "examples:" in text and "liquidgemm bench --layer" in text
    assert "4x the L2" in text


def test_without_cuda_one_line_and_exit_code_2(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.main(["--quick", "--no-plot"]) == 2
    captured = capsys.readouterr()
    assert captured.err == cli.NO_CUDA_MESSAGE + "\n"
    assert captured.out == ""


def test_make_peers_rejects_unknown_names():
    assert [p.name for p in make_peers(["cublas-bf16", "liquidgemm"])] == ["cublas-bf16", "liquidgemm"]
    with pytest.raises(ValueError, match="unknown bogus"):
        make_peers(["bogus"])


def _cpu_run(monkeypatch, tmp_path, argv):
    """`liquidgemm bench` end to end on the CPU: real peers where torch has CPU kernels, fake GPU timings."""
    from liquidgemm import timing

    monkeypatch.setenv("COLUMNS", "160")  # rich would fold the table to pytest's 80 columns
    monkeypatch.setattr(timing, "measure_hbm_bandwidth", lambda device: 3.0e12)
    monkeypatch.setattr(timing, "measure_peak_tops", lambda dtype, device: 1000.0)
    monkeypatch.setattr(report, "collect_metadata", lambda device, hbm_bytes_per_s, peak_tops: {
        "gpu": "Fake H100", "gpu_slug": "h100", "hbm_gbps": hbm_bytes_per_s / 1e9, "peak_tops": peak_tops})

    def time_fn(make_operands, fn, *, bytes_per_call, repeats, device):
        fn(*make_operands(1))
        return Timing(10.0, 9.0, 9.5, 11.0, "cuda-graph", 2, 2 * bytes_per_call, repeats)

    args = cli.parse_args([*argv, "--out", str(tmp_path)])
    assert cli.run(args, torch.device("cpu"), time_fn=time_fn) == 0
    return args


def test_cli_run_end_to_end_on_cpu_with_fake_timings(monkeypatch, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    args = _cpu_run(monkeypatch, tmp_path, ["--shape", "256,128", "--m", "1,32",
                                             "--peers", "liquidgemm,cublas-bf16,int8-intmm", "--name", "toy"])
    out = capsys.readouterr().out
    assert "256x128 (N=256, K=128)" in out and "torch._int_mm needs M > 16" in out
    doc = json.loads((tmp_path / "toy.json").read_text())
    assert doc["metadata"]["gpu"] == "Fake H100" and doc["metadata"]["peak_tops"] == {"int8": 1000.0,
                                                                                      "fp8_e4m3": 1000.0,
                                                                                      "bf16": 1000.0}
    assert doc["args"]["shapes"] == [["256x128", 256, 128]] and doc["args"]["m"] == [1, 32]
    by = {(r["m"], r["peer"]): r for r in doc["results"]}
    assert len(by) == 6 and doc["layer"] == []
    bf16 = by[(32, "cublas-bf16")]
    assert bf16["status"] == OK and bf16["median_us"] == 10.0 and bf16["vs_bf16"] == 1.0
    assert bf16["bytes_moved"] == 2 * (32 * 128 + 256 * 128 + 32 * 256)
    assert bf16["hbm_us"] == pytest.approx(bf16["bytes_moved"] / 3e12 * 1e6)
    assert by[(1, "int8-intmm")]["status"] == NA
    assert by[(1, "liquidgemm")]["status"] in (OK, NA)  # n/a here unless the extension is built
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.csv", "toy.json", "toy_speedup.png", "toy_tops.png"]


def test_cli_layer_run_on_cpu(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    _cpu_run(monkeypatch, tmp_path, ["--layer", "--m", "1", "--peers", "cublas-bf16"])
    doc = json.loads((tmp_path / "llama3-8b-layer.json").read_text())
    (point,) = doc["layer"]
    assert doc["results"] == [] and point["problem"] == "llama3-8b layer" and point["n"] is None
    assert point["flops"] == 2 * (6144 * 4096 + 4096 * 4096 + 28672 * 4096 + 4096 * 14336)
    assert (tmp_path / "llama3-8b-layer_layer.png").exists()


# ---- runner with fake peers --------------------------------------------------------------------------------------
class FakePeer(Peer):
    """C = X W^T on the CPU; the fake timer below gives it `us` microseconds per call."""

    name = "fake"
    label = "fake"

    def __init__(self, name: str, us: float, **kw):
        super().__init__(**kw)
        self.name, self.us = name, us
        self.prepared = []

    def prepare(self, m, n, k, device):
        w = self._weight(n, k, device, lambda w: w.to(torch.bfloat16))
        self.prepared.append((m, n, k))
        return torch.ones(m, k, dtype=torch.bfloat16), w

    def run(self, operands):
        x, w = operands
        return x @ w.t()


class RaisingPeer(FakePeer):
    def __init__(self, name, where, **kw):
        super().__init__(name, 1.0, **kw)
        self.where = where

    def available(self, m, n, k):
        if self.where == "available":
            raise ImportError("cannot import name '_native'")
        return True, ""

    def prepare(self, m, n, k, device):
        if self.where == "prepare":
            raise RuntimeError("boom in prepare\nsecond line")
        return super().prepare(m, n, k, device)

    def run(self, operands):
        if self.where == "run":
            raise ValueError("boom in run")
        return super().run(operands)


class UnavailablePeer(FakePeer):
    def available(self, m, n, k):
        return (False, "needs M > 16") if m <= 16 else (True, "")


def fake_time_fn(make_operands, fn, *, bytes_per_call, repeats, device):
    """Checks what time_op would rely on, then returns the peer's fixed time (fn's closure knows the peer)."""
    first, second = make_operands(0), make_operands(1)
    x0, x1 = first[0][0][0], second[0][0][0]
    assert x0.data_ptr() != x1.data_ptr() and torch.equal(x0, x1)  # rotation copies: new memory, same values
    assert bytes_per_call == tensor_bytes(first)
    fn(*second)
    us = fn.__closure__[0].cell_contents.us
    return Timing(us, us * 0.9, us * 0.95, us * 1.05, "cuda-graph", 7, 7 * bytes_per_call, repeats)


ROOF = Roofline(hbm_bytes_per_s=2e12, int8_tops=1000.0)
SHAPE = LayerShape("toy/up", 256, 128)


def test_points_hold_times_rooflines_and_speedups():
    peers = [FakePeer("liquidgemm", 10.0), FakePeer("cublas-bf16", 40.0), FakePeer("fp8-rowwise", 20.0)]
    seen = []
    points = run_problems([Problem.single(SHAPE)], [1, 32], peers, device="cpu", repeats=20, roofline=ROOF,
                          time_fn=fake_time_fn, on_point=seen.append)
    assert seen == points
    assert [(p.m, p.peer) for p in points] == [(m, p) for m in (1, 32) for p in ("liquidgemm", "cublas-bf16",
                                                                                   "fp8-rowwise")]
    lg, bf16, fp8 = points[3:]
    m, n, k = 32, 256, 128
    assert lg.status == OK and (lg.problem, lg.n, lg.k) == ("toy/up", n, k)
    assert (lg.median_us, lg.min_us, lg.p20_us, lg.p80_us) == (10.0, 9.0, 9.5, 10.5)
    assert (lg.method, lg.rotations) == ("cuda-graph", 7)
    assert lg.bytes_moved == 2 * (m * k + n * k + m * n)  # bf16 inputs + bf16 output
    assert lg.flops == 2 * m * n * k
    assert lg.tops == pytest.approx(2 * m * n * k / 10e-6 / 1e12)
    assert lg.gbps == pytest.approx(lg.bytes_moved / 10e-6 / 1e9)
    assert lg.hbm_us == pytest.approx(lg.bytes_moved / 2e12 * 1e6)
    assert lg.compute_us == pytest.approx(2 * m * n * k / 1e15 * 1e6)
    assert lg.roofline_pct == pytest.approx(100 * max(lg.hbm_us, lg.compute_us) / 10.0)
    assert (lg.vs_bf16, bf16.vs_bf16, fp8.vs_bf16) == (4.0, 1.0, 2.0)
    assert (lg.liquidgemm_speedup, bf16.liquidgemm_speedup, fp8.liquidgemm_speedup) == (1.0, 4.0, 2.0)
    # weights were made once per peer and problem, then dropped
    assert peers[0].prepared == [(1, n, k), (32, n, k)] and peers[0]._weights == {}


def test_a_peer_that_raises_or_is_unavailable_is_reported_na_and_the_run_goes_on():
    peers = [FakePeer("liquidgemm", 10.0), RaisingPeer("bad-prepare", "prepare"), RaisingPeer("bad-run", "run"),
             RaisingPeer("bad-available", "available"), UnavailablePeer("small-m", 5.0),
             FakePeer("cublas-bf16", 30.0)]
    points = run_problems([Problem.single(SHAPE)], [1, 32], peers, device="cpu", time_fn=fake_time_fn)
    by = {(p.m, p.peer): p for p in points}
    assert by[(1, "bad-prepare")].status == NA
    assert by[(1, "bad-prepare")].reason == "RuntimeError: boom in prepare"
    assert by[(32, "bad-run")].reason == "ValueError: boom in run"
    assert by[(1, "bad-available")].reason == "ImportError: cannot import name '_native'"
    assert by[(1, "small-m")].reason == "needs M > 16" and by[(1, "small-m")].median_us is None
    assert by[(32, "small-m")].status == OK and by[(32, "small-m")].liquidgemm_speedup == 0.5
    assert by[(32, "cublas-bf16")].status == OK and by[(32, "liquidgemm")].vs_bf16 == 3.0
    for p in points:
        if not p.ok:
            assert p.median_us is None and p.vs_bf16 is None and p.liquidgemm_speedup is None


def test_a_failing_timer_is_reported_na():
    def broken(*a, **kw):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    point = measure_point(FakePeer("liquidgemm", 1.0), Problem.single(SHAPE), 4, device="cpu", repeats=20,
                          time_fn=broken)
    assert point.status == NA and point.reason.startswith("RuntimeError: CUDA error")


def test_layer_problem_times_all_gemms_as_one_call():
    layer = Problem("toy layer", (LayerShape("a", 256, 128), LayerShape("b", 128, 256)))
    assert (layer.n, layer.k) == (None, None)
    (point,) = run_problems([layer], [2], [FakePeer("liquidgemm", 8.0)], device="cpu", roofline=ROOF,
                            time_fn=fake_time_fn)
    assert point.flops == 2 * 2 * 256 * 128 * 2
    assert point.bytes_moved == 2 * ((2 * 128 + 256 * 128 + 2 * 256) + (2 * 256 + 128 * 256 + 2 * 128))
    assert point.median_us == 8.0 and point.problem == "toy layer"


# ---- reports -----------------------------------------------------------------------------------------------------
def fake_points() -> list[Point]:
    points = []
    for problem, n, k in (("toy/qkv", 6144, 4096), ("toy/down", 4096, 14336)):
        for m in (1, 16, 64):
            for peer, us in (("liquidgemm", 10.0 + m), ("cublas-bf16", 40.0 + m), ("int8-intmm", 25.0 + m)):
                if peer == "int8-intmm" and m <= 16:
                    points.append(Point(problem, n, k, m, peer, status=NA, reason="torch._int_mm needs M > 16"))
                    continue
                flops, nbytes = 2 * m * n * k, n * k // 2
                points.append(Point(problem, n, k, m, peer, median_us=us, min_us=us * 0.9, p20_us=us * 0.95,
                                    p80_us=us * 1.1, method="cuda-graph", rotations=4, rotation_bytes=4 * nbytes,
                                    bytes_moved=nbytes, flops=flops, tops=flops / us / 1e6,
                                    gbps=nbytes / us / 1e3, hbm_us=nbytes / 3e6, compute_us=flops / 1e9,
                                    roofline_pct=50.0))
    from liquidgemm.bench.runner import add_speedups

    add_speedups(points)
    return points


def test_json_round_trip(tmp_path):
    points = fake_points()
    metadata = {"gpu": "Fake H100", "sm_count": 132, "hbm_gbps": 3000.0, "peak_tops": {"int8": 950.0}}
    path = report.write_json(tmp_path / "sub" / "r.json", points, metadata, {"m": [1, 16, 64]})
    doc = json.loads(path.read_text())
    assert doc["schema"] == report.JSON_SCHEMA
    assert doc["metadata"] == metadata and doc["args"] == {"m": [1, 16, 64]} and doc["layer"] == []
    assert len(doc["results"]) == len(points)
    assert doc["results"][0]["peer"] == "liquidgemm" and doc["results"][0]["median_us"] == 11.0
    na = [r for r in doc["results"] if r["status"] == NA]
    assert len(na) == 4 and all(r["median_us"] is None and r["reason"] for r in na)
    assert report.load_points(path) == points


def test_csv_has_one_row_per_point(tmp_path):
    points = fake_points()
    path = report.write_csv(tmp_path / "r.csv", points)
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == FIELDS
    assert len(rows) == len(points)
    lg = rows[0]
    assert (lg["problem"], lg["m"], lg["peer"], float(lg["median_us"])) == ("toy/qkv", "1", "liquidgemm", 11.0)
    assert float(lg["vs_bf16"]) == pytest.approx(41.0 / 11.0)
    na = next(r for r in rows if r["status"] == NA)
    assert na["median_us"] == "" and na["reason"] == "torch._int_mm needs M > 16"


def test_table_rows_show_values_and_na_reasons():
    notes = {}
    rows = report.table_rows([p for p in fake_points() if p.problem == "toy/qkv" and p.m == 16], notes)
    assert rows[0] == ["16", "liquidgemm", "26.0", "24.7-28.6", f"{2 * 16 * 6144 * 4096 / 26e6:.1f}",
                       f"{6144 * 4096 // 2 / 26e3:.0f}", "50", f"{56 / 26:.2f}", "1.00"]
    assert rows[2][:3] == ["16", "int8-intmm", "n/a [1]"] and notes == {"torch._int_mm needs M > 16": 1}


def test_print_tables_one_table_per_problem():
    from rich.console import Console

    console = Console(record=True, width=200)
    report.print_tables(fake_points(), console=console)
    text = console.export_text()
    assert "toy/qkv (N=6144, K=4096)" in text and "toy/down (N=4096, K=14336)" in text
    assert text.count("n/a [1]") == 4 and text.count("[1] n/a: torch._int_mm needs M > 16") == 1
    assert "liquidgemm x" in text


@pytest.mark.parametrize("name, slug", [
    ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H200", "h200"), ("NVIDIA A100-SXM4-80GB", "a100"),
    ("NVIDIA L40S", "l40s"), ("NVIDIA GeForce RTX 4090", "rtx-4090"),
])
def test_gpu_slug(name, slug):
    assert report.gpu_slug(name) == slug


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    from liquidgemm.bench import plot

    points = fake_points()
    layer = [Point("toy layer", None, None, m, peer, median_us=us * m, vs_bf16=2.0 if peer == "liquidgemm" else 1.0,
                   flops=1, bytes_moved=1) for m in (1, 16) for peer, us in (("liquidgemm", 10.0),
                                                                              ("cublas-bf16", 20.0))]
    written = plot.plot_all(points, layer, tmp_path, "toy", title="Fake H100")
    assert [p.name for p in written] == ["toy_tops.png", "toy_speedup.png", "toy_layer.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    # re-plotting a saved run
    json_path = report.write_json(tmp_path / "saved.json", points, {}, layer=layer)
    assert plot.main([str(json_path), "--out", str(tmp_path / "again")]) == 0
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["saved_layer.png", "saved_speedup.png",
                                                                       "saved_tops.png"]


# ---- timing helpers --------------------------------------------------------------------------------------------
def test_summarize_median_min_and_percentiles():
    samples = [5.0, 1.0, 4.0, 2.0, 3.0, 6.0]  # sorted: 1..6; inclusive p20 = 2.0, p80 = 5.0
    assert summarize(samples) == (3.5, 1.0, 2.0, 5.0)
    assert summarize([7.0]) == (7.0, 7.0, 7.0, 7.0)
    with pytest.raises(ValueError, match="samples_us"):
        summarize([])


def test_kernel_samples_split_rounds():
    # 3 rounds x 2 calls, each call = kernels of 1 us and 2 us
    durations = [1.0, 2.0] * 2 + [1.0, 2.0] * 2 + [1.5, 2.5] * 2
    assert kernel_samples(durations, repeats=3, calls=2) == [3.0, 3.0, 4.0]
    # a dropped kernel: only the mean is left
    assert kernel_samples(durations[:-1], repeats=3, calls=2) == [sum(durations[:-1]) / 6]
    with pytest.raises(RuntimeError, match="no GPU kernels"):
        kernel_samples([], repeats=3, calls=2)


def test_rotation_count_exceeds_the_requested_bytes_within_limits():
    l2 = 50 << 20
    assert rotation_count(10 << 20, 4 * l2) == 20  # 20 x 10 MiB = 4 x 50 MiB
    assert rotation_count(7 << 20, 4 * l2) * (7 << 20) >= 4 * l2
    assert rotation_count(900 << 20, 4 * l2) == 1  # one set is already past L2
    assert rotation_count(1024, 4 * l2) == MAX_ROTATIONS
    assert rotation_count(10 << 20, 4 * l2, free_bytes=100 << 20) == 5  # at most half the free memory
    assert rotation_count(0, 4 * l2) == 1
    assert rotation_count(10 << 20, 0) == 1


def test_tensor_bytes_and_clone_tensors_walk_containers_and_quantized_weights():
    from liquidgemm import quantize_weight

    qw = quantize_weight(torch.randn(128, 256), 128)
    ops = (torch.zeros(4, 256, dtype=torch.int8), [torch.ones(4)], {"qw": qw}, 3)
    expected = 4 * 256 + 4 * 4 + qw.packed.numel() + qw.params.numel() + 4 * 128
    assert tensor_bytes(ops) == expected
    copy = clone_tensors(ops)
    assert tensor_bytes(copy) == expected and copy[3] == 3
    assert copy[2]["qw"].packed.data_ptr() != qw.packed.data_ptr()
    assert torch.equal(copy[2]["qw"].packed, qw.packed) and torch.equal(copy[2]["qw"].s1, qw.s1)
    assert copy[2]["qw"].group_size == 128 and copy[1][0].data_ptr() != ops[1][0].data_ptr()
    # a view into a larger buffer (quantize_act's whole token tiles) is copied with the buffer
    view = torch.arange(48 * 4, dtype=torch.int8).view(48, 4)[16:21]
    view_copy = clone_tensors(view)
    assert torch.equal(view_copy, view) and view_copy.data_ptr() != view.data_ptr()
    assert view_copy.untyped_storage().nbytes() == 48 * 4 and view_copy.storage_offset() == 16 * 4


def test_time_op_rejects_bad_repeats():
    with pytest.raises(ValueError, match="repeats"):
        time_op(lambda i: (), lambda: None, bytes_per_call=0, repeats=0)


# ---- GPU ----------------------------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_smoke_run_writes_finite_positive_times(tmp_path):
    rc = cli.main(["--shape", "4096,4096", "--m", "1,64", "--peers", "liquidgemm,cublas-bf16,int8-intmm",
                   "--quick", "--out", str(tmp_path), "--name", "smoke", "--no-plot"])
    assert rc == 0
    doc = json.loads((tmp_path / "smoke.json").read_text())
    assert doc["metadata"]["hbm_gbps"] > 100 and doc["metadata"]["peak_tops"]["int8"] > 10
    by = {(r["m"], r["peer"]): r for r in doc["results"]}
    for m in (1, 64):
        for peer in ("liquidgemm", "cublas-bf16"):
            r = by[(m, peer)]
            assert r["status"] == OK, r["reason"]
            assert math.isfinite(r["median_us"]) and r["median_us"] > 0
            assert r["min_us"] <= r["p20_us"] <= r["median_us"] <= r["p80_us"]
            assert r["method"] == "cuda-graph"
    assert by[(1, "int8-intmm")]["status"] == NA and "M > 16" in by[(1, "int8-intmm")]["reason"]
    assert (tmp_path / "smoke.csv").exists()
