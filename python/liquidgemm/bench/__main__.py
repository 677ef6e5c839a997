"""`liquidgemm bench` / `python -m liquidgemm.bench`: liquidgemm side by side with every peer, on the GPU."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_M = (1, 16, 64, 256, 1024, 4096)
QUICK_M = (1, 64, 1024)
LAYER_M = (1, 16, 64, 256)
LAYER_PEERS = ("liquidgemm-linear", "cublas-bf16")
DEFAULT_MODEL = "llama3-8b"
NO_CUDA_MESSAGE = "liquidgemm bench: needs a CUDA GPU, and torch.cuda.is_available() is False on this machine"

EXAMPLES = """\
examples:
  liquidgemm bench --model llama3-8b                      all peers, the 4 projections, M = 1 ... 4096
  liquidgemm bench --model llama3-70b --m 1,16,64 --peers liquidgemm,cublas-bf16,fp8-rowwise
  liquidgemm bench --shape 28672,4096 --shape 4096,14336 --group-size 64 --dtype f16
  liquidgemm bench --hf-config ~/models/Qwen2.5-7B/config.json --quick
  liquidgemm bench --layer                                 one Llama-3-8B decoder layer, liquidgemm vs bf16
  liquidgemm bench --model llama3-8b --config w4a8_sm90_bf16_t128x64x128_c1x1_s6_coop_persist

Times are GPU time per call: CUDA-graph replays of calls whose operands rotate through more than 4x the L2
cache, median of --repeats replays (see bench/README.md). Results go to --out as <name>.json, <name>.csv and
<name>_*.png.
"""


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _group_size(text: str) -> int | str:
    return "channel" if text == "channel" else _positive_int(text)


def _comma_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    from ..shapes import PRESETS
    from .peers import PEERS

    peer_help = "\n".join(f"  {name:<18} {cls.label}" for name, cls in PEERS.items())
    parser = argparse.ArgumentParser(
        prog="liquidgemm bench",
        description="Benchmark liquidgemm's W4A8 GEMM against cuBLAS, torch int8/fp8 GEMMs and CUTLASS's "
        "mixed-input GEMM on model shapes. Needs a CUDA GPU.",
        epilog=f"peers:\n{peer_help}\n\n{EXAMPLES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    shapes = parser.add_argument_group("shapes")
    shapes.add_argument("--model", action="append", type=_comma_list, default=[], metavar="NAME[,NAME]",
                        help=f"model preset(s): {', '.join(PRESETS)} (repeatable; default {DEFAULT_MODEL} "
                        "when no --shape or --hf-config is given)")
    shapes.add_argument("--shape", action="append", default=[], metavar="N,K",
                        help="a GEMM shape: N = out_features, K = in_features (repeatable)")
    shapes.add_argument("--hf-config", default=None, metavar="PATH",
                        help="shapes of a Hugging Face model from its config.json (file or folder)")
    shapes.add_argument("--m", type=_positive_ints, default=None, metavar="M[,M...]",
                        help=f"token counts (default {','.join(map(str, DEFAULT_M))}; "
                        f"with --quick {','.join(map(str, QUICK_M))}; with --layer {','.join(map(str, LAYER_M))})")
    what = parser.add_argument_group("what to run")
    what.add_argument("--peers", type=_comma_list, default=None, metavar="P[,P...]",
                      help=f"peers to run (default all; with --layer {','.join(LAYER_PEERS)})")
    what.add_argument("--group-size", type=_group_size, default=128, metavar="G",
                      help="liquidgemm weight group size: 64, a multiple of 128, or 'channel' (default 128)")
    what.add_argument("--dtype", choices=("bf16", "f16"), default="bf16",
                      help="liquidgemm activation/output dtype (default bf16)")
    what.add_argument("--config", default=None, metavar="ID",
                      help="force one liquidgemm kernel config (see liquidgemm.list_configs())")
    what.add_argument("--layer", action="store_true",
                      help="end-to-end layer benchmark: all linear layers of one decoder layer of --model "
                      f"(default {DEFAULT_MODEL}) timed as one graph")
    what.add_argument("--quick", action="store_true",
                      help=f"fewer points: M = {','.join(map(str, QUICK_M))} and only the int8 peak measured")
    what.add_argument("--repeats", type=_positive_int, default=20,
                      help="timed graph replays per point; the median is reported (default 20)")
    what.add_argument("--cooldown", type=float, default=1.0, metavar="S",
                      help="idle seconds before each (shape, M) point, so that clocks lowered by the previous "
                           "point's large GEMMs recover before the next is timed (default 1.0)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, default=None, metavar="DIR",
                     help="output folder (default bench/results/<gpu>/, e.g. bench/results/h100/)")
    out.add_argument("--name", default=None, help="file name stem (default: model names, 'shapes' or '<model>-layer')")
    out.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and resolve defaults that depend on other flags (shapes, M list, peers, output stem)."""
    from ..shapes import resolve_shapes
    from .peers import PEERS

    parser = build_parser()
    args = parser.parse_args(argv)
    args.models = [name for group in args.model for name in group]
    if not args.models and not args.shape and args.hf_config is None:
        args.models = [DEFAULT_MODEL]
    if args.layer:
        if args.shape or args.hf_config or len(args.models) > 1:
            parser.error("--layer takes one --model preset (no --shape / --hf-config)")
    try:
        args.shapes = resolve_shapes(model=args.models, shapes=args.shape, config_json=args.hf_config)
    except ValueError as e:
        parser.error(str(e))
    if args.m is None:
        args.m = list(LAYER_M if args.layer else QUICK_M if args.quick else DEFAULT_M)
    if args.peers is None:
        args.peers = list(LAYER_PEERS if args.layer else PEERS)
    unknown = [p for p in args.peers if p not in PEERS]
    if unknown:
        parser.error(f"--peers: unknown {', '.join(unknown)}; known peers: {', '.join(PEERS)}")
    if args.name is None:
        base = "+".join(args.models) if args.models else "shapes"
        args.name = f"{base}-layer" if args.layer else base
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(NO_CUDA_MESSAGE, file=sys.stderr)
        return 2
    return run(args, torch.device("cuda", torch.cuda.current_device()))


