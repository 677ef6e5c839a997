// SPDX-License-Identifier: Apache-2.0
// ImFP mainloop: TMA/bulk loads of packed LiquidQuant weights, group params and INT8 activations into a
// shared-memory ring (producer warp), in-register dequantization and register-A WGMMA s8 x s8 -> s32
// (consumer warp groups). A CUTLASS 3.x CollectiveMma: it plugs into GemmUniversal's warp-specialized
// cooperative / ping-pong kernels, their tile schedulers (persistent, stream-K) and the Sm90 epilogue.
//
// Roles of the GEMM operands (the kernel computes Y^T = W X^T):
//   A = packed weights [N_out, K]   (M mode, from registers: dequantized in place, never written back to smem)
//   B = INT8 activations [M_tok, K] (N mode, from shared memory through TMA with the 128B swizzle)
// With a cluster of ClusterM CTAs along M (weight rows) the CTAs of a cluster share their token tile: each loads a
// 1/ClusterM share of every activation stage and TMA multicasts it to all of them (less L2 -> SM traffic for the
// large token tiles of prefill); the weights are each CTA's own.
// With ActIn = bf16 / fp16 (the fused decode path: one kernel per linear layer) there is no activation TMA: before
// the first tile the consumers quantize the CTA's whole token rows, all of K, into a resident int8 B buffer
// (fused_act_quant.hpp), which every k-block's WGMMAs then read, while the producer already streams weights.
// With KPairs (decode shapes with few weight tiles) a CTA owns one 64-row weight slice and its two consumer warp
// groups split K: stage k carries the slice's k-blocks 2k (warp group 0) and 2k + 1 (warp group 1), 8 KB in a row,
// and warp group 1's partial sums move to warp group 0 through shared memory after the last stage. Two producer warps
// share the copies: warp 0 the weights and group params, CUTLASS's MainloopAux warp the activations and scales. The
// kernel sees a tile of 128 rows whose second 64 lie past the problem's M = 64 (the epilogue clips them), one batch
// (L) per weight slice: twice the CTAs of 128-row tiles without a second kernel to sum K slices. Warp group 0 applies
// the float scales itself (kScalesInMainloop), so that the epilogue only converts.
// With KRanges (the balanced split, kernel/balanced_split.hpp) the tile scheduler hands out k-ranges of the whole
// weight row, and L is the slot of the unit's int32 partial tile, not a K slice.
#pragma once

#include <type_traits>

#include "cute/arch/copy_sm90_tma.hpp"
#include "cute/atom/copy_traits_sm90_tma.hpp"
#include "cute/atom/mma_atom.hpp"
#include "cute/algorithm/gemm.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/gemm.h"
#include "cutlass/pipeline/pipeline.hpp"

#include "liquidgemm/arch/bulk_copy.hpp"
#include "liquidgemm/arch/grid_dependency.hpp"
#include "liquidgemm/collective/dispatch_policy.hpp"
#include "liquidgemm/collective/fused_act_quant.hpp"
#include "liquidgemm/dequant/liquidquant.hpp"
#include "liquidgemm/format.hpp"

namespace liquidgemm::collective {

using namespace cute;

// How a tile's K reduction is divided: kSlices = the batch mode L is K slices of equal length (L = 1: unsplit; a
// scheduler's k-range within a slice, as CUTLASS's stream-K, works too); kPairs = L is a 64-row weight slice whose
// warp groups split K in the CTA; kRanges = the scheduler's k-range of the whole row, L the partial tile's slot.
enum class KSplit { kSlices, kPairs, kRanges };

// Whether the producer loads its first stages of weights (and group params) before the PDL wait, the activations
// after it (early_stage_count()): kNever; kOneTokenTile = where all tokens fit one token tile (the K-pairs decode
// configs); kAlways = every time (the `_early` twins of the balanced decode configs, which the tuner picks per shape).
enum class EarlyWeights { kNever, kOneTokenTile, kAlways };

template <int Stages, class ClusterShape_, class KernelSchedule, class TileShape_, class ActIn_ = int8_t,
          KSplit Split = KSplit::kSlices, EarlyWeights Early = EarlyWeights::kNever>
struct MainloopLiquidW4A8 {
  // K pairs: the producer warp group's MainloopAux warp loads the activations and scales while warp 0 streams the
  // weights (load_auxiliary()).
  static constexpr bool kSplitLoads = Split == KSplit::kPairs;
  using DispatchPolicy = MainloopSm90LiquidW4A8<Stages, ClusterShape_, KernelSchedule, kSplitLoads>;
  static_assert(kSplitLoads == cutlass::gemm::kernel::detail::HasAuxiliaryLoad_v<DispatchPolicy>,
                "CUTLASS's kernel runs load_auxiliary() exactly where the loads are split");
  using TileShape = TileShape_;
  using ClusterShape = ClusterShape_;
  using ArchTag = typename DispatchPolicy::ArchTag;
  using ActIn = ActIn_;  // int8_t: activations quantized beforehand; bf16 / fp16: quantized here (fused path)

  static constexpr int kTileM = size<0>(TileShape{});
  static constexpr int kTileN = size<1>(TileShape{});
  static constexpr int kTileK = size<2>(TileShape{});
  static constexpr int kSlices = kTileM / format::kSliceRows;      // consumer warp groups along M
  static constexpr int kKSteps = kTileK / 32;                      // RS-WGMMA k-steps per stage
  static constexpr bool kQuantizesAct = !std::is_same_v<ActIn, int8_t>;
  static constexpr int kConsumerThreads = kSlices * cutlass::NumThreadsPerWarpGroup;
  static constexpr int kClusterM = size<0>(ClusterShape_{});       // CTAs sharing (multicasting) a token tile
  static constexpr bool kKPairs = Split == KSplit::kPairs;         // warp group w: k-blocks 2k + w of one slice
  static constexpr bool kKRanges = Split == KSplit::kRanges;       // L = the partial tile's slot
  static constexpr bool kOneActivationBatch = kKPairs || kKRanges;  // every L reads the same activations, all of K
  static constexpr int kBlocksPerStage = kKPairs ? 2 : 1;          // k-blocks (weights and activations) per stage
  static constexpr int kSlicesPerStage = kSlices / kBlocksPerStage;

  static_assert(kTileK == format::kBlockK, "one pipeline stage holds exactly one packed k-block");
  static_assert(kTileM % format::kSliceRows == 0, "the weight tile is made of whole 64-row slices");
  static_assert(kTileN % 8 == 0 && kTileN <= 256, "WGMMA N (tokens) must be a multiple of 8, at most 256");
  static_assert(size<1>(ClusterShape{}) == 1 && size<2>(ClusterShape{}) == 1,
                "clusters run along M: CTAs of different weight rows sharing one token tile");
  static_assert(kClusterM == 1 || !kQuantizesAct, "the fused path loads no activation tiles to multicast");
  static_assert(Stages >= 2, "the ring needs at least two stages");
  static_assert(!kQuantizesAct || std::is_same_v<KernelSchedule, cutlass::gemm::KernelTmaWarpSpecializedCooperative>,
                "the fused quantizer fills one activation buffer for the warp groups of a cooperative tile");
  static_assert(!kKPairs || (kSlices == 2 && kClusterM == 1 && !kQuantizesAct &&
                             std::is_same_v<KernelSchedule, cutlass::gemm::KernelTmaWarpSpecializedCooperative>),
                "K pairs: the two consumer warp groups of a cooperative 128-row tile, int8 activations, no cluster");
  static_assert(!kKRanges || (kClusterM == 1 && !kQuantizesAct),
                "K ranges: int8 activations (the fused path quantizes a whole row per tile), no cluster");

