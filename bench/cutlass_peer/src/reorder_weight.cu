// SPDX-License-Identifier: Apache-2.0
// Device-side weight reorder for the CUTLASS peer (prepare time, on the caller's stream).
#include <stdexcept>
#include <string>

#include "peer_gemm.hpp"
#include "sm90_int4_weight_layout.cuh"

namespace liquidgemm_cutlass_peer {

// One value per byte on both sides, so threads never share a destination byte; Python packs nibbles after.
template <class Layout>
__global__ void scatter_to_layout(int8_t const* src, int8_t* dst, Layout layout, int n, int k) {
  int64_t const i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(n) * k) return;
  int const row = int(i / k);
  int const col = int(i % k);
  dst[layout(row, col, 0)] = src[i];
}

template <class Act>
static void reorder(int8_t const* src, int8_t* dst, int n, int k, cudaStream_t stream) {
  auto layout = make_weight_layout<Act>(n, k);
  if (int64_t(cute::cosize(layout)) != int64_t(n) * k) {
    throw std::invalid_argument("reorder_int4_weight: N and K must be multiples of the reordering atom");
  }
  int const threads = 256;
  int64_t const blocks = (int64_t(n) * k + threads - 1) / threads;
  scatter_to_layout<<<unsigned(blocks), threads, 0, stream>>>(src, dst, layout, n, k);
  if (cudaError_t err = cudaGetLastError(); err != cudaSuccess) {
    throw std::runtime_error(std::string("reorder_int4_weight launch: ") + cudaGetErrorString(err));
  }
}

void reorder_int4_weight(std::string_view act, int8_t const* src, int8_t* dst, int n, int k, cudaStream_t stream) {
  if (act == "bf16") return reorder<cutlass::bfloat16_t>(src, dst, n, k, stream);
  if (act == "fp8") return reorder<cutlass::float_e4m3_t>(src, dst, n, k, stream);
  throw std::invalid_argument("reorder_int4_weight: act must be 'bf16' or 'fp8', got '" + std::string(act) + "'");
}

}  // namespace liquidgemm_cutlass_peer
