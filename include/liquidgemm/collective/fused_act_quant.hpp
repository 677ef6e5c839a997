// SPDX-License-Identifier: Apache-2.0
// Activation quantization inside the GEMM (the fused decode path, configs "..._fq"): the consumer warp groups
// compute the per-token scales over whole rows once per CTA, then quantize each stage's 16-bit activation tile
// (loaded by the producer's TMA) from shared memory into the int8 operand tile the WGMMAs read. The numerics are
// quantize_act.cuh's own functions, so the codes and scales are bit-identical to quantize_act + the GEMM.
#pragma once

#include <cstdint>
#include <type_traits>

#include "cute/tensor.hpp"
#include "cutlass/arch/barrier.h"
#include "cutlass/cutlass.h"
#include "cutlass/numeric_types.h"

#include "liquidgemm/quantize_act.cuh"

namespace liquidgemm::collective {

// T: the activations' type (cutlass::bfloat16_t or cutlass::half_t); kThreads: the consumer threads that share one activation tile (all of them
// run both functions, which synchronise on a named barrier); kMaxTokens: the token tile (WGMMA N).
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
    float inv_scale[kMaxTokens];     // __frcp_rn(scale), as quantize_act.cuh computes it
  };

  CUTLASS_DEVICE static void sync() { cutlass::arch::NamedBarrier::arrive_and_wait(kThreads, kBarrier); }

  // Scales of token rows [0, tokens) of x [tokens, row_k] (row-major, 16-byte aligned, row_k % 16 == 0) into
  // shared memory and into act_scale (the epilogue's per-token broadcast reads them there). Every CTA computes the
  // same scales, so the concurrent global writes of different CTAs all store the same bits.
  CUTLASS_DEVICE static void compute_scales(T const* x, int tokens, int64_t row_k, float* act_scale,
                                            SharedStorage& smem, int thread) {
    using act_quant::Unit;
    if (thread < kMaxTokens) smem.amax_bits[thread] = 0;
    sync();
    int const lane = thread % 32;
    // 32-bit indices (kernel/w4a8_gemm.hpp bounds m * k): rows are contiguous, so unit i is in row i / units.
    int const units = int(row_k / act_quant::kUnitElems);
    int const total = tokens * units;
    Unit const* in = reinterpret_cast<Unit const*>(x);
    // Warp-uniform trip count (base is the warp's first unit), so the shuffles below see the whole warp.
    for (int base = thread - lane; base < total; base += kThreads * kBatch) {
      Unit unit[kBatch];
      CUTLASS_PRAGMA_UNROLL
      for (int b = 0; b < kBatch; ++b) {
        int const i = base + b * kThreads + lane;
        if (i < total) unit[b] = in[i];
      }
      CUTLASS_PRAGMA_UNROLL
      for (int b = 0; b < kBatch; ++b) {
        int const i = base + b * kThreads + lane;
        int const row = i < total ? i / units : -1;
        float amax = i < total ? act_quant::unit_amax<CudaT>(unit[b]) : 0.f;
        int const row0 = __shfl_sync(0xffffffffu, row, 0);
        if (__all_sync(0xffffffffu, row == row0)) {  // the usual case: the warp's 32 units are in one row
          CUTLASS_PRAGMA_UNROLL
          for (int offset = 16; offset > 0; offset /= 2) {
            amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
          }
          if (lane == 0 && row0 >= 0) atomicMax(&smem.amax_bits[row0], __float_as_uint(amax));
        } else if (row >= 0) {
          atomicMax(&smem.amax_bits[row], __float_as_uint(amax));
        }
      }
    }
    sync();
    if (thread < kMaxTokens) {
      float const amax = __uint_as_float(smem.amax_bits[thread]);
      float const scale = amax == 0.f ? 1.f : __fdiv_rn(amax, 127.f);  // as quantize_act.cuh
      smem.scale[thread] = scale;
      smem.inv_scale[thread] = __frcp_rn(scale);
      if (thread < tokens) act_scale[thread] = scale;
    }
    sync();
  }

  // Quantizes the first `tokens` rows of one stage, sx (kMaxTokens, K) of T -> sq (kMaxTokens, K) of int8, both
  // K-major with the 128-byte swizzle (16-byte runs of k stay contiguous in it). Rows past `tokens` are left as
  // they are: their WGMMA columns belong to no token and are never stored. Four codes per thread and step, so
  // that all consumer threads share the work (it sits between the stage's arrival and its WGMMAs). Then fences
  // the writes for the WGMMAs' async proxy; the caller synchronises (sync()) before issuing them.
  template <class SmemX, class SmemQ>
  CUTLASS_DEVICE static void quantize_tile(SmemX const& sx, SmemQ&& sq, SharedStorage const& smem, int tokens,
                                           int thread) {
    constexpr int kTileK = cute::size<1>(SmemX{});
    constexpr int kItemsPerRow = kTileK / 4;
    int const items = tokens * kItemsPerRow;
    for (int item = thread; item < items; item += kThreads) {
      int const row = item / kItemsPerRow;
      int const k = (item % kItemsPerRow) * 4;
      // Explicit shared-memory accesses: through the swizzle arithmetic the compiler loses the address space and
      // would emit generic loads and stores.
      uint32_t lo, hi;
      asm volatile("ld.shared.v2.u32 {%0, %1}, [%2];" : "=r"(lo), "=r"(hi) : "r"(cute::cast_smem_ptr_to_uint(&sx(row, k))));
      float f[4];
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < 4; ++i) {  // little-endian: element i is the (i % 2) half of word i / 2
        f[i] = act_quant::bits_to_float<CudaT>(((i < 2 ? lo : hi) >> (16 * (i % 2))) & 0xFFFFu);
      }
      uint32_t const word = act_quant::quantize_word(f, smem.scale[row], smem.inv_scale[row]);
      asm volatile("st.shared.u32 [%0], %1;" ::"r"(cute::cast_smem_ptr_to_uint(&sq(row, k))), "r"(word));
    }
    if (thread < items) cutlass::arch::fence_view_async_shared();  // only the writers' stores need the fence
  }
};

}  // namespace liquidgemm::collective