  // The operand types as CUTLASS's kernel layer sees them. A is never read through StrideA: the packed chunks
  // have their own layout (format.hpp); the type only tells the kernel the element is a signed byte.
  using ElementA = int8_t;
  using StrideA = cute::Stride<int64_t, cute::Int<1>, int64_t>;
  using ElementB = int8_t;
  using StrideB = cute::Stride<int64_t, cute::Int<1>, int64_t>;
  using ElementAccumulator = int32_t;

  using AtomLayoutMNK = Layout<Shape<Int<kSlices>, _1, _1>>;
  using TiledMma = decltype(make_tiled_mma(
      GMMA::rs_op_selector<int8_t, int8_t, int32_t, Shape<_64, Int<kTileN>, _32>>(), AtomLayoutMNK{}));

  // Activations: K-major int8, 128-byte rows of k swizzled for conflict-free WGMMA descriptors. The last mode is
  // the ring's stage, or (fused) the k-block of the resident buffer, which holds at most kFusedActBytes
  // (python/liquidgemm/_configs.py budgets the same amount): K <= kFusedMaxK.
  static constexpr int kFusedActBytes = 64 * 1024;
  static constexpr int kFusedMaxKBlocks = kFusedActBytes / (kTileN * kTileK);
  static constexpr int kFusedMaxK = kFusedMaxKBlocks * kTileK;
  using SmemLayoutAtomB = GMMA::Layout_K_SW128_Atom<int8_t>;
  using SmemLayoutB = decltype(tile_to_shape(
      SmemLayoutAtomB{},
      make_shape(Int<kTileN>{}, Int<kTileK>{}, Int<kQuantizesAct ? kFusedMaxKBlocks : Stages * kBlocksPerStage>{})));
  using FusedQuant = FusedActQuant<std::conditional_t<kQuantizesAct, ActIn, cutlass::bfloat16_t>, kConsumerThreads,
                                   kTileN>;

  using MainloopPipeline = cutlass::PipelineTmaAsync<Stages>;
  using PipelineState = cutlass::PipelineState<Stages>;
  static constexpr int NumProducerThreadEvents = 1;

  static constexpr int kWeightStageBytes = kSlices * format::kChunkBytes;
  static constexpr int kParamSlotBytes = format::kMaxGroupsPerBlock * format::kParamBytesPerGroup;  // per warp group
  static constexpr int kParamStageBytes = kSlices * kParamSlotBytes;
  static constexpr int kActStageBytes = kQuantizesAct ? 0 : kBlocksPerStage * kTileN * kTileK;  // fused: none

  // K pairs: warp group 0 applies the float scales itself after the K reduction (apply_scales()), from the unit's
  // token scales, s1 and bias that the producer loads with the unit's last stage into that stage's scale slot
  // [token scales: TileN, padded to 128 bytes (a TMA destination)][s1: 64][bias: 64] floats; the epilogue then only
  // converts (epilogue::PrescaledOutput).
  // CUTLASS's broadcast visitors load those vectors after the mainloop and sync the epilogue threads: ~0.45 us on
  // the critical CTAs of a chain of 70B o GEMMs (H100, bench/NOTES.md).
  static constexpr bool kScalesInMainloop = kKPairs;
  static constexpr int kTokenScaleFloats = (kTileN + 31) / 32 * 32;  // 128-byte multiple: s1 stays TMA-aligned
  static constexpr int kScaleSlotFloats = kTokenScaleFloats + 2 * format::kSliceRows;
  static_assert(kScaleSlotFloats * sizeof(float) % 128 == 0, "every slot starts on a 128-byte boundary (TMA)");

  struct NoFusedStorage {};
  // K pairs: warp group 1's accumulators on their way to warp group 0, element i of thread t at [i][t].
  struct KPairExchange {
    cute::array_aligned<int32_t, kTileN / 2 * cutlass::NumThreadsPerWarpGroup, 16> partial;
  };

  struct SharedStorage {
    struct TensorStorage : cute::aligned_struct<128, _0> {
      cute::array_aligned<int8_t, cosize_v<SmemLayoutB>, 128> smem_B;
      cute::array_aligned<uint8_t, kWeightStageBytes * Stages, 128> smem_weight;
      cute::array_aligned<uint8_t, kParamStageBytes * Stages, 128> smem_params;
      std::conditional_t<kQuantizesAct, typename FusedQuant::SharedStorage, NoFusedStorage> fused;  // token scales
      std::conditional_t<kKPairs, KPairExchange, NoFusedStorage> exchange;
      std::conditional_t<kScalesInMainloop, cute::array_aligned<float, kScaleSlotFloats * Stages, 128>,
                         NoFusedStorage> scales;
    } tensors;
    using PipelineStorage = typename MainloopPipeline::SharedStorage;
    PipelineStorage pipeline;
  };
  using TensorStorage = typename SharedStorage::TensorStorage;
  using PipelineStorage = typename SharedStorage::PipelineStorage;

  // Where the entry's L2 prefetch of a CTA's first stages goes, decided on the host when every CTA's first unit is
  // known there (K pairs, all tokens in one token tile, one slice per CTA: CTA c runs slice c): a few parameter words
  // and a multiply, where the tile scheduler's setup is a chain of dependent parameter loads that took ~0.6 us on a
  // CTA that starts after the previous GEMM has finished, i.e. on the critical path of a chain of decode GEMMs
  // (bench/NOTES.md).
  struct FirstStagesPlan {
    uint8_t const* weight = nullptr;  // CTA 0's first weight bytes; nullptr: no plan (the entry asks the scheduler)
    uint8_t const* params = nullptr;  // and its first group params
    int64_t weight_stride = 0;        // bytes from one CTA's first stages to the next CTA's
    int64_t params_stride = 0;
    uint32_t weight_bytes = 0;
    uint32_t params_bytes = 0;
  };

  struct Arguments {
    uint8_t const* ptr_weight = nullptr;   // packed chunks [N/64, K/128, 4096]
    uint8_t const* ptr_params = nullptr;   // (s2, z) pairs [N/64, K/group_size, 64, 2]
    int8_t const* ptr_act = nullptr;       // [M_tok, K] row-major
    ActIn const* ptr_x = nullptr;          // fused: [M_tok, K] row-major 16-bit activations (ptr_act unused)
    float* ptr_act_scale = nullptr;        // fused: the [M_tok] token scales it computes (the epilogue reads them)
    StrideB dB{};
    int group_size = 128;
    int splits = 1;  // split-K: the problem's K is one of `splits` slices of the weight's K, and L = splits
                     // (K pairs: M = 64, K = half of the weight's K, L = weight slices; K ranges: L = partial
                     // slots; splits stays 1 for both)
    int early_stages = 0;  // weight stages loaded before the PDL wait (early_stage_count(); 0: none)
    FirstStagesPlan first_stages{};  // first_stages_plan()
    int64_t act_rows = 0;  // rows of ptr_act the TMA may read (GemmArgs::act_rows; below the tokens: the tokens)
    float const* ptr_s1 = nullptr;    // kScalesInMainloop: the [N_out] channel scales
    float const* ptr_bias = nullptr;  // and the bias, or nullptr
  };

