"""The `liquidgemm` console script: `bench`, `tune` and `info`."""
from __future__ import annotations

import argparse
import sys


def _bench(argv: list[str]) -> int:
    from .bench.__main__ import main

    return main(argv)


def _tune(argv: list[str]) -> int:
    from .tune.__main__ import main

    return main(argv, prog="liquidgemm tune")


# Subcommands with their own parsers get the rest of the command line untouched (so `liquidgemm tune --help`
# is tune's help).
DELEGATED = {"bench": (_bench, "benchmark liquidgemm against cuBLAS, int8, fp8 and CUTLASS peers (GPU)"),
             "tune": (_tune, "measure every compiled config on this GPU and cache the fastest (GPU)")}


def info_lines() -> list[str]:
    """What `liquidgemm info` prints: version, extension, GPU, configs, tuning cache."""
    import torch

    from . import __version__, _native, dispatch, tune
    from ._configs import CONFIGS

    available = _native.is_available()
    lines = [f"liquidgemm {__version__} (torch {torch.__version__}, CUDA runtime {torch.version.cuda or 'none'})",
             "extension: " + ("loaded" if available else f"not available: {_native.unavailable_reason()}")]
    identity = tune.gpu_identity()
    if identity is None:
        lines.append("GPU: none (torch.cuda.is_available() is False)")
    else:
        lines.append(f"GPU: {identity['gpu']}, {identity['sm_count']} SMs, compute capability {identity['cc']}, "
                     f"CUDA driver {identity['driver']}")
    lines.append(f"compiled configs: {len(dispatch.list_configs())}" if available
                 else f"compiled configs: none loaded ({len(CONFIGS)} defined)")
    path = tune.cache_path(identity)
    if path is None:
        lines.append(f"tuning cache: none without a GPU (set {tune.ENV_CACHE} to name one)")
    else:
        lines.append(f"tuning cache: {path} ({_cache_state(path)})")
    return lines


def _cache_state(path) -> str:
    from . import tune

    if not path.exists():
        return "absent, so the heuristic table is used; `liquidgemm tune` writes it"
    try:
        return f"{len(tune.load_cache(path)['entries'])} entries"
    except ValueError as e:
        return f"unusable, ignored: {e}"


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="liquidgemm", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="W4A8 GEMM (4-bit LiquidQuant weights, INT8 activations) for NVIDIA Hopper.",
        epilog="examples:\n  liquidgemm info\n  liquidgemm tune --model llama3-8b\n"
               "  liquidgemm bench --model llama3-8b\n\n`liquidgemm COMMAND --help` explains each command.")
    parser.add_argument("--version", action="version", version=f"liquidgemm {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, text) in DELEGATED.items():
        commands.add_parser(name, help=text, add_help=False)
    commands.add_parser("info", help="version, extension status, GPU, compiled configs and the tuning cache")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        return DELEGATED[argv[0]][0](argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "info":
        print("\n".join(info_lines()))
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
