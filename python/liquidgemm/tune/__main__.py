"""`liquidgemm tune` / `python -m liquidgemm.tune`: measure every compiled config on your GPU and cache the winners.

For each shape and token count M it times every compiled kernel config (GPU time, weights rotated past L2,
`liquidgemm.timing.time_op`), after checking each config once per shape against the CPU reference. The fastest
config per (M, N, K, group, out) goes into this GPU's tuning cache, which `select_config` then uses in every
later process.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from .. import dispatch, shapes, tune
from .._configs import TileConfig

DEFAULT_MS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
# Small, odd and a multiple of no tile_n: every config's partial-tile path is checked against the reference.
VERIFY_M = 37
OUT_BYTES = {"bf16": 2, "f16": 2}

EXAMPLES = """\
examples:
  liquidgemm tune --model llama3-8b                    tune the four Llama-3-8B projections, all M
  liquidgemm tune --model llama3-70b,qwen2.5-7b --m 1,16,128
  liquidgemm tune --shape 6144,4096 --shape 4096,14336 --group-size channel
  liquidgemm tune --config-json ~/models/Mistral-7B/config.json --dtype f16
  liquidgemm tune --model llama3-8b --dry-run          list the points without a GPU
  liquidgemm tune --model llama3-8b --json-out bench/results/tune-h100.json \\
      --write-heuristic python/liquidgemm/data/heuristic_h100.json

The cache is read by liquidgemm.select_config in every later process on this GPU (see `liquidgemm info`);
LIQUIDGEMM_TUNE_CACHE=PATH overrides its location for both. Re-running merges new winners into it.
"""


class UsageError(Exception):
    """A bad command line or an unusable machine: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        raise UsageError(message)


def build_parser(prog: str = "python -m liquidgemm.tune") -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description=__doc__.split("\n\n")[1], epilog=EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to tune (at least one; they add up)")
    what.add_argument("--model", action="append", default=[], metavar="NAME[,NAME]",
                      help=f"model preset(s): {', '.join(shapes.PRESETS)} (repeatable)")
    what.add_argument("--shape", action="append", default=[], metavar="N,K",
                      help="a weight shape: N = out_features, K = in_features (repeatable)")
    what.add_argument("--config-json", metavar="PATH",
                      help="a Hugging Face config.json (or its directory): its four projection shapes")
    how = p.add_argument_group("how")
    how.add_argument("--m", default=",".join(map(str, DEFAULT_MS)), metavar="M[,M]",
                     help="token counts (default: %(default)s)")
    how.add_argument("--group-size", default="128", metavar="G",
                     help="weight group size: 64, a multiple of 128 dividing K, or 'channel' (default: 128)")
    how.add_argument("--dtype", default="bf16", choices=sorted(OUT_BYTES), help="output dtype (default: bf16)")
    how.add_argument("--configs", metavar="ID[,ID]",
                     help="only these config ids (default: every compiled config of --dtype)")
    how.add_argument("--all-configs", action="store_true",
                     help="time every compiled config at every M (default: skip token tiles far from M: more "
                          "than max(16, 4M) tokens, or fewer than min(M, 256)/4; --configs are always all timed)")
    how.add_argument("--repeats", type=int, default=20, metavar="R",
                     help="timed graph replays per point; the median is kept (default: 20)")
    out = p.add_argument_group("output")
    out.add_argument("--cache", metavar="PATH", type=Path,
                     help="tuning cache to write (default: this GPU's cache, see `liquidgemm info`)")
    out.add_argument("--json-out", metavar="PATH", type=Path,
                     help="write every measurement (and the winners) as JSON, e.g. for bench/results")
    out.add_argument("--write-heuristic", metavar="PATH", type=Path,
                     help="write a heuristic table (the format of liquidgemm/data/heuristic_h100.json) "
                          "from the winners; cells without measurements keep the committed choice")
    out.add_argument("--dry-run", action="store_true",
                     help="list the (shape, M) points and configs that would be measured, then exit (no GPU)")
    return p


@dataclasses.dataclass(frozen=True)
class Problem:
    """One distinct weight shape to tune (shapes shared by several models are measured once)."""

    names: tuple[str, ...]
    n: int
    k: int
    group: int

    @property
    def label(self) -> str:
        return self.names[0] + (f" (+{len(self.names) - 1})" if len(self.names) > 1 else "")


