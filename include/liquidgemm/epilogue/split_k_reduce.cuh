// SPDX-License-Identifier: Apache-2.0
// Split-K epilogue: sums the int32 partial accumulators of the K slices or of the balanced split's units
// (kernel/balanced_split.hpp; exact: integer addition) and applies the
// float epilogue of the reference in its order, each operation rounded on its own (no FMA contraction):
//   y[t, c] = (float(sum_l partial[l, t, c]) * act_scale[t]) * s1[c] (+ bias[c])  -> fp16 / bf16
// One thread produces 4 consecutive channels (16-byte loads of every slice, one 8-byte store).
#pragma once

#include <cstdint>
#include <type_traits>

#include "cutlass/numeric_conversion.h"
#include "cutlass/numeric_types.h"
#include "liquidgemm/arch/grid_dependency.hpp"
#include "liquidgemm/kernel/balanced_split.hpp"

namespace liquidgemm::epilogue {

constexpr int kReduceThreads = 256;
constexpr int kReduceVector = 4;  // channels per thread (n is a multiple of 128)
constexpr int kLoadBatch = 8;     // slices loaded at once (8 int4 = 32 registers)
// Registers within a quarter of the register file: two CTAs fit beside a GEMM that leaves half of it
// (kernel/w4a8_gemm.hpp, kRoomForReduce), so a decode reduction's CTAs all wait there for the GEMM's end.
constexpr int kReduceMinBlocks = 4;

// Partial tiles summed per output: uniform split-K's `splits` for every tile, else the balanced split's per tile.
struct PartialCount {
  int splits = 0;
  BalancedSplit balanced{};
  CUTLASS_HOST_DEVICE int at(int64_t token, int64_t channel) const {
    return splits > 0 ? splits : balanced.partials_at(int(token), int(channel));
  }
  int slots() const { return splits > 0 ? splits : balanced.max_partials(); }  // in the workspace
};

template <class OutT>
__global__ void __launch_bounds__(kReduceThreads, kReduceMinBlocks)
    reduce_split_k(int32_t const* __restrict__ partials, PartialCount const count, int64_t m, int64_t n,
                   float const* act_scale, float const* s1, float const* bias,
                   OutT* __restrict__ out) {
  static_assert(std::is_same_v<OutT, cutlass::bfloat16_t> || std::is_same_v<OutT, cutlass::half_t>,
                "split-K outputs are bf16 or fp16");
  // The output cast of the unsplit epilogue (Sm90Compute with round_to_nearest), so both paths round alike.
  cutlass::NumericConverter<OutT, float, cutlass::FloatRoundStyle::round_to_nearest> const round_to_out;
  // The next PDL kernel (the next layer's GEMM) may start its prologue and weight prefetch now instead of after
  // this grid's last block exits: 1-2 us per split-K decode GEMM on H100 (bench/NOTES.md).
  arch::allow_dependent_grids();
  int64_t const first = (int64_t(blockIdx.x) * kReduceThreads + threadIdx.x) * kReduceVector;
  int64_t const slice_elems = m * n;
  int64_t const token = first / n;
  int64_t const channel = first % n;
  if (first >= slice_elems) {
    return;
  }
  // The thread's 4 channels lie in one 128-channel tile. Index arithmetic only: done while the GEMM still runs.
  int const splits = count.at(token, channel);
  // The scales before the wait: the GEMM never writes them, and PDL launched this grid only once every GEMM CTA had
  // passed its own wait for the kernel that wrote act_scale. Their HBM round trip then overlaps the GEMM's tail instead
  // of following it (0.2-0.5 us per decode GEMM on H100, bench/NOTES.md). No __restrict__ on their pointers: with it
  // the compiler may treat them as invariant and sink the loads past the wait's memory clobber (it did).
  float const xs = act_scale[token];
  float scale[kReduceVector], offset[kReduceVector];
#pragma unroll
  for (int i = 0; i < kReduceVector; ++i) {
    scale[i] = s1[channel + i];
    offset[i] = bias != nullptr ? bias[channel + i] : 0.f;
  }
  arch::wait_for_prior_grids();  // launched with PDL behind the split GEMM: its partials are complete after this
  // Every partial is loaded before the first add: up to kLoadBatch slices in flight per thread, so the reduction
  // costs one L2 round trip per 8 slices instead of one per few (most of its time at 8-16 slices).
  int4 acc = {0, 0, 0, 0};
  for (int l0 = 0; l0 < splits; l0 += kLoadBatch) {
    int4 p[kLoadBatch];
#pragma unroll
    for (int i = 0; i < kLoadBatch; ++i) {
      if (l0 + i < splits) p[i] = reinterpret_cast<int4 const*>(partials + (l0 + i) * slice_elems + first)[0];
    }
#pragma unroll
    for (int i = 0; i < kLoadBatch; ++i) {
      if (l0 + i < splits) acc.x += p[i].x, acc.y += p[i].y, acc.z += p[i].z, acc.w += p[i].w;
    }
  }
  int const a[kReduceVector] = {acc.x, acc.y, acc.z, acc.w};
  alignas(8) OutT y[kReduceVector];
#pragma unroll
  for (int i = 0; i < kReduceVector; ++i) {
    float v = __fmul_rn(__fmul_rn(float(a[i]), xs), scale[i]);
    if (bias != nullptr) v = __fadd_rn(v, offset[i]);  // no "+ 0": it would turn -0 into +0
    y[i] = round_to_out(v);
  }
  *reinterpret_cast<uint2*>(out + first) = *reinterpret_cast<uint2 const*>(y);
}

// Launches the reduction on `stream`, with PDL when `pdl` (its prologue overlaps the GEMM's tail).
template <class OutT>
cudaError_t launch_reduce_split_k(int32_t const* partials, PartialCount const& count, int64_t m, int64_t n,
                                  float const* act_scale, float const* s1, float const* bias, OutT* out,
                                  cudaStream_t stream, bool pdl) {
  int64_t const threads = m * n / kReduceVector;
  auto const grid = static_cast<unsigned>((threads + kReduceThreads - 1) / kReduceThreads);
  return arch::launch_with_pdl(reduce_split_k<OutT>, dim3(grid), dim3(kReduceThreads), dim3(1), 0, stream, pdl,
                               partials, count, m, n, act_scale, s1, bias, out);
}

}  // namespace liquidgemm::epilogue
