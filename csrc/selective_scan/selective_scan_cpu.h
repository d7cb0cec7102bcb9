// CPU selective scan: block geometry, workspace sizes and the per-dtype entry points.
//
// The kernels vectorise across channels, not states: a block is `lanes` channels of one batch
// element (8 for the baseline and AVX2 builds, 16 for AVX-512), every per-channel quantity is a
// vector over the lanes, and B_t / C_t (shared by the channels of a group) are broadcast. The
// recurrence over t stays sequential per lane, the N state recurrences are independent, and
// y_t = sum_n C_t[n] h_t[n] needs no horizontal sums.
#pragma once

#include <cstdint>

#include "selective_scan/selective_scan.h"
#include "common/cpu_isa.h"

namespace mvscan {
namespace cpu {

// The backward runs batch * n_parts work units; a unit walks a fixed range of channel blocks.
// Variable B/C gradients are summed over channels: each unit sums its blocks into its own partial
// buffer (see SelectiveScanBwdParams), so fewer, larger units mean fewer partials to add up. Aim
// for kUnitsPerThread units per thread, and at most kMaxBlocksPerUnit blocks in one unit (each
// keeps 4 * N * lanes values of state in the workspace). The part count depends on the thread
// count, so gradients of variable B/C are bit-identical run after run on one configuration, and
// equal to float rounding across thread counts.
constexpr int64_t kUnitsPerThread = 4;
constexpr int64_t kMaxBlocksPerUnit = 64;

struct BlockGeometry {
  int lanes = 8;
  int64_t cell_len = 0;         // a block never crosses a cell: one B group, one C group
  int64_t blocks_per_cell = 0;
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

inline BlockGeometry block_geometry(const SelectiveScanParams& p, int lanes) {
  BlockGeometry g;
  g.lanes = lanes;
  if (p.dim == 0) return g;
  int64_t cell = p.dim;
  if (p.B_is_variable) cell = gcd64(cell, p.dim / p.B_groups);
  if (p.C_is_variable) cell = gcd64(cell, p.dim / p.C_groups);
  g.cell_len = cell;
  g.blocks_per_cell = (cell + lanes - 1) / lanes;
  g.n_blocks = (p.dim / cell) * g.blocks_per_cell;
  return g;
}

// First channel and number of live lanes of block k.
inline void block_channels(const BlockGeometry& g, int64_t k, int64_t* d0, int* lanes) {
  const int64_t cell = k / g.blocks_per_cell;
  const int64_t off = (k % g.blocks_per_cell) * g.lanes;
  *d0 = cell * g.cell_len + off;
  const int64_t left = g.cell_len - off;
  *lanes = static_cast<int>(left < g.lanes ? left : g.lanes);
}

inline int64_t bwd_parts(const SelectiveScanParams& p, const BlockGeometry& g, int threads) {
  if (g.n_blocks == 0) return 1;
  if (!p.B_is_variable && !p.C_is_variable) return g.n_blocks;
  const int64_t batch = p.batch > 0 ? p.batch : 1;
  int64_t parts = (kUnitsPerThread * threads + batch - 1) / batch;
  const int64_t min_parts = (g.n_blocks + kMaxBlocksPerUnit - 1) / kMaxBlocksPerUnit;
  if (parts < min_parts) parts = min_parts;
  return parts < g.n_blocks ? parts : g.n_blocks;
}

inline int64_t max_blocks_per_part(const BlockGeometry& g, int64_t parts) {
  return (g.n_blocks + parts - 1) / parts;
}

// Workspace, in elements of the accumulation type, that one thread needs: for one forward
// block, or for one backward part of blocks_per_part blocks.
inline int64_t fwd_workspace_elems(int64_t dstate, int lanes) {
  const int64_t NW = dstate * lanes, TW = kStateChunkLen * lanes, TN = kStateChunkLen * dstate;
  return 6 * NW + 2 * lanes + 4 * TW + 2 * TN;
}
inline int64_t bwd_workspace_elems(int64_t dstate, int lanes, int64_t blocks_per_part) {
  const int64_t NW = dstate * lanes, TW = kStateChunkLen * lanes, TN = kStateChunkLen * dstate;
  const int64_t consts = 3 * NW + 2 * lanes, per_block = 4 * NW + 2 * lanes;
  return 4 * NW + 9 * TW + 2 * TN + 4 * kStateChunkLen * NW + blocks_per_part * per_block + consts;
}

// Instantiated per input dtype by selective_scan_cpu_instances.inl.
template <typename input_t>
void selective_scan_fwd_cpu(const SelectiveScanParams& params, CpuIsa isa);
template <typename input_t>
void selective_scan_bwd_cpu(const SelectiveScanBwdParams& params, CpuIsa isa);

}  // namespace cpu
}  // namespace mvscan
