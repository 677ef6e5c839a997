// SPDX-License-Identifier: Apache-2.0
// Programmatic dependent launch (PDL) on Hopper: a kernel launched with the programmatic-serialization attribute
// may start while the previous kernel in the stream is still running. It must not touch memory that kernel writes
// before wait_for_prior_grids(); prefetching into L2 is the exception (L2 is the GPU's point of coherence, so a
// prefetched line can never be stale).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include <cuda_runtime.h>  // cudaLaunchKernelEx (the C++ overload)

namespace liquidgemm::arch {

// Blocks until every prerequisite grid has completed and its writes are visible; returns at once without PDL.
__device__ __forceinline__ void wait_for_prior_grids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets dependent grids launched with PDL start (their own wait still waits for this grid to complete).
__device__ __forceinline__ void allow_dependent_grids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Asynchronous prefetch of [ptr, ptr + bytes) into L2 (16-byte aligned, bytes a multiple of 16).
__device__ __forceinline__ void prefetch_l2(void const* ptr, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(ptr), "r"(bytes) : "memory");
#endif
}

// Launches kernel<<<grid, block, smem, stream>>>(args...) in thread-block clusters of `cluster` CTAs, as a PDL
// dependent of the stream's previous kernel when `pdl` (the kernel then calls wait_for_prior_grids() before it reads
// that kernel's output).
template <class... Params, class... Args>
cudaError_t launch_with_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, dim3 cluster, size_t smem,
                            cudaStream_t stream, bool pdl, Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attributes[2]{};
  unsigned count = 0;
  if (cluster.x * cluster.y * cluster.z > 1) {
    attributes[count].id = cudaLaunchAttributeClusterDimension;
    attributes[count++].val.clusterDim = {cluster.x, cluster.y, cluster.z};
  }
  if (pdl) {
    attributes[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attributes[count++].val.programmaticStreamSerializationAllowed = 1;
  }
  config.attrs = attributes;
  config.numAttrs = count;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace liquidgemm::arch
