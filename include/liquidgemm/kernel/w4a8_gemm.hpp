// SPDX-License-Identifier: Apache-2.0
// Kernel assembly: the LiquidGEMM mainloop collective + CUTLASS's Sm90 epilogue (token/channel scale visitor
// tree, TMA store of the transposed tile) + GemmUniversal's warp-specialized kernel and tile scheduler.
// One GemmConfig = one instantiation; the generated translation units (kernels/w4a8_gemm.cu.in) call
// run_gemm<Config> and gemm_workspace_size<Config>.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/kernel_hardware_info.h"
#include "cutlass/numeric_types.h"

#include "liquidgemm/arch/grid_dependency.hpp"
#include "liquidgemm/arch/sm_count.hpp"
#include "liquidgemm/kernel/balanced_split.hpp"
#include "liquidgemm/collective/sm90_mma_liquid_w4a8.hpp"
#include "liquidgemm/epilogue/split_k_reduce.cuh"
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
// Split-K for decode: the K slices are the batch mode L of a persistent int32 GEMM (no fixup, no workspace
// locks), whose partial tiles one small PDL-launched kernel sums and scales (epilogue/split_k_reduce.cuh).
struct SchedulerSplitK {
  using Tag = cutlass::gemm::PersistentScheduler;
};
// Balanced split-K for decode: one equal run of (tile, k-block) pairs per SM, crossing tile boundaries, each unit's
// int32 partial tile in a workspace slot, summed by the same reduce kernel (kernel/balanced_split.hpp).
struct SchedulerBalanced {
  using Tag = BalancedSplitTag;
};
// K pairs for decode: a CTA owns one 64-row weight slice and its two consumer warp groups take its even and odd
// k-blocks, summed in shared memory (collective/sm90_mma_liquid_w4a8.hpp): twice the CTAs of 128-row tiles and no
// second kernel. The kernel's problem is (64, tokens, K / 2) with one batch per slice; the epilogue writes batch l's
// 64 rows at channel 64 l and clips the tile's other 64.
struct SchedulerKPairs {
  using Tag = cutlass::gemm::PersistentScheduler;
};

// FusedQuant: the kernel reads the 16-bit activations (of type OutT) and quantizes them itself (decode, m <= TileN).
// ClusterM: CTAs per cluster along the weight rows, sharing each activation stage through TMA multicast.
// RoomForReduce (split-K / balanced): see kRoomForReduce. Early (balanced): see kEarlyWeights.
template <class OutT_, int TileM, int TileN, int Stages, class Schedule, class Scheduler, bool FusedQuant = false,
          int ClusterM = 1, bool RoomForReduce = false, bool Early = false>
struct GemmConfig {
  using OutT = OutT_;
  static constexpr bool kFusedQuant = FusedQuant;
  static constexpr int kClusterM = ClusterM;
  static_assert(!FusedQuant || std::is_same_v<Scheduler, SchedulerPersistent>,
                "fused quantization holds all of K for the CTA's one token tile: no K split");
  static constexpr bool kStreamK = std::is_same_v<Scheduler, SchedulerStreamK>;
  static constexpr bool kSplitK = std::is_same_v<Scheduler, SchedulerSplitK>;
  static constexpr bool kKPairs = std::is_same_v<Scheduler, SchedulerKPairs>;
  static constexpr bool kBalanced = std::is_same_v<Scheduler, SchedulerBalanced>;
  static constexpr bool kReducesPartials = kSplitK || kBalanced;  // int32 partial tiles + the reduce kernel
  // The GEMM leaves half the register file to the reduce kernel, whose CTAs (launched early by PDL) then wait
  // beside the GEMM's and run as it ends, while the next GEMM's CTAs take the SMs the GEMM frees. Otherwise they
  // take SMs only as the GEMM's CTAs exit and hold them from the next GEMM until they finish (bench/NOTES.md).
  static constexpr bool kRoomForReduce = RoomForReduce;
  static_assert(!kRoomForReduce || (kReducesPartials && ClusterM == 1),
                "room for the reduce kernel: split-K or balanced configs of 1x1 clusters");
  // The producer loads its first stages of weights before the PDL wait every time (the `_early` twins). The K-pairs
  // decode configs do so by themselves where all tokens fit one token tile (collective::EarlyWeights).
  using EarlyMode = collective::EarlyWeights;
  static constexpr EarlyMode kEarlyWeights = Early                    ? EarlyMode::kAlways
                                             : kKPairs && TileN <= 16 ? EarlyMode::kOneTokenTile
                                                                      : EarlyMode::kNever;
  static_assert(!Early || kBalanced, "early weights: the `_early` twins of balanced configs");
  using KernelOutT = std::conditional_t<kReducesPartials, int32_t, OutT>;
  static constexpr collective::KSplit kKSplit = kKPairs    ? collective::KSplit::kPairs
                                                : kBalanced ? collective::KSplit::kRanges
                                                            : collective::KSplit::kSlices;
  using TileShape = cute::Shape<cute::Int<TileM>, cute::Int<TileN>, cute::Int<format::kBlockK>>;
  using ClusterShape = cute::Shape<cute::Int<ClusterM>, cute::_1, cute::_1>;

