// SPDX-License-Identifier: Apache-2.0
// The packed LiquidQuant layout as the kernel sees it. Mirrors docs/architecture.md and
// python/liquidgemm/format.py: change all three together.
#pragma once

#include <cstdint>

namespace liquidgemm::format {

// Weights are stored in chunks of (64 rows) x (128 k): one chunk = one consumer warp group's A operand for one
// k-block, laid out so each of its 128 threads reads its 32 bytes with two 16-byte shared loads.
constexpr int kSliceRows = 64;                            // rows of one RS-WGMMA (M = 64)
constexpr int kBlockK = 128;                              // k per pipeline stage (4 WGMMA k-steps of 32)
constexpr int kChunkBytes = kSliceRows * kBlockK / 2;     // 4096: two nibbles per byte
constexpr int kHalfChunkBytes = kChunkBytes / 2;          // bytes of k-steps {0,1} or {2,3}
constexpr int kThreadBytesPerHalf = 16;                   // one 128-bit load per thread per half
// Group params: (s2, z) as two bytes per row, 64 rows per slice, contiguous per group.
constexpr int kParamBytesPerGroup = kSliceRows * 2;       // 128
constexpr int kMaxGroupsPerBlock = 2;                     // group size 64 puts two groups in one k-block

static_assert(kChunkBytes == 128 * 2 * kThreadBytesPerHalf, "128 threads x 2 halves x 16 bytes");
static_assert(kBlockK % 64 == 0, "group size 64 must not straddle k-blocks");

}  // namespace liquidgemm::format
