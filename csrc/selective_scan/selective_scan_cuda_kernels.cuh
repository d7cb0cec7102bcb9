// CUDA kernels of the selective scan, forward and backward: device code only. The launchers
// (selective_scan_cuda_instances.inl) include it; so does the tests' CPU emulation of these
// kernels (tests/cuda_emulation/), which runs this very code with one fiber per CUDA thread.
//
// Design. One thread owns one state n of one row (batch b, channel d) and walks the row's steps
// in order, so the recurrence h = exp(dt A) h + dt u B costs one exp and two FMAs per step and
// thread, with no parallel-scan overhead (mamba_ssm runs a block-wide scan per state). A row
// takes R = max(8, next power of two >= N) consecutive lanes, so a block of 128 threads holds
// 16 rows at N = 8. The forward keeps each thread's C h in shared memory and sums over states
// once per tile, off the recurrence's critical path.
//  - MambaVision's rows (L 49-1024, N 8, batch x dim = 10^4-10^5 rows): 16 rows per block gives
//    thousands of blocks of independent rows, where one block per row (mamba_ssm) leaves most
//    of an H100 idle for L < 128. A block's rows are consecutive channels of one batch sharing
//    one B group and one C group, so a variable B/C tile is staged once in shared memory for
//    all of them.
//  - Long rows (L 2048-65536, N 16): the same kernel walks the row tile after tile (kTile = 32
//    steps); the state stays in a register throughout and is saved at the end of every state
//    chunk (kStateChunkLen = 64 steps), which is all the backward needs. Parallelism is
//    batch x dim x N threads (2 x 10^5 for batch 8, dim 1536, N 16), enough to fill the GPU; a
//    row is never split across blocks, so a handful of very long rows (batch x dim x N below
//    ~5 x 10^4) would underuse it.
//  Each tile: the block loads u and delta (bias and softplus applied once per element, not per
//  state) into shared memory with coalesced reads along whichever of L or channels is
//  contiguous, the threads scan it, and the block writes out = (y + D u) silu(z) with coalesced
//  stores.
//  Backward, chunks in reverse and each chunk's tiles in reverse: rebuild the state entering the
//  tile from the chunk's saved state, recompute the tile's states into shared memory, form
//  dL/dy (through the gate), then run the adjoint lambda backwards. Sums over states (du,
//  d delta) are shuffle butterflies over the row's lanes; sums over the rows that share a
//  variable B/C group go through a fixed-order shuffle + shared-memory tree into one partial
//  slot per block, and the caller sums the slots with torch.sum. Every reduction has a fixed
//  order: gradients are bit-identical run to run, with no atomics. Shared memory per block at
//  N = 8, fp32: about 25 KiB forward, 38 KiB backward, so occupancy is set by registers (58
//  forward, 122 backward on sm_90), not shared memory.
//  Float exp is ex2.approx.ftz (exp2 with subnormal results flushed) on A pre-scaled by log2(e);
//  float64 (for tests) uses exp.
//
// Decision (issue 11, 2026-11-26): this design against mamba_ssm's (a block per row, each thread
// 4-16 consecutive steps with all N states in registers, vector loads, a block-wide scan over
// the threads). Measured on an H200 in one run, bf16, mamba_ssm time / ours: MambaVision-T
// stage 3 forward 0.92x, stage 4 1.71x (one block per 49-step row leaves mamba_ssm's threads
// idle), forward+backward 0.59x / 0.88x; the LM row (L 2048, N 16) 0.42x forward, 0.32x
// forward+backward. benchmarks/gpu_cost_model.py predicts every scan kernel issue-bound (H100:
// forward 12-18x the HBM floor, backward 28-53x; global load/store efficiency 0.75-0.83 at
// MambaVision's shapes, 1.0 on the LM row; shared conflicts <= 1.15-way): the cost is
// instructions per (state, step), not bytes. Where ours pays more: per step and state, u, delta,
// B and C come from shared memory (mamba_ssm: from registers, loaded once per thread and step
// for all N states), and the sum over states needs shared memory or shuffles (mamba_ssm: a
// register sum). Kept for MambaVision's short rows, where it measures at parity or better
// forward; long rows and the backward are where the consecutive-steps layout wins and where the
// next work goes (a long-row path with several steps per thread; fewer instructions per
// backward step).
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <type_traits>

#include "common/dtypes.h"
#include "common/math.h"
#include "selective_scan/selective_scan_cuda_geometry.h"

