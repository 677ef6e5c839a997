// SPDX-License-Identifier: Apache-2.0
// Bulk (non-tensor) TMA copies global -> shared with an L2 eviction policy. Packed weights that one token tile
// reads once stream as evict-first, leaving L2 to what is read again (activations, split-K partial tiles).
#pragma once

#include <cstdint>

namespace liquidgemm::arch {

// The L2 eviction policy of a cache-hinted copy: evict-first (data read once) or the normal priority.
__device__ __forceinline__ uint64_t l2_policy(bool evict_first) {
  uint64_t policy = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (evict_first) {
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  } else {
    asm volatile("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;" : "=l"(policy));
  }
#endif
  return policy;
}

// Copies `bytes` (a multiple of 16, both addresses 16-byte aligned) and completes them on the mbarrier.
__device__ __forceinline__ void bulk_copy_g2s(void const* src, uint64_t* barrier, void* dst, uint32_t bytes,
                                              uint64_t policy) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::"r"(
          static_cast<uint32_t>(__cvta_generic_to_shared(dst))),
      "l"(src), "r"(bytes), "r"(static_cast<uint32_t>(__cvta_generic_to_shared(barrier))), "l"(policy)
      : "memory");
#endif
}

}  // namespace liquidgemm::arch