  using TmaLoadB = std::conditional_t<kClusterM == 1, SM90_TMA_LOAD, SM90_TMA_LOAD_MULTICAST>;
  using TmaB = decltype(make_tma_copy_B_sm90(
      TmaLoadB{}, make_tensor(static_cast<int8_t const*>(nullptr), repeat_like(StrideB{}, int32_t(0)), StrideB{}),
      SmemLayoutB{}(_, _, Int<0>{}), TileShape{}, ClusterShape{}));

  // kScalesInMainloop: one token tile's scales, zero past the last token (a 1-D TMA box).
  struct NoTma {};
  using ScaleLayout = Layout<Shape<Int<kTileN>>>;
  static auto make_token_scale_tma(float const* token_scale, int tokens) {
    return make_tma_copy(SM90_TMA_LOAD{}, make_tensor(token_scale, make_layout(make_shape(int32_t(tokens)))),
                         ScaleLayout{});
  }
  using TmaTokenScale =
      std::conditional_t<kScalesInMainloop, decltype(make_token_scale_tma(nullptr, 0)), NoTma>;

  struct Params {
    TmaB tma_load_b;
    uint8_t const* weight;
    uint8_t const* params;
    int k_blocks;           // k-blocks of the whole weight row (K * splits / 128): the stride between slices
    int split_k_blocks;     // k-blocks of one split (K / 128): batch l starts at k-block l * split_k_blocks
    int groups;             // groups of the whole weight row
    int group_size;
    int param_bytes;        // bytes of group params per slice per stage: 128 or 256 (group size 64)
    uint32_t tma_transaction_bytes;
    ActIn const* x;         // fused only: the activations and the scales' destination
    int tokens;             // the problem's N (the fused quantizer's rows; the weights' L2 policy)
    float* act_scale;
    int64_t work_k_tiles;   // the problem's (tile, k-tile) pairs over all batches that are work: the prefetch depth
    int early_stages;       // 0 .. Stages
    FirstStagesPlan first_stages;
    float const* s1;        // kScalesInMainloop (last, so that the other configs' parameter layout is unchanged)
    float const* bias;
    TmaTokenScale tma_token_scale;
  };

  CUTLASS_HOST_DEVICE static int groups_per_block(int group_size) { return group_size == 64 ? 2 : 1; }

  // K of the whole weight row behind a problem's K: split-K runs one of `splits` slices of it, K pairs one half.
  CUTLASS_HOST_DEVICE static int64_t weight_row_k(int K, Arguments const& args) {
    return int64_t(K) * (kKPairs ? 2 : args.splits);
  }

  // The activations' (tokens, K, L) as the TMA sees them. K pairs and K ranges: every batch (weight slice, partial
  // slot) reads the same activations, all of K.
  CUTLASS_HOST_DEVICE static auto activation_shape(int N, int K, int L) {
    return make_shape(N, kKPairs ? 2 * K : K, kOneActivationBatch ? 1 : L);
  }

  template <class ProblemShape>
  static Params to_underlying_arguments(ProblemShape const& problem_shape, Arguments const& args, void*) {
    auto [M, N, K, L] = append<4>(problem_shape, 1);
    // The fused path never uses the descriptor; it is built on x's (larger) allocation so that it is valid.
    int8_t const* act = kQuantizesAct ? reinterpret_cast<int8_t const*>(args.ptr_x) : args.ptr_act;
    // The descriptor spans the tokens' whole last tile where the buffer has the rows: a box past the tensor's end is
    // zero-filled, which costs the decode GEMMs (one token of a 16-token box) 0.4-0.6 us (H100, bench/NOTES.md).
    int const act_rows =
        int(cute::min<int64_t>((int64_t(N) + kTileN - 1) / kTileN * kTileN, cute::max<int64_t>(N, args.act_rows)));
    Tensor tensor_b = make_tensor(act, make_layout(activation_shape(act_rows, K, L), args.dB));
    TmaB tma_b = make_tma_copy_B_sm90(TmaLoadB{}, tensor_b, SmemLayoutB{}(_, _, Int<0>{}), TileShape{},
                                      ClusterShape{});
    int param_bytes = groups_per_block(args.group_size) * format::kParamBytesPerGroup;
    uint32_t tx = uint32_t(kSlices * (format::kChunkBytes + param_bytes) + kActStageBytes);
    int const row_k = int(weight_row_k(K, args));
    TmaTokenScale tma_token_scale{};
    if constexpr (kScalesInMainloop) {
      tma_token_scale = make_token_scale_tma(args.ptr_act_scale, int(N));
    }
    return {tma_b, args.ptr_weight, args.ptr_params, row_k / kTileK, int(K) / kTileK, row_k / args.group_size,
            args.group_size, param_bytes, tx, args.ptr_x, int(N), args.ptr_act_scale, count_work_k_tiles(problem_shape),
            kMayLoadWeightsBeforeWait ? cute::max(0, cute::min(args.early_stages, Stages)) : 0, args.first_stages,
            args.ptr_s1, args.ptr_bias, tma_token_scale};
  }

  template <class ProblemShape>
  static bool can_implement(ProblemShape const& problem_shape, Arguments const& args) {
    auto [M, N, K, L] = append<4>(problem_shape, 1);
    int64_t const row_k = weight_row_k(K, args);
    bool group_ok = args.group_size == 64 || (args.group_size % kTileK == 0 && row_k % args.group_size == 0);
    // The fused path quantizes one token tile's whole rows into shared memory: all tokens fit in the tile, all
    // of K in the buffer, and no K split.
    bool const act_ok = kQuantizesAct ? N <= kTileN && K <= kFusedMaxK && L == 1 && args.ptr_act_scale != nullptr &&
                                            reinterpret_cast<uintptr_t>(args.ptr_x) % 16 == 0
                                      : reinterpret_cast<uintptr_t>(args.ptr_act) % 16 == 0;
    // A cluster's CTAs take adjacent weight tiles: a whole number of clusters (no CTA past the last weight row).
    // K pairs: one 64-row slice per batch. K ranges: one batch per partial slot.
    bool const tiles_ok = kKPairs    ? M == format::kSliceRows && args.splits == 1 && L >= 1
                          : kKRanges ? M % kTileM == 0 && args.splits == 1 && L >= 1
                                     : M % (kTileM * kClusterM) == 0 && args.splits >= 1 && L == args.splits;
    // kScalesInMainloop: the scale vectors arrive by bulk copy and TMA (16-byte aligned)
    bool const scales_ok = !kScalesInMainloop ||
                           (reinterpret_cast<uintptr_t>(args.ptr_act_scale) % 16 == 0 && args.ptr_s1 != nullptr &&
                            reinterpret_cast<uintptr_t>(args.ptr_s1) % 16 == 0 &&
                            reinterpret_cast<uintptr_t>(args.ptr_bias) % 16 == 0);
    return tiles_ok && scales_ok && K % kTileK == 0 && group_ok && N >= 1 &&
           reinterpret_cast<uintptr_t>(args.ptr_weight) % 16 == 0 &&
           reinterpret_cast<uintptr_t>(args.ptr_params) % 16 == 0 && act_ok;
  }