@dataclasses.dataclass(frozen=True)
class Plan:
    problems: list[Problem]
    skipped: list[tuple[shapes.LayerShape, str]]
    ms: list[int]
    configs: list[str]
    out: str
    all_configs: bool = False

    def configs_taking(self, problem: Problem) -> list[str]:
        """The configs that can run this weight shape (a 2x1 cluster needs an even number of 128-row tiles, a
        K-pairs config K % 256 == 0): the others are not timed on it."""
        return [c for c in self.configs if TileConfig.parse(c).takes(problem.n, problem.k)]

    def configs_for(self, m: int, problem: Problem) -> list[str]:
        """The configs worth timing at m tokens: a token tile far larger than m wastes the tensor cores on
        padding, one far smaller multiplies the weight traffic; neither ever wins (--all-configs keeps them)."""
        configs = self.configs_taking(problem)
        if self.all_configs:
            return configs
        fits = [c for c in configs if min(m, 256) / 4 <= TileConfig.parse(c).tile_n <= max(16, 4 * m)]
        return fits or configs

    def measurement_count(self) -> int:
        """(problem, M, config) triples the run times."""
        return sum(len(self.configs_for(m, problem)) for problem in self.problems for m in self.ms)


def _parse_ms(text: str) -> list[int]:
    try:
        ms = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UsageError(f"--m: expected a comma list of positive integers, got {text!r}") from None
    if not ms or ms[0] < 1:
        raise UsageError(f"--m: expected a comma list of positive integers, got {text!r}")
    return ms


def _parse_group(text: str) -> int | None:
    """None = per-channel (group = K of each shape)."""
    if text == "channel":
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--group-size: expected 64, a multiple of 128 or 'channel', got {text!r}") from None


def make_plan(args: argparse.Namespace) -> Plan:
    if not (args.model or args.shape or args.config_json):
        raise UsageError(f"nothing to tune: give --model ({', '.join(shapes.PRESETS)}), --shape N,K "
                         "or --config-json PATH")
    if args.repeats < 1:
        raise UsageError(f"--repeats: must be >= 1, got {args.repeats}")
    try:
        layers = shapes.resolve_shapes(args.model, args.shape, args.config_json)
        configs = dispatch.list_configs(args.dtype, fused_quant=False) if not args.configs else \
            [dispatch.check_config(c.strip(), args.dtype) for c in args.configs.split(",") if c.strip()]
    except ValueError as e:
        raise UsageError(str(e)) from None
    group = _parse_group(args.group_size)
    names: dict[tuple[int, int, int], list[str]] = {}
    skipped = []
    for layer in layers:
        g = layer.k if group is None else group
        ok, reason = shapes.is_supported(layer, g)
        if ok:
            names.setdefault((layer.n, layer.k, g), []).append(layer.name)
        else:
            skipped.append((layer, reason))
    problems = [Problem(tuple(v), n, k, g) for (n, k, g), v in names.items()]
    # configs named with --configs are all timed; the default (every compiled config) skips hopeless tiles
    return Plan(problems, skipped, _parse_ms(args.m), configs, args.dtype, args.all_configs or bool(args.configs))


def short(config_id: str) -> str:
    return config_id.removeprefix("w4a8_sm90_")


NO_CACHE_PATH = "this GPU's tuning cache (its name needs a GPU)"


def print_dry_run(plan: Plan, cache: Path | None) -> None:
    for problem in plan.problems:
        for m in plan.ms:
            heuristic = dispatch.heuristic_config(m, problem.n, problem.k, problem.group, plan.out)
            print(f"{problem.label:32} n={problem.n:<6} k={problem.k:<6} g={problem.group:<6} m={m:<5} "
                  f"configs={len(plan.configs_for(m, problem))}  heuristic={short(heuristic)}")
    for layer, reason in plan.skipped:
        print(f"skipped {layer}: {reason}")
    points = len(plan.problems) * len(plan.ms)
    measurements = plan.measurement_count()
    print(f"{points} points, {measurements} measurements (out {plan.out}); would write {cache or NO_CACHE_PATH}")


# ---- measuring (GPU) ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Result:
    problem: Problem
    m: int
    config: str
    us: float | None = None  # None: failed (see error)
    error: str = ""
    timing: dict = dataclasses.field(default_factory=dict)


def _check_machine() -> dict:
    import torch

    from .. import _native

    if not torch.cuda.is_available():
        raise UsageError("no CUDA GPU: tuning measures kernels on an sm_90 GPU (use --dry-run to list the points)")
    if not _native.is_available():
        raise UsageError(f"liquidgemm extension not available: {_native.unavailable_reason()}")
    return tune.gpu_identity()


def _torch_dtype(out: str):
    import torch

    return {"bf16": torch.bfloat16, "f16": torch.float16}[out]


