// SPDX-License-Identifier: Apache-2.0
// Split-K epilogue: sums the int32 partial accumulators of the K slices (exact: integer addition) and applies the
// float epilogue of the reference in its order, each operation rounded on its own (no FMA contraction):
//   y[t, c] = (float(sum_l partial[l, t, c]) * act_scale[t]) * s1[c] (+ bias[c])  -> fp16 / bf16
// One thread produces 4 consecutive channels (16-byte loads of every slice, one 8-byte store).
#pragma once

#include <cstdint>
#include <type_traits>

#include "cutlass/numeric_conversion.h"
#include "cutlass/numeric_types.h"
#include "liquidgemm/arch/grid_dependency.hpp"

namespace liquidgemm::epilogue {

constexpr int kReduceThreads = 256;
constexpr int kReduceVector = 4;  // channels per thread (n is a multiple of 128)

template <class OutT>
__global__ void __launch_bounds__(kReduceThreads)
    reduce_split_k(int32_t const* __restrict__ partials, int splits, int64_t m, int64_t n,
                   float const* __restrict__ act_scale, float const* __restrict__ s1, float const* __restrict__ bias,
                   OutT* __restrict__ out) {
  static_assert(std::is_same_v<OutT, cutlass::bfloat16_t> || std::is_same_v<OutT, cutlass::half_t>,
                "split-K outputs are bf16 or fp16");
  // The output cast of the unsplit epilogue (Sm90Compute with round_to_nearest), so both paths round alike.
  cutlass::NumericConverter<OutT, float, cutlass::FloatRoundStyle::round_to_nearest> const round_to_out;
  // The next PDL kernel (the next layer's GEMM) may start its prologue and weight prefetch now instead of after
  // this grid's last block exits: 1-2 us per split-K decode GEMM on H100 (bench/NOTES.md).
  arch::allow_dependent_grids();
  arch::wait_for_prior_grids();  // launched with PDL behind the split GEMM: its partials are complete after this
  int64_t const first = (int64_t(blockIdx.x) * kReduceThreads + threadIdx.x) * kReduceVector;
  int64_t const slice_elems = m * n;
  if (first >= slice_elems) return;
  int4 acc = reinterpret_cast<int4 const*>(partials + first)[0];
  for (int l = 1; l < splits; ++l) {
    int4 const p = reinterpret_cast<int4 const*>(partials + l * slice_elems + first)[0];
    acc.x += p.x, acc.y += p.y, acc.z += p.z, acc.w += p.w;
  }
  int64_t const token = first / n;
  int64_t const channel = first % n;
  float const xs = act_scale[token];
  int const a[kReduceVector] = {acc.x, acc.y, acc.z, acc.w};
  alignas(8) OutT y[kReduceVector];
#pragma unroll
  for (int i = 0; i < kReduceVector; ++i) {
    float v = __fmul_rn(__fmul_rn(float(a[i]), xs), s1[channel + i]);
    if (bias != nullptr) v = __fadd_rn(v, bias[channel + i]);
    y[i] = round_to_out(v);
  }
  *reinterpret_cast<uint2*>(out + first) = *reinterpret_cast<uint2 const*>(y);
}

// Launches the reduction on `stream`, with PDL when `pdl` (its prologue overlaps the GEMM's tail).
template <class OutT>
cudaError_t launch_reduce_split_k(int32_t const* partials, int splits, int64_t m, int64_t n, float const* act_scale,
                                  float const* s1, float const* bias, OutT* out, cudaStream_t stream, bool pdl) {
  int64_t const threads = m * n / kReduceVector;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>((threads + kReduceThreads - 1) / kReduceThreads));
  config.blockDim = dim3(kReduceThreads);
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&config, reduce_split_k<OutT>, partials, splits, m, n, act_scale, s1, bias, out);
}

}  // namespace liquidgemm::epilogue