  CUTLASS_DEVICE static void prefetch_tma_descriptors(Params const& params) {
    cute::prefetch_tma_descriptor(params.tma_load_b.get_tma_descriptor());
    if constexpr (kScalesInMainloop) {
      cute::prefetch_tma_descriptor(params.tma_token_scale.get_tma_descriptor());
    }
  }

  // The problem's (tile, k-tile) pairs over all batches that are work. K ranges: L is the partial tiles' slot.
  template <class ProblemShape>
  static int64_t count_work_k_tiles(ProblemShape const& problem_shape) {
    auto [M, N, K, L] = append<4>(problem_shape, 1);
    return int64_t((int(M) + kTileM - 1) / kTileM) * ((int(N) + kTileN - 1) / kTileN) * (kKRanges ? 1 : int(L)) *
           ((int(K) + kTileK - 1) / kTileK);
  }

  // How many stages of its first unit a CTA prefetches: a quarter of its k-tiles, at least 8 stages (on 132 SMs
  // ~8.7 MB, ~3 us of HBM: enough to keep HBM busy across the handoff from the previous GEMM), at most the ring.
  // Every CTA prefetching a whole ring floods L2 while the previous GEMM's tail and reduction still run: 0.2-0.8 us
  // on the short decode GEMMs, while the long ones (70B gate_up, down) gain from the deeper prefetch (H100,
  // bench/NOTES.md).
  CUTLASS_HOST_DEVICE static int prefetch_depth(int64_t work_k_tiles, int ctas) {
    return cute::min(Stages, cute::max(8, int(work_k_tiles / ctas / 4)));
  }
  CUTLASS_DEVICE static int prefetch_depth(Params const& params, int ctas) {
    return prefetch_depth(params.work_k_tiles, ctas);
  }

  // The entry's prefetch as a host-side plan (FirstStagesPlan): the same bytes as prefetch_first_stages() for CTA c's
  // first unit, slice c from k-block 0. Only for K pairs with one token tile and one slice per CTA (70B o and down):
  // where CTAs run several slices (70B gate_up: seven) the plan measured 0.4% slower, so they keep the scheduler's.
  template <class ProblemShape>
  static FirstStagesPlan first_stages_plan(ProblemShape const& problem_shape, Arguments const& args,
                                           int64_t work_k_tiles, int ctas) {
    auto [M, N, K, L] = append<4>(problem_shape, 1);
    if (!kKPairs || N > kTileN || ctas != L) {
      return {};
    }
    int64_t const row_k = weight_row_k(K, args);
    int const depth = cute::min(int(K) / kTileK, prefetch_depth(work_k_tiles, ctas));
    int const blocks = depth * kBlocksPerStage;
    int const groups = (blocks * kTileK + args.group_size - 1) / args.group_size;  // as prefetch_first_stages()
    return {args.ptr_weight, args.ptr_params, row_k / kTileK * format::kChunkBytes,
            row_k / args.group_size * format::kParamBytesPerGroup, uint32_t(blocks * format::kChunkBytes),
            uint32_t(groups * format::kParamBytesPerGroup)};
  }
  // Issues the planned prefetch of this CTA's first stages; false where there is no plan.
  CUTLASS_DEVICE static bool prefetch_planned_first_stages(Params const& params) {
    if constexpr (kKPairs) {
      FirstStagesPlan const& plan = params.first_stages;
      if (plan.weight != nullptr) {
        // The persistent scheduler's linear CTA index: its grid is (1, CTAs) or (CTAs, 1) for 1x1 clusters.
        int64_t const cta = blockIdx.x + int64_t(gridDim.x) * blockIdx.y;
        arch::prefetch_l2(plan.weight + cta * plan.weight_stride, plan.weight_bytes);
        arch::prefetch_l2(plan.params + cta * plan.params_stride, plan.params_bytes);
        return true;
      }
    }
    return false;
  }

  // Weight stages loaded before the PDL wait, decided on the host (kernel/w4a8_gemm.hpp) from the CTAs' streams of
  // k-tiles: filled before the wait, the ring needs only the activations' L2 round trip after it. Streams of at least
  // four rings (70B gate_up and down under K pairs, where the entry prefetches a whole ring) load a whole ring:
  // 0.8-2.5% faster. Shorter ones load the stages the entry has sent to L2, at most a third of the stream: a whole
  // ring took HBM time from the previous kernel's tail and lost 0.5-1 us, where these won 2-7% (70B qkv, o; 8B qkv, o,
  // down; bench/NOTES.md). The code is compiled only where it may run: present but unused, it cost the balanced and
  // split-K configs 0.5-1% (bench/NOTES.md).
  static constexpr bool kMayLoadWeightsBeforeWait = Early != EarlyWeights::kNever;
  static int early_stage_count(int64_t work_k_tiles, int ctas, int tokens) {
    static_assert(Early != EarlyWeights::kOneTokenTile || Stages >= 8, "a whole ring prefetched means depth == Stages");
    int64_t const stream = work_k_tiles / cute::max(ctas, 1);
    if (!kMayLoadWeightsBeforeWait || (Early == EarlyWeights::kOneTokenTile && tokens > kTileN)) {
      return 0;
    }
    if (Early == EarlyWeights::kOneTokenTile && stream >= 4 * Stages) {
      return Stages;
    }
    return cute::max(1, cute::min(prefetch_depth(work_k_tiles, ctas), int(stream / 3)));
  }

  // The weights and group params of a work unit's first `depth` stages, sent to L2 by the kernel's entry before
  // anything else (kernel/w4a8_gemm.hpp), while the previous kernel may still run (PDL): weights are never a
  // kernel's output, and L2 is the GPU's point of coherence, so a prefetched line can never be stale.
  CUTLASS_DEVICE static void prefetch_first_stages(Params const& params, int m_coord, int l_coord, int k_tile_start,
                                                 int k_tile_count, int depth) {
    int const k_block = first_block_of(params, l_coord, k_tile_start);
    int const blocks = cute::min(k_tile_count, depth) * kBlocksPerStage;
    int const first_group = group_of_block(params, k_block);
    int const groups = group_of_block(params, k_block + blocks - 1) + groups_per_block(params.group_size) -
                       first_group;
    CUTLASS_PRAGMA_UNROLL
    for (int s = 0; s < kSlicesPerStage; ++s) {
      int64_t const slice = first_slice_of(m_coord, l_coord) + s;
      arch::prefetch_l2(params.weight + (slice * params.k_blocks + k_block) * format::kChunkBytes,
                        uint32_t(blocks * format::kChunkBytes));
      arch::prefetch_l2(params.params + (slice * params.groups + first_group) * format::kParamBytesPerGroup,
                        uint32_t(groups * format::kParamBytesPerGroup));
    }
  }

