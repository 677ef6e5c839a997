// SPDX-License-Identifier: Apache-2.0
// Per-token symmetric INT8 activation quantization, bit-exact with quantize_act_reference (docs/architecture.md):
//   amax = max |x| in fp32,  scale = amax / 127 (IEEE division; 1 for an all-zero row),
//   q = clamp(round_half_even(x / scale), -127, 127)   (as with true division: see quantize_word)
// Finite inputs only: fmaxf drops NaN where torch.amax propagates it.
#pragma once

#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "liquidgemm/arch/grid_dependency.hpp"

namespace liquidgemm::act_quant {

constexpr int kThreads = 512;     // per CTA: with kCachedUnits, a CTA-per-row keeps rows up to K = 32768 in registers
constexpr int kUnitElems = 16;    // a thread's step: two 16-byte loads in, one 16-byte store out
constexpr int kCachedUnits = 4;   // units a thread keeps in registers between the amax pass and the quantize pass
constexpr int kWarpRowUnits = 32 * kCachedUnits;  // rows up to this many units (K <= 2048) get one warp, all cached
// Rows longer than kSplitRowElems may be split over a cluster of up to kMaxRowParts CTAs, each keeping at least
// kMinPartElems elements. Measured on the H100 (decode, quantize + GEMM): K = 28672 gains ~3 us, while splitting
// rows of K <= 14336 loses 1-4 us (cluster launch and the SMs the quantizer holds back from the GEMM's CTAs).
constexpr int kSplitRowElems = 16384;
constexpr int kMaxRowParts = 8;
constexpr int kMinPartElems = 4096;

struct alignas(16) Unit {
  uint4 lo, hi;  // 16 activations, bf16 or f16
};

// The fp32 value of a 16-bit bf16/f16 pattern held in the low half of `bits`.
template <class T>
__device__ __forceinline__ float bits_to_float(uint32_t bits) {
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>, "activations are bf16 or f16");
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __uint_as_float(bits << 16);  // bf16 is the upper half of an fp32
  } else {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
  }
}

// Unpacks from the registers of a loaded unit (a memcpy from the global pointer would become byte loads).
template <class T>
__device__ __forceinline__ void unpack(Unit unit, float (&f)[kUnitElems]) {
  static_assert(sizeof(T) * kUnitElems == sizeof(Unit), "a unit is 16 two-byte activations");
  uint32_t const words[8] = {unit.lo.x, unit.lo.y, unit.lo.z, unit.lo.w, unit.hi.x, unit.hi.y, unit.hi.z, unit.hi.w};
#pragma unroll
  for (int i = 0; i < 8; ++i) {  // little-endian: the low half of a word is the lower-indexed element
    f[2 * i] = bits_to_float<T>(words[i] & 0xFFFFu);
    f[2 * i + 1] = bits_to_float<T>(words[i] >> 16);
  }
}

template <class T>
__device__ __forceinline__ float unit_amax(Unit unit) {
  float f[kUnitElems];
  unpack<T>(unit, f);
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < kUnitElems; ++i) amax = fmaxf(amax, fabsf(f[i]));
  return amax;
}

// Whether x * inv may round differently from the IEEE quotient x / scale: x * inv is within ~1 ulp of the true
// quotient, so both round to the same integer unless the quotient is within a few ulp of a half-integer. For
// |quotient| <= 128: |r - exact| < 2.7e-5 < 6.2e-5. Written so that NaN counts as near: for a subnormal scale
// (bf16 rows below ~3.7e-37) 1/scale is inf.
__device__ __forceinline__ bool near_tie(float r) { return !(fabsf(r - floorf(r) - 0.5f) >= 6.2e-5f); }

// The codes round_half_even(f[i] / scale), clamped to +-127, of f[0..3] packed into one word (inv = __frcp_rn(scale)):
// a multiply each, and the exact division only for elements near a tie. One branch for all four keeps the four
// chains independent.
__device__ __forceinline__ uint32_t quantize_word(float const* f, float scale, float inv) {
  float r[4];
  bool any_near_tie = false;
#pragma unroll
  for (int b = 0; b < 4; ++b) {
    r[b] = f[b] * inv;
    any_near_tie |= near_tie(r[b]);
  }
  if (any_near_tie) {  // rare
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      if (near_tie(r[b])) r[b] = __fdiv_rn(f[b], scale);
    }
  }
  uint32_t word = 0;
#pragma unroll
  for (int b = 0; b < 4; ++b) {
    int const q = min(max(__float2int_rn(r[b]), -127), 127);
    word |= (static_cast<uint32_t>(q) & 0xFFu) << (8 * b);  // little-endian: element b is byte b
  }
  return word;
}

template <class T>
__device__ __forceinline__ uint4 quantize_unit(Unit unit, float scale) {
  float f[kUnitElems];
  unpack<T>(unit, f);
  float const inv = __frcp_rn(scale);
  return make_uint4(quantize_word(f, scale, inv), quantize_word(f + 4, scale, inv), quantize_word(f + 8, scale, inv),
                    quantize_word(f + 12, scale, inv));
}

