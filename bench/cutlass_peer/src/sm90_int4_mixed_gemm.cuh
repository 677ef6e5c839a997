// SPDX-License-Identifier: Apache-2.0
// One Hopper int4-weight GEMM built only from CUTLASS's public CollectiveBuilder + GemmUniversalAdapter.
#pragma once

#include <stdexcept>
#include <string>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/operations.hpp"
#include "cutlass/epilogue/fusion/sm90_callbacks_tma_warpspecialized.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/util/packed_stride.hpp"

#include "peer_gemm.hpp"
#include "sm90_int4_weight_layout.cuh"

namespace liquidgemm_cutlass_peer {

enum class Schedule { Cooperative, Pingpong };

template <Schedule S> struct ScheduleTags;
template <> struct ScheduleTags<Schedule::Cooperative> {
  using Kernel = cutlass::gemm::KernelTmaWarpSpecializedCooperative;
  using Epilogue = cutlass::epilogue::TmaWarpSpecializedCooperative;
};
template <> struct ScheduleTags<Schedule::Pingpong> {
  using Kernel = cutlass::gemm::KernelTmaWarpSpecializedPingpong;
  using Epilogue = cutlass::epilogue::TmaWarpSpecialized;
};

using ElementOut = cutlass::bfloat16_t;
using ElementAcc = float;
constexpr auto kRound = cutlass::FloatRoundStyle::round_to_nearest;

// What differs between the two GEMMs: the group-scale type and the epilogue.
template <class Act, class TileShape> struct ActTraits;

// int4 x bf16, "scale only": w = bf16(q) * s[n, g] in the mainloop, plain D = acc epilogue.
template <class TileShape> struct ActTraits<cutlass::bfloat16_t, TileShape> {
  using Scale = cutlass::bfloat16_t;
  using Fusion = cutlass::epilogue::fusion::LinearCombination<ElementOut, ElementAcc, void, ElementAcc>;
  template <class FusionArgs>
  static FusionArgs fusion_args(GemmArgs const&) { return {1.0f, 0.0f}; }  // alpha = 1, beta = 0
};

// int4 x fp8: the mainloop's lookup-table converter maps q to fp8(q * s[n, g]) (8 entries per scale, sign
// applied in flight), so the group scale must be fp8 and stay small; the remaining per-channel and per-token
// factors go into the epilogue: D = channel_scale[n] * (act_scale[m] * acc), both broadcast in fp32.
template <class TileShape> struct ActTraits<cutlass::float_e4m3_t, TileShape> {
  using Scale = cutlass::Array<cutlass::float_e4m3_t, 8>;
  // Kernel rows are output channels (column vector), kernel columns are tokens (row vector).
  using ChannelScale = cutlass::epilogue::fusion::Sm90ColBroadcast<0, TileShape, float>;
  using TokenScale = cutlass::epilogue::fusion::Sm90RowBroadcast<0, TileShape, float>;
  using TokenScaledAcc = cutlass::epilogue::fusion::Sm90EVT<
      cutlass::epilogue::fusion::Sm90Compute<cutlass::multiplies, ElementAcc, ElementAcc, kRound>,
      TokenScale, cutlass::epilogue::fusion::Sm90AccFetch>;
  using Fusion = cutlass::epilogue::fusion::Sm90EVT<
      cutlass::epilogue::fusion::Sm90Compute<cutlass::multiplies, ElementOut, ElementAcc, kRound>,
      ChannelScale, TokenScaledAcc>;
  template <class FusionArgs>
  static FusionArgs fusion_args(GemmArgs const& a) {
    // A null pointer broadcasts null_default (1) instead.
    return {{a.channel_scale, 1.0f, {}}, {{a.act_scale, 1.0f, {}}, {}, {}}, {}};
  }
};

template <class Act, int TileM, int TileN, Schedule S>
struct Int4MixedGemm {
  // One k-tile is 128 bytes of activations per row: 64 bf16 or 128 fp8; a 128-wide group then spans whole tiles.
  static constexpr int kTileK = 128 * 8 / cutlass::sizeof_bits<Act>::value;
  using TileShape = cute::Shape<cute::Int<TileM>, cute::Int<TileN>, cute::Int<kTileK>>;
  using ClusterShape = cute::Shape<cute::_1, cute::_1, cute::_1>;
  using Traits = ActTraits<Act, TileShape>;