namespace mvscan {
namespace cuda {

constexpr int kMaxThreads = 256;  // threads = max(128, R) with R <= kMaxDState

__device__ __forceinline__ float exp_dA(float dt, float /*A*/, float A_log2) {
#ifdef __CUDA_ARCH__
  // exp2f without its rescaling of results below 2^-126 (a decay that small is 0 to the
  // recurrence): four instructions fewer on the per-step critical path.
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(dt * A_log2));
  return r;
#else
  return exp2f(dt * A_log2);
#endif
}
__device__ __forceinline__ double exp_dA(double dt, double A, double /*A_log2*/) {
  return exp(dt * A);
}

// Sum over the `width` lanes of a slice (a power of two <= 32), by a fixed butterfly (offsets
// width / 2 down to 1). Unrolled over every offset with a warp-uniform guard: the backward runs
// four of these sums per step, and a loop over a runtime width costs as much as the shuffles.
template <typename T>
__device__ __forceinline__ T slice_sum(T v, int width) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    if (o < width) v += __shfl_xor_sync(0xffffffffu, v, o);
  }
  return v;
}

// Sum over the rows of a warp of the lanes holding the same state (rows of R < 32 lanes):
// offsets R up to 16, unrolled like slice_sum.
template <typename T>
__device__ __forceinline__ T rows_in_warp_sum(T v, int lanes_per_row) {
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    if (o >= lanes_per_row) v += __shfl_xor_sync(0xffffffffu, v, o);
  }
  return v;
}

// The rows a block owns: channels d0 .. d0 + n_rows - 1 of batch b, inside one B and one C group.
struct BlockRows {
  int64_t b = 0, d0 = 0;
  int n_rows = 0;
  int64_t gB = 0, gC = 0;        // groups of a variable B / C
  int64_t partB = 0, partC = 0;  // this block's partial slot within its group
};

__device__ __forceinline__ void group_of(int64_t dim, int64_t groups, bool variable,
                                         const ScanGeometry& geo, int64_t cell,
                                         int64_t blk_in_cell, int64_t* g, int64_t* part) {
  if (!variable) return;
  const int64_t per_group = dim / groups;     // a multiple of geo.cell
  const int64_t first = cell * geo.cell;      // first channel of the cell
  *g = first / per_group;
  *part = (first % per_group) / geo.cell * geo.blocks_per_cell + blk_in_cell;
}

__device__ __forceinline__ BlockRows block_rows(const SelectiveScanParams& p,
                                                const ScanGeometry& geo, int64_t block) {
  BlockRows r;
  const int64_t blk_in_cell = block % geo.blocks_per_cell;
  const int64_t cell_flat = block / geo.blocks_per_cell;
  const int64_t cell = cell_flat % geo.cells_per_batch;
  r.b = cell_flat / geo.cells_per_batch;
  const int64_t first = blk_in_cell * geo.rows_per_block;
  r.d0 = cell * geo.cell + first;
  const int64_t left = geo.cell - first;
  r.n_rows = static_cast<int>(left < geo.rows_per_block ? left : geo.rows_per_block);
  group_of(p.dim, p.B_groups, p.B_is_variable, geo, cell, blk_in_cell, &r.gB, &r.partB);
  group_of(p.dim, p.C_groups, p.C_is_variable, geo, cell, blk_in_cell, &r.gC, &r.partC);
  return r;
}

// i = q T + rem for a walk over T steps at a time: a shift for a full tile (the common case),
// a division only for a sequence's last, partial tile.
__device__ __forceinline__ void split_steps(int i, int T, int* q, int* rem) {
  if (T == kTile) {
    *q = static_cast<int>(static_cast<unsigned>(i) / kTile);
  } else {
    *q = i / T;
  }
  *rem = i - *q * T;
}

// log2 of a power of two (rows per block), once per tile walk: the walks then shift.
__device__ __forceinline__ int log2_pow2(int v) {
  int s = 0;
  while ((1 << s) < v) ++s;
  return s;
}

// Element i of a (rows x T) tile walk, with the contiguous dimension fastest so global
// accesses coalesce: steps when the tensor is contiguous along L, rows (channels) otherwise.
// rows_log2 = log2(rows): rows per block is a power of two.
__device__ __forceinline__ void row_step(int i, int T, int rows_log2, bool len_fast, int* r,
                                         int* t) {
  if (len_fast) {
    split_steps(i, T, r, t);
  } else {
    *t = i >> rows_log2;
    *r = i - (*t << rows_log2);
  }
}

// Copies a (batch, dim, L) tensor's tile for the block's rows into dst[r][t] (row stride
// kSmemRowStride), as acc_t; rows past n_rows are zero-filled.
template <typename input_t, typename acc_t>
__device__ void load_rows(const void* base, const SeqStrides& s, const BlockRows& br, int rows,
                          int64_t t0, int T, acc_t* dst) {
  const input_t* x = static_cast<const input_t*>(base) + br.b * s.batch + br.d0 * s.dim +
                     t0 * s.len;
  const bool len_fast = s.len == 1;
  const int rows_log2 = log2_pow2(rows);
  for (int i = threadIdx.x; i < rows * T; i += blockDim.x) {
    int r, t;
    row_step(i, T, rows_log2, len_fast, &r, &t);
    acc_t v = 0;
    if (r < br.n_rows) v = static_cast<acc_t>(x[r * s.dim + t * s.len]);
    dst[r * kSmemRowStride + t] = v;
  }
}

