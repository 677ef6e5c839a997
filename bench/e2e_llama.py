"""End-to-end serving numbers: a Llama-3-8B-shaped ``LlamaForCausalLM`` (random weights, nothing downloaded),
bf16 vs liquidgemm W4A8 (``quantize_model``, lm_head kept in bf16), eager and torch.compile.

    python bench/e2e_llama.py                       # all modes, decode at batch 1/8/32/64 + prefill 2048
    python bench/e2e_llama.py --layers 4            # fast: 4 decoder layers, 32-layer numbers extrapolated
    python bench/e2e_llama.py --modes bf16_eager,w4a8_compile --batches 1,8
    python bench/e2e_llama.py --overhead            # host us per call: w4a8_linear vs F.linear, tiny problem
    python bench/e2e_llama.py --device cpu --tiny --modes bf16_eager --context 32 --prefill 64   # smoke test

Decode: a static KV cache filled with ``--context`` prompt tokens; every timed step decodes one token per sequence
at the same position (fixed context length, static shapes, CUDA-graph friendly). tokens/s = batch / step time.
Transformers >= 5 static caches ignore positions and write where their own fill counter points, so every timed call
first rewinds that counter (inside the timed, compiled function, where it is one more op of the CUDA graph).
Prefill: latency of one forward over ``--prefill`` tokens at batch 1. Modes: ``{bf16,w4a8}_{eager,compile}``;
``compile`` = ``torch.compile(mode="reduce-overhead", fullgraph=True)`` (CUDA graphs through cudagraph trees).
With ``--layers L < 32`` the 32-layer step time is extrapolated as ``t_rest + (t_L - t_rest) * 32 / L``, where
``t_rest`` (embedding + final norm + bf16 lm_head) is timed separately; those entries say ``extrapolated``.
Results merge into bench/results/<gpu>/e2e_llama.json (one entry per mode/metric/batch) + e2e_llama.png.
"""
from __future__ import annotations

import argparse
import datetime
import inspect
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
try:  # the installed package (with its compiled kernels) first; the checkout's sources otherwise
    import liquidgemm  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT / "python"))

LLAMA3_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
                 rms_norm_eps=1e-5, tie_word_embeddings=False)
TINY = dict(LLAMA3_8B, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=1024, max_position_embeddings=4096)  # CPU smoke runs (--tiny)
MODES = ("bf16_eager", "bf16_compile", "w4a8_eager", "w4a8_compile")


# ---- model -------------------------------------------------------------------------------------------------------
def build_model(layers: int, device="cuda", shape: dict = LLAMA3_8B):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**{**shape, "num_hidden_layers": layers})
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):  # initialise in place: seconds on the GPU instead of minutes on the CPU
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.cache_keyword = cache_keyword(model)  # resolved here: inspect cannot run inside a fullgraph compile
    return model.eval()


def static_cache(model, max_len: int):
    from transformers import StaticCache

    # transformers >= 5 allocates the tensors lazily on the first update (batch, device and dtype from the states)
    return StaticCache(config=model.config, max_cache_len=max_len)