def random_quantized_weight(problem: Problem, dtype):
    """A random LiquidQuant weight for this problem, quantized on the GPU (seconds, not minutes, for 70B)."""
    import torch

    from ..bench.peers import random_weight
    from ..quantize import quantize_weight

    return quantize_weight(random_weight(problem.n, problem.k, torch.device("cuda")).to(dtype), problem.group)


def _verify(problem: Problem, qw, configs: list[str], torch_out, ui) -> dict[str, str]:
    """Run each config once on VERIFY_M tokens and compare with the CPU reference, bit for bit (the contract:
    identical outputs without bias). Returns {config: why it failed}."""
    import torch

    import liquidgemm
    from ..bench.peers import random_act

    x_q, x_scale = liquidgemm.quantize_act(random_act(VERIFY_M, problem.k, qw.packed.device, torch_out))
    want = liquidgemm.w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=torch_out)
    failed = {}
    for config in configs:
        try:
            got = liquidgemm.w4a8_gemm(x_q, x_scale, qw, out_dtype=torch_out, config=config)
        except Exception as e:  # noqa: BLE001 - a config that cannot run is reported and skipped, not fatal
            failed[config] = f"{type(e).__name__}: {e}".splitlines()[0]
            continue
        if not torch.equal(got, want):
            bad = (got != want).sum().item()
            diff = (got.float() - want.float()).abs().max().item()
            failed[config] = f"{bad} of {want.numel()} outputs differ from the reference (max |diff| {diff:g})"
    for config, why in failed.items():
        ui.print(f"[bold red]FAILED[/] {short(config)} on {problem.label} "
                 f"(m={VERIFY_M}, n={problem.n}, k={problem.k}): {why} -- skipped for this shape")
    return failed


def measure(plan: Plan, repeats: int, ui, progress, on_problem_done) -> list[Result]:
    import liquidgemm
    from ..bench.peers import random_act
    from ..timing import clone_tensors, tensor_bytes, time_op

    torch_out = _torch_dtype(plan.out)
    results: list[Result] = []
    task = progress.add_task("tuning", total=plan.measurement_count())
    for problem in plan.problems:
        progress.update(task, description=f"{problem.label}: checking against the reference")
        qw = random_quantized_weight(problem, torch_out)  # one weight for every M of this shape
        failed = _verify(problem, qw, plan.configs_taking(problem), torch_out, ui)
        for m in plan.ms:
            operands = (*liquidgemm.quantize_act(random_act(m, problem.k, qw.packed.device, torch_out)), qw)
            copies = {0: operands}  # rotated operand sets, shared by every config at this M

            def make_operands(i, copies=copies, operands=operands):
                if i not in copies:
                    copies[i] = clone_tensors(operands)
                return copies[i]

            bytes_per_call = tensor_bytes(operands) + m * problem.n * OUT_BYTES[plan.out]
            best = None
            for config in plan.configs_for(m, problem):
                result = Result(problem, m, config, error=failed.get(config, ""))
                if not result.error:
                    try:
                        t = time_op(make_operands,
                                    lambda x_q, x_scale, w, config=config: liquidgemm.w4a8_gemm(
                                        x_q, x_scale, w, out_dtype=torch_out, config=config),
                                    bytes_per_call=bytes_per_call, repeats=repeats)
                        result.us, result.timing = t.median_us, dataclasses.asdict(t)
                    except Exception as e:  # noqa: BLE001 - report, skip, keep tuning the others
                        result.error = f"{type(e).__name__}: {e}".splitlines()[0]
                        ui.print(f"[bold red]FAILED[/] {short(config)} on {problem.label} m={m}: {result.error}")
                results.append(result)
                if result.us is not None and (best is None or result.us < best.us):
                    best = result
                best_text = f"best {short(best.config)} {best.us:.1f} us" if best else "no result yet"
                progress.update(task, advance=1, description=f"{problem.label} m={m}: {best_text}")
        on_problem_done(results)
    return results


def winners(results: list[Result]) -> dict[tuple[Problem, int], Result]:
    best: dict[tuple[Problem, int], Result] = {}
    for r in results:
        if r.us is not None and ((r.problem, r.m) not in best or r.us < best[(r.problem, r.m)].us):
            best[(r.problem, r.m)] = r
    return best


def cache_entries(results: list[Result], out: str, date: str) -> dict[str, dict]:
    return {tune.cache_key(m, p.n, p.k, p.group, out): {"config": r.config, "us": round(r.us, 3), "date": date}
            for (p, m), r in winners(results).items()}


