// SPDX-License-Identifier: Apache-2.0
// Balanced split-K for decode: stream-K's decomposition with split-K's reduction. The problem's (output tile,
// k-block) pairs, tile after tile, are cut into one equal run per CTA; a run that crosses a tile boundary is two
// work units. Every unit stores its int32 partial tile into a slot of the workspace (its CTA's rank among the tile's
// CTAs), and the split-K reduce kernel (epilogue/split_k_reduce.cuh) sums each tile's slots: no fixup, no locks, every
// SM busy for the same number of k-blocks, and about G / tiles + 1 partial tiles per output tile where uniform
// split-K writes `splits` (Llama-3-70B qkv at 16 tokens: ~1.7 instead of 8, a fifth of the partial-tile traffic).
#pragma once

#include <algorithm>
#include <cstdint>

#include "cutlass/cutlass.h"
#include "cutlass/fast_math.h"
#include "cutlass/gemm/kernel/tile_scheduler.hpp"
#include "cutlass/kernel_hardware_info.h"
#include "cutlass/pipeline/pipeline.hpp"

namespace liquidgemm {

// The decomposition: pure arithmetic, shared by the host (grid, workspace), the scheduler and the reduce kernel.
// Divisions by the problem's constants use precomputed multipliers (cutlass::FastDivmod*): the scheduler divides
// before a CTA's first load and between its units, where 64-bit division subroutines cost 2-5 us per GEMM in the
// first build (bench/NOTES.md).
struct BalancedSplit {
  static constexpr int kMinRun = 4;  // k-blocks per CTA at least: a run is a streaming pipeline, not a prologue
  int64_t units = 1;                 // output tiles x k-blocks (< 2^31, see make)
  int ctas = 1;                      // the grid: one run each
  int k_blocks = 1;                  // per output tile
  int tiles_m = 1;                   // weight-row tiles (the kernel's M); tile index = m + tiles_m * n
  cutlass::FastDivmodU64 by_units, by_ctas;
  cutlass::FastDivmod by_k_blocks, by_tiles_m, by_tile_m, by_tile_n;

  // ctas = 0: the problem is too large for 32-bit unit indices (no decode shape comes near).
  static BalancedSplit make(int64_t channels, int64_t tokens, int64_t k_blocks, int tile_m, int tile_n, int sms) {
    BalancedSplit s;
    s.tiles_m = int((channels + tile_m - 1) / tile_m);
    s.k_blocks = int(k_blocks);
    s.units = int64_t(s.tiles_m) * ((tokens + tile_n - 1) / tile_n) * k_blocks;
    s.ctas = s.units < (int64_t(1) << 31) ? int(std::max<int64_t>(1, std::min<int64_t>(sms, s.units / kMinRun))) : 0;
    s.by_units = cutlass::FastDivmodU64(uint64_t(s.units));
    s.by_ctas = cutlass::FastDivmodU64(uint64_t(std::max(s.ctas, 1)));
    s.by_k_blocks = cutlass::FastDivmod(s.k_blocks);
    s.by_tiles_m = cutlass::FastDivmod(s.tiles_m);
    s.by_tile_m = cutlass::FastDivmod(tile_m);
    s.by_tile_n = cutlass::FastDivmod(tile_n);
    return s;
  }

