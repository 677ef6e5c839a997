// SPDX-License-Identifier: Apache-2.0
// Dispatch-policy tag of the LiquidGEMM mainloop. Its Schedule is one of CUTLASS's warp-specialized kernel
// schedules, which is how GemmUniversal picks the cooperative or ping-pong kernel to host the collective.
#pragma once

#include "cute/layout.hpp"
#include "cutlass/arch/arch.h"
#include "cutlass/gemm/dispatch_policy.hpp"

namespace liquidgemm::collective {

template <int Stages_, class ClusterShape_, class KernelSchedule_>
struct MainloopSm90LiquidW4A8 {
  static constexpr int Stages = Stages_;
  using ClusterShape = ClusterShape_;
  using ArchTag = cutlass::arch::Sm90;
  using Schedule = KernelSchedule_;
  static_assert(cute::is_same_v<Schedule, cutlass::gemm::KernelTmaWarpSpecializedCooperative> ||
                    cute::is_same_v<Schedule, cutlass::gemm::KernelTmaWarpSpecializedPingpong>,
                "the LiquidGEMM mainloop runs in the cooperative or ping-pong warp-specialized kernel");
};

}  // namespace liquidgemm::collective