// delta's tile after delta_bias and softplus into dt[r][t]; with `scale`, also the derivative
// of that map (sigmoid of its argument under softplus, else 1). Rows past n_rows get zeros.
template <typename input_t, typename acc_t>
__device__ void load_delta(const SelectiveScanParams& p, const BlockRows& br, int rows,
                           int64_t t0, int T, acc_t* dt, acc_t* scale) {
  const SeqStrides& s = p.delta_strides;
  const input_t* x = static_cast<const input_t*>(p.delta) + br.b * s.batch + br.d0 * s.dim +
                     t0 * s.len;
  const acc_t* bias = static_cast<const acc_t*>(p.delta_bias);
  const bool len_fast = s.len == 1;
  const int rows_log2 = log2_pow2(rows);
  for (int i = threadIdx.x; i < rows * T; i += blockDim.x) {
    int r, t;
    row_step(i, T, rows_log2, len_fast, &r, &t);
    acc_t v = 0, dv = 0;
    if (r < br.n_rows) {
      v = static_cast<acc_t>(x[r * s.dim + t * s.len]);
      if (bias != nullptr) v += bias[(br.d0 + r) * p.delta_bias_stride];
      dv = 1;
      if (p.delta_softplus) {
        dv = sigmoid_acc(v);
        v = softplus_acc(v);
      }
    }
    dt[r * kSmemRowStride + t] = v;
    if (scale != nullptr) scale[r * kSmemRowStride + t] = dv;
  }
}

// Copies a variable B/C tile of group g into dst[t][n] (row stride bc_tile_stride(N)). Lanes
// walk whichever of L and N is contiguous in memory, so the global reads coalesce: steps for
// B/C laid out (batch, groups, N, L), states for a transposed view such as MambaVision's
// x_proj output (state stride 1).
template <typename input_t, typename acc_t>
__device__ void stage_bc(const void* base, const BCStrides& s, int64_t b, int64_t g, int N,
                         int64_t t0, int T, acc_t* dst) {
  const input_t* x = static_cast<const input_t*>(base) + b * s.batch + g * s.group + t0 * s.len;
  const int stride = bc_tile_stride(N);
  if (s.state == 1 && s.len != 1) {
    for (int i = threadIdx.x; i < N * T; i += blockDim.x) {
      const int t = i / N, n = i - t * N;
      dst[t * stride + n] = static_cast<acc_t>(x[n + t * s.len]);
    }
    return;
  }
  for (int i = threadIdx.x; i < N * T; i += blockDim.x) {
    int n, t;
    split_steps(i, T, &n, &t);
    dst[t * stride + n] = static_cast<acc_t>(x[n * s.state + t * s.len]);
  }
}

// One thread's view of B (or C): its constant value, its staged tile, or its row in global
// memory. Inactive threads read 0.
template <typename input_t, typename acc_t>
struct BCReader {
  bool variable = false, staged = false, active = false;
  acc_t constant = 0;
  const acc_t* smem = nullptr;   // staged tile, [t][n], row stride bc_tile_stride(N)
  const input_t* row = nullptr;  // global B[b, g, n, :] when neither constant nor staged
  int64_t len_stride = 0;
  int N = 0, n = 0;

  __device__ acc_t at(int64_t t0, int t) const {
    if (!active) return acc_t(0);
    if (!variable) return constant;
    if (staged) return smem[t * bc_tile_stride(N) + n];
    return static_cast<acc_t>(row[(t0 + t) * len_stride]);
  }
};

template <typename input_t, typename acc_t>
__device__ BCReader<input_t, acc_t> make_bc_reader(const void* base, const BCStrides& s,
                                                  bool variable, bool staged, const acc_t* smem,
                                                  int64_t b, int64_t g, int64_t d, int n, int N,
                                                  bool active) {
  BCReader<input_t, acc_t> rd;
  rd.variable = variable;
  rd.staged = staged;
  rd.active = active;
  rd.smem = smem;
  rd.N = N;
  rd.n = n;
  rd.len_stride = s.len;
  if (!active) return rd;
  if (!variable) {
    // A constant (dim, N) matrix: groups are channels, in the accumulation type.
    rd.constant = static_cast<const acc_t*>(base)[d * s.group + n * s.state];
  } else if (!staged) {
    rd.row = static_cast<const input_t*>(base) + b * s.batch + g * s.group + n * s.state;
  }
  return rd;
}

