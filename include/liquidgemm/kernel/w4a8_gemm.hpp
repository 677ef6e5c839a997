// SPDX-License-Identifier: Apache-2.0
// Kernel assembly: the LiquidGEMM mainloop collective + CUTLASS's Sm90 epilogue (token/channel scale visitor
// tree, TMA store of the transposed tile) + GemmUniversal's warp-specialized kernel and tile scheduler.
// One GemmConfig = one instantiation; the generated translation units (kernels/w4a8_gemm.cu.in) call
// run_gemm<Config> and gemm_workspace_size<Config>.
#pragma once

#include <cstdint>

#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/kernel_hardware_info.h"
#include "cutlass/numeric_types.h"

#include "liquidgemm/collective/sm90_mma_liquid_w4a8.hpp"
#include "liquidgemm/epilogue/token_channel_scale.hpp"
#include "liquidgemm/launch.hpp"

namespace liquidgemm {

struct ScheduleCoop {
  using Kernel = cutlass::gemm::KernelTmaWarpSpecializedCooperative;
  using Epilogue = cutlass::epilogue::TmaWarpSpecializedCooperative;
};
struct SchedulePingpong {
  using Kernel = cutlass::gemm::KernelTmaWarpSpecializedPingpong;
  using Epilogue = cutlass::epilogue::TmaWarpSpecialized;
};
struct SchedulerPersistent {
  using Tag = cutlass::gemm::PersistentScheduler;
};
struct SchedulerStreamK {
  using Tag = cutlass::gemm::StreamKScheduler;
};

template <class OutT_, int TileM, int TileN, int Stages, class Schedule, class Scheduler>
struct GemmConfig {
  using OutT = OutT_;
  using TileShape = cute::Shape<cute::Int<TileM>, cute::Int<TileN>, cute::Int<format::kBlockK>>;
  using ClusterShape = cute::Shape<cute::_1, cute::_1, cute::_1>;

  using Mainloop = collective::MainloopLiquidW4A8<Stages, ClusterShape, typename Schedule::Kernel, TileShape>;
  using Fusion = epilogue::TokenChannelScale<OutT, TileShape>;

  // The kernel's (M, N) = (channels, tokens) tile is stored into row-major Y[tokens, channels], i.e. column-major
  // in the kernel's view: the transpose is free in the TMA store.
  using LayoutD = cutlass::layout::ColumnMajor;
  static constexpr int kAlignD = 128 / cutlass::sizeof_bits<OutT>::value;
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, int32_t, float, void, LayoutD, kAlignD, OutT, LayoutD,
      kAlignD, typename Schedule::Epilogue, typename Fusion::Callbacks>::CollectiveOp;

  using Kernel = cutlass::gemm::kernel::GemmUniversal<cute::Shape<int, int, int, int>, Mainloop, Epilogue,
                                                      typename Scheduler::Tag>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
  static_assert(Kernel::SharedStorageSize <= 232448, "stages do not fit Hopper's 227 KB of shared memory");
};

namespace detail {

// Multiprocessor count of the current device, queried once per device (persistent grids size to it).
inline int sm_count() {
  constexpr int kMaxDevices = 64;
  static int counts[kMaxDevices] = {};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device >= kMaxDevices) return 0;
  if (counts[device] == 0) {
    counts[device] = cutlass::KernelHardwareInfo::query_device_multiprocessor_count(device);
  }
  return counts[device];
}

template <class Config>
typename Config::Gemm::Arguments make_arguments(GemmArgs const& a) {
  using Gemm = typename Config::Gemm;
  using Mainloop = typename Config::Mainloop;
  using StrideD = typename Gemm::GemmKernel::StrideD;
  typename Mainloop::StrideB stride_act{a.k, cute::Int<1>{}, int64_t(a.m) * a.k};
  StrideD stride_out{cute::Int<1>{}, a.n, int64_t(a.m) * a.n};

  typename Gemm::Arguments args{};
  args.mode = cutlass::gemm::GemmUniversalMode::kGemm;
  args.problem_shape = {int(a.n), int(a.m), int(a.k), 1};  // kernel view: M = channels, N = tokens
  args.mainloop = {a.weight, a.params, a.act, stride_act, a.group_size};
  args.epilogue.thread = Config::Fusion::arguments(a.act_scale, a.s1, a.bias);
  args.epilogue.ptr_D = static_cast<typename Config::OutT*>(a.out);
  args.epilogue.dD = stride_out;
  args.hw_info.sm_count = sm_count();
  return args;
}

}  // namespace detail

template <class Config>
size_t gemm_workspace_size(GemmArgs const& a) {
  return Config::Kernel::get_workspace_size(detail::make_arguments<Config>(a));
}

template <class Config>
Status run_gemm(GemmArgs const& a) {
  using Gemm = typename Config::Gemm;
  using Kernel = typename Config::Kernel;
  auto args = detail::make_arguments<Config>(a);
  if (!Kernel::can_implement(args)) {
    return Status::error("problem not supported by this kernel config (shape, group size or alignment)");
  }
  // Raise the kernel's dynamic shared-memory limit once per process (not per call: it is host overhead).
  static cudaError_t const smem_attribute = cudaFuncSetAttribute(
      cutlass::device_kernel<Kernel>, cudaFuncAttributeMaxDynamicSharedMemorySize, Kernel::SharedStorageSize);
  if (smem_attribute != cudaSuccess) {
    return Status::error(cudaGetErrorString(smem_attribute));
  }
  if (Kernel::initialize_workspace(args, a.workspace, a.stream) != cutlass::Status::kSuccess) {
    return Status::error("workspace initialization failed");
  }
  auto params = Kernel::to_underlying_arguments(args, a.workspace);
  // No programmatic dependent launch: CUTLASS 4.2's stream-K scheduler does not compile with its GDC hooks on.
  if (Gemm::run(params, a.stream) != cutlass::Status::kSuccess) {
    return Status::error("kernel launch failed");
  }
  cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? Status::success() : Status::error(cudaGetErrorString(err));
}

}  // namespace liquidgemm
