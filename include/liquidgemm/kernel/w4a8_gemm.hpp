// SPDX-License-Identifier: Apache-2.0
// PLACEHOLDER until the kernel lands: the interface the generated instances compile against.
#pragma once
#include <cstdint>
#include "liquidgemm/launch.hpp"

namespace liquidgemm {

struct ScheduleCoop {};
struct SchedulePingpong {};
struct SchedulerPersistent {};
struct SchedulerStreamK {};

template <class OutT, int TileM, int TileN, int Stages, class Schedule, class Scheduler>
struct GemmConfig {};

template <class Config>
Status run_gemm(GemmArgs const&) { return Status::error("kernel not implemented yet"); }

template <class Config>
size_t gemm_workspace_size(GemmArgs const&) { return 0; }

}  // namespace liquidgemm
