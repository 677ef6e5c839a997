"""PNG plots of benchmark points (matplotlib, no pyplot: no global backend state, works headless).

`python -m liquidgemm.bench.plot RESULTS.json` re-draws the plots of a saved run.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

from .peers import LIQUIDGEMM_PEER, REFERENCE_PEER
from .runner import Point


def _by_problem(points: Sequence[Point]) -> dict[str, list[Point]]:
    out: dict[str, list[Point]] = {}
    for p in points:
        out.setdefault(p.problem, []).append(p)
    return out


def _series(points: Sequence[Point], value) -> dict[str, tuple[list[int], list[float]]]:
    """peer -> (Ms, values) over ok points with a value, sorted by M."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for p in sorted(points, key=lambda p: p.m):
        y = value(p) if p.ok else None
        if y is not None and math.isfinite(y):
            xs, ys = series.setdefault(p.peer, ([], []))
            xs.append(p.m)
            ys.append(y)
    return series


def _roofline_tops(p: Point) -> float | None:
    if p.hbm_us is None or p.compute_us is None:
        return None
    return p.flops / max(p.hbm_us, p.compute_us) / 1e6


def _m_axis(ax, points: Sequence[Point]) -> None:
    """Log-2 M axis labelled with the measured Ms themselves (1, 16, 64, ...), not powers of two."""
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log", base=2)
    ms = sorted({p.m for p in points})
    ax.set_xticks(ms, [str(m) for m in ms])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("M (tokens)")


def _grid(count: int):
    from matplotlib.figure import Figure

    cols = min(count, 2)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(6.5 * cols, 4.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes


def _style(p: str) -> dict:
    if p.startswith(LIQUIDGEMM_PEER):
        return {"linewidth": 2.4, "marker": "o"}
    return {"linewidth": 1.3, "marker": "."}


def _draw(path: Path, points: Sequence[Point], value, ylabel: str, title: str, *, log_y: bool,
          extra=None) -> Path:
    problems = _by_problem(points)
    if not problems:
        raise ValueError("plot: no points to plot")
    fig, axes = _grid(len(problems))
    for ax, (name, group) in zip(axes, problems.items()):
        for peer, (xs, ys) in _series(group, value).items():
            ax.plot(xs, ys, label=peer, **_style(peer))
        if extra is not None:
            extra(ax, group)
        first = group[0]
        ax.set_title(f"{name}" + (f"  (N={first.n}, K={first.k})" if first.n is not None else ""), fontsize=10)
        _decorate(ax, group, ylabel, log_y, legend_size=7)
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _decorate(ax, points: Sequence[Point], ylabel: str, log_y: bool, legend_size: int) -> None:
    """The common axis dressing of every panel: measured Ms on x, optional log y, grid, legend."""
    _m_axis(ax, points)
    if log_y:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=legend_size)


def _roofline_line(ax, group: Sequence[Point]) -> None:
    xs, ys = [], []
    for p in sorted(group, key=lambda p: p.m):
        r = _roofline_tops(p) if p.ok and p.peer == LIQUIDGEMM_PEER else None
        if r is not None:
            xs.append(p.m)
            ys.append(r)
    if xs:
        ax.plot(xs, ys, "k--", linewidth=1, label="W4A8 roofline")


def _one_line(ax, group: Sequence[Point]) -> None:
    ax.axhline(1.0, color="k", linewidth=0.8, linestyle="--")


def plot_tops(points: Sequence[Point], path: str | Path, title: str = "") -> Path:
    """TOPS vs M, one panel per problem, every peer, with liquidgemm's roofline (HBM / int8 peak)."""
    return _draw(Path(path), points, lambda p: p.tops, "TOPS (2MNK / time)", title or "Throughput vs M",
                 log_y=True, extra=_roofline_line)


def plot_speedup(points: Sequence[Point], path: str | Path, title: str = "") -> Path:
    """Speedup over cuBLAS bf16 vs M, one panel per problem."""
    return _draw(Path(path), points, lambda p: p.vs_bf16, f"speedup vs {REFERENCE_PEER}",
                 title or f"Speedup vs {REFERENCE_PEER}", log_y=False, extra=_one_line)


def plot_layer(points: Sequence[Point], path: str | Path, title: str = "") -> Path:
    """Decoder-layer benchmark: total GPU time vs M (left) and speedup vs cuBLAS bf16 (right)."""
    from matplotlib.figure import Figure

    if not points:
        raise ValueError("plot: no points to plot")
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for ax, value, ylabel, log_y in (
        (left, lambda p: p.median_us, "GPU time of the layer's GEMMs (us)", True),
        (right, lambda p: p.vs_bf16, f"speedup vs {REFERENCE_PEER}", False),
    ):
        for peer, (xs, ys) in _series(points, value).items():
            ax.plot(xs, ys, label=peer, **_style(peer))
        _decorate(ax, points, ylabel, log_y, legend_size=8)
    right.axhline(1.0, color="k", linewidth=0.8, linestyle="--")
    fig.suptitle(title or points[0].problem)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_all(points: Sequence[Point], layer: Sequence[Point], out_dir: str | Path, stem: str,
             title: str = "") -> list[Path]:
    """Every plot of a run, as `<stem>_tops.png`, `<stem>_speedup.png` and `<stem>_layer.png`."""
    out_dir = Path(out_dir)
    written = []
    if points:
        written.append(plot_tops(points, out_dir / f"{stem}_tops.png", f"{title} throughput vs M".strip()))
        written.append(plot_speedup(points, out_dir / f"{stem}_speedup.png", f"{title} speedup vs cuBLAS bf16".strip()))
    if layer:
        written.append(plot_layer(layer, out_dir / f"{stem}_layer.png", f"{title} {layer[0].problem}".strip()))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from .report import load_points

    parser = argparse.ArgumentParser(prog="python -m liquidgemm.bench.plot",
                                     description="Re-draw the plots of a saved `liquidgemm bench` JSON file.")
    parser.add_argument("json", type=Path, help="results JSON written by liquidgemm bench")
    parser.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default: beside the JSON)")
    args = parser.parse_args(argv)
    written = plot_all(load_points(args.json), load_points(args.json, "layer"), args.out or args.json.parent,
                       args.json.stem)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
