// SPDX-License-Identifier: Apache-2.0
// Host launcher for the per-token activation quantizer (include/liquidgemm/quantize_act.cuh).
#include <climits>

#include "liquidgemm/arch/grid_dependency.hpp"
#include "liquidgemm/arch/sm_count.hpp"
#include "liquidgemm/launch.hpp"
#include "liquidgemm/quantize_act.cuh"

namespace liquidgemm {
namespace {

// CTAs per row in CTA-per-row mode: one SM streams only ~20 GB/s, so a small batch of very long rows (decode) is
// split over a cluster while the grid still fits the SMs (see kSplitRowElems).
int row_parts(int64_t m, int64_t k) {
  using namespace act_quant;
  if (k <= kSplitRowElems) return 1;
  int const sms = arch::sm_count_for_sizing();
  int parts = 1;
  while (parts < kMaxRowParts && m * parts * 2 <= sms && k / (parts * 2) >= kMinPartElems) parts *= 2;
  return parts;
}

template <class T>
cudaError_t launch(void const* x, int8_t* x_q, float* x_scale, int64_t m, int64_t k, cudaStream_t stream) {
  using namespace act_quant;
  auto const* rows = static_cast<T const*>(x);
  if (k / kUnitElems <= kWarpRowUnits) {
    constexpr int kRowsPerCta = kThreads / 32;
    auto const grid = static_cast<unsigned>((m + kRowsPerCta - 1) / kRowsPerCta);
    quantize_rows<T, 32><<<grid, kThreads, 0, stream>>>(rows, x_q, x_scale, m, k);
    return cudaSuccess;
  }
  auto const parts = static_cast<unsigned>(row_parts(m, k));
  // A plain launch (no PDL): the quantizer starts only after the previous kernel has finished, so whatever that kernel
  // wrote, weights included, is visible to the GEMM that follows (README: weights are constants).
  return arch::launch_with_pdl(quantize_rows<T, kThreads>, dim3(static_cast<unsigned>(m) * parts), dim3(kThreads),
                               dim3(parts), 0, stream, /*pdl=*/false, rows, x_q, x_scale, m, k);
}

}  // namespace

Status quantize_act(void const* x, ActDtype dtype, int8_t* x_q, float* x_scale, int64_t m, int64_t k,
                    cudaStream_t stream) {
  if (m < 1 || m > INT_MAX) return Status::error("m must be in [1, 2^31)");
  if (k < 128 || k % 128 != 0) return Status::error("k must be a positive multiple of 128");
  if (x == nullptr || x_q == nullptr || x_scale == nullptr) return Status::error("null pointer");
  if ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(x_q)) % 16 != 0) {
    return Status::error("x and x_q must be 16-byte aligned");
  }
  cudaError_t err = dtype == ActDtype::kBF16 ? launch<__nv_bfloat16>(x, x_q, x_scale, m, k, stream)
                                             : launch<__half>(x, x_q, x_scale, m, k, stream);
  if (err == cudaSuccess) err = cudaGetLastError();
  return err == cudaSuccess ? Status::success() : Status::error(cudaGetErrorString(err));
}

}  // namespace liquidgemm
