// SPDX-License-Identifier: Apache-2.0
// LiquidQuant dequantization of four packed weights in one 32-bit register: one IMAD + one XOR.
//
//   byte_i(q * s2 + z * 0x01010101) = q_i * s2 + z   (no carries: the quantizer guarantees q_i * s2 + z <= 255)
//   XOR 0x80 per byte                = (q_i * s2 + z) - 128 as int8 = the level-1 INT8 weight, exactly.
#pragma once

#include <cstdint>
#include "cutlass/cutlass.h"

namespace liquidgemm {

constexpr uint32_t kNibbleMask = 0x0F0F0F0Fu;
constexpr uint32_t kByteBroadcast = 0x01010101u;
constexpr uint32_t kSignFlip = 0x80808080u;

// Level-2 parameters of one (row, group), expanded once per group: `zz` is z in all four bytes.
struct GroupParams {
  uint32_t s2;
  uint32_t zz;
};

// `packed` is the 16-bit (s2, z) pair as stored: low byte s2, high byte z.
CUTLASS_HOST_DEVICE GroupParams expand_group_params(uint32_t packed) {
  return {packed & 0xFFu, (packed >> 8) * kByteBroadcast};
}

// Four nibbles already spread to bytes (0x0q0q0q0q) -> four exact INT8 weights.
CUTLASS_HOST_DEVICE uint32_t dequant_bytes(uint32_t nibbles, GroupParams p) {
  return (nibbles * p.s2 + p.zz) ^ kSignFlip;
}

// One packed word holds rows r (low nibbles) and r + 8 (high nibbles) at the same four k: two A registers.
CUTLASS_HOST_DEVICE void dequant_word(uint32_t word, GroupParams row_lo, GroupParams row_hi,
                                      uint32_t& a_lo, uint32_t& a_hi) {
  a_lo = dequant_bytes(word & kNibbleMask, row_lo);
  a_hi = dequant_bytes((word >> 4) & kNibbleMask, row_hi);
}

}  // namespace liquidgemm
