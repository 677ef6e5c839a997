// SPDX-License-Identifier: Apache-2.0
// Dispatch-policy tag of the LiquidGEMM mainloop. Its Schedule is one of CUTLASS's warp-specialized kernel
// schedules, which is how GemmUniversal picks the cooperative or ping-pong kernel to host the collective.
#pragma once

#include "cute/layout.hpp"
#include "cutlass/arch/arch.h"
#include "cutlass/gemm/dispatch_policy.hpp"

namespace liquidgemm::collective {

template <int Stages_, class ClusterShape_, class KernelSchedule_, bool SplitLoads_ = false>
struct MainloopSm90LiquidW4A8 {
  static constexpr int Stages = Stages_;
  static constexpr bool SplitLoads = SplitLoads_;  // the collective has load_auxiliary() for the MainloopAux warp
  using ClusterShape = ClusterShape_;
  using ArchTag = cutlass::arch::Sm90;
  using Schedule = KernelSchedule_;
  static_assert(cute::is_same_v<Schedule, cutlass::gemm::KernelTmaWarpSpecializedCooperative> ||
                    cute::is_same_v<Schedule, cutlass::gemm::KernelTmaWarpSpecializedPingpong>,
                "the LiquidGEMM mainloop runs in the cooperative or ping-pong warp-specialized kernel");
};

}  // namespace liquidgemm::collective

// CUTLASS's warp-specialized kernels run the collective's load_auxiliary() on the producer warp group's warp 3 where
// this trait holds.
namespace cutlass::gemm::kernel::detail {
template <int Stages_, class ClusterShape_, class KernelSchedule_>
struct HasAuxiliaryLoad<liquidgemm::collective::MainloopSm90LiquidW4A8<Stages_, ClusterShape_, KernelSchedule_, true>>
    : cute::true_type {};
}  // namespace cutlass::gemm::kernel::detail
