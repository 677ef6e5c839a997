"""Time (or run under ncu) one W4A8 GEMM per (config, shape, M): the tool behind the decode-floor study.

  python bench/profile_decode.py --shape 4096,4096 --m 1,16 [--config ID,...]      # GPU time of every pair
  ncu -k regex:w4a8_gemm_kernel --launch-skip 3 --launch-count 1 --set full --clock-control none \
      python bench/profile_decode.py --shape 4096,4096 --m 8 --config ID --ncu        # eager calls only

Without --config every compiled config whose output dtype is bf16 is timed. Times are GPU time of CUDA-graph
replays with weights rotated past L2 (liquidgemm.timing), printed as one line per pair plus the HBM floor.
"""
from __future__ import annotations

import argparse
import itertools

import torch

import liquidgemm as lg
from liquidgemm import _native, timing
from liquidgemm._configs import TileConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", required=True, action="append", help="N,K of the weight (e.g. 4096,4096); "
                        "repeat for several")
    parser.add_argument("--m", default="1", help="comma-separated token counts")
    parser.add_argument("--config", default="", help="comma-separated config ids (default: all compiled bf16)")
    parser.add_argument("--group", type=int, default=128)
    parser.add_argument("--splits", default="0", help="comma-separated split counts for stream-K and split-K configs "
                        "(0 = automatic, s >= 1 = s slices of K)")
    parser.add_argument("--pdl", default="1", help="comma-separated: 1 = programmatic dependent launch (default), "
                        "0 = plain stream order")
    parser.add_argument("--ncu", action="store_true", help="5 eager calls per pair, no timing (for ncu)")
    parser.add_argument("--linear", action="store_true", help="run w4a8_linear (bf16 activations in: quantize + "
                        "GEMM, or one kernel for the fused-quantization '_fq' configs) instead of the int8 GEMM")
    args = parser.parse_args()
    ms = [int(v) for v in args.m.split(",")]
    configs = [c for c in args.config.split(",") if c] or \
        [c for c in _native.configs() if "_bf16_" in c and (args.linear or not c.endswith("_fq"))]

    hbm = timing.measure_hbm_bandwidth() if not args.ncu else None
    for shape in args.shape:
        n, k = (int(v) for v in shape.split(","))
        profile_shape(args, n, k, ms, configs, hbm)


def profile_shape(args, n: int, k: int, ms: list[int], configs: list[str], hbm: float | None) -> None:
    torch.manual_seed(0)
    qw = lg.quantize_weight(torch.randn(n, k, device="cuda", dtype=torch.bfloat16), group_size=args.group)
    weight_bytes = timing.tensor_bytes((qw.packed, qw.params, qw.s1))
    split_list = [int(v) for v in args.splits.split(",")]
    pdl_list = [int(v) for v in args.pdl.split(",")]
    for m in ms:
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        x_q, x_scale = lg.quantize_act(x)
        out = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
        for config in configs:
            splittable = TileConfig.parse(config).scheduler in ("streamk", "splitk")
            for splits, pdl in itertools.product(split_list if splittable else [0], pdl_list):
                _native.set_programmatic_launch(bool(pdl))
                workspace_bytes = _native.gemm_workspace_size(config, m, n, k, args.group, splits)
                workspace = torch.empty(max(workspace_bytes, 16), dtype=torch.uint8, device="cuda")

                def run(a, s, w, c=config, splits=splits, workspace=workspace):
                    if args.linear:  # the activations come in as bf16 x; a and s are unused
                        lg.w4a8_linear(x, w, config=c)
                    else:
                        _native.gemm(c, a, s, w.packed, w.params, w.s1, None, out, workspace, args.group, splits)

                if args.ncu:
                    for _ in range(5):
                        run(x_q, x_scale, qw)
                    torch.cuda.synchronize()
                    continue

                def operands(i, x_q=x_q, x_scale=x_scale):
                    if i == 0:
                        return (x_q, x_scale, qw)
                    return (x_q, x_scale, timing.clone_tensors(qw))

                t = timing.time_op(operands, run, bytes_per_call=weight_bytes)
                floor_us = weight_bytes / hbm * 1e6
                print(f"{n}x{k} M={m:5d} {config:50s} splits={splits:<2d} pdl={pdl} {t.median_us:8.2f} us  "
                      f"HBM {100 * floor_us / t.median_us:5.1f}%  (floor {floor_us:.2f} us)", flush=True)


if __name__ == "__main__":
    main()