// B (or C) at step t of the tile. kStaged: both B and C are staged tiles (variable, N <= 32:
// MambaVision's and Mamba's case), read straight from the block's shared array `tile` at column
// n (0 for an inactive thread, which then uses 0), without BCReader's per-step mode branches;
// passing the kernel's own shared-array pointer keeps the read a shared-memory load.
template <bool kStaged, typename Reader, typename acc_t>
__device__ __forceinline__ acc_t bc_at(const Reader& rd, const acc_t* tile, int stride, int n,
                                       int64_t t0, int t) {
  if constexpr (kStaged) {
    const acc_t v = tile[t * stride + n];
    return rd.active ? v : acc_t(0);
  } else {
    return rd.at(t0, t);
  }
}

using StagedBC = std::true_type;
using GenericBC = std::false_type;

// Per-thread coordinates shared by both kernels.
struct ThreadSlot {
  int tid, row, n, slice, slice_lane, slices_per_row;
  bool active;  // owns a real (row, state)
  int64_t d;    // channel (meaningful when row < n_rows)
};

__device__ __forceinline__ ThreadSlot thread_slot(const SelectiveScanParams& p,
                                                  const ScanGeometry& geo, const BlockRows& br) {
  ThreadSlot s;
  s.tid = threadIdx.x;
  s.row = s.tid / geo.lanes_per_row;
  s.n = s.tid % geo.lanes_per_row;
  s.slice = s.tid / geo.slice_lanes;
  s.slice_lane = s.tid % geo.slice_lanes;
  s.slices_per_row = geo.lanes_per_row / geo.slice_lanes;
  s.active = s.row < br.n_rows && s.n < p.dstate;
  s.d = br.d0 + s.row;
  return s;
}

// What one thread needs for its (row, state) throughout a kernel.
template <typename input_t>
struct ScanThread {
  using acc_t = typename AccType<input_t>::type;
  BlockRows br;
  ThreadSlot ts;
  acc_t A = 0, A_log2 = 0;  // A[d, n], and A[d, n] log2(e) for exp2
  acc_t h0 = 0;             // h_0[b, d, n], or 0 without an initial state
  BCReader<input_t, acc_t> B, C;

  // exp(dt A[d, n])
  __device__ acc_t decay(acc_t dt) const { return exp_dA(dt, A, A_log2); }
};

template <typename input_t, typename acc_t>
__device__ ScanThread<input_t> scan_thread(const SelectiveScanParams& p, const ScanGeometry& geo,
                                           const acc_t* s_B, const acc_t* s_C) {
  ScanThread<input_t> st;
  st.br = block_rows(p, geo, blockIdx.x);
  st.ts = thread_slot(p, geo, st.br);
  const BlockRows& br = st.br;
  const ThreadSlot& ts = st.ts;
  const int N = static_cast<int>(p.dstate);
  if (ts.active) {
    st.A = static_cast<const acc_t*>(p.A)[ts.d * p.A_dim_stride + ts.n * p.A_state_stride];
    if (p.h0 != nullptr) {
      st.h0 = static_cast<const acc_t*>(p.h0)[br.b * p.h0_batch_stride + ts.d * p.h0_dim_stride +
                                              ts.n * p.h0_state_stride];
    }
  }
  st.A_log2 = st.A * static_cast<acc_t>(1.4426950408889634);
  st.B = make_bc_reader<input_t>(p.B, p.B_strides, p.B_is_variable, geo.stage_B, s_B, br.b,
                                 br.gB, ts.d, ts.n, N, ts.active);
  st.C = make_bc_reader<input_t>(p.C, p.C_strides, p.C_is_variable, geo.stage_C, s_C, br.b,
                                 br.gC, ts.d, ts.n, N, ts.active);
  return st;
}

// Sum of a row's per-slice partials at step t.
template <typename acc_t>
__device__ __forceinline__ acc_t row_total(const acc_t* slice_buf, int r, int slices_per_row, int t) {
  acc_t v = 0;
  for (int s = 0; s < slices_per_row; ++s) v += slice_buf[(r * slices_per_row + s) * kSmemRowStride + t];
  return v;
}