  // First unit of CTA b's run (b = ctas: the end).
  CUTLASS_HOST_DEVICE int run_start(int cta) const { return int(by_ctas.divide(uint64_t(cta) * uint64_t(units))); }
  // The CTA whose run holds `unit`: the largest b with run_start(b) <= unit.
  CUTLASS_HOST_DEVICE int owner(int unit) const { return int(by_units.divide(uint64_t(unit + 1) * ctas - 1)); }
  CUTLASS_HOST_DEVICE int first_cta(int tile) const { return owner(tile * k_blocks); }
  // Partial tiles of `tile`: its slots 0 .. partials - 1 hold the sums over its CTAs' k-ranges.
  CUTLASS_HOST_DEVICE int partials(int tile) const { return owner((tile + 1) * k_blocks - 1) - first_cta(tile) + 1; }
  CUTLASS_HOST_DEVICE int partials_at(int token, int channel) const {
    int tile_m_index, token_tile, rest;
    by_tile_m(tile_m_index, rest, channel);
    by_tile_n(token_tile, rest, token);
    return partials(tile_m_index + tiles_m * token_tile);
  }
  // Slots the workspace needs: runs are >= r = units / ctas long, so a tile's k_blocks consecutive units meet at most
  // (k_blocks - 2) / r + 2 of them (its first and last run, and whole runs in between).
  int max_partials() const {
    int64_t const r = units / std::max(ctas, 1);
    return k_blocks == 1 ? 1 : int(std::min<int64_t>(ctas, (k_blocks - 2) / r + 2));
  }
};

// The tile scheduler of the balanced split, in the interface GemmUniversal's cooperative kernel calls (that of
// CUTLASS's PersistentTileSchedulerSm90): the kernel's L coordinate of a unit is its partial tile's slot, and each
// unit carries its own k-range, which the collective's producer reads through the k-tile iterator.
class BalancedSplitScheduler {
 public:
  using RasterOrder = cutlass::gemm::kernel::detail::PersistentTileSchedulerSm90Params::RasterOrder;
  using RasterOrderOptions = cutlass::gemm::kernel::detail::PersistentTileSchedulerSm90Params::RasterOrderOptions;
  static constexpr bool IsDynamicPersistent = false;
  using Pipeline = cutlass::PipelineEmpty;
  using ThrottlePipeline = cutlass::PipelineEmpty;
  struct CLCResponse {};
  struct SharedStorage {
    CUTLASS_DEVICE typename Pipeline::SharedStorage pipeline() { return {}; }
    CUTLASS_DEVICE typename ThrottlePipeline::SharedStorage throttle_pipeline() { return {}; }
    CUTLASS_DEVICE CLCResponse* data() { return nullptr; }
  };

  struct Arguments {
    BalancedSplit split;  // decided once on the host (kernel/w4a8_gemm.hpp), with the workspace and the reduction
    int max_swizzle_size = 1;                                      // the kernel's interface; no swizzle
    RasterOrderOptions raster_order = RasterOrderOptions::AlongM;
  };
  struct Params {
    BalancedSplit split;
    int log_swizzle_size_ = 0;
    RasterOrder raster_order_ = RasterOrder::AlongM;
  };

  struct WorkTileInfo {
    int32_t M_idx = 0;
    int32_t N_idx = 0;
    int32_t L_idx = 0;  // the slot of this unit's partial tile
    int32_t K_idx = 0;  // first k-block
    int32_t k_tile_count = 0;
    bool is_valid_tile = false;
    CUTLASS_HOST_DEVICE bool is_valid() const { return is_valid_tile; }
    CUTLASS_HOST_DEVICE static WorkTileInfo invalid_work_tile() { return {}; }
    CUTLASS_HOST_DEVICE bool is_final_split(uint32_t) const { return true; }
    CUTLASS_HOST_DEVICE int32_t reduction_subtile_idx() const { return -1; }
  };

  template <class ProblemShape, class TileShape, class ClusterShape>
  static Params to_underlying_arguments(ProblemShape, TileShape, ClusterShape, cutlass::KernelHardwareInfo const&,
                                        Arguments const& args, void* = nullptr, uint32_t = 1, uint32_t = 1) {
    static_assert(cute::size(ClusterShape{}) == 1, "the balanced split runs one CTA per cluster");
    return {args.split};
  }
  template <class ProblemShape, class TileShape, class ClusterShape>
  static dim3 get_grid_shape(Params const& params, ProblemShape, TileShape, ClusterShape,
                             cutlass::KernelHardwareInfo const&, Arguments const& = {}) {
    return dim3(unsigned(params.split.ctas), 1, 1);
  }
  static bool can_implement(Arguments const& args) { return args.split.units >= 1 && args.split.ctas >= 1; }
  template <class ProblemShape, class ElementAccumulator>
  static size_t get_workspace_size(Arguments const&, ProblemShape, cutlass::KernelHardwareInfo const&, uint32_t,
                                   uint32_t = 1, uint32_t = 1) {
    return 0;  // the partial tiles are the GEMM's output (the front of liquidgemm's workspace)
  }
  template <class ProblemShape, class ElementAccumulator>
  static cutlass::Status initialize_workspace(Arguments const&, void*, cudaStream_t, ProblemShape,
                                              cutlass::KernelHardwareInfo const&, uint32_t, uint32_t = 1,
                                              uint32_t = 1, cutlass::CudaHostAdapter* = nullptr) {
    return cutlass::Status::kSuccess;
  }

