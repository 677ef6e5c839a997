// SPDX-License-Identifier: Apache-2.0
// Host-side contract between the generated kernel instances, the registry and the binding: plain pointers,
// shapes and a stream. No torch, no Python: Python validates every argument before it gets here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

namespace liquidgemm {

// The int8 activation buffers the library allocates (liquidgemm.quantize_act, linear's scratch) hold a whole multiple
// of this many rows, the largest decode token tile, so that GemmArgs::act_rows covers every token tile of a decode
// GEMM.
constexpr int64_t kActRowMultiple = 16;

// Y[m, n] = (acc[m, n] * act_scale[m]) * s1[n] (+ bias[n]),  acc = sum_k act[m, k] * w1'[n, k]  (int32)
struct GemmArgs {
  const int8_t* act = nullptr;          // [m, k] row-major int8 activations
  float* act_scale = nullptr;           // [m] per-token scale (written, not read, by the fused-quantization configs)
  const void* x = nullptr;              // fused-quantization configs only: [m, k] row-major activations of the
                                        // output's type (bf16 / f16), quantized inside the GEMM (act unused)
  const uint8_t* weight = nullptr;      // packed LiquidQuant chunks [n/64, k/128, 4096]
  const uint8_t* params = nullptr;      // group params [n/64, k/group_size, 64, 2] (s2, z)
  const float* s1 = nullptr;            // [n] per-channel scale
  const float* bias = nullptr;          // [n] or nullptr
  void* out = nullptr;                  // [m, n] row-major; bf16 / f16, or int32 for the debug config
  void* workspace = nullptr;            // gemm_workspace_size() bytes, 16-byte aligned (may be null if 0);
                                        // kernels/module.cpp checks the size before every launch
  int64_t m = 0, n = 0, k = 0;
  int64_t act_rows = 0;                 // rows of `act` the kernel may read, >= m (0: m): with whole token tiles
                                        // there the activation TMA loads them instead of zero-filling the rows past
                                        // m (0.4-0.6 us per decode GEMM on H100, bench/NOTES.md). Their contents do
                                        // not matter: their products land in output rows that are never stored.
  int group_size = 128;                 // 64, or a multiple of 128 that divides k (k = per-channel)
  int splits = 0;                       // stream-K configs: 0 = CUTLASS's stream-K heuristic, s >= 1 = split-K
                                        // into s slices of k; split-K configs: 0 = the cost model's count
                                        // (kernel/w4a8_gemm.hpp), s >= 1 = s slices; other configs: must be 0
  cudaStream_t stream = nullptr;
  bool pdl = true;                      // programmatic dependent launch: overlap this kernel's prologue and weight
                                        // prefetch with the previous kernel in the stream
};

// Returned by every entry point; message() is what the binding raises.
struct Status {
  bool ok = true;
  const char* what = "";
  static Status success() { return {}; }
  static Status error(const char* msg) { return {false, msg}; }
};

struct KernelEntry {
  const char* id;                                      // stable config id, see python/liquidgemm/_configs.py
  bool quantizes_act;                                  // a fused-quantization config: reads GemmArgs::x
  Status (*run)(GemmArgs const&);
  size_t (*workspace_size)(GemmArgs const&);
};

// The table of compiled instances (kernels/registry.cpp, filled from the generated list).
KernelEntry const* kernel_table(size_t* count);
KernelEntry const* find_kernel(const char* id);

// Per-token INT8 activation quantization (kernels/quantize_act.cu).
enum class ActDtype { kBF16, kF16 };
Status quantize_act(const void* x, ActDtype dtype, int8_t* x_q, float* x_scale, int64_t m, int64_t k,
                    cudaStream_t stream);

// w4a8_linear in one host call (kernels/linear.cpp): x [m, k] (bf16/f16) is quantized into the front of one
// scratch buffer, which also holds the token scales and the GEMM's workspace, and the GEMM runs on it. Eager
// callers then pay for one binding call and one allocation besides the output, not three of each.
struct LinearScratch {
  size_t act_scale = 0;  // byte offset of the [m] fp32 token scales (the int8 activations start at 0)
  size_t workspace = 0;  // byte offset of the GEMM's workspace
  size_t bytes = 0;      // total size
};
LinearScratch linear_scratch(KernelEntry const& kernel, GemmArgs const& problem);
// `args` carries everything but act / act_scale / workspace, which point into `scratch` as `layout` (this
// problem's linear_scratch, computed once by the caller, who also checks the buffer's size against it) says.
Status run_linear(KernelEntry const& kernel, LinearScratch const& layout, const void* x, ActDtype dtype,
                  void* scratch, GemmArgs args);

}  // namespace liquidgemm