def run(args: argparse.Namespace, device, *, time_fn=None) -> int:
    """Measure, print, write. `time_fn` replaces `timing.time_op` (tests run this on the CPU with a fake)."""
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .. import timing
    from . import plot, report
    from .peers import liquidgemm_unavailable_reason, make_peers
    from .runner import Problem, Roofline, run_problems

    console, err = Console(), Console(stderr=True)
    torch.manual_seed(0)
    why = liquidgemm_unavailable_reason()
    if why is not None:
        err.print(f"[yellow]{why}: the liquidgemm peers will be n/a[/yellow]")

    with err.status("measuring HBM bandwidth and peak TOPS"):
        hbm = timing.measure_hbm_bandwidth(device=device)
        peaks = {"int8": timing.measure_peak_tops(torch.int8, device=device),
                 "fp8_e4m3": timing.measure_peak_tops(torch.float8_e4m3fn, device=device)}
        if not args.quick:
            peaks["bf16"] = timing.measure_peak_tops(torch.bfloat16, device=device)
    # The 8-bit tensor-core roof: torch._int_mm reaches only ~900 TOPS on an H100 while int8/fp8 WGMMA run at
    # the same rate, so the larger of the two measured 8-bit peaks is the honest compute ceiling.
    roofline = Roofline(hbm_bytes_per_s=hbm, int8_tops=max(peaks["int8"], peaks["fp8_e4m3"]))
    metadata = report.collect_metadata(device, hbm_bytes_per_s=hbm, peak_tops=peaks)
    err.print(f"{metadata['gpu']}: HBM {hbm / 1e9:.0f} GB/s, peak "
              + ", ".join(f"{k} {v:.0f} TOPS" for k, v in peaks.items()))

    if args.layer:
        problems = [Problem(f"{args.models[0]} layer", tuple(args.shapes))]
    else:
        problems = [Problem.single(s) for s in args.shapes]
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
    peers = make_peers(args.peers, dtype=dtype, group_size=args.group_size, config=args.config)

    total = len(problems) * len(args.m) * len(peers)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err) as progress:
        task = progress.add_task("benchmarking", total=total)

        def on_point(p) -> None:
            progress.update(task, advance=1, description=f"{p.problem} M={p.m} {p.peer}")

        points = run_problems(problems, args.m, peers, device=device, repeats=args.repeats, roofline=roofline,
                              time_fn=time_fn or timing.time_op, on_point=on_point,
                              cooldown_s=args.cooldown if time_fn is None else 0.0)

    report.print_tables(points, console=console)
    out_dir = args.out or Path("bench") / "results" / metadata["gpu_slug"]
    run_args = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "shapes"}
    run_args["shapes"] = [[s.name, s.n, s.k] for s in args.shapes]
    run_args["argv"] = sys.argv[1:]
    micro, layer = ([], points) if args.layer else (points, [])
    written = [report.write_json(out_dir / f"{args.name}.json", micro, metadata, run_args, layer),
               report.write_csv(out_dir / f"{args.name}.csv", points)]
    if not args.no_plot:
        try:
            written += plot.plot_all(micro, layer, out_dir, args.name, title=metadata["gpu"])
        except ImportError as e:
            err.print(f"[yellow]plots skipped: {e} (pip install matplotlib)[/yellow]")
    for path in written:
        console.print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