template <typename input_t>
__global__ void __launch_bounds__(kMaxThreads)
    selective_scan_fwd_kernel(const SelectiveScanParams p, const ScanGeometry geo) {
  using acc_t = typename AccType<input_t>::type;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  acc_t* smem = reinterpret_cast<acc_t*>(smem_raw);
  const ScanSmem lay = scan_smem_layout(p, geo, false);
  acc_t* s_u = smem + lay.u;
  acc_t* s_dt = smem + lay.dt;
  acc_t* s_B = smem + lay.B;
  acc_t* s_C = smem + lay.C;
  acc_t* s_yp = smem + lay.yp;  // [thread][t]: C h of the thread's state

  const ScanThread<input_t> st = scan_thread<input_t>(p, geo, s_B, s_C);
  const BlockRows& br = st.br;
  const ThreadSlot& ts = st.ts;
  const int N = static_cast<int>(p.dstate);
  const int64_t L = p.seqlen;
  const auto Brd = st.B;
  const auto Crd = st.C;
  const acc_t* my_u = s_u + ts.row * kSmemRowStride;
  const acc_t* my_dt = s_dt + ts.row * kSmemRowStride;
  acc_t* states = static_cast<acc_t*>(p.states);
  input_t* out = static_cast<input_t*>(p.out);
  const acc_t* D = static_cast<const acc_t*>(p.D);
  const input_t* z = static_cast<const input_t*>(p.z);

  const bool staged_bc = geo.stage_B && geo.stage_C;
  const int bcs = bc_tile_stride(N);
  const int n_bc = ts.active ? ts.n : 0;  // an inactive thread reads a valid slot, uses 0
  acc_t h = st.h0;
  for (int64_t t0 = 0; t0 < L; t0 += kTile) {
    const int T = static_cast<int>(L - t0 < kTile ? L - t0 : kTile);
    __syncthreads();  // the previous tile's readers are done with shared memory
    load_rows<input_t>(p.u, p.u_strides, br, geo.rows_per_block, t0, T, s_u);
    load_delta<input_t>(p, br, geo.rows_per_block, t0, T, s_dt, static_cast<acc_t*>(nullptr));
    if (geo.stage_B) stage_bc<input_t>(p.B, p.B_strides, br.b, br.gB, N, t0, T, s_B);
    if (geo.stage_C) stage_bc<input_t>(p.C, p.C_strides, br.b, br.gC, N, t0, T, s_C);
    __syncthreads();

    auto scan_steps = [&](auto staged) {
      constexpr bool kStaged = decltype(staged)::value;
      for (int t = 0; t < T; ++t) {
        const acc_t dt = my_dt[t];
        const acc_t a = st.decay(dt);
        h = a * h + dt * my_u[t] * bc_at<kStaged>(Brd, s_B, bcs, n_bc, t0, t);
        // Summed over states after the tile: a per-step shuffle tree would sit on the critical
        // path.
        s_yp[ts.tid * kSmemRowStride + t] = bc_at<kStaged>(Crd, s_C, bcs, n_bc, t0, t) * h;
      }
    };
    if (staged_bc) {
      scan_steps(StagedBC{});
    } else {
      scan_steps(GenericBC{});
    }
    const int64_t t_end = t0 + T;  // the state after step t_end - 1 ends a chunk: save it
    if (ts.active && (t_end % kStateChunkLen == 0 || t_end == L)) {
      const int64_t c = (t_end - 1) / kStateChunkLen;
      states[((br.b * p.dim + ts.d) * p.n_chunks + c) * N + ts.n] = h;
    }
    __syncthreads();

    for (int i = ts.tid; i < br.n_rows * T; i += blockDim.x) {
      int r, t;
      split_steps(i, T, &r, &t);
      const int64_t d = br.d0 + r;
      acc_t y = 0;
      const acc_t* yp = s_yp + r * geo.lanes_per_row * kSmemRowStride + t;
#pragma unroll 1  // unrolled, ptxas (CUDA 13.0, sm_90) spills registers here
      for (int n = 0; n < N; ++n) y += yp[n * kSmemRowStride];
      if (D != nullptr) y += D[d * p.D_stride] * s_u[r * kSmemRowStride + t];
      if (z != nullptr) {
        const acc_t zz = static_cast<acc_t>(
            z[br.b * p.z_strides.batch + d * p.z_strides.dim + (t0 + t) * p.z_strides.len]);
        y *= zz * sigmoid_acc(zz);
      }
      out[(br.b * p.dim + d) * L + t0 + t] = static_cast<input_t>(y);
    }
  }
}

// Writes a block's variable B/C gradient tile, summed over its rows in a fixed order, into its
// partial slot of a (batch, groups, parts, N, L) buffer. warp_sums[w][lane][t] (lane < min(R,
// 32), row stride kSmemRowStride) holds warp w's sum over its rows (R <= 32: lane n holds state
// n) or its part of one row (R > 32: warp r * R / 32 + n / 32 holds state n of row r in lane
// n % 32). Lanes take consecutive steps: conflict-free reads, coalesced stores.
template <typename acc_t>
__device__ void flush_bc_grad(const acc_t* warp_sums, const ScanGeometry& geo, int N, int64_t L,
                              int64_t b, int64_t groups, int64_t g, int64_t parts, int64_t part,
                              int64_t t0, int T, acc_t* dst) {
  const int R = geo.lanes_per_row;
  acc_t* slot = dst + ((b * groups + g) * parts + part) * N * L + t0;
  for (int i = threadIdx.x; i < N * T; i += blockDim.x) {
    int n, t;
    split_steps(i, T, &n, &t);
    acc_t v = 0;
    if (R <= 32) {
      for (int w = 0; w < geo.threads / 32; ++w) v += warp_sums[(w * R + n) * kSmemRowStride + t];
    } else {
      for (int r = 0; r < geo.rows_per_block; ++r) {
        const int w = r * (R / 32) + n / 32;
        v += warp_sums[(w * 32 + n % 32) * kSmemRowStride + t];
      }
    }
    slot[n * L + t] = v;
  }
}