def cache_keyword(model) -> str:
    """The forward argument that takes the cache: ``cache`` in newer transformers (5.24), ``past_key_values`` in older
    ones (5.17); newer ones still take the old name, but through a deprecation wrapper best kept out of a compile."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def rewind(cache, length: int) -> None:
    """Make the next update write at token ``length``. Transformers >= 5 static layers ignore positions and write at
    their own ``cumulative_length`` counter (advanced in place by each update), so repeating one step at a fixed
    position means resetting it. Two fused in-place ops, so compiled steps keep them in their CUDA graph."""
    counters = [getattr(layer, "cumulative_length", None) for layer in cache.layers]
    if not all(isinstance(c, torch.Tensor) for c in counters):
        raise RuntimeError("this transformers' StaticCache layers have no cumulative_length tensor; "
                           "e2e_llama.py supports transformers 5.x static caches")
    torch._foreach_zero_(counters)
    torch._foreach_add_(counters, length)


def forward(model, ids, cache, position: int):
    """Logits of the last token of ``ids`` (batch, tokens), whose first token sits at ``position`` in ``cache``."""
    rewind(cache, position)
    positions = torch.arange(position, position + ids.shape[1], device=ids.device).unsqueeze(0)
    return model(input_ids=ids, position_ids=positions, use_cache=True, logits_to_keep=1,
                 **{model.cache_keyword: cache}).logits


def device_time(fn, iters: int, warmup: int, device: torch.device) -> float:
    """Mean seconds per call of ``fn`` over ``iters`` back-to-back calls (CUDA events on a GPU, a wall clock else)."""
    for _ in range(warmup):
        fn()
    if device.type != "cuda":
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - start) / iters
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize(device)
    return start.elapsed_time(end) / 1e3 / iters


@torch.no_grad()
def decode_step_time(model, step_fn, batch: int, context: int, iters: int, warmup: int) -> float:
    device = model.device
    cache = static_cache(model, context + 16)
    prompt = torch.randint(0, model.config.vocab_size, (batch, context), device=device)
    forward(model, prompt, cache, 0)  # fill the cache (eager)
    ids = torch.randint(0, model.config.vocab_size, (batch, 1), device=device)
    return device_time(lambda: step_fn(model, ids, cache, context), iters, warmup, device)


@torch.no_grad()
def decode_kernel_table(model, step_fn, batch: int, context: int, steps: int = 5, rows: int = 25) -> str:
    """Where a decode step's GPU time goes: torch.profiler's kernel table over `steps` steps (after warm-up)."""
    cache = static_cache(model, context + 16)
    forward(model, torch.randint(0, model.config.vocab_size, (batch, context), device=model.device), cache, 0)
    ids = torch.randint(0, model.config.vocab_size, (batch, 1), device=model.device)
    for _ in range(3):
        step_fn(model, ids, cache, context)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step_fn(model, ids, cache, context)
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=rows, max_name_column_width=70)


@torch.no_grad()
def prefill_time(model, step_fn, tokens: int, iters: int, warmup: int) -> float:
    device = model.device
    cache = static_cache(model, tokens)
    ids = torch.randint(0, model.config.vocab_size, (1, tokens), device=device)
    forward(model, ids, cache, 0)  # allocate the cache eagerly: compiled steps need its static addresses
    return device_time(lambda: step_fn(model, ids, cache, 0), iters, warmup, device)


@torch.no_grad()
def rest_time(model, batch: int, tokens: int, iters: int) -> float:
    """Embedding + final norm + lm_head (the part that does not scale with the layer count), eager."""
    ids = torch.randint(0, model.config.vocab_size, (batch, tokens), device=model.device)

    def rest():
        h = model.model.embed_tokens(ids)
        return model.lm_head(model.model.norm(h)[:, -1:])

    return device_time(rest, iters, 3, model.device)


# ---- runs ----------------------------------------------------------------------------------------------------------
def run_modes(args) -> list[dict]:
    from liquidgemm.nn import quantize_model

    entries = []
    shape = TINY if args.tiny else LLAMA3_8B
    full_layers = shape["num_hidden_layers"]
    model = build_model(args.layers, args.device, shape)
    scale = full_layers / args.layers
    rest = {}

    def record(mode, metric, batch, tokens, seconds):
        entry = {"mode": mode, "metric": metric, "batch": batch, "tokens": tokens, "layers": args.layers,
                 "seconds_measured": seconds}
        if args.layers != full_layers:
            key = (batch, tokens)
            if key not in rest:
                rest[key] = rest_time(model, batch, tokens, 20)
            seconds = rest[key] + (seconds - rest[key]) * scale
            entry.update(extrapolated=True, rest_seconds=rest[key])
        entry["seconds"] = seconds
        entry["tokens_per_s"] = batch * tokens / seconds
        entries.append(entry)
        note = f" (extrapolated to {full_layers} layers)" if entry.get("extrapolated") else ""
        print(f"{mode:13s} {metric:8s} batch {batch:3d}: {seconds * 1e3:9.3f} ms  "
              f"{entry['tokens_per_s']:11.1f} tok/s{note}", flush=True)

    for mode in [m for m in MODES if m in args.modes]:
        if mode.startswith("w4a8") and not getattr(model, "_liquidgemm", False):
            torch._dynamo.reset()
            if model.device.type == "cuda":
                torch.cuda.empty_cache()
            print(quantize_model(model, group_size=args.group_size, progress=False), flush=True)
            model._liquidgemm = True
        step = forward
        if mode.endswith("compile"):
            torch._dynamo.reset()
            step = torch.compile(forward, mode="reduce-overhead", fullgraph=True)
        for batch in args.batches:
            try:
                t = decode_step_time(model, step, batch, args.context, args.iters, args.warmup)
                record(mode, "decode", batch, 1, t)
                if args.profile and model.device.type == "cuda":
                    print(decode_kernel_table(model, step, batch, args.context), flush=True)
            except Exception as exc:  # one failing mode must not lose the others
                entries.append({"mode": mode, "metric": "decode", "batch": batch, "error": repr(exc)[:500]})
                print(f"{mode} decode batch {batch}: FAILED {exc!r}"[:300], flush=True)
        if args.prefill:
            try:
                t = prefill_time(model, step, args.prefill, max(3, args.iters // 10), 2)
                record(mode, "prefill", 1, args.prefill, t)
            except Exception as exc:
                entries.append({"mode": mode, "metric": "prefill", "batch": 1, "error": repr(exc)[:500]})
                print(f"{mode} prefill: FAILED {exc!r}"[:300], flush=True)
    return entries


def run_overhead(iters: int) -> list[dict]:
    """Host microseconds per eager call on a tiny problem (the GPU work is a few us; the host dominates)."""
    from liquidgemm import ops
    from liquidgemm.nn import W4A8Linear

    torch.manual_seed(0)
    linear = torch.nn.Linear(1024, 1024, bias=False, dtype=torch.bfloat16, device="cuda")
    module = W4A8Linear.from_linear(linear)
    qw = module.qweight
    x = torch.randn(1, 1024, dtype=torch.bfloat16, device="cuda")
    raw = torch.ops.liquidgemm.w4a8_linear.default
    # Where the host time goes: the extension called with plain ints (no torch, no Python checks) and the two
    # allocations the eager path makes, next to the public entry points.
    from liquidgemm import _native, dispatch

    m, n, k = 1, 1024, 1024
    config = dispatch.select_config(m, n, k, qw.group_size, x.dtype)
    out = torch.empty(m, n, dtype=x.dtype, device="cuda")
    scratch = torch.empty(_native.linear_scratch_size(config, m, n, k, qw.group_size), dtype=torch.uint8,
                          device="cuda")
    stream = torch.cuda.current_stream().cuda_stream
    native_args = (config, x.data_ptr(), "bf16", scratch.data_ptr(), scratch.nbytes, qw.packed.data_ptr(),
                   qw.params.data_ptr(), qw.s1.data_ptr(), 0, out.data_ptr(), m, n, k, qw.group_size, stream)
    native = _native._lib()
    calls = {
        "F.linear (bf16)": lambda: F.linear(x, linear.weight),
        "nn.Linear (bf16)": lambda: linear(x),
        "liquidgemm.ops.quantize_act": lambda: ops.quantize_act(x),
        "liquidgemm.ops.w4a8_linear": lambda: ops.w4a8_linear(x, qw),
        "torch.ops.liquidgemm.w4a8_linear (no checks)": lambda: raw(x, qw.packed, qw.params, qw.s1, None,
                                                                     qw.group_size, ""),
        "W4A8Linear": lambda: module(x),
        "part: torch.empty x2 (output + scratch)": lambda: (torch.empty(m, n, dtype=x.dtype, device="cuda"),
                                                            torch.empty(scratch.nbytes, dtype=torch.uint8,
                                                                        device="cuda")),
        "part: _C.quantize_act (one launch, ints)": lambda: native.quantize_act(
            x.data_ptr(), "bf16", scratch.data_ptr(), scratch.data_ptr() + 1024, m, k, stream),
        "part: _C.linear (quantize + GEMM launches, ints)": lambda: native.linear(*native_args),
    }
    entries = []
    for name, fn in calls.items():
        for _ in range(100):
            fn()
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(5):  # best of 5: host timing noise only ever adds
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            torch.cuda.synchronize()
            best = min(best, (time.perf_counter() - t0) / iters)
        entries.append({"mode": "overhead", "metric": "host_us_per_call", "call": name, "us": best * 1e6,
                        "shape": [1, 1024, 1024]})
        print(f"{name:45s} {best * 1e6:7.2f} us/call", flush=True)
    return entries


# ---- output ----------------------------------------------------------------------------------------------------------
def device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else platform.processor() or "cpu"


def device_slug(device: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")


def metadata(device: str) -> dict:
    import transformers

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"gpu": device_name(device), "torch": torch.__version__, "transformers": transformers.__version__,
            "cuda": torch.version.cuda, "commit": commit, "date": datetime.datetime.now().isoformat(timespec="seconds")}


def merge(path: Path, entries: list[dict], meta: dict) -> dict:
    """Update ``path`` with ``entries``: a new entry replaces an old one of the same mode/metric/batch/call."""
    data = json.loads(path.read_text()) if path.exists() else {"runs": [], "entries": []}
    key = lambda e: (e["mode"], e["metric"], e.get("batch"), e.get("call"))  # noqa: E731
    new = {key(e) for e in entries}
    data["entries"] = [e for e in data["entries"] if key(e) not in new] + entries
    data["runs"].append(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return data


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    decode = [e for e in data["entries"] if e.get("metric") == "decode" and "seconds" in e]
    prefill = [e for e in data["entries"] if e.get("metric") == "prefill" and "seconds" in e]
    if not decode and not prefill:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for mode in MODES:
        points = sorted((e["batch"], e["tokens_per_s"]) for e in decode if e["mode"] == mode)
        if points:
            ax1.plot(*zip(*points), marker="o", label=mode)
    ax1.set(xscale="log", yscale="log", xlabel="batch (sequences)", ylabel="decode tokens/s",
            title="Llama-3-8B decode, fixed context")
    ax1.legend()
    modes = [e["mode"] for e in prefill]
    ax2.bar(modes, [e["seconds"] * 1e3 for e in prefill], color="tab:gray")
    ax2.set(ylabel="ms", title=f"prefill latency, {prefill[0]['tokens'] if prefill else ''} tokens, batch 1")
    ax2.tick_params(axis="x", rotation=20)
    extrapolated = any(e.get("extrapolated") for e in decode + prefill)
    fig.suptitle(f"{data['runs'][-1]['gpu']}" + ("  (extrapolated from fewer layers)" if extrapolated else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=None, help="decoder layers to build (default and most: 32, "
                        "or 2 with --tiny)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma list of " + ", ".join(MODES))
    parser.add_argument("--batches", default="1,8,32,64", help="decode batch sizes")
    parser.add_argument("--context", type=int, default=512, help="prompt tokens in the KV cache while decoding")
    parser.add_argument("--prefill", type=int, default=2048, help="prefill tokens (0: skip)")
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--iters", type=int, default=30, help="timed decode steps per point")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also print each decode point's kernel table "
                        "(torch.profiler, 5 steps)")
    parser.add_argument("--overhead", action="store_true", help="only the host-overhead microbenchmark")
    parser.add_argument("--overhead-iters", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None, help="results dir (default bench/results/<gpu>)")
    parser.add_argument("--device", default="cuda", help="torch device (cpu: smoke runs, bf16 modes only)")
    parser.add_argument("--tiny", action="store_true", help=f"a {TINY['num_hidden_layers']}-layer, "
                        f"{TINY['hidden_size']}-wide Llama instead of Llama-3-8B (smoke runs)")
    args = parser.parse_args(argv)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        sys.exit("e2e_llama.py needs a CUDA GPU (an sm_90 one for the liquidgemm modes); --device cpu for a smoke run")
    if args.overhead and torch.device(args.device).type != "cuda":
        parser.error("--overhead times CUDA calls; it needs --device cuda")
    full_layers = (TINY if args.tiny else LLAMA3_8B)["num_hidden_layers"]
    args.layers = full_layers if args.layers is None else args.layers
    if not 1 <= args.layers <= full_layers:
        parser.error(f"--layers must be in [1, {full_layers}]")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    args.batches = [int(b) for b in args.batches.split(",")]

    entries = run_overhead(args.overhead_iters) if args.overhead else run_modes(args)
    out = args.out or ROOT / "bench" / "results" / device_slug(args.device)
    data = merge(out / "e2e_llama.json", entries, {**metadata(args.device), "argv": sys.argv[1:] if argv is None
                                                    else list(argv)})
    plot(data, out / "e2e_llama.png")
    print(f"wrote {out / 'e2e_llama.json'}")


if __name__ == "__main__":
    main()
