"""A small, representative set of GEMMs to run under compute-sanitizer (memcheck, racecheck).

  compute-sanitizer --tool memcheck python bench/sanitize_cases.py [CONFIG_ID,...]   # default: every compiled one

Every compiled config runs ragged token counts (partial tiles in the TMA loads and stores), both group sizes and
a bias, and its result is compared with the CPU reference, so a clean sanitizer run is also a correct one. The
fused-quantization configs run through `w4a8_linear` on the cases that fit their token tile. The
activation quantizer runs each of its row modes (warp per row, CTA per row, rows split over a cluster with the max
in distributed shared memory), alone and inside `w4a8_linear`'s one-call path, checked bit for bit.
Problems are tiny: the sanitizer slows kernels down by orders of magnitude.
"""
from __future__ import annotations

import sys

import torch

import liquidgemm as lg
from liquidgemm import _native, ops
from liquidgemm._configs import TileConfig, fused_max_k

QUANT_CASES = [(1, 128), (3, 4096), (1, 20480), (5, 28672), (64, 20480)]  # (M, K): warp, CTA, cluster rows
CASES = [  # (M tokens, N channels, K, group size)
    (1, 256, 512, 128),
    (7, 128, 256, 64),
    (65, 256, 384, 128),
    (257, 128, 256, 64),
    (16, 384, 1152, 128),  # balanced split: CTA runs of 4-5 k-blocks crossing the 9-k-block tiles
]


def check_fused(config: str, dtype: torch.dtype, m: int, n: int, k: int, group: int) -> int:
    qw = lg.quantize_weight(torch.randn(n, k, dtype=dtype), group_size=group)
    x = torch.randn(m, k, dtype=dtype)
    bias = torch.randn(n, dtype=dtype)
    want = ops.w4a8_linear(x, qw, bias=bias)  # CPU: the reference
    got = ops.w4a8_linear(x.cuda(), qw.to("cuda"), bias=bias.cuda(), config=config).cpu()
    torch.cuda.synchronize()
    if not torch.equal(got, want):
        raise SystemExit(f"MISMATCH {config} m={m} n={n} k={k} g={group}")
    return 1


def main() -> None:
    torch.manual_seed(0)
    passed = 0
    configs = sys.argv[1].split(",") if len(sys.argv) > 1 else _native.configs()
    for config in configs:
        out_dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "s32": torch.int32}[config.split("_")[2]]
        chosen = TileConfig.parse(config)
        for m, n, k, group in CASES:
            if not chosen.takes(n, k):  # a 2x1 cluster: an even number of 128-row tiles; K pairs: K % 256 == 0
                continue
            if chosen.fused_quant:  # quantizes inside the GEMM: runs through w4a8_linear, at most tile_n tokens
                if m <= chosen.tile_n and k <= fused_max_k(chosen.tile_n):
                    passed += check_fused(config, out_dtype, m, n, k, group)
                continue
            act_dtype = torch.float16 if out_dtype == torch.float16 else torch.bfloat16
            qw = lg.quantize_weight(torch.randn(n, k, dtype=act_dtype), group_size=group)
            x = torch.randn(m, k, dtype=act_dtype)
            bias = None if out_dtype == torch.int32 else torch.randn(n, dtype=act_dtype)
            x_q, x_scale = lg.quantize_act_reference(x)
            want = (lg.w4a8_gemm_reference_int32(x_q, qw) if out_dtype == torch.int32
                    else lg.w4a8_gemm_reference(x_q, x_scale, qw, out_dtype=out_dtype, bias=bias))
            got = ops.w4a8_gemm(x_q.cuda(), x_scale.cuda(), qw.to("cuda"), out_dtype,
                                bias=None if bias is None else bias.cuda(), config=config).cpu()
            torch.cuda.synchronize()
            if out_dtype == torch.int32:
                ok = torch.equal(got, want)
            else:
                ok = torch.allclose(got.float(), want.float(), rtol=1e-2, atol=1e-2)
            if not ok:
                raise SystemExit(f"MISMATCH {config} m={m} n={n} k={k} g={group}")
            passed += 1
    for m, k in QUANT_CASES:
        x = (torch.randn(m, k) * torch.rand(m, 1)).to(torch.bfloat16)
        want_q, want_scale = lg.quantize_act_reference(x)
        got_q, got_scale = (t.cpu() for t in ops.quantize_act(x.cuda()))
        if not (torch.equal(got_q, want_q) and torch.equal(got_scale, want_scale)):
            raise SystemExit(f"MISMATCH quantize_act m={m} k={k}")
        qw = lg.quantize_weight(torch.randn(256, k, dtype=torch.bfloat16), group_size=128)  # any build's configs
        want = lg.w4a8_gemm_reference(want_q, want_scale, qw, out_dtype=torch.bfloat16)
        got = ops.w4a8_linear(x.cuda(), qw.to("cuda")).cpu()
        if not torch.allclose(got.float(), want.float(), rtol=1e-2, atol=1e-2):
            raise SystemExit(f"MISMATCH w4a8_linear m={m} k={k}")
        passed += 1
    print(f"{passed} cases passed on {len(configs)} configs and the activation quantizer")


if __name__ == "__main__":
    main()
