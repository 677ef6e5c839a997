// SPDX-License-Identifier: Apache-2.0
// Epilogue visitor tree of the W4A8 GEMM. In the kernel's transposed view (M = output channels, N = tokens):
//   D[m, n] = (float(acc[m, n]) * act_scale[n]) * s1[m] + bias[m]      -> fp16 / bf16
// in exactly the order of the Python reference. The int32 debug output stores the raw accumulators; the K-pairs
// configs scale in the mainloop and only convert here (PrescaledOutput).
#pragma once

#include "cutlass/epilogue/fusion/sm90_callbacks_tma_warpspecialized.hpp"
#include "cutlass/epilogue/thread/activation.h"
#include "cutlass/functional.h"

namespace liquidgemm::epilogue {

using namespace cutlass::epilogue::fusion;
using cute::_0;
using cute::_1;

template <class OutT, class TileShape>
struct TokenChannelScale {
  static constexpr auto kRound = cutlass::FloatRoundStyle::round_to_nearest;
  // Per-token scale: one float per column n; any token count, so no vector alignment is assumed.
  using ActScale = Sm90RowBroadcast<0, TileShape, float, float, cute::Stride<_0, _1, int64_t>, 1>;
  // Per-channel vectors: one float per row m (N_out is a multiple of 128).
  using ChannelScale = Sm90ColBroadcast<0, TileShape, float, float, cute::Stride<_1, _0, int64_t>, 4>;
  using Bias = ChannelScale;

  using TokenScaled = Sm90EVT<Sm90Compute<cutlass::multiplies, float, float, kRound>, Sm90AccFetch, ActScale>;
  using Scaled = Sm90EVT<Sm90Compute<cutlass::multiplies, float, float, kRound>, TokenScaled, ChannelScale>;
  using Callbacks = Sm90EVT<Sm90Compute<cutlass::plus, OutT, float, kRound>, Scaled, Bias>;

  // A null bias reads as 0 (x + 0 == x, so outputs without bias are exact). channel_batch_stride: where batch l's
  // channels start in s1 and the bias (K-pairs configs: one batch per 64-row slice; else 0, a single batch).
  static typename Callbacks::Arguments arguments(float const* act_scale, float const* s1, float const* bias,
                                                 int64_t channel_batch_stride = 0) {
    typename ChannelScale::StrideMNL const channel_stride{_1{}, _0{}, channel_batch_stride};
    return {{{{}, {act_scale, 0.f, {}}, {}}, {s1, 0.f, channel_stride}, {}}, {bias, 0.f, channel_stride}, {}};
  }
};

template <class TileShape>
struct TokenChannelScale<int32_t, TileShape> {
  using Identity = Sm90Compute<cutlass::epilogue::thread::Identity, int32_t, int32_t,
                               cutlass::FloatRoundStyle::round_to_nearest>;
  using Callbacks = Sm90EVT<Identity, Sm90AccFetch>;
  static typename Callbacks::Arguments arguments(float const*, float const*, float const*, int64_t = 0) {
    return {{}, {}};
  }
};

// K pairs: the mainloop has already scaled the accumulators and left the float results in them as bits
// (collective::MainloopLiquidW4A8::apply_scales()); the epilogue only rounds them to the output type.
template <class OutT>
struct PrescaledOutput {
  struct AccumulatorBits : Sm90VisitorImpl<> {
    using Sm90VisitorImpl<>::Sm90VisitorImpl;
    struct ConsumerStoreCallbacks : EmptyConsumerStoreCallbacks {
      template <int FragmentSize>
      CUTLASS_DEVICE cutlass::Array<float, FragmentSize> visit(cutlass::Array<int32_t, FragmentSize> const& frg_acc,
                                                              int, int, int) {
        cutlass::Array<float, FragmentSize> bits;
        CUTLASS_PRAGMA_UNROLL
        for (int i = 0; i < FragmentSize; ++i) bits[i] = __int_as_float(frg_acc[i]);
        return bits;
      }
    };
    template <bool ReferenceSrc, class... Args>
    CUTLASS_DEVICE auto get_consumer_store_callbacks(ConsumerStoreArgs<Args...> const&) {
      return ConsumerStoreCallbacks{};
    }
  };
  using Callbacks = Sm90EVT<Sm90Compute<cutlass::epilogue::thread::Identity, OutT, float,
                                        cutlass::FloatRoundStyle::round_to_nearest>,
                            AccumulatorBits>;
  static typename Callbacks::Arguments arguments(float const*, float const*, float const*, int64_t = 0) {
    return {{}, {}};
  }
};

}  // namespace liquidgemm::epilogue
