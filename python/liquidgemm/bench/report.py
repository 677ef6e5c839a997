"""What a benchmark run leaves behind: terminal tables, JSON (points + metadata) and CSV (points)."""
from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .runner import FIELDS, Point

JSON_SCHEMA = 1


def gpu_slug(name: str) -> str:
    """Short directory name for a GPU: "NVIDIA H100 80GB HBM3" -> "h100", "NVIDIA GeForce RTX 4090" -> "rtx-4090"."""
    text = re.sub(r"\b(nvidia|geforce|tesla)\b", " ", name.lower())
    model = re.search(r"\b([a-z]{1,2}\d{2,4}[a-z]*)\b", text)
    if model:
        return model.group(1)
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "gpu"


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """Commit of the checkout that holds this package (with "-dirty" if changed), or None when installed."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


def driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def collect_metadata(device, *, hbm_bytes_per_s: float, peak_tops: dict[str, float]) -> dict[str, Any]:
    """Everything needed to compare runs: GPU, software versions, commit, date and the measured machine limits."""
    import torch

    import liquidgemm

    props = torch.cuda.get_device_properties(device)
    return {
        "gpu": props.name,
        "gpu_slug": gpu_slug(props.name),
        "sm_count": props.multi_processor_count,
        "compute_capability": f"{props.major}.{props.minor}",
        "l2_cache_bytes": int(props.L2_cache_size),
        "memory_bytes": int(props.total_memory),
        "driver": driver_version(),
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "liquidgemm": liquidgemm.__version__,
        "git_commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hbm_gbps": hbm_bytes_per_s / 1e9,
        "peak_tops": peak_tops,
        "clocks": "not locked (default boost behaviour)",
    }


def write_json(path: str | os.PathLike, points: Sequence[Point], metadata: dict[str, Any],
               args: dict[str, Any] | None = None, layer: Sequence[Point] = ()) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "schema": JSON_SCHEMA,
        "metadata": metadata,
        "args": args or {},
        "results": [p.to_dict() for p in points],
        "layer": [p.to_dict() for p in layer],
    }
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    return path


def write_csv(path: str | os.PathLike, points: Sequence[Point]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for p in points:
            writer.writerow({k: ("" if v is None else v) for k, v in p.to_dict().items()})
    return path


def load_points(path: str | os.PathLike, key: str = "results") -> list[Point]:
    """Points of a JSON file written by `write_json` (to re-plot committed results)."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    return [Point(**{k: v for k, v in d.items() if k in FIELDS}) for d in doc.get(key, [])]


# ---- terminal tables -----------------------------------------------------------------------------------------
def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def table_rows(points: Sequence[Point], notes: dict[str, int] | None = None) -> list[list[str]]:
    """Cells of one problem's table (columns HEADERS). An n/a point shows `n/a [i]`, with its reason numbered
    in `notes` (reason -> i, shared across tables so each reason is printed once)."""
    notes = {} if notes is None else notes
    rows = []
    for p in points:
        if not p.ok:
            index = notes.setdefault(p.reason, len(notes) + 1)
            rows.append([str(p.m), p.peer, f"n/a [{index}]", "", "", "", "", "", ""])
            continue
        rows.append([
            str(p.m), p.peer, _num(p.median_us, ".1f"), f"{p.p20_us:.1f}-{p.p80_us:.1f}", _num(p.tops, ".1f"),
            _num(p.gbps, ".0f"), _num(p.roofline_pct, ".0f"), _num(p.vs_bf16, ".2f"),
            _num(p.liquidgemm_speedup, ".2f"),
        ])
    return rows


HEADERS = ["M", "peer", "us", "us p20-p80", "TOPS", "GB/s", "% roof", "x bf16", "liquidgemm x"]


def print_tables(points: Sequence[Point], console=None) -> None:
    """One rich table per problem, rows grouped by M, then the n/a reasons and a legend."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    problems: dict[str, list[Point]] = {}
    for p in points:
        problems.setdefault(p.problem, []).append(p)
    notes: dict[str, int] = {}
    for name, group in problems.items():
        first = group[0]
        shape = f" (N={first.n}, K={first.k})" if first.n is not None else ""
        table = Table(title=f"{name}{shape}", title_justify="left", box=box.SIMPLE_HEAD)
        for i, header in enumerate(HEADERS):
            table.add_column(header, justify="left" if i == 1 else "right", no_wrap=True)
        rows = table_rows(group, notes)
        for i, row in enumerate(rows):
            last_of_m = i + 1 == len(rows) or group[i + 1].m != group[i].m
            table.add_row(*row, end_section=last_of_m)
        console.print(table)
    for reason, index in notes.items():
        console.print(f"[{index}] n/a: {reason}", markup=False)
    console.print(
        "us: median GPU time per call (CUDA-graph replays, operands rotated past L2). % roof: roofline time "
        "(max of bytes moved / measured HBM bandwidth, 2MNK / measured int8 peak) / measured time. "
        "x bf16: cuBLAS bf16 time / this time. liquidgemm x: this time / liquidgemm GEMM time."
    )