  using Mainloop = collective::MainloopLiquidW4A8<Stages, ClusterShape, typename Schedule::Kernel, TileShape,
                                                  std::conditional_t<FusedQuant, OutT, int8_t>, kKSplit,
                                                  kEarlyWeights>;
  // K pairs scale in the mainloop (collective::MainloopLiquidW4A8::kScalesInMainloop), the others in the epilogue.
  using Fusion = std::conditional_t<Mainloop::kScalesInMainloop, epilogue::PrescaledOutput<OutT>,
                                    epilogue::TokenChannelScale<KernelOutT, TileShape>>;

  // The kernel's (M, N) = (channels, tokens) tile is stored into row-major Y[tokens, channels], i.e. column-major
  // in the kernel's view: the transpose is free in the TMA store.
  using LayoutD = cutlass::layout::ColumnMajor;
  static constexpr int kAlignD = 128 / cutlass::sizeof_bits<KernelOutT>::value;
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, int32_t, float, void, LayoutD, kAlignD, KernelOutT, LayoutD,
      kAlignD, typename Schedule::Epilogue, typename Fusion::Callbacks>::CollectiveOp;

  using Kernel = cutlass::gemm::kernel::GemmUniversal<cute::Shape<int, int, int, int>, Mainloop, Epilogue,
                                                      typename Scheduler::Tag>;
  static_assert(Kernel::SharedStorageSize <= 232448, "stages do not fit Hopper's 227 KB of shared memory");
};

// The entry of every W4A8 GEMM: CUTLASS's kernel class run as-is, after thread 0 has sent the first stages of the CTA's
// first unit (prefetch_depth) to L2, from the host's plan where there is one (FirstStagesPlan), else from the tile
// scheduler. Issued here, before the kernel's prologue (barrier init, a CTA barrier, the schedulers' setup: ~0.9 us on
// H100), the prefetch starts that much earlier in the previous kernel's tail (PDL), which shortens the gap in each SM's
// HBM traffic between two decode GEMMs (bench/NOTES.md).
// MinBlocks = 2 (room for the reduce kernel): registers within half the register file. Such a TU defines
// CUDA_CTA_RECONFIG_ACTIVATED 0 before any CUTLASS header (kernels/w4a8_gemm.cu.in): setmaxnreg's pool is per CTA, and
// a CTA launched with half the register file could never grow its consumers to CUTLASS's 232 registers (it would
// wait forever).
template <class Kernel, int MinBlocks>
__global__ void __launch_bounds__(Kernel::MaxThreadsPerBlock, MinBlocks)
    w4a8_gemm_kernel(CUTLASS_GRID_CONSTANT typename Kernel::Params const params) {
#if defined(__CUDA_ARCH__) && CUDA_CTA_RECONFIG_ACTIVATED
  static_assert(MinBlocks == 1, "define CUDA_CTA_RECONFIG_ACTIVATED 0 before any CUTLASS header");
#endif
  if (threadIdx.x == 0 && !Kernel::CollectiveMainloop::prefetch_planned_first_stages(params.mainloop)) {
    using Scheduler = typename Kernel::TileScheduler;
    Scheduler scheduler(params.scheduler);
    auto const work = scheduler.initial_work_tile_info(typename Kernel::ClusterShape{});
    if (work.is_valid()) {
      using Mainloop = typename Kernel::CollectiveMainloop;
      Mainloop::prefetch_first_stages(
          params.mainloop, int(work.M_idx), int(work.L_idx), int(Scheduler::get_work_k_tile_start(work)),
          int(Scheduler::get_work_k_tile_count(work, params.problem_shape, typename Kernel::TileShape{})),
          Mainloop::prefetch_depth(params.mainloop, int(gridDim.x * gridDim.y * gridDim.z)));
    }
  }
  extern __shared__ char smem[];
  Kernel{}(params, smem);
}