  static constexpr int kAlignWeight = 128 / cutlass::sizeof_bits<cutlass::int4b_t>::value;
  static constexpr int kAlignAct = 128 / cutlass::sizeof_bits<Act>::value;
  static constexpr int kAlignOut = 128 / cutlass::sizeof_bits<ElementOut>::value;

  // Kernel D is [N, M] column-major, i.e. our Y[M, N] row-major; there is no C operand.
  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, ElementAcc, ElementAcc,
      void, cutlass::layout::ColumnMajor, kAlignOut,
      ElementOut, cutlass::layout::ColumnMajor, kAlignOut,
      typename ScheduleTags<S>::Epilogue, typename Traits::Fusion>::CollectiveOp;

  // Kernel A = weights (K-major, in the reordered layout) paired with their group scales; kernel B = X (K-major).
  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp,
      cute::tuple<cutlass::int4b_t, typename Traits::Scale>, WeightLayout<Act>, kAlignWeight,
      Act, cutlass::layout::ColumnMajor, kAlignAct,
      ElementAcc, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<
          static_cast<int>(sizeof(typename CollectiveEpilogue::SharedStorage))>,
      typename ScheduleTags<S>::Kernel>::CollectiveOp;

  using Kernel = cutlass::gemm::kernel::GemmUniversal<
      cute::Shape<int, int, int, int>, CollectiveMainloop, CollectiveEpilogue>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

  static typename Gemm::Arguments arguments(GemmArgs const& a) {
    using StrideAct = typename Kernel::StrideB;
    using StrideScale = typename CollectiveMainloop::StrideScale;
    using StrideD = typename Kernel::StrideD;
    int const groups = a.group_size > 0 ? a.k / a.group_size : 0;
    return {
        cutlass::gemm::GemmUniversalMode::kGemm,
        {a.n, a.m, a.k, 1},
        {static_cast<cutlass::int4b_t const*>(a.weight), make_weight_layout<Act>(a.n, a.k),
         static_cast<Act const*>(a.act), cutlass::make_cute_packed_stride(StrideAct{}, cute::make_shape(a.m, a.k, 1)),
         static_cast<typename Traits::Scale const*>(a.group_scale),
         cutlass::make_cute_packed_stride(StrideScale{}, cute::make_shape(a.n, groups, 1)), a.group_size},
        {Traits::template fusion_args<typename CollectiveEpilogue::FusionCallbacks::Arguments>(a), nullptr, {},
         static_cast<ElementOut*>(a.out), cutlass::make_cute_packed_stride(StrideD{}, cute::make_shape(a.n, a.m, 1))}};
  }

  static void check(cutlass::Status status, char const* what) {
    if (status != cutlass::Status::kSuccess) {
      throw std::runtime_error(std::string("CUTLASS ") + what + " failed: " + cutlassGetStatusString(status));
    }
  }

  static size_t workspace_size(GemmArgs const& a) { return Gemm::get_workspace_size(arguments(a)); }

  static void run(GemmArgs const& a) {
    auto args = arguments(a);
    Gemm gemm;
    check(gemm.can_implement(args), "can_implement (shape or alignment not supported)");
    if (a.workspace_bytes < Gemm::get_workspace_size(args)) {
      throw std::runtime_error("CUTLASS peer: workspace too small");
    }
    check(gemm.initialize(args, a.workspace, a.stream), "initialize");
    check(gemm.run(a.stream), "run");
    if (cudaError_t err = cudaGetLastError(); err != cudaSuccess) {
      throw std::runtime_error(std::string("CUTLASS peer launch: ") + cudaGetErrorString(err));
    }
  }

  static KernelEntry entry(char const* id) {
    return {id, std::is_same_v<Act, cutlass::bfloat16_t> ? "bf16" : "fp8", &workspace_size, &run};
  }
};

}  // namespace liquidgemm_cutlass_peer