  // (BLK_M, BLK_K, m, k, l) coordinates for A (the kernel only reads its tile counts) and the TMA view of B.
  template <class ProblemShapeMNKL>
  CUTLASS_DEVICE auto load_init(ProblemShapeMNKL const& problem_shape_mnkl, Params const& params) const {
    auto [M, N, K, L] = problem_shape_mnkl;
    Tensor gA_mkl = local_tile(make_identity_tensor(make_shape(M, K, L)), TileShape{}, make_coord(_, _, _),
                               Step<_1, Underscore, _1>{});
    Tensor mB_nkl = params.tma_load_b.get_tma_tensor(activation_shape(N, K, L));
    Tensor gB_nkl = local_tile(mB_nkl, TileShape{}, make_coord(_, _, _), Step<Underscore, _1, _1>{});
    return cute::make_tuple(gA_mkl, gB_nkl);
  }

  // The activation TMA's (source, destination) views of a unit's token tile: this CTA's share of it, multicast to every
  // CTA of the cluster (all of them share it).
  template <class TensorA, class TensorB, class NCoord, class LCoord>
  CUTLASS_DEVICE static auto activation_views(Params const& params, cute::tuple<TensorA, TensorB> const& load_inputs,
                                              NCoord const& n_coord, LCoord const& l_coord,
                                              TensorStorage& shared_tensors) {
    Tensor sB = make_tensor(make_smem_ptr(shared_tensors.smem_B.data()), SmemLayoutB{});
    Tensor gB = get<1>(load_inputs)(_, _, n_coord, _, kOneActivationBatch ? 0 : l_coord);  // (BLK_N, BLK_K, k)
    uint32_t const cluster_rank = kClusterM == 1 ? 0 : cute::block_rank_in_cluster();
    auto block_tma_b = params.tma_load_b.get_slice(cluster_rank);
    return cute::make_tuple(block_tma_b.partition_S(gB), block_tma_b.partition_D(sB));
  }

  // Producer: one elected thread streams (weights, params, activations) of k-block after k-block (K pairs: weights
  // and params only, load_auxiliary() the rest).
  template <class TensorA, class TensorB, class KTileIterator, class BlockCoord>
  CUTLASS_DEVICE void load(Params const& params, MainloopPipeline pipeline, PipelineState smem_pipe_write,
                           cute::tuple<TensorA, TensorB> const& load_inputs, BlockCoord const& blk_coord,
                           KTileIterator k_tile_iter, int k_tile_count, int /*thread_idx*/,
                           uint32_t /*block_rank_in_cluster*/, TensorStorage& shared_tensors) {
    if (!cute::elect_one_sync()) {
      return;
    }
    auto [m_coord, n_coord, k_coord, l_coord] = blk_coord;
    int const first_slice = first_slice_of(int(m_coord), int(l_coord));
    int const split_first_block = first_block_of(params, int(l_coord), 0);
    int const first_block = first_block_of(params, int(l_coord), int(*k_tile_iter));
    // With PDL this CTA may run before the previous kernel (e.g. the activation quantizer) has finished: every
    // activation load (and, after the mainloop, the epilogue and the stream-K fixup) comes after the wait. Weights
    // are constants, never written by the kernel right before a GEMM (the README states the contract): the entry has
    // sent this unit's first stages to L2 (prefetch_first_stages), and the early modes load params.early_stages of
    // them into the ring before the wait.
    int early_stages = 0;
    if (first_load_) {
      first_load_ = false;
      if (kMayLoadWeightsBeforeWait && params.early_stages > 0) {
        early_stages = cute::min(k_tile_count, params.early_stages);
      } else {
        wait_for_prior_output();
      }
    }
    // A K-pairs stage is one 8 KB copy of the slice's k-blocks 2k, 2k + 1 and their group params, its sources moved
    // on by pointer and GroupCursor; the other configs recompute theirs per stage (an integer division for the group).
    // Each is the faster of the two for its access pattern: the producer's per-stage issue timing moved decode GEMMs
    // by 5-12%, in opposite directions for the two (bench/NOTES.md).
    uint8_t const* pair_weight =
        params.weight + (int64_t(first_slice) * params.k_blocks + first_block) * format::kChunkBytes;
    uint8_t const* const pair_params =
        params.params + int64_t(first_slice) * params.groups * format::kParamBytesPerGroup;
    GroupCursor pair_group(params.group_size, first_block);
    // All tokens in one token tile: each weight byte is read once, so the weights stream through L2 as evict-first,
    // leaving it to the activations, the next GEMM's prefetched weights and split-K partial tiles.
    uint64_t const policy = arch::l2_policy(params.tokens <= kTileN);
    auto load_weights = [&](uint64_t* barrier, int stage, int k_tile) {
      if constexpr (kKPairs) {
        arch::bulk_copy_g2s(pair_weight, barrier, weight_stage(shared_tensors, stage), kWeightStageBytes, policy);
        pair_weight += kWeightStageBytes;
        // Warp group w's group params go to w * param_bytes: one copy where the pair's groups are adjacent (group
        // size 64 or 128, the common case), else the group of each k-block.
        if (pair_group.blocks_per_group == 1) {
          arch::bulk_copy_g2s(pair_params + pair_group.offset, barrier, param_stage(shared_tensors, stage),
                              2 * params.param_bytes, policy);
          pair_group.next();
          pair_group.next();
        } else {
          CUTLASS_PRAGMA_UNROLL
          for (int s = 0; s < kBlocksPerStage; ++s) {
            arch::bulk_copy_g2s(pair_params + pair_group.offset, barrier,
                                param_stage(shared_tensors, stage) + s * params.param_bytes, params.param_bytes,
                                policy);
            pair_group.next();
          }
        }
      } else {
        int const k_block = split_first_block + k_tile;  // in the whole weight row
        int const first_group = group_of_block(params, k_block);
        CUTLASS_PRAGMA_UNROLL
        for (int s = 0; s < kSlices; ++s) {
          int64_t const slice = first_slice + s;
          arch::bulk_copy_g2s(params.weight + (slice * params.k_blocks + k_block) * format::kChunkBytes, barrier,
                              weight_stage(shared_tensors, stage) + s * format::kChunkBytes, format::kChunkBytes,
                              policy);
          arch::bulk_copy_g2s(params.params + (slice * params.groups + first_group) * format::kParamBytesPerGroup,
                              barrier, param_stage(shared_tensors, stage) + s * kParamSlotBytes, params.param_bytes,
                              policy);
        }
      }
    };
    if constexpr (kSplitLoads) {
      // Weights and group params only (load_auxiliary() adds the activations): params.early_stages of them before
      // the PDL wait, which here only keeps the rest from competing with the previous kernel's last CTAs for HBM.
      bool waited = early_stages == 0;
      CUTLASS_PRAGMA_NO_UNROLL
      for (int i = 0; k_tile_count > 0; ++i, --k_tile_count, ++k_tile_iter, ++smem_pipe_write) {
        if (!waited && i == early_stages) {
          wait_for_prior_output();
          waited = true;
        }
        pipeline.producer_acquire(smem_pipe_write);
        load_weights(pipeline.producer_get_barrier(smem_pipe_write), smem_pipe_write.index(), int(*k_tile_iter));
      }
      if (!waited) {
        wait_for_prior_output();
      }
    } else {
      auto const activations = activation_views(params, load_inputs, n_coord, l_coord, shared_tensors);
      auto const& tBgB = get<0>(activations);
      auto const& tBsB = get<1>(activations);
      uint16_t const mcast_mask_b = uint16_t((1u << kClusterM) - 1);
      auto load_activations = [&](uint64_t* barrier, int stage, int k_tile) {
        if constexpr (kClusterM > 1) {
          copy(params.tma_load_b.with(*barrier, mcast_mask_b), tBgB(_, _, _, k_tile), tBsB(_, _, _, stage));
        } else if constexpr (!kQuantizesAct) {
          copy(params.tma_load_b.with(*barrier), tBgB(_, _, _, k_tile), tBsB(_, _, _, stage));
        }
      };
      if constexpr (kMayLoadWeightsBeforeWait) {
        if (early_stages > 0) {
          // The ring is empty: every acquire returns at once and arms its stage for all of the stage's bytes, so a
          // stage is full only once its activations, loaded after the wait, have landed too.
          PipelineState pipe = smem_pipe_write;
          auto it = k_tile_iter;
          CUTLASS_PRAGMA_NO_UNROLL
          for (int i = 0; i < early_stages; ++i, ++it, ++pipe) {
            pipeline.producer_acquire(pipe);
            load_weights(pipeline.producer_get_barrier(pipe), pipe.index(), int(*it));
          }
          wait_for_prior_output();
          CUTLASS_PRAGMA_NO_UNROLL
          for (int i = 0; i < early_stages; ++i, --k_tile_count, ++k_tile_iter, ++smem_pipe_write) {
            load_activations(pipeline.producer_get_barrier(smem_pipe_write), smem_pipe_write.index(),
                             int(*k_tile_iter));
          }
        }
      }
      CUTLASS_PRAGMA_NO_UNROLL
      for (; k_tile_count > 0; --k_tile_count, ++k_tile_iter, ++smem_pipe_write) {
        pipeline.producer_acquire(smem_pipe_write);
        uint64_t* barrier = pipeline.producer_get_barrier(smem_pipe_write);
        int const stage = smem_pipe_write.index();
        load_weights(barrier, stage, int(*k_tile_iter));
        load_activations(barrier, stage, int(*k_tile_iter));
      }
    }
  }