// One step's contribution to a variable B/C gradient: summed over the warp's rows into shared
// memory (see flush_bc_grad), or written straight to the block's slot when the block holds a
// single row.
template <typename acc_t>
__device__ __forceinline__ void put_bc_grad(acc_t v, const ScanGeometry& geo, const ThreadSlot& ts,
                                            int t, acc_t* warp_sums, acc_t* direct_slot,
                                            int64_t L, int64_t t0) {
  if (geo.direct_bc_grads) {
    if (ts.active) direct_slot[ts.n * L + t0 + t] = v;
    return;
  }
  v = rows_in_warp_sum(v, geo.lanes_per_row);
  const int lane = ts.tid % 32;
  if (lane < geo.lanes_per_row) {
    warp_sums[((ts.tid / 32) * geo.slice_lanes + lane) * kSmemRowStride + t] = v;
  }
}

template <typename input_t>
__global__ void __launch_bounds__(kMaxThreads)
    selective_scan_bwd_kernel(const SelectiveScanBwdParams bp, const ScanGeometry geo) {
  using acc_t = typename AccType<input_t>::type;
  const SelectiveScanParams& p = bp.fwd;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  acc_t* smem = reinterpret_cast<acc_t*>(smem_raw);
  const ScanSmem lay = scan_smem_layout(p, geo, true);
  acc_t* s_u = smem + lay.u;
  acc_t* s_dt = smem + lay.dt;
  acc_t* s_g = smem + lay.g;
  acc_t* s_scale = smem + lay.scale;
  acc_t* s_B = smem + lay.B;
  acc_t* s_C = smem + lay.C;
  acc_t* s_slice1 = smem + lay.slice1;  // y (forward recompute), then du
  acc_t* s_slice2 = smem + lay.slice2;  // d delta
  acc_t* s_h = smem + lay.h;
  acc_t* s_dB = smem + lay.dB;
  acc_t* s_dC = smem + lay.dC;

  const ScanThread<input_t> st = scan_thread<input_t>(p, geo, s_B, s_C);
  const BlockRows& br = st.br;
  const ThreadSlot& ts = st.ts;
  const int N = static_cast<int>(p.dstate);
  const int64_t L = p.seqlen;
  const int threads = blockDim.x;
  const auto Brd = st.B;
  const auto Crd = st.C;
  const acc_t* my_u = s_u + ts.row * kSmemRowStride;
  const acc_t* my_dt = s_dt + ts.row * kSmemRowStride;
  const acc_t* my_g = s_g + ts.row * kSmemRowStride;
  const acc_t* my_scale = s_scale + ts.row * kSmemRowStride;
  const acc_t* D = static_cast<const acc_t*>(p.D);
  const input_t* z = static_cast<const input_t*>(p.z);
  const acc_t* states = static_cast<const acc_t*>(p.states);
  const acc_t* dstates = static_cast<const acc_t*>(bp.dstates);
  const int64_t state_row = ((br.b * p.dim + ts.d) * p.n_chunks) * N + ts.n;  // + chunk * N
  input_t* du = static_cast<input_t*>(bp.du);
  input_t* ddelta = static_cast<input_t*>(bp.ddelta);
  input_t* dz = static_cast<input_t*>(bp.dz);
  acc_t* dB_slot = p.B_is_variable ? static_cast<acc_t*>(bp.dB_part) +
                                         ((br.b * p.B_groups + br.gB) * geo.B_parts + br.partB) *
                                             N * L
                                   : nullptr;
  acc_t* dC_slot = p.C_is_variable ? static_cast<acc_t*>(bp.dC_part) +
                                         ((br.b * p.C_groups + br.gC) * geo.C_parts + br.partC) *
                                             N * L
                                   : nullptr;

  const bool staged_bc = geo.stage_B && geo.stage_C;
  const int bcs = bc_tile_stride(N);
  const int n_bc = ts.active ? ts.n : 0;  // an inactive thread reads a valid slot, uses 0
  acc_t lam_carry = 0;  // exp(dt_{t+1} A) lambda_{t+1} from the step after the current one
  acc_t dA_acc = 0, dB_acc = 0, dC_acc = 0, dD_acc = 0, dbias_acc = 0;
  for (int64_t c = p.n_chunks - 1; c >= 0; --c) {
    const int64_t c0 = c * kStateChunkLen;
    const int64_t c_len = L - c0 < kStateChunkLen ? L - c0 : kStateChunkLen;
    const int n_tiles = static_cast<int>((c_len + kTile - 1) / kTile);
    // The state entering the chunk: the previous chunk's saved state, or h_0.
    acc_t h_chunk = c == 0 ? st.h0 : acc_t(0);
    if (ts.active) {
      if (c > 0) h_chunk = states[state_row + (c - 1) * N];
      // states[c] is h at the chunk's last step: its gradient joins lambda there.
      if (dstates != nullptr) lam_carry += dstates[state_row + c * N];
    }
    for (int k = n_tiles - 1; k >= 0; --k) {
      const int64_t t0 = c0 + static_cast<int64_t>(k) * kTile;
      const int T = static_cast<int>(c_len - k * kTile < kTile ? c_len - k * kTile : kTile);
      // The state entering tile k: run the recurrence from the chunk's start over tiles 0..k-1
      // (all full tiles).
      acc_t h_start = h_chunk;
      for (int j = 0; j < k; ++j) {
        const int64_t a0 = c0 + static_cast<int64_t>(j) * kTile;
        __syncthreads();
        load_rows<input_t>(p.u, p.u_strides, br, geo.rows_per_block, a0, kTile, s_u);
        load_delta<input_t>(p, br, geo.rows_per_block, a0, kTile, s_dt,
                            static_cast<acc_t*>(nullptr));
        if (geo.stage_B) stage_bc<input_t>(p.B, p.B_strides, br.b, br.gB, N, a0, kTile, s_B);
        __syncthreads();
        auto rerun = [&](auto staged) {
          constexpr bool kStaged = decltype(staged)::value;
          for (int t = 0; t < kTile; ++t) {
            const acc_t dt = my_dt[t];
            h_start = st.decay(dt) * h_start +
                      dt * my_u[t] * bc_at<kStaged>(Brd, s_B, bcs, n_bc, a0, t);
          }
        };
        if (staged_bc) {
          rerun(StagedBC{});
        } else {
          rerun(GenericBC{});
        }
      }
      __syncthreads();  // the previous tile's readers are done with shared memory
      load_rows<input_t>(p.u, p.u_strides, br, geo.rows_per_block, t0, T, s_u);
      load_delta<input_t>(p, br, geo.rows_per_block, t0, T, s_dt, s_scale);
      load_rows<input_t>(bp.dout, bp.dout_strides, br, geo.rows_per_block, t0, T, s_g);
      if (geo.stage_B) stage_bc<input_t>(p.B, p.B_strides, br.b, br.gB, N, t0, T, s_B);
      if (geo.stage_C) stage_bc<input_t>(p.C, p.C_strides, br.b, br.gC, N, t0, T, s_C);
      __syncthreads();

      // Forward recomputation of the tile's states (and of y, when the gate needs it).
      auto recompute = [&](auto staged) {
        constexpr bool kStaged = decltype(staged)::value;
        acc_t h = h_start;
        for (int t = 0; t < T; ++t) {
          const acc_t dt = my_dt[t];
          h = st.decay(dt) * h + dt * my_u[t] * bc_at<kStaged>(Brd, s_B, bcs, n_bc, t0, t);
          s_h[t * threads + ts.tid] = h;
          if (z != nullptr) {
            const acc_t y =
                slice_sum(bc_at<kStaged>(Crd, s_C, bcs, n_bc, t0, t) * h, geo.slice_lanes);
            if (ts.slice_lane == 0) s_slice1[ts.slice * kSmemRowStride + t] = y;
          }
        }
      };
      if (staged_bc) {
        recompute(StagedBC{});
      } else {
        recompute(GenericBC{});
      }
      if (z != nullptr) {
        __syncthreads();
        // dz = dout y silu'(z); the scan then sees dL/dy = dout silu(z).
        for (int i = ts.tid; i < br.n_rows * T; i += threads) {
          int r, t;
          split_steps(i, T, &r, &t);
          const int64_t d = br.d0 + r;
          acc_t y = row_total(s_slice1, r, ts.slices_per_row, t);
          if (D != nullptr) y += D[d * p.D_stride] * s_u[r * kSmemRowStride + t];
          const acc_t zz = static_cast<acc_t>(
              z[br.b * p.z_strides.batch + d * p.z_strides.dim + (t0 + t) * p.z_strides.len]);
          const acc_t sig = sigmoid_acc(zz);
          const acc_t g = s_g[r * kSmemRowStride + t];
          dz[(br.b * p.dim + d) * L + t0 + t] =
              static_cast<input_t>(g * y * sig * (acc_t(1) + zz * (acc_t(1) - sig)));
          s_g[r * kSmemRowStride + t] = g * zz * sig;
        }
      }
      __syncthreads();

      // The adjoint, backwards through the tile.
      auto adjoint = [&](auto staged) {
        constexpr bool kStaged = decltype(staged)::value;
        for (int t = T - 1; t >= 0; --t) {
          const acc_t g = my_g[t], dt = my_dt[t], uu = my_u[t];
          const acc_t Bv = bc_at<kStaged>(Brd, s_B, bcs, n_bc, t0, t);
          const acc_t h_t = s_h[t * threads + ts.tid];
          const acc_t h_prev = t > 0 ? s_h[(t - 1) * threads + ts.tid] : h_start;
          const acc_t a = st.decay(dt);
          const acc_t lam = g * bc_at<kStaged>(Crd, s_C, bcs, n_bc, t0, t) + lam_carry;
          lam_carry = a * lam;
          const acc_t ah = a * h_prev;  // = h_t - dt B u, without the cancellation
          const acc_t lam_dt = lam * dt;
          dA_acc += lam_dt * ah;
          const acc_t du_sum = slice_sum(lam_dt * Bv, geo.slice_lanes);
          const acc_t dd_sum = slice_sum(lam * (st.A * ah + Bv * uu), geo.slice_lanes);
          if (ts.slice_lane == 0) {
            s_slice1[ts.slice * kSmemRowStride + t] = du_sum;
            s_slice2[ts.slice * kSmemRowStride + t] = dd_sum;
            dbias_acc += dd_sum * my_scale[t];
          }
          if (ts.n == 0) dD_acc += g * uu;
          const acc_t dB_t = lam_dt * uu, dC_t = g * h_t;
          if (p.B_is_variable) {
            put_bc_grad(dB_t, geo, ts, t, s_dB, dB_slot, L, t0);
          } else {
            dB_acc += dB_t;
          }
          if (p.C_is_variable) {
            put_bc_grad(dC_t, geo, ts, t, s_dC, dC_slot, L, t0);
          } else {
            dC_acc += dC_t;
          }
        }
      };
      if (staged_bc) {
        adjoint(StagedBC{});
      } else {
        adjoint(GenericBC{});
      }
      __syncthreads();

      for (int i = ts.tid; i < br.n_rows * T; i += threads) {
        int r, t;
        split_steps(i, T, &r, &t);
        const int64_t d = br.d0 + r;
        acc_t dui = row_total(s_slice1, r, ts.slices_per_row, t);
        if (D != nullptr) dui += s_g[r * kSmemRowStride + t] * D[d * p.D_stride];
        const acc_t ddi =
            row_total(s_slice2, r, ts.slices_per_row, t) * s_scale[r * kSmemRowStride + t];
        const int64_t o = (br.b * p.dim + d) * L + t0 + t;
        du[o] = static_cast<input_t>(dui);
        ddelta[o] = static_cast<input_t>(ddi);
      }
      if (p.B_is_variable && !geo.direct_bc_grads) {
        flush_bc_grad(s_dB, geo, N, L, br.b, p.B_groups, br.gB, geo.B_parts, br.partB, t0, T,
                      static_cast<acc_t*>(bp.dB_part));
      }
      if (p.C_is_variable && !geo.direct_bc_grads) {
        flush_bc_grad(s_dC, geo, N, L, br.b, p.C_groups, br.gC, geo.C_parts, br.partC, t0, T,
                      static_cast<acc_t*>(bp.dC_part));
      }
    }
  }
  const int64_t row_out = br.b * p.dim + ts.d;
  if (ts.active) {
    static_cast<acc_t*>(bp.dA_part)[row_out * N + ts.n] = dA_acc;
    if (!p.B_is_variable) static_cast<acc_t*>(bp.dB_part)[row_out * N + ts.n] = dB_acc;
    if (!p.C_is_variable) static_cast<acc_t*>(bp.dC_part)[row_out * N + ts.n] = dC_acc;
    // lam_carry is now exp(dt_0 A) lambda_0 = dL/dh_0.
    if (bp.dh0 != nullptr) static_cast<acc_t*>(bp.dh0)[row_out * N + ts.n] = lam_carry;
  }
  // Per-row sums: dD from lane 0; delta_bias over the row's slices, in slice order.
  __syncthreads();
  if (ts.slice_lane == 0) s_slice2[ts.slice] = dbias_acc;
  __syncthreads();
  if (ts.row < br.n_rows && ts.n == 0) {
    static_cast<acc_t*>(bp.dD_part)[row_out] = dD_acc;
    acc_t sum = 0;
    for (int s = 0; s < ts.slices_per_row; ++s) sum += s_slice2[ts.row * ts.slices_per_row + s];
    static_cast<acc_t*>(bp.ddelta_bias_part)[row_out] = sum;
  }
}

}  // namespace cuda
}  // namespace mvscan
