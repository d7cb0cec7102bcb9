// Launch geometry and shared-memory layout of the CUDA selective-scan kernels
// (selective_scan_cuda_kernels.cuh). Plain C++: the host driver and the tests' CPU emulation of
// the kernels include it without the CUDA toolkit.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>

#include "selective_scan/selective_scan.h"
#include "common/math.h"  // MVSCAN_HOST_DEVICE

namespace mvscan {
namespace cuda {

// How rows (batch, channel) and states map onto blocks and threads. One thread owns one state of
// one row; a row takes lanes_per_row consecutive threads (a power of two >= N, at least 8), so a
// block of threads holds threads / lanes_per_row rows. A block's rows are consecutive channels of
// one batch inside one "cell": a run of channels that share one B group and one C group, so that
// a block's share of a variable B/C gradient is one partial slot (summed later, in fixed order).
struct ScanGeometry {
  int lanes_per_row = 8;   // R
  int slice_lanes = 8;       // lanes of one reduction slice: min(R, 32)
  int threads = 128;       // per block: max(128, R)
  int rows_per_block = 16; // threads / R
  int64_t cell = 1;        // channels per cell
  int64_t cells_per_batch = 1;
  int64_t blocks_per_cell = 1;
  int64_t n_blocks = 0;    // batch * cells_per_batch * blocks_per_cell
  // Partial slots per group of a variable B (resp. C) gradient: (dim / groups / cell) *
  // blocks_per_cell. The partials are laid out (batch, groups, parts, N, L).
  int64_t B_parts = 1, C_parts = 1;
  // Variable B/C tiles staged in shared memory (N <= 32); otherwise read from global memory.
  bool stage_B = false, stage_C = false;
  // Backward: a block's variable B/C gradient is summed over its rows in shared memory when a
  // block holds several rows; with one row per block (N > 64) threads write their slot directly.
  bool direct_bc_grads = false;
  size_t smem_bytes = 0;
};

// Steps staged in shared memory at a time: half a state chunk. Smaller tiles mean a smaller
// shared-memory footprint per block (the backward keeps every state of a tile), so more blocks
// fit on an SM; the backward re-derives the state entering the second tile of a chunk from the
// chunk's saved state.
constexpr int kTile = 32;
static_assert(kStateChunkLen % kTile == 0, "a state chunk must be a whole number of tiles");

// Offsets, in elements of the accumulation type, of a block's shared-memory buffers; a buffer the
// pass does not use has size 0. Per-row buffers hold one tile with a padded row stride
// (kSmemRowStride) so that the rows of one warp fall in different banks.
constexpr int kSmemRowStride = kTile + 1;

// Row stride, in elements, of a staged B/C tile [t][n]: N rounded up to an odd number, so that
// lanes storing consecutive steps of one state (B/C contiguous along L) hit distinct banks, as
// do lanes reading consecutive states of one step.
MVSCAN_HOST_DEVICE int bc_tile_stride(int64_t N) { return static_cast<int>(N | 1); }
struct ScanSmem {
  int64_t u = 0, dt = 0, g = 0, scale = 0, B = 0, C = 0, yp = 0, slice1 = 0, slice2 = 0, h = 0, dB = 0;
  int64_t dC = 0;
  int64_t total = 0;
};

MVSCAN_HOST_DEVICE ScanSmem scan_smem_layout(const SelectiveScanParams& p, const ScanGeometry& geo,
                                             bool backward) {
  const int64_t TC = kTile;
  const int64_t rows = geo.rows_per_block * kSmemRowStride;
  const int64_t slices = (geo.threads / geo.slice_lanes) * kSmemRowStride;
  // [warp][lane][t], row stride padded: lanes write one step each into rows kSmemRowStride
  // apart, and the flush reads consecutive steps of one row.
  const int64_t warp_grads = (geo.threads / 32) * geo.slice_lanes * kSmemRowStride;
  const int64_t bc_tile = TC * bc_tile_stride(p.dstate);
  // Consecutive buffers, each starting where the previous one ends.
  ScanSmem s;
  s.u = 0;                                                    // u
  s.dt = s.u + rows;                                          // delta after bias and softplus
  s.B = s.dt + rows;                                          // staged B tile, [t][n]
  s.C = s.B + (geo.stage_B ? bc_tile : 0);                    // staged C tile, [t][n]
  const int64_t after_bc = s.C + (geo.stage_C ? bc_tile : 0);
  int64_t end = after_bc;
  if (!backward) {
    s.yp = after_bc;  // forward: each thread's C h per step, [thread][t] (row stride padded)
    end = s.yp + geo.threads * kSmemRowStride;
  } else {
    s.slice1 = after_bc;                                        // per-slice sums: y, then du
    end = s.slice1 + slices;
    const bool reduce_bc = !geo.direct_bc_grads;
    s.g = end;                                                // dout, then dL/dy
    s.scale = s.g + rows;                                     // d softplus (1 without softplus)
    s.slice2 = s.scale + rows;                                  // per-slice sums of d delta
    s.h = s.slice2 + slices;                                      // recomputed states, [t][thread]
    s.dB = s.h + TC * geo.threads;                            // [warp][lane][t]
    s.dC = s.dB + (p.B_is_variable && reduce_bc ? warp_grads : 0);
    end = s.dC + (p.C_is_variable && reduce_bc ? warp_grads : 0);
  }
  s.total = end;
  return s;
}

// The geometry for the forward (backward = false) or the backward, with acc_size the size of
// the accumulation type (4 or 8).
inline ScanGeometry scan_geometry(const SelectiveScanParams& p, bool backward, size_t acc_size) {
  ScanGeometry g;
  int R = 8;
  while (R < p.dstate) R *= 2;
  g.lanes_per_row = R;
  g.slice_lanes = std::min(R, 32);
  g.threads = std::max(128, R);
  g.rows_per_block = g.threads / R;
  // Channels per cell: the longest run that stays inside one group of every variable B/C.
  int64_t cell = p.dim;
  if (p.B_is_variable) cell = std::gcd(cell, p.dim / p.B_groups);
  if (p.C_is_variable) cell = std::gcd(cell, p.dim / p.C_groups);
  g.cell = std::max<int64_t>(cell, 1);
  g.cells_per_batch = p.dim / g.cell;
  g.blocks_per_cell = (g.cell + g.rows_per_block - 1) / g.rows_per_block;
  g.n_blocks = p.batch * g.cells_per_batch * g.blocks_per_cell;
  g.B_parts = p.B_is_variable ? p.dim / p.B_groups / g.cell * g.blocks_per_cell : 1;
  g.C_parts = p.C_is_variable ? p.dim / p.C_groups / g.cell * g.blocks_per_cell : 1;
  g.stage_B = p.B_is_variable && p.dstate <= 32;
  g.stage_C = p.C_is_variable && p.dstate <= 32;
  g.direct_bc_grads = g.rows_per_block == 1;
  g.smem_bytes = static_cast<size_t>(scan_smem_layout(p, g, backward).total) * acc_size;
  return g;
}

}  // namespace cuda
}  // namespace mvscan