  // kSplitLoads: the producer warp group's auxiliary warp (CUTLASS's MainloopAux role) loads each stage's activations
  // (and the unit's scales) after the PDL wait, so that one thread's copy issue does not pace a lone CTA.
  template <class TensorA, class TensorB, class KTileIterator, class BlockCoord>
  CUTLASS_DEVICE void load_auxiliary(Params const& params, MainloopPipeline pipeline, PipelineState smem_pipe_write,
                                     cute::tuple<TensorA, TensorB> const& load_inputs, BlockCoord const& blk_coord,
                                     KTileIterator k_tile_iter, int k_tile_count, int /*thread_idx*/,
                                     uint32_t /*block_rank_in_cluster*/, TensorStorage& shared_tensors) {
    if constexpr (kSplitLoads) {
      if (!cute::elect_one_sync()) {
        return;
      }
      if (first_load_) {
        first_load_ = false;
        wait_for_prior_output();
      }
      auto [m_coord, n_coord, k_coord, l_coord] = blk_coord;
      auto const activations = activation_views(params, load_inputs, n_coord, l_coord, shared_tensors);
      auto const& tBgB = get<0>(activations);
      auto const& tBsB = get<1>(activations);
      int const first_slice = first_slice_of(int(m_coord), int(l_coord));
      int const last_k_tile = int(*k_tile_iter) + k_tile_count - 1;
      CUTLASS_PRAGMA_NO_UNROLL
      for (; k_tile_count > 0; --k_tile_count, ++k_tile_iter, ++smem_pipe_write) {
        pipeline.producer_acquire(smem_pipe_write);  // not the leader: waits for the stage, arms nothing
        uint64_t* barrier = pipeline.producer_get_barrier(smem_pipe_write);
        int const stage = smem_pipe_write.index();
        int const k_tile = int(*k_tile_iter);
        if (k_tile == last_k_tile) {
          // expected before this stage's activations are issued: the phase cannot complete without these bytes
          constexpr uint32_t kVectorBytes = format::kSliceRows * sizeof(float);
          uint32_t const bytes = (params.bias != nullptr ? 2 : 1) * kVectorBytes + kTileN * sizeof(float);
          MainloopPipeline::FullBarrier::expect_transaction(barrier, bytes);
          float* const slot = scale_slot(shared_tensors, stage);
          int64_t const channel = int64_t(first_slice) * format::kSliceRows;
          uint64_t const keep = arch::l2_policy(false);
          arch::bulk_copy_g2s(params.s1 + channel, barrier, slot + kTokenScaleFloats, kVectorBytes, keep);
          if (params.bias != nullptr) {
            arch::bulk_copy_g2s(params.bias + channel, barrier, slot + kTokenScaleFloats + format::kSliceRows,
                                kVectorBytes, keep);
          }
          Tensor gS = local_tile(params.tma_token_scale.get_tma_tensor(make_shape(params.tokens)),
                                 Shape<Int<kTileN>>{}, make_coord(int(n_coord)));
          Tensor sS = make_tensor(make_smem_ptr(slot), ScaleLayout{});
          auto tma_s = params.tma_token_scale.get_slice(0);
          copy(params.tma_token_scale.with(*barrier), tma_s.partition_S(gS), tma_s.partition_D(sS));
        }
        CUTLASS_PRAGMA_UNROLL
        for (int s = 0; s < kBlocksPerStage; ++s) {
          copy(params.tma_load_b.with(*barrier), tBgB(_, _, _, 2 * k_tile + s), tBsB(_, _, _, 2 * stage + s));
        }
      }
    }
  }

  CUTLASS_DEVICE void load_tail(MainloopPipeline pipeline, PipelineState smem_pipe_write) {
    if (cute::elect_one_sync()) {
      pipeline.producer_tail(smem_pipe_write);
    }
  }

