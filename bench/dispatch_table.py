"""How close the dispatcher's choice is to the best compiled config, from a tuning run's measurements.

    python bench/dispatch_table.py bench/results/h100/tune.json [--heuristic python/liquidgemm/data/heuristic_h100.json]
        > bench/results/h100/dispatch_vs_best.md

Without a tuning cache the dispatcher uses the committed heuristic table; with one it uses the measured winner
(ratio 1.00 by construction). For every measured (shape, M) this prints the heuristic's choice, its time over the
best time, and flags points worse than 5% (or whose choice was not measured there).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from liquidgemm import dispatch  # noqa: E402
from liquidgemm._configs import TileConfig  # noqa: E402


def short(config_id: str) -> str:
    c = TileConfig.parse(config_id)
    cluster = f" c{c.cluster_m}x1" if c.cluster_m > 1 else ""
    return (f"t{c.tile_n}{cluster} s{c.stages} {c.scheduler}" + (" room" if c.reduce_room else "")
            + (" early" if c.early_weights else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tune_json", type=Path)
    parser.add_argument("--heuristic", type=Path, default=ROOT / "python/liquidgemm/data/heuristic_h100.json")
    args = parser.parse_args()
    data = json.loads(args.tune_json.read_text())
    table = dispatch.heuristic_table(str(args.heuristic))
    times: dict[tuple, dict[str, float]] = {}
    for r in data["measurements"]:
        if r["us"]:
            times.setdefault((r["shape"], r["n"], r["k"], r["m"]), {})[r["config"]] = r["us"]

    meta = data["meta"]
    print(f"# Dispatcher vs best compiled config: {meta['gpu']}, {meta['date']}, out {meta['out']}\n")
    print("Heuristic = the committed table (no tuning cache). Ratio = its config's time / the best time at that "
          "point; a tuning cache picks the best itself (ratio 1.00).\n")
    print("| shape | M | best config | best us | heuristic config | heuristic us | ratio |")
    print("|---|---:|---|---:|---|---:|---:|")
    worst, within = 0.0, 0
    for (shape, n, k, m), by_config in sorted(times.items(), key=lambda kv: (kv[0][0], kv[0][3])):
        best_id = min(by_config, key=by_config.get)
        choice = table.lookup(m, n, k).replace("_bf16_", f"_{meta['out']}_")
        t = by_config.get(choice)
        ratio = t / by_config[best_id] if t else float("inf")
        worst = max(worst, ratio)
        within += ratio <= 1.05
        flag = "" if ratio <= 1.05 else (" **not measured**" if t is None else " **>5%**")
        t_text = f"{t:.1f}" if t else "—"
        print(f"| {shape} | {m} | {short(best_id)} | {by_config[best_id]:.1f} | {short(choice)} | {t_text} | "
              f"{ratio:.2f}{flag} |")
    print(f"\n{within} of {len(times)} points within 5% of the best; worst ratio {worst:.2f}.")


if __name__ == "__main__":
    main()
