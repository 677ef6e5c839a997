// SPDX-License-Identifier: Apache-2.0
// Host launcher for the per-token activation quantizer (include/liquidgemm/quantize_act.cuh).
#include <climits>

#include "liquidgemm/launch.hpp"
#include "liquidgemm/quantize_act.cuh"

namespace liquidgemm {
namespace {

template <class T>
void launch(void const* x, int8_t* x_q, float* x_scale, int64_t m, int64_t k, cudaStream_t stream) {
  using namespace act_quant;
  auto const* rows = static_cast<T const*>(x);
  if (k / kUnitElems <= kWarpRowUnits) {
    constexpr int kRowsPerCta = kThreads / 32;
    auto const grid = static_cast<unsigned>((m + kRowsPerCta - 1) / kRowsPerCta);
    quantize_rows<T, 32><<<grid, kThreads, 0, stream>>>(rows, x_q, x_scale, m, k);
  } else {
    quantize_rows<T, kThreads><<<static_cast<unsigned>(m), kThreads, 0, stream>>>(rows, x_q, x_scale, m, k);
  }
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
  if (dtype == ActDtype::kBF16) {
    launch<__nv_bfloat16>(x, x_q, x_scale, m, k, stream);
  } else {
    launch<__half>(x, x_q, x_scale, m, k, stream);
  }
  cudaError_t const err = cudaGetLastError();
  return err == cudaSuccess ? Status::success() : Status::error(cudaGetErrorString(err));
}

}  // namespace liquidgemm