  // Consumer: per stage, issue its WGMMAs as one async batch, then dequantize the next stage into the other A
  // register set while they run.
  template <class FrgTensorC>
  CUTLASS_DEVICE void mma(MainloopPipeline pipeline, PipelineState smem_pipe_read, FrgTensorC& accum,
                          int k_tile_count, int thread_idx, TensorStorage& shared_tensors, Params const& params) {
    static_assert(is_rmem<FrgTensorC>::value, "accumulators must be in registers");
    int const warp_group = __shfl_sync(0xFFFFFFFF, thread_idx / cutlass::NumThreadsPerWarpGroup, 0);
    int const t = thread_idx % cutlass::NumThreadsPerWarpGroup;

    TiledMma tiled_mma;
    auto thread_mma = tiled_mma.get_slice(warp_group * cutlass::NumThreadsPerWarpGroup);
    Tensor sB = make_tensor(make_smem_ptr(shared_tensors.smem_B.data()), SmemLayoutB{});
    Tensor tCrB = thread_mma.make_fragment_B(thread_mma.partition_B(sB));          // (MMA, MMA_N, MMA_K, PIPE)

    // Fused path: the CTA's tiles all share the one token tile and all of K, so its activations are quantized
    // once, before the first tile, while the producer already streams weights into the ring.
    if constexpr (kQuantizesAct) {
      if (!act_ready_) {
        arch::wait_for_prior_grids();  // x is the previous kernel's output (PDL)
        FusedQuant::quantize_rows(params.x, params.tokens, int64_t(params.k_blocks) * kTileK, params.act_scale, sB,
                                  shared_tensors.fused, thread_idx);
        act_ready_ = true;
      }
    }

    // A registers of one stage (all k-steps), twice: the WGMMAs of stage i read one set while the other is
    // filled with stage i+1. Compact, so that register 4*ks + i of a set is the i-th 32-bit A register of
    // k-step ks (GMMA::ALayout_64x32 order: (r0,k0-3), (r0+8,k0-3), (r0,k16-19), (r0+8,k16-19)).
    auto a_shape = shape(thread_mma.partition_A(make_identity_tensor(make_shape(Int<kTileM>{}, Int<kTileK>{}))));
    static_assert(size<1>(decltype(a_shape){}) == 1, "one 64-row slice per consumer warp group");
    static_assert(size<2>(decltype(a_shape){}) == kKSteps, "one A fragment per k-step");
    static_assert(size(decltype(a_shape){}) == 16 * kKSteps, "16 int8 per thread per k-step");
    Tensor tCrA0 = make_tensor<int8_t>(make_layout(a_shape));                      // (MMA, MMA_M, MMA_K)
    Tensor tCrA1 = make_tensor<int8_t>(make_layout(a_shape));

    // This thread's rows inside the slice (see format.hpp / ALayout_64x32).
    int const row_lo = 16 * (t / 32) + (t / 4) % 8;
    int const row_hi = row_lo + 8;
    int const group_hi_offset =
        (params.group_size == 64 ? 1 : 0) * format::kParamBytesPerGroup / 2;       // in uint16 units
    uint8_t const* const chunk_base = shared_tensors.smem_weight.data() + warp_group * format::kChunkBytes +
                                      t * format::kThreadBytesPerHalf;
    int const param_slot_bytes = kKPairs ? params.param_bytes : kParamSlotBytes;  // K pairs: see load()
    uint16_t const* const params_base = reinterpret_cast<uint16_t const*>(
        shared_tensors.smem_params.data() + warp_group * param_slot_bytes);

    // Shared -> registers -> LiquidQuant dequant of one whole stage into one A register set.
    auto dequant_stage = [&](int stage, auto& frag) {
      Tensor regs = recast<uint32_t>(frag);
      CUTLASS_PRAGMA_UNROLL
      for (int half = 0; half < 2; ++half) {
        uint4 const words = *reinterpret_cast<uint4 const*>(chunk_base + stage * kWeightStageBytes +
                                                            half * format::kHalfChunkBytes);
        uint16_t const* prm = params_base + stage * (kParamStageBytes / 2) + half * group_hi_offset;
        GroupParams const p_lo = expand_group_params(prm[row_lo]);
        GroupParams const p_hi = expand_group_params(prm[row_hi]);
        uint32_t const w[4] = {words.x, words.y, words.z, words.w};
        CUTLASS_PRAGMA_UNROLL
        for (int j = 0; j < 4; ++j) {  // word j = k-step 2*half + j/2, columns 16*(j%2) + [0, 4)
          uint32_t a_lo, a_hi;
          dequant_word(w[j], p_lo, p_hi, a_lo, a_hi);
          int const ks = 2 * half + j / 2;
          regs(4 * ks + 2 * (j % 2) + 0) = a_lo;
          regs(4 * ks + 2 * (j % 2) + 1) = a_hi;
        }
      }
    };
    // All k-steps of one stage as one WGMMA batch; B is the stage's tile of the ring, or the k-block's tile of the
    // resident buffer (fused).
    int k_block = 0;
    // K pairs: odd stages accumulate into a second set, so that consecutive stages' WGMMA batches do not chain on
    // one accumulator; a CTA streaming alone (the last CTAs of a chain of decode GEMMs) is paced by its stages
    // (bench/NOTES.md).
    constexpr bool kTwoAcc = kKPairs;
    auto accum_odd = make_fragment_like(accum);
    if constexpr (kTwoAcc) {
      clear(accum_odd);
      warpgroup_fence_operand(accum_odd);
    }
    auto issue_stage = [&](int stage, auto& frag, auto& acc) {
      int const b_tile = kQuantizesAct ? k_block : kKPairs ? 2 * stage + warp_group : stage;
      warpgroup_arrive();
      CUTLASS_PRAGMA_UNROLL
      for (int ks = 0; ks < kKSteps; ++ks) {
        cute::gemm(tiled_mma, frag(_, _, ks), tCrB(_, _, ks, b_tile), acc);
        tiled_mma.accumulate_ = GMMA::ScaleOut::One;
      }
      warpgroup_commit_batch();
    };

    // ImFP: the batch of stage i runs on the tensor cores while stage i+1 is dequantized. The loop is unrolled
    // by two so that each register set is named statically and, whenever A registers are written, the only
    // WGMMA batch in flight was issued in the same iteration: ptxas can then prove the writes safe instead of
    // serializing every WGMMA.
    PipelineState smem_pipe_release = smem_pipe_read;
    tiled_mma.accumulate_ = GMMA::ScaleOut::Zero;
    warpgroup_fence_operand(accum);
    pipeline.consumer_wait(smem_pipe_read);
    dequant_stage(smem_pipe_read.index(), tCrA0);

    auto step = [&](auto& frag_now, auto& frag_next, auto& acc, bool release_previous) {
      issue_stage(smem_pipe_read.index(), frag_now, acc);
      warpgroup_wait<1>();  // the previous batch is done: its stage can go back to the producer
      if (release_previous) {
        release_stage(pipeline, smem_pipe_release);
        ++smem_pipe_release;
      }
      if (--k_tile_count == 0) {
        return false;
      }
      ++smem_pipe_read;
      ++k_block;
      pipeline.consumer_wait(smem_pipe_read);
      dequant_stage(smem_pipe_read.index(), frag_next);
      return true;
    };
    auto run_stages = [&](auto& acc_even, auto& acc_odd) {
      if (step(tCrA0, tCrA1, acc_even, false)) {
        CUTLASS_PRAGMA_NO_UNROLL
        while (step(tCrA1, tCrA0, acc_odd, true) && step(tCrA0, tCrA1, acc_even, true)) {
        }
      }
    };
    if constexpr (kTwoAcc) {
      run_stages(accum, accum_odd);
    } else {
      run_stages(accum, accum);
    }
    warpgroup_fence_operand(accum);
    if constexpr (kTwoAcc) {
      warpgroup_wait<0>();
      warpgroup_fence_operand(accum_odd);
      warpgroup_fence_operand(accum);
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < size(accum); ++i) accum(i) += accum_odd(i);
      warpgroup_fence_operand(accum);
    }
    if constexpr (kKPairs) {
      add_odd_blocks(accum, warp_group, t, shared_tensors);
    }
    if constexpr (kScalesInMainloop) {
      if (warp_group == 0) {  // the tile's first 64 rows, the only ones stored (K pairs)
        apply_scales(accum, t, scale_slot(shared_tensors, smem_pipe_read.index()), params.bias != nullptr);
      }
    }
  }

