// SPDX-License-Identifier: Apache-2.0
// Multiprocessor count of the current device, queried once per device: grids that size themselves to the GPU
// (persistent GEMMs, the split-K cost model, the activation quantizer's row split) read it on every launch.
#pragma once

#include <cuda_runtime_api.h>

namespace liquidgemm::arch {

// 0 when it cannot be queried (callers fall back to a default).
inline int sm_count() {
  constexpr int kMaxDevices = 64;
  static int counts[kMaxDevices] = {};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device >= kMaxDevices) return 0;
  if (counts[device] == 0 &&
      cudaDeviceGetAttribute(&counts[device], cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    counts[device] = 0;  // asked again next time
  }
  return counts[device];
}

// The count to size a grid or a cost model by: sm_count(), or an H100 SXM's 132 when it cannot be queried.
inline int sm_count_for_sizing() { return sm_count() > 0 ? sm_count() : 132; }

}  // namespace liquidgemm::arch