// Max over the kThreadsPerRow threads of one row: warp shuffle, then shared memory across the CTA's warps.
template <int kThreadsPerRow>
__device__ __forceinline__ float row_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  if constexpr (kThreadsPerRow > 32) {
    __shared__ float warp_max[kThreadsPerRow / 32];
    if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = v;
    __syncthreads();
#pragma unroll
    for (int w = 0; w < kThreadsPerRow / 32; ++w) v = fmaxf(v, warp_max[w]);
  }
  return v;
}

// Max over the CTAs of this thread block cluster (DSMEM); every thread of the CTA passes its CTA's max.
__device__ __forceinline__ float cluster_max(float v) {
  namespace cg = cooperative_groups;
  __shared__ float cta_max;
  cg::cluster_group cluster = cg::this_cluster();
  // Every thread is done reading row_max's warp maxima before cta_max is written: racecheck reports the write
  // against those reads otherwise (the two may share a shared-memory word).
  __syncthreads();
  if (threadIdx.x == 0) cta_max = v;
  cluster.sync();
  for (unsigned rank = 0; rank < cluster.num_blocks(); ++rank) v = fmaxf(v, *cluster.map_shared_rank(&cta_max, rank));
  cluster.sync();  // no CTA leaves (freeing its shared memory) before all have read it
  return v;
}

// One warp per row (kThreadsPerRow = 32, short rows) or one CTA per row (kThreadsPerRow = kThreads). In CTA mode
// a row may also be split into equal parts over the CTAs of a cluster (launched as a (parts, 1, 1) cluster):
// the row max then goes through distributed shared memory. Max is order-free, so the codes do not depend on it.
// Requires k % (kUnitElems * parts) == 0 and 16-byte aligned x and x_q (the callers guarantee k % 128 == 0).
template <class T, int kThreadsPerRow>
__global__ void __launch_bounds__(kThreads)
    quantize_rows(T const* __restrict__ x, int8_t* __restrict__ x_q, float* __restrict__ x_scale, int64_t m,
                  int64_t k) {
  static_assert(kThreadsPerRow == 32 || kThreadsPerRow == kThreads, "a row is one warp or one whole CTA");
  // The GEMM that consumes x_q (launched with PDL) may start now: it prefetches its weights meanwhile and waits
  // for this grid to complete before it reads x_q.
  arch::allow_dependent_grids();
  constexpr int kRowsPerCta = kThreads / kThreadsPerRow;
  unsigned const parts = kThreadsPerRow == kThreads ? cooperative_groups::this_cluster().num_blocks() : 1;
  unsigned const part = blockIdx.x % parts;  // the cluster's CTAs are consecutive in x: part = rank
  int64_t const row = int64_t(blockIdx.x / parts) * kRowsPerCta + threadIdx.x / kThreadsPerRow;
  int const lane = threadIdx.x % kThreadsPerRow;
  if (row >= m) return;  // only in warp-per-row mode, where a whole warp leaves and nobody waits at a barrier

  int64_t const span = k / parts;
  Unit const* in = reinterpret_cast<Unit const*>(x + row * k + part * span);
  uint4* out = reinterpret_cast<uint4*>(x_q + row * k + part * span);
  int const units = static_cast<int>(span / kUnitElems);
  int const first_uncached = kCachedUnits * kThreadsPerRow;

  // Pass 1: amax. The first kCachedUnits units per thread stay in registers; longer rows reread the rest
  // in pass 2 (from L2: a row is at most 256 KB).
  Unit cached[kCachedUnits];
  float amax = 0.f;
#pragma unroll
  for (int c = 0; c < kCachedUnits; ++c) {
    int const u = lane + c * kThreadsPerRow;
    if (u < units) {
      cached[c] = in[u];
      amax = fmaxf(amax, unit_amax<T>(cached[c]));
    }
  }
  for (int u = first_uncached + lane; u < units; u += kThreadsPerRow) amax = fmaxf(amax, unit_amax<T>(in[u]));
  amax = row_max<kThreadsPerRow>(amax);
  if (parts > 1) amax = cluster_max(amax);

  float const scale = amax == 0.f ? 1.f : __fdiv_rn(amax, 127.f);
  if (lane == 0 && part == 0) x_scale[row] = scale;

  // Pass 2: quantize.
#pragma unroll
  for (int c = 0; c < kCachedUnits; ++c) {
    int const u = lane + c * kThreadsPerRow;
    if (u < units) out[u] = quantize_unit<T>(cached[c], scale);
  }
  for (int u = first_uncached + lane; u < units; u += kThreadsPerRow) out[u] = quantize_unit<T>(in[u], scale);
}

}  // namespace liquidgemm::act_quant
