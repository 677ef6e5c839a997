// SPDX-License-Identifier: Apache-2.0
// quantize_act + GEMM behind one host entry point (see launch.hpp, LinearScratch). A fused-quantization config
// reads x itself: its scratch holds only the token scales (which it writes) and the workspace.
#include "liquidgemm/launch.hpp"

namespace liquidgemm {
namespace {

// Every part of the scratch starts on a 256-byte boundary: the GEMM's workspace (split-K partial tiles, stream-K
// locks) gets the alignment a fresh allocation would have.
size_t aligned(size_t bytes) { return (bytes + 255) / 256 * 256; }

// The int8 activations get whole multiples of kActRowMultiple rows (GemmArgs::act_rows).
int64_t act_rows(int64_t m) { return (m + kActRowMultiple - 1) / kActRowMultiple * kActRowMultiple; }

}  // namespace

LinearScratch linear_scratch(KernelEntry const& kernel, GemmArgs const& problem) {
  LinearScratch layout;
  layout.act_scale = kernel.quantizes_act ? 0 : aligned(size_t(act_rows(problem.m)) * size_t(problem.k));
  layout.workspace = layout.act_scale + aligned(size_t(problem.m) * sizeof(float));
  layout.bytes = layout.workspace + kernel.workspace_size(problem);
  return layout;
}

Status run_linear(KernelEntry const& kernel, LinearScratch const& layout, void const* x, ActDtype dtype,
                  void* scratch, GemmArgs args) {
  auto* const base = static_cast<uint8_t*>(scratch);
  auto* const act = reinterpret_cast<int8_t*>(base);
  auto* const act_scale = reinterpret_cast<float*>(base + layout.act_scale);
  args.act_scale = act_scale;
  args.workspace = base + layout.workspace;
  if (kernel.quantizes_act) {  // the config's activation type is its output type, which the caller matched to x
    args.x = x;
    return kernel.run(args);
  }
  Status const quantized = quantize_act(x, dtype, act, act_scale, args.m, args.k, args.stream);
  if (!quantized.ok) return quantized;
  args.act = act;
  args.act_rows = act_rows(args.m);
  return kernel.run(args);
}

}  // namespace liquidgemm