namespace detail {

// Split count of a split-K config: `a.splits` if given, else the count that minimises the k-blocks of the busiest
// SM, ceil(tiles * s / SMs) * (k_blocks / s + 2), where the 2 stands for a tile's epilogue and pipeline refill.
// Every split keeps >= 4 k-blocks (a streaming pipeline) and divides the k-blocks evenly.
template <class Config>
int split_count(GemmArgs const& a) {
  if constexpr (!Config::kSplitK) {
    return 1;
  } else {
    if (a.splits > 0) return a.splits;
    constexpr int64_t kTileM = cute::size<0>(typename Config::TileShape{});
    constexpr int64_t kTileN = cute::size<1>(typename Config::TileShape{});
    int64_t const tiles = a.n / kTileM * ((a.m + kTileN - 1) / kTileN);
    int64_t const k_blocks = a.k / format::kBlockK;
    int64_t const sms = arch::sm_count_for_sizing();
    int best = 1;
    int64_t best_cost = INT64_MAX;
    for (int s = 1; s <= 16; ++s) {
      if (k_blocks % s != 0 || (s > 1 && k_blocks / s < 4)) continue;
      int64_t const cost = (tiles * s + sms - 1) / sms * (k_blocks / s + 2);
      if (cost < best_cost) best = s, best_cost = cost;
    }
    return best;
  }
}

// `a` with the split count of a split-K config decided (0 = automatic becomes the count), so that one call
// decides it once and every later split_count() just reads it.
template <class Config>
GemmArgs with_split_count(GemmArgs a) {
  if constexpr (Config::kSplitK) a.splits = split_count<Config>(a);
  return a;
}

// The balanced split of a problem (balanced-split configs): its grid, its units and their partial slots.
template <class Config>
BalancedSplit balanced_split(GemmArgs const& a) {
  return BalancedSplit::make(a.n, a.m, a.k / format::kBlockK, cute::size<0>(typename Config::TileShape{}),
                             cute::size<1>(typename Config::TileShape{}), arch::sm_count_for_sizing());
}

// How many int32 partial tiles the reduce kernel sums per output: uniform split-K's count or the balanced split's
// per-tile count; the workspace holds slots() of them. Decided once per call (the balanced split's fast divisors
// cost 128-bit host divisions) and handed to make_arguments, partials_bytes and the reduce launch.
template <class Config>
epilogue::PartialCount partial_count(GemmArgs const& a) {
  if constexpr (Config::kBalanced) {
    return {0, balanced_split<Config>(a)};
  } else {
    return {split_count<Config>(a), {}};
  }
}

template <class Config>
typename Config::Kernel::Arguments make_arguments(GemmArgs const& a, epilogue::PartialCount const& count) {
  using Kernel = typename Config::Kernel;
  using Mainloop = typename Config::Mainloop;
  using StrideD = typename Kernel::StrideD;
  int const splits = split_count<Config>(a);
  int64_t const split_k = a.k / splits;
  // Split-K: slice l of the activations is the K-range [l * split_k, (l + 1) * split_k); the int32 partial tiles
  // go to the front of the workspace as [splits, m, n] (balanced split: [its slots, m, n]).
  typename Mainloop::StrideB stride_act{a.k, cute::Int<1>{}, Config::kSplitK ? split_k : int64_t(a.m) * a.k};
  // K pairs: batch l = weight slice l, whose 64 channels start at column 64 l of Y (and of s1 and the bias).
  int64_t const channel_batch_stride = Config::kKPairs ? format::kSliceRows : 0;
  StrideD stride_out{cute::Int<1>{}, a.n, Config::kKPairs ? channel_batch_stride : int64_t(a.m) * a.n};

  typename Kernel::Arguments args{};
  args.mode = cutlass::gemm::GemmUniversalMode::kGemm;
  // kernel view: M = channels, N = tokens
  args.problem_shape =
      Config::kKPairs
          ? cute::Shape<int, int, int, int>{format::kSliceRows, int(a.m), int(a.k / 2), int(a.n / format::kSliceRows)}
        : cute::Shape<int, int, int, int>{int(a.n), int(a.m), int(split_k),
                                          Config::kBalanced ? count.slots() : splits};
  args.mainloop = {a.weight, a.params, a.act, static_cast<typename Config::Mainloop::ActIn const*>(a.x),
                   a.act_scale, stride_act, a.group_size, splits};
  args.mainloop.act_rows = a.act_rows;
  args.mainloop.ptr_s1 = a.s1;
  args.mainloop.ptr_bias = a.bias;
  args.epilogue.thread = Config::Fusion::arguments(a.act_scale, a.s1, a.bias, channel_batch_stride);
  args.epilogue.ptr_D = static_cast<typename Config::KernelOutT*>(Config::kReducesPartials ? a.workspace : a.out);
  args.epilogue.dD = stride_out;
  args.hw_info.sm_count = arch::sm_count();  // 0: CUTLASS queries it itself
  if constexpr (Config::kBalanced) {
    args.scheduler.split = count.balanced;
  }
  if constexpr (Config::kEarlyWeights != Config::EarlyMode::kNever || Config::kKPairs) {
    // The CTAs' streams of k-tiles: the balanced split's runs, or K pairs' persistent CTAs over (slice, token tile)
    // units of the problem's K / 128 stages each. They size the early stages (0 where there are none) and K pairs'
    // planned entry prefetch (none unless one token tile and one slice per CTA).
    int64_t const work = Mainloop::count_work_k_tiles(args.problem_shape);
    int const ctas = Config::kBalanced
                         ? count.balanced.ctas
                         : int(std::min<int64_t>(arch::sm_count_for_sizing(),
                                                 work / (cute::get<2>(args.problem_shape) / format::kBlockK)));
    args.mainloop.early_stages = Mainloop::early_stage_count(work, ctas, int(a.m));
    args.mainloop.first_stages = Mainloop::first_stages_plan(args.problem_shape, args.mainloop, work, ctas);
  }
  if constexpr (Config::kStreamK) {
    using Decomposition = cutlass::gemm::kernel::detail::DecompositionMode;
    // Partial tiles are reduced in int32: any order gives the same bits, so the peers of a tile add into the
    // workspace concurrently instead of one after another (the deterministic mode's serial chain).
    args.scheduler.reduction_mode = cutlass::gemm::kernel::detail::ReductionMode::Nondeterministic;
    if (a.splits > 0) {
      args.scheduler.splits = a.splits;
      args.scheduler.decomposition_mode = a.splits == 1 ? Decomposition::DataParallel : Decomposition::SplitK;
    }
  }
  return args;
}

}  // namespace detail