  CUTLASS_DEVICE explicit BalancedSplitScheduler(Params const& params)
      : split_(params.split), cta_(int(blockIdx.x)), run_end_(params.split.run_start(int(blockIdx.x) + 1)) {}

  template <class ClusterShape>
  CUTLASS_DEVICE WorkTileInfo initial_work_tile_info(ClusterShape) const {
    return unit_at(split_.run_start(cta_));
  }
  CUTLASS_DEVICE cute::tuple<WorkTileInfo, bool> fetch_next_work(WorkTileInfo const& work) const {
    int const tile = work.M_idx + split_.tiles_m * work.N_idx;
    return {unit_at(tile * split_.k_blocks + work.K_idx + work.k_tile_count), true};
  }
  template <class SchedulerPipeline, class SchedulerPipelineState>
  CUTLASS_DEVICE cute::tuple<WorkTileInfo, bool> fetch_next_work(WorkTileInfo const& work, SchedulerPipeline&,
                                                                  SchedulerPipelineState) const {
    return fetch_next_work(work);
  }

  template <class ProblemShape, class TileShape>
  CUTLASS_HOST_DEVICE static int get_work_k_tile_count(WorkTileInfo const& work, ProblemShape, TileShape) {
    return work.k_tile_count;
  }
  CUTLASS_HOST_DEVICE static uint32_t get_work_k_tile_start(WorkTileInfo const& work) { return work.K_idx; }
  CUTLASS_DEVICE static bool valid_warpgroup_in_work_tile(WorkTileInfo const&) { return true; }
  CUTLASS_DEVICE static bool requires_separate_reduction(Params const&) { return false; }
  CUTLASS_HOST_DEVICE static bool compute_epilogue(WorkTileInfo const&, Params const&) { return true; }
  template <class FrgTensorC>
  CUTLASS_DEVICE static void fixup(Params const&, WorkTileInfo const&, FrgTensorC&, uint32_t, uint32_t) {}
  CUTLASS_DEVICE bool is_last_tile(WorkTileInfo const& work, uint32_t = 1) const {
    return !cute::get<0>(fetch_next_work(work)).is_valid();
  }

 private:
  // The unit starting at `unit` of this CTA's run: up to the run's or the tile's end, whichever comes first.
  CUTLASS_DEVICE WorkTileInfo unit_at(int unit) const {
    if (unit >= run_end_) return WorkTileInfo::invalid_work_tile();
    int tile, k_start, m, n;
    split_.by_k_blocks(tile, k_start, unit);
    split_.by_tiles_m(n, m, tile);
    int const count = cute::min(split_.k_blocks - k_start, run_end_ - unit);
    return {m, n, cta_ - split_.first_cta(tile), k_start, count, true};
  }

  BalancedSplit split_;
  int cta_;
  int run_end_;
};

struct BalancedSplitTag {};  // GemmUniversal's scheduler tag for the balanced split

}  // namespace liquidgemm

// CUTLASS picks a kernel's tile scheduler by tag: this is the balanced split's.
namespace cutlass::gemm::kernel::detail {
template <class TileShape, class ClusterShape, uint32_t SchedulerPipelineStageCount>
struct TileSchedulerSelector<liquidgemm::BalancedSplitTag, arch::Sm90, TileShape, ClusterShape,
                             SchedulerPipelineStageCount> {
  using Scheduler = liquidgemm::BalancedSplitScheduler;
};
}  // namespace cutlass::gemm::kernel::detail