  // Waits for the last WGMMAs and releases the stage(s) that mma() has not released.
  CUTLASS_DEVICE void mma_tail(MainloopPipeline pipeline, PipelineState smem_pipe_release, int k_tile_count) {
    warpgroup_wait<0>();
    smem_pipe_release.advance(k_tile_count - 1);
    release_stage(pipeline, smem_pipe_release);
  }

 private:
  // In a cluster, CUTLASS's pipeline lets one thread per (warp group, destination CTA) arrive on a stage's empty
  // barrier, but every thread of the warp group read the stage (its A fragment and group params): they meet at a
  // warp-group barrier first, so that all those reads are ordered before the release (a 1x1 ring has every thread
  // arrive itself).
  CUTLASS_DEVICE static void release_stage(MainloopPipeline& pipeline, PipelineState state) {
    if constexpr (kClusterM > 1) {
      // a user barrier id (CUTLASS adds its reserved count): one per consumer warp group
      cutlass::arch::NamedBarrier::sync(cutlass::NumThreadsPerWarpGroup, cutlass::canonical_warp_group_idx());
    }
    pipeline.consumer_release(state);
  }

  // K pairs: warp group 0 adds warp group 1's partial sums (same fragment layout: element i of thread t is the
  // same output in both), so that its rows, the tile's first 64 and the only ones stored, cover all of K.
  template <class FrgTensorC>
  CUTLASS_DEVICE static void add_odd_blocks(FrgTensorC& accum, int warp_group, int t, TensorStorage& shared_tensors) {
    static_assert(decltype(size(accum))::value == kTileN / 2, "a 64 x N int32 fragment per warp group");
    constexpr int kExchangeBarrier = 3;  // user barrier ids 1, 2: release_stage; 3: this exchange
    warpgroup_wait<0>();
    warpgroup_fence_operand(accum);
    int32_t* const partial = shared_tensors.exchange.partial.data() + t;
    if (warp_group == 1) {
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < size(accum); ++i) partial[i * cutlass::NumThreadsPerWarpGroup] = accum(i);
    }
    cutlass::arch::NamedBarrier::sync(kConsumerThreads, kExchangeBarrier);
    if (warp_group == 0) {
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < size(accum); ++i) accum(i) += partial[i * cutlass::NumThreadsPerWarpGroup];
    }
    // Warp group 1 rewrites the buffer only after its next tile's mainloop; the epilogue's barriers in between
    // order that after these reads.
    warpgroup_fence_operand(accum);
  }

  bool first_load_ = true;     // per producer thread: the first tile of this CTA starts with the PDL prologue
  bool act_ready_ = false;     // per consumer thread (fused path): the quantized activations are in shared memory

  // Byte offset of a k-block's group params within its slice's, moved one k-block on without a division: group size
  // 64 puts two groups (256 bytes) in every k-block, a larger one 128 bytes in every group_size / 128 k-blocks.
  struct GroupCursor {
    int offset, block_in_group, blocks_per_group, step;
    CUTLASS_DEVICE GroupCursor(int group_size, int k_block)
        : blocks_per_group(group_size == 64 ? 1 : group_size / kTileK),
          step(group_size == 64 ? 2 * format::kParamBytesPerGroup : format::kParamBytesPerGroup) {
      offset = k_block / blocks_per_group * step;
      block_in_group = k_block % blocks_per_group;
    }
    CUTLASS_DEVICE void next() {
      if (++block_in_group == blocks_per_group) {
        block_in_group = 0;
        offset += step;
      }
    }
  };

  // First group of k-block k_block: groups 2k, 2k+1 with group size 64, else the one group containing the block.
  CUTLASS_DEVICE static int group_of_block(Params const& params, int k_block) {
    return params.group_size == 64 ? 2 * k_block : k_block * kTileK / params.group_size;
  }

  // The producer's PDL handoff: after the wait the previous kernel's output (the activations) is complete and visible;
  // the trigger lets the next PDL kernel start its prologue and weight prefetch while this one streams.
  CUTLASS_DEVICE static void wait_for_prior_output() {
    arch::wait_for_prior_grids();
    arch::allow_dependent_grids();
  }

  // First weight slice (64 rows) and first k-block, in the whole weight row, of a work unit (m, l) at k-tile k.
  // K pairs: both warp groups' chunks come from slice l, k-blocks 2k and 2k + 1; split-K: batch l is K slice l.
  CUTLASS_DEVICE static int first_slice_of(int m_coord, int l_coord) {
    return kKPairs ? l_coord : m_coord * kSlices;
  }
  CUTLASS_DEVICE static int first_block_of(Params const& params, int l_coord, int k_tile) {
    return (kOneActivationBatch ? 0 : l_coord * params.split_k_blocks) + k_tile * kBlocksPerStage;
  }

  // D = (float(acc) * token_scale[n]) * s1[m] + bias[m], rounded after every operation as the reference does, left
  // in the int32 accumulators as float bits for the epilogue's conversion (epilogue::PrescaledOutput).
  template <class FrgTensorC>
  CUTLASS_DEVICE static void apply_scales(FrgTensorC& accum, int t, float const* slot, bool has_bias) {
    Tensor coord = TiledMma{}.get_slice(t).partition_C(make_identity_tensor(make_shape(Int<kTileM>{}, Int<kTileN>{})));
    static_assert(decltype(size(coord))::value == decltype(size(accum))::value, "one coordinate per accumulator");
    float const* const token_scale = slot;
    float const* const s1 = slot + kTokenScaleFloats;
    float const* const bias = s1 + format::kSliceRows;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < size(accum); ++i) {
      int const m = get<0>(coord(i));
      int const n = get<1>(coord(i));
      float v = __fmul_rn(__fmul_rn(float(accum(i)), token_scale[n]), s1[m]);
      if (has_bias) {
        v = __fadd_rn(v, bias[m]);
      }
      accum(i) = __float_as_int(v);
    }
  }

  CUTLASS_DEVICE static float* scale_slot(TensorStorage& s, int stage) {
    if constexpr (kScalesInMainloop) {
      return s.scales.data() + stage * kScaleSlotFloats;
    } else {
      return nullptr;
    }
  }

  CUTLASS_DEVICE static uint8_t* weight_stage(TensorStorage& s, int stage) {
    return s.smem_weight.data() + stage * kWeightStageBytes;
  }
  CUTLASS_DEVICE static uint8_t* param_stage(TensorStorage& s, int stage) {
    return s.smem_params.data() + stage * kParamStageBytes;
  }
};

}  // namespace liquidgemm::collective