// Bytes of the int32 partial tiles of a split-K or balanced-split config (0 for the others), a multiple of 16.
template <class Config>
size_t partials_bytes(GemmArgs const& a, epilogue::PartialCount const& count) {
  if constexpr (!Config::kReducesPartials) {
    return 0;
  } else {
    return (size_t(count.slots()) * a.m * a.n * sizeof(int32_t) + 15) / 16 * 16;
  }
}

template <class Config>
size_t gemm_workspace_size(GemmArgs const& problem) {
  GemmArgs const a = detail::with_split_count<Config>(problem);
  epilogue::PartialCount const count = detail::partial_count<Config>(a);
  return partials_bytes<Config>(a, count) +
         Config::Kernel::get_workspace_size(detail::make_arguments<Config>(a, count));
}

template <class Config>
Status run_gemm(GemmArgs const& problem) {
  using Kernel = typename Config::Kernel;
  // K pairs: always two, in the CTA; the balanced split: one run per SM
  if (problem.splits != 0 && !Config::kStreamK && !Config::kSplitK) {
    return Status::error("splits: only the stream-K and split-K configs split k");
  }
  if (Config::kFusedQuant != (problem.x != nullptr)) {
    return Status::error(Config::kFusedQuant ? "this config quantizes the activations itself: it needs x (linear)"
                                             : "x: only the fused-quantization configs read 16-bit activations");
  }
  if (Config::kFusedQuant && problem.m > cute::size<1>(typename Config::TileShape{})) {
    return Status::error("m: a fused-quantization config takes at most tile_n tokens");
  }
  if (Config::kFusedQuant && problem.k > Config::Mainloop::kFusedMaxK) {
    return Status::error("k: too large for this fused-quantization config's activation buffer (see _configs.py)");
  }
  GemmArgs const a = detail::with_split_count<Config>(problem);
  if (Config::kSplitK && a.k % (int64_t(a.splits) * format::kBlockK) != 0) {
    return Status::error("splits: must divide k / 128");
  }
  if (Config::kKPairs && a.k % (2 * format::kBlockK) != 0) {
    return Status::error("k: a K-pairs config needs k to be a multiple of 256 (pairs of 128-wide k-blocks)");
  }
  epilogue::PartialCount const count = detail::partial_count<Config>(a);
  auto args = detail::make_arguments<Config>(a, count);
  if (!Kernel::can_implement(args)) {
    return Status::error("problem not supported by this kernel config (shape, group size or alignment)");
  }
  auto const entry = w4a8_gemm_kernel<Kernel, Config::kRoomForReduce ? 2 : 1>;
  // Raise the kernel's dynamic shared-memory limit once per process (not per call: it is host overhead).
  static cudaError_t const smem_attribute =
      cudaFuncSetAttribute(entry, cudaFuncAttributeMaxDynamicSharedMemorySize, Kernel::SharedStorageSize);
  if (smem_attribute != cudaSuccess) {
    return Status::error(cudaGetErrorString(smem_attribute));
  }
  // The split-K partial tiles come first in the workspace, CUTLASS's own (stream-K locks) after them.
  void* const kernel_workspace = static_cast<uint8_t*>(a.workspace) + partials_bytes<Config>(a, count);
  if (Kernel::initialize_workspace(args, kernel_workspace, a.stream) != cutlass::Status::kSuccess) {
    return Status::error("workspace initialization failed");
  }
  auto params = Kernel::to_underlying_arguments(args, kernel_workspace);
  // PDL: the collective's producer waits for the previous grid (arch/grid_dependency.hpp) before any load that
  // reads its output; before that the kernel only prefetches weights to L2.
  cudaError_t err = arch::launch_with_pdl(entry, Kernel::get_grid_shape(params), Kernel::get_block_shape(),
                                          dim3(Config::kClusterM, 1, 1), Kernel::SharedStorageSize, a.stream, a.pdl,
                                          params);
  if constexpr (Config::kReducesPartials) {
    if (err == cudaSuccess) {
      err = epilogue::launch_reduce_split_k(static_cast<int32_t const*>(a.workspace), count,
                                            a.m, a.n, a.act_scale, a.s1, a.bias,
                                            static_cast<typename Config::OutT*>(a.out), a.stream, a.pdl);
    }
  }
  return err == cudaSuccess ? Status::success() : Status::error(cudaGetErrorString(err));
}

}  // namespace liquidgemm
