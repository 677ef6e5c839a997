// SPDX-License-Identifier: Apache-2.0
// The table of compiled kernel instances, built from the generated kernel_list.inc (one row per config).
#include <cstring>

#include "liquidgemm/launch.hpp"

namespace liquidgemm {
namespace kernels {
#define LIQUIDGEMM_KERNEL(id, quantizes_act) \
  Status id##_run(GemmArgs const& args);     \
  size_t id##_workspace(GemmArgs const& args);
#include "kernel_list.inc"
#undef LIQUIDGEMM_KERNEL
}  // namespace kernels

namespace {
constexpr KernelEntry kKernels[] = {
#define LIQUIDGEMM_KERNEL(id, quantizes_act) {#id, quantizes_act, kernels::id##_run, kernels::id##_workspace},
#include "kernel_list.inc"
#undef LIQUIDGEMM_KERNEL
};
}  // namespace

KernelEntry const* kernel_table(size_t* count) {
  *count = sizeof(kKernels) / sizeof(kKernels[0]);
  return kKernels;
}

KernelEntry const* find_kernel(const char* id) {
  for (KernelEntry const& entry : kKernels) {
    if (std::strcmp(entry.id, id) == 0) return &entry;
  }
  return nullptr;
}

}  // namespace liquidgemm
