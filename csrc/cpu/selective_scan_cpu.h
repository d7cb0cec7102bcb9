// CPU selective scan: block geometry, workspace sizes and the per-dtype entry points.
//
// The kernel vectorises across channels, not states: a block is kLanes channels of one batch
// element, every per-channel quantity is a vector of kLanes values, and B_t / C_t (shared by the
// channels of a group) are broadcast. The recurrence over t stays sequential per lane, the
// dstate recurrences are independent, and y_t = sum_n C_t[n] h_t[n] needs no horizontal sums.
#pragma once

#include <cstdint>

#include "../selective_scan.h"

namespace mvscan {
namespace cpu {

constexpr int kLanes = 8;

// State and accumulation type: float for every input type but double.
template <typename input_t>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};
// Variable B/C gradients are summed over channels; the backward splits the channel blocks into
// at most this many fixed ranges, each with its own partial buffer (see SelectiveScanBwdParams).
constexpr int64_t kMaxBwdSplits = 16;

struct BlockGeometry {
  int64_t seg_len = 0;         // a block never crosses a segment: one B group, one C group
  int64_t blocks_per_seg = 0;
  int64_t n_blocks = 0;        // blocks per batch element
};

inline int64_t gcd64(int64_t a, int64_t b) {
  while (b != 0) {
    const int64_t r = a % b;
    a = b;
    b = r;
  }
  return a;
}

inline BlockGeometry block_geometry(const SelectiveScanParams& p) {
  BlockGeometry g;
  if (p.dim == 0) return g;
  int64_t seg = p.dim;
  if (p.B_is_variable) seg = gcd64(seg, p.dim / p.B_groups);
  if (p.C_is_variable) seg = gcd64(seg, p.dim / p.C_groups);
  g.seg_len = seg;
  g.blocks_per_seg = (seg + kLanes - 1) / kLanes;
  g.n_blocks = (p.dim / seg) * g.blocks_per_seg;
  return g;
}

// First channel and number of live lanes of block k.
inline void block_channels(const BlockGeometry& g, int64_t k, int64_t* d0, int* lanes) {
  const int64_t seg = k / g.blocks_per_seg;
  const int64_t off = (k % g.blocks_per_seg) * kLanes;
  *d0 = seg * g.seg_len + off;
  const int64_t left = g.seg_len - off;
  *lanes = static_cast<int>(left < kLanes ? left : kLanes);
}

inline int64_t bwd_splits(const SelectiveScanParams& p, const BlockGeometry& g) {
  if (!p.B_is_variable && !p.C_is_variable) return g.n_blocks;
  return g.n_blocks < kMaxBwdSplits ? g.n_blocks : kMaxBwdSplits;
}

// Workspace, in elements of the accumulation type, that one thread needs for one block.
inline int64_t fwd_workspace_elems(int64_t dstate) {
  const int64_t NW = dstate * kLanes, TW = kStateChunkLen * kLanes, TN = kStateChunkLen * dstate;
  return 6 * NW + 2 * kLanes + 4 * TW + 2 * TN;
}
inline int64_t bwd_workspace_elems(int64_t dstate) {
  const int64_t NW = dstate * kLanes, TW = kStateChunkLen * kLanes, TN = kStateChunkLen * dstate;
  return 11 * NW + 4 * kLanes + 9 * TW + 2 * TN + 2 * kStateChunkLen * NW;
}

// Explicitly instantiated per input type in selective_scan_cpu_{fp32,fp64,fp16,bf16}.cpp.
template <typename input_t>
void selective_scan_fwd_cpu(const SelectiveScanParams& params);
template <typename input_t>
void selective_scan_bwd_cpu(const SelectiveScanBwdParams& params);

}  // namespace cpu
}  // namespace mvscan
