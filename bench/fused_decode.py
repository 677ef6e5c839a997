"""Decode-size w4a8_linear two ways: quantize kernel + GEMM vs one fused-quantization GEMM (`_fq` configs), with
the GEMM alone and cuBLAS bf16 in the same run. The data behind `dispatch.uses_fused_quant`.

    python bench/fused_decode.py                                  # llama3-8b + llama3-70b, M = 1..16
    python bench/fused_decode.py --model llama3-8b --m 1,16 --out /tmp/x

Per (layer, M): `two_kernels` = w4a8_linear forced onto the dispatcher's GEMM config (quantize_act + GEMM, PDL
between them), `gemm_only` = that GEMM on pre-quantized activations, `fused` = the compiled fused config with the
smallest token tile that takes M tokens of this K (none past K = fused_max_k), `bf16` = F.linear. GPU time of
CUDA-graph replays, weights rotated past L2 (liquidgemm.timing). `rule` is what w4a8_linear picks with
LIQUIDGEMM_FUSED_QUANT=1 (set here: fused quantization is off by default, see liquidgemm.dispatch).
Writes <out>/fused_decode.{json,md,png}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
os.environ["LIQUIDGEMM_FUSED_QUANT"] = "1"  # this bench reports what the rule picks when it is switched on
try:  # the installed package (with its compiled kernels) first; the checkout's sources otherwise
    import liquidgemm  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT / "python"))

import liquidgemm as lg  # noqa: E402
from liquidgemm import dispatch, shapes, timing  # noqa: E402
from liquidgemm._configs import TileConfig, fused_max_k  # noqa: E402
from liquidgemm.bench.report import collect_metadata, gpu_slug  # noqa: E402


def fused_configs(m: int, k: int, out: str) -> list[str]:
    """The compiled fused configs with the smallest token tile that takes m tokens of K = k."""
    fits = [TileConfig.parse(c) for c in dispatch.list_configs(out, fused_quant=True)]
    fits = [c for c in fits if c.tile_n >= m and k <= fused_max_k(c.tile_n)]
    if not fits:
        return []
    smallest = min(c.tile_n for c in fits)
    return [c.id for c in fits if c.tile_n == smallest]


def time_layer(layer: shapes.LayerShape, ms: list[int], dtype: torch.dtype, group: int) -> list[dict]:
    n, k = layer.n, layer.k
    torch.manual_seed(0)
    w = torch.randn(n, k, device="cuda", dtype=dtype) * 0.05
    qw = lg.quantize_weight(w, group_size=group)
    w4_bytes = timing.tensor_bytes((qw.packed, qw.params, qw.s1))
    out = dispatch.normalize_out(dtype)

    def w4_operands(x):
        def make(i):
            if i == 0:
                return (x, qw)
            return (x, timing.clone_tensors(qw))
        return make

    rows = []
    for m in ms:
        x = torch.randn(m, k, device="cuda", dtype=dtype)
        gemm_config = dispatch.select_config(m, n, k, group, out)
        row = {"layer": layer.name, "n": n, "k": k, "m": m, "gemm_config": gemm_config, "us": {}, "configs": {}}

        def run_linear(x_, w_, config):
            return lg.w4a8_linear(x_, w_, config=config)

        t = timing.time_op(w4_operands(x), lambda x_, w_: run_linear(x_, w_, gemm_config), bytes_per_call=w4_bytes)
        row["us"]["two_kernels"] = t.median_us
        x_q, x_scale = lg.quantize_act(x)
        t = timing.time_op(w4_operands(x), lambda x_, w_: lg.w4a8_gemm(x_q, x_scale, w_, config=gemm_config),
                           bytes_per_call=w4_bytes)
        row["us"]["gemm_only"] = t.median_us
        for config in fused_configs(m, k, out)[:1]:
            y = lg.w4a8_linear(x, qw, config=config)
            torch.testing.assert_close(y, lg.w4a8_linear(x, qw, config=gemm_config), rtol=0, atol=0)  # bit-exact
            t = timing.time_op(w4_operands(x), lambda x_, w_, c=config: run_linear(x_, w_, c),
                               bytes_per_call=w4_bytes)
            row["us"]["fused"] = t.median_us
            row["configs"]["fused"] = config
        t = timing.time_op(lambda i: (x, w if i == 0 else w.clone()), F.linear, bytes_per_call=w.nbytes)
        row["us"]["bf16"] = t.median_us
        row["linear_config"] = dispatch.select_linear_config(m, n, k, group, out)
        row["fused_rule"] = TileConfig.parse(row["linear_config"]).fused_quant
        fused = row["us"].get("fused", float("nan"))
        print(f"{layer.name:>16} {n:6d}x{k:<6d} M={m:3d}  two kernels {row['us']['two_kernels']:7.2f}  "
              f"gemm only {row['us']['gemm_only']:7.2f}  fused {fused:7.2f} "
              f"({row['us']['two_kernels'] / fused:4.2f}x)  bf16 {row['us']['bf16']:7.2f}  "
              f"rule: {'fused' if row['fused_rule'] else 'two kernels'}", flush=True)
        rows.append(row)
    del w, qw
    torch.cuda.empty_cache()
    return rows


def write_markdown(path: Path, rows: list[dict], gpu: str) -> None:
    lines = [f"# w4a8_linear at decode sizes: two kernels vs fused quantization ({gpu})", "",
             "GPU time per call (us), CUDA-graph replays, weights rotated past L2. `x` = two kernels / fused; "
             "`rule` = what w4a8_linear runs with LIQUIDGEMM_FUSED_QUANT=1 (fused quantization is off by default).",
             "",
             "| layer | N x K | M | bf16 | GEMM only | quantize + GEMM | fused | x | rule |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        us = r["us"]
        cell = lambda key: f"{us[key]:.2f}" if key in us else "-"  # noqa: E731
        ratio = f"{us['two_kernels'] / us['fused']:.2f}" if "fused" in us else "-"
        lines.append(f"| {r['layer']} | {r['n']}x{r['k']} | {r['m']} | {cell('bf16')} | {cell('gemm_only')} | "
                     f"{cell('two_kernels')} | {cell('fused')} | {ratio} | {'fused' if r['fused_rule'] else 'two'} |")
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, rows: list[dict], gpu: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(dict.fromkeys(r["layer"] for r in rows))
    cols = 4
    fig, axes = plt.subplots((len(layers) + cols - 1) // cols, cols, figsize=(4 * cols, 3.2 * ((len(layers) + 3) // 4)),
                             squeeze=False)
    for ax, layer in zip(axes.flat, layers):
        pts = [r for r in rows if r["layer"] == layer]
        ms = [r["m"] for r in pts]
        for key, style in (("two_kernels", "o-"), ("fused", "s--"), ("gemm_only", "x:")):
            ys = [r["us"].get(key, float("nan")) for r in pts]
            ax.plot(ms, ys, style, label=key.replace("_", " "))
        ax.set_xscale("log", base=2)
        ax.set_title(f"{layer} {pts[0]['n']}x{pts[0]['k']}", fontsize=9)
        ax.set_xlabel("M (tokens)")
        ax.set_ylabel("us per call")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"w4a8_linear at decode sizes: quantize + GEMM vs fused quantization ({gpu})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="llama3-8b,llama3-70b", help="comma-separated presets (liquidgemm.shapes)")
    parser.add_argument("--m", default="1,2,4,8,16", help="comma-separated token counts (<= 16: the fused tiles)")
    parser.add_argument("--group", type=int, default=128)
    parser.add_argument("--dtype", choices=("bf16", "f16"), default="bf16")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default bench/results/<gpu>)")
    args = parser.parse_args()
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
    ms = [int(v) for v in args.m.split(",")]
    gpu = torch.cuda.get_device_name()
    out_dir = args.out or ROOT / "bench" / "results" / gpu_slug(gpu)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in args.model.split(","):
        for layer in shapes.resolve_shapes(model):
            for row in time_layer(layer, ms, dtype, args.group):
                rows.append({"model": model, **row})
    hbm = timing.measure_hbm_bandwidth()
    meta = collect_metadata(torch.device("cuda"), hbm_bytes_per_s=hbm, peak_tops={})
    meta["command"] = "python bench/fused_decode.py " + " ".join(sys.argv[1:])
    (out_dir / "fused_decode.json").write_text(json.dumps({"metadata": meta, "results": rows}, indent=1) + "\n")
    write_markdown(out_dir / "fused_decode.md", rows, gpu)
    plot(out_dir / "fused_decode.png", rows, gpu)
    print(f"wrote {out_dir}/fused_decode.{{json,md,png}}")


if __name__ == "__main__":
    main()
