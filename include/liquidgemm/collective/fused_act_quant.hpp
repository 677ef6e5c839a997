// SPDX-License-Identifier: Apache-2.0
// Activation quantization inside the GEMM (the fused decode path, configs "..._fq"): before its first tile, the
// consumer warp groups of a CTA compute the per-token scales over whole rows and quantize those rows, all of K,
// into the resident int8 B buffer that every k-block's WGMMAs read: no per-stage work, no activation loads in the
// ring. The numerics are quantize_act.cuh's own functions, so the codes and scales are bit-identical to
// quantize_act + the GEMM.
#pragma once

#include <cstdint>
#include <type_traits>

#include "cute/tensor.hpp"
#include "cutlass/arch/barrier.h"
#include "cutlass/cutlass.h"
#include "cutlass/numeric_types.h"

#include "liquidgemm/quantize_act.cuh"

namespace liquidgemm::collective {

// T: the activations' type (cutlass::bfloat16_t or cutlass::half_t); kThreads: the consumer threads that share one
// activation buffer (all of them run these functions, which synchronise on a named barrier); kMaxTokens: the token
// tile (WGMMA N).
template <class T, int kThreads, int kMaxTokens>
struct FusedActQuant {
  static_assert(std::is_same_v<T, cutlass::bfloat16_t> || std::is_same_v<T, cutlass::half_t>,
                "the fused path reads bf16 or fp16 activations");
  using CudaT = std::conditional_t<std::is_same_v<T, cutlass::bfloat16_t>, __nv_bfloat16, __half>;
  static constexpr uint32_t kBarrier = 0;  // first user named barrier: the cooperative kernel uses none of its own
  static constexpr int kBatch = 8;         // units (32 bytes) in flight per thread while scanning the rows

  struct SharedStorage {
    uint32_t amax_bits[kMaxTokens];  // max |x| of a row as its fp32 bits: ordered like the (non-negative) values
    float scale[kMaxTokens];
  };

  CUTLASS_DEVICE static void sync() { cutlass::arch::NamedBarrier::arrive_and_wait(kThreads, kBarrier); }

  // Calls visit(i, unit, valid) for every 32-byte unit i < total of x (rows contiguous, so unit i of a row of
  // `units` units is in row i / units), kBatch loads in flight per thread. The trip count is warp-uniform (every
  // lane calls visit; `valid` says whether unit i exists), so visit may use warp collectives.
  template <class Visit>
  CUTLASS_DEVICE static void for_each_unit(T const* x, int total, int thread, Visit&& visit) {
    act_quant::Unit const* in = reinterpret_cast<act_quant::Unit const*>(x);
    int const lane = thread % 32;
    for (int base = thread - lane; base < total; base += kThreads * kBatch) {
      act_quant::Unit unit[kBatch];
      CUTLASS_PRAGMA_UNROLL
      for (int b = 0; b < kBatch; ++b) {
        int const i = base + b * kThreads + lane;
        if (i < total) unit[b] = in[i];
      }
      CUTLASS_PRAGMA_UNROLL
      for (int b = 0; b < kBatch; ++b) {
        int const i = base + b * kThreads + lane;
        visit(i, unit[b], i < total);
      }
    }
  }

  // Scales of token rows [0, tokens) of x [tokens, row_k] (row-major, 16-byte aligned, row_k % 16 == 0) into
  // shared memory and into act_scale (the epilogue's per-token broadcast reads them there). Every CTA computes the
  // same scales, so the concurrent global writes of different CTAs all store the same bits.
  CUTLASS_DEVICE static void compute_scales(T const* x, int tokens, int64_t row_k, float* act_scale,
                                            SharedStorage& smem, int thread) {
    if (thread < kMaxTokens) smem.amax_bits[thread] = 0;
    sync();
    // 32-bit indices: run_gemm bounds tokens by the tile and row_k by kFusedMaxK.
    int const units = int(row_k / act_quant::kUnitElems);
    for_each_unit(x, tokens * units, thread, [&](int i, act_quant::Unit const& unit, bool valid) {
      int const row = valid ? i / units : -1;
      float const amax = valid ? act_quant::unit_amax<CudaT>(unit) : 0.f;
      int const row0 = __shfl_sync(0xffffffffu, row, 0);
      if (__all_sync(0xffffffffu, row == row0)) {  // the usual case: the warp's 32 units are in one row
        float const warp_amax = act_quant::row_max<32>(amax);
        if (thread % 32 == 0 && row0 >= 0) atomicMax(&smem.amax_bits[row0], __float_as_uint(warp_amax));
      } else if (row >= 0) {
        atomicMax(&smem.amax_bits[row], __float_as_uint(amax));
      }
    });
    sync();
    if (thread < kMaxTokens) {
      float const amax = __uint_as_float(smem.amax_bits[thread]);
      float const scale = amax == 0.f ? 1.f : __fdiv_rn(amax, 127.f);  // as quantize_act.cuh
      smem.scale[thread] = scale;
      if (thread < tokens) act_scale[thread] = scale;
    }
    sync();
  }

  // The whole fused prologue: the scales (compute_scales), then the codes of every token row, all of K, into sq
  // (kMaxTokens, kTileK, k-blocks) of int8, one K-major 128-byte-swizzled WGMMA tile per k-block (16-byte runs of
  // k stay contiguous in it). Rows past `tokens` are left as they are: their WGMMA columns belong to no token and
  // are never stored. Ends with the writes fenced for the WGMMAs' async proxy and all consumer threads synced.
  template <class SmemQ>
  CUTLASS_DEVICE static void quantize_rows(T const* x, int tokens, int64_t row_k, float* act_scale, SmemQ&& sq,
                                           SharedStorage& smem, int thread) {
    constexpr int kTileK = decltype(cute::size<1>(sq))::value;
    compute_scales(x, tokens, row_k, act_scale, smem, thread);  // ends with sync(): smem.scale is complete
    int const units = int(row_k / act_quant::kUnitElems);
    // Rereads x: L2 hits after the scan.
    for_each_unit(x, tokens * units, thread, [&](int i, act_quant::Unit const& unit, bool valid) {
      if (!valid) return;
      int const row = i / units;
      int const k = (i % units) * act_quant::kUnitElems;
      uint4 const q = act_quant::quantize_unit<CudaT>(unit, smem.scale[row]);
      // Explicit shared-memory store: through the swizzle arithmetic the compiler loses the address space.
      asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};" ::"r"(
                       cute::cast_smem_ptr_to_uint(&sq(row, k % kTileK, k / kTileK))),
                   "r"(q.x), "r"(q.y), "r"(q.z), "r"(q.w));
    });
    cutlass::arch::fence_view_async_shared();
    sync();
  }
};

}  // namespace liquidgemm::collective
