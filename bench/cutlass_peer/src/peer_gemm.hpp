// SPDX-License-Identifier: Apache-2.0
// Torch-free interface of the CUTLASS peer: plain pointers, shapes and a stream in, nothing allocated inside.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include <cuda_runtime_api.h>

namespace liquidgemm_cutlass_peer {

// Y[M,N] = X[M,K] · W[N,K]^T. The CUTLASS kernel computes Y^T = W · X^T: the int4 weights are its A operand
// (the narrow type must go through registers), the activations its B operand, so tile "M" = output channels
// and tile "N" = tokens.
struct GemmArgs {
  void const* weight = nullptr;         // int4 [N,K], reordered by reorder_int4_weight for this act type
  void const* group_scale = nullptr;    // [K/g, N] (N fastest): bf16, or for fp8 8-byte e4m3 tables {-8s..-1s}
  void const* act = nullptr;            // [M,K] row-major: bf16 or fp8 e4m3
  float const* act_scale = nullptr;     // fp8 only: [M] per-token scale, null means 1
  float const* channel_scale = nullptr; // fp8 only: [N] per-channel scale, null means 1
  void* out = nullptr;                  // [M,N] row-major bf16
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  int m = 0, n = 0, k = 0, group_size = 0;
  cudaStream_t stream = nullptr;
};

struct KernelEntry {
  char const* id;   // e.g. "int4_bf16_t128x128x64_coop"
  char const* act;  // "bf16" | "fp8"
  size_t (*workspace_size)(GemmArgs const&);
  void (*run)(GemmArgs const&);  // throws std::runtime_error with CUTLASS's reason
};

// Every compiled kernel (one generated TU each, see CMakeLists.txt).
std::vector<KernelEntry> const& kernels();
KernelEntry const& find_kernel(std::string_view id);  // throws std::invalid_argument

// Scatters int4 values (one per byte, low nibble used) from row-major [N,K] into the order the mainloop of
// `act` reads them (CUTLASS's memory reordering atom tiled over [N,K]); still one value per byte in `dst`.
void reorder_int4_weight(std::string_view act, int8_t const* src, int8_t* dst, int n, int k, cudaStream_t stream);

}  // namespace liquidgemm_cutlass_peer