def heuristic_from_results(results: list[Result], base: dispatch.HeuristicTable, meta: dict) -> dispatch.HeuristicTable:
    """Per cell of `base`, the config with the smallest geometric-mean slowdown against each point's best, over
    the configs measured at every (shape, M) point of the cell; cells without points keep base's choice."""
    times: dict[tuple[Problem, int], dict[str, float]] = {}
    for r in results:
        if r.us is not None:
            times.setdefault((r.problem, r.m), {})[r.config] = r.us
    cells: dict[tuple[int, int], list[dict[str, float]]] = {}
    for (problem, m), by_config in times.items():
        cells.setdefault(base.cell(m, problem.n, problem.k), []).append(by_config)
    rows = [list(row) for row in base.configs]
    for (i, j), points in cells.items():
        common = set.intersection(*(set(p) for p in points))
        if common:
            rows[i][j] = min(sorted(common), key=lambda c: sum(math.log(p[c] / min(p.values())) for p in points))
    return dataclasses.replace(base, configs=tuple(map(tuple, rows)), meta=meta)


def print_winners(results: list[Result], out: str, ui) -> None:
    from rich.table import Table

    by_point = {}
    for r in results:
        if r.us is not None:
            by_point.setdefault((r.problem, r.m), {})[r.config] = r.us
    table = Table(title="winners", title_justify="left")
    for column in ("shape", "N", "K", "M", "best config", "us", "heuristic", "heuristic us", "speedup"):
        text = column in ("shape", "best config", "heuristic")
        table.add_column(column, justify="left" if text else "right", overflow="fold")  # ids stay whole
    for (p, m), r in winners(results).items():
        heuristic = dispatch.heuristic_config(m, p.n, p.k, p.group, out)
        h_us = by_point[(p, m)].get(heuristic)
        table.add_row(p.label, str(p.n), str(p.k), str(m), short(r.config), f"{r.us:.1f}", short(heuristic),
                      "n/a" if h_us is None else f"{h_us:.1f}", "n/a" if h_us is None else f"{h_us / r.us:.2f}x")
    ui.print(table)


def write_json(path: Path, results: list[Result], meta: dict) -> None:
    rows = [{"shape": r.problem.label, "names": list(r.problem.names), "m": r.m, "n": r.problem.n,
             "k": r.problem.k, "group": r.problem.group, "out": meta["out"], "config": r.config, "us": r.us,
             "error": r.error, "timing": r.timing} for r in results]
    won = [{"m": m, "n": p.n, "k": p.k, "group": p.group, "config": r.config, "us": r.us}
           for (p, m), r in winners(results).items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "measurements": rows, "winners": won}, indent=1) + "\n")


def run(args: argparse.Namespace) -> int:
    plan = make_plan(args)
    if args.dry_run:
        print_dry_run(plan, args.cache or tune.cache_path())
        return 0
    identity = _check_machine()
    if not plan.problems:
        raise UsageError("no supported shape to tune: " + "; ".join(f"{s}: {why}" for s, why in plan.skipped))

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .. import __version__

    ui = Console(stderr=True)
    for layer, reason in plan.skipped:
        ui.print(f"[yellow]skipped[/] {layer}: {reason}")
    cache = args.cache or tune.cache_path(identity)
    date = tune.now()
    meta = {**identity, "version": __version__, "date": date}

    def save(results: list[Result]) -> None:  # after every shape: an interrupted run keeps what it measured
        tune.save_cache(cache, cache_entries(results, plan.out, date), meta)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=ui) as progress:
        results = measure(plan, args.repeats, ui, progress, save)
    print_winners(results, plan.out, Console())
    ui.print(f"tuning cache: {cache}")
    if args.json_out:
        write_json(args.json_out, results, {**meta, "out": plan.out, "repeats": args.repeats,
                                            "configs": plan.configs})
        ui.print(f"measurements: {args.json_out}")
    if args.write_heuristic:
        table = heuristic_from_results(results, dispatch.heuristic_table(), {
            "schema": 1, "status": "tuned", "gpu": f"{identity['gpu']} ({identity['sm_count']} SMs)",
            "how": f"liquidgemm tune {__version__} on {date} (driver {identity['driver']}), shapes "
                   f"{', '.join(n for p in plan.problems for n in p.names)}, m {plan.ms}: per cell the config "
                   "with the smallest geometric-mean slowdown vs each point's best; cells without points keep "
                   "the previous choice."})
        args.write_heuristic.parent.mkdir(parents=True, exist_ok=True)
        args.write_heuristic.write_text(table.to_json())
        ui.print(f"heuristic table: {args.write_heuristic}")
    failures = sum(1 for r in results if r.error)
    return 1 if failures and not winners(results) else 0


def main(argv: list[str] | None = None, prog: str = "python -m liquidgemm.tune") -> int:
    parser = build_parser(prog)
    try:
        return run(parser.parse_args(argv))
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (winners of finished shapes are in the cache)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
