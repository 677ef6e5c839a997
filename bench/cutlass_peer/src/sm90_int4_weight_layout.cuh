// SPDX-License-Identifier: Apache-2.0
// Where each int4 weight lives in memory for CUTLASS's Hopper mixed-input mainloop (shared by GEMM and reorder).
//
// The mainloop takes any CuTe layout for its A operand and derives its shared-memory layout from it, so the
// layout below is a pure performance choice, and GEMM and reorder agree on it by construction. We place the
// values that one thread feeds to its register-A WGMMA next to each other, so that one wide shared-memory load
// fetches them (K-major int4 would take 16-bit loads).
#pragma once

#include "cute/arch/mma_sm90.hpp"
#include "cute/atom/mma_traits_sm90_gmma.hpp"
#include "cute/tensor.hpp"
#include "cutlass/numeric_types.h"

namespace liquidgemm_cutlass_peer {

// Order of one thread's values in memory (value index -> position). bf16: [0,2,4,6,1,3,5,7], so the
// int4 -> bf16 converter takes even and odd nibbles with one instruction each. fp8: the lookup-table converter
// wants the plain fragment order.
template <class Act> struct WeightValueOrder;
template <> struct WeightValueOrder<cutlass::bfloat16_t> {
  using type = cute::Layout<cute::Shape<cute::_2, cute::_4>, cute::Stride<cute::_4, cute::_1>>;
};
template <> struct WeightValueOrder<cutlass::float_e4m3_t> {
  using type = cute::Layout<cute::_16>;
};

// (m, k) of one warp's 16-row slice of the WGMMA A fragment -> offset, thread-major.
template <class Act>
constexpr auto weight_atom() {
  using namespace cute;
  // A's thread-value layout does not depend on the MMA's N; any tile K >= 32 gives the widest atom.
  using Mma = decltype(SM90::GMMA::rs_op_selector<Act, Act, float, Shape<_64, _16, _32>>());
  using ThrVal = typename MMA_Traits<Mma>::ALayout;  // (thread, value) -> m + 64 k over the 64-row atom
  constexpr int kValues = size<1>(ThrVal{});
  constexpr int kAtomK = size<2>(typename MMA_Traits<Mma>::Shape_MNK{});
  using ValueOrder = typename WeightValueOrder<Act>::type;
  static_assert(size(ValueOrder{}) == kValues, "value order must permute exactly one thread's values");

  // Warp 0 owns rows 0..15; compacting its (thread, value) -> (m, k) map keeps the stride order, i.e. m + 16 k.
  auto warp_thr_val = make_layout_like(composition(ThrVal{}, make_shape(_32{}, Int<kValues>{})));
  auto mk_to_thr_val = right_inverse(warp_thr_val).with_shape(make_shape(_16{}, Int<kAtomK>{}));
  // (thread, value) -> thread * kValues + order(value).
  auto thr_val_to_offset = make_layout(make_layout(_32{}, Int<kValues>{}), ValueOrder{});
  return composition(thr_val_to_offset, mk_to_thr_val);
}

// (n, k, l) -> element offset for the whole [N, K] weight: the atom tiled over N first, then K.
template <class Act>
auto make_weight_layout(int n, int k) {
  return cute::tile_to_shape(weight_atom<Act>(), cute::make_shape(n, k, 1));
}

template <class Act>
using WeightLayout = decltype(make_weight_layout<Act>(0, 0));

}  // namespace liquidgemm_cutlass_peer
