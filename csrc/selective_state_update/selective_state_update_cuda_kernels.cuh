// CUDA kernel of the selective state update (one decode step): device code only. The launcher
// (selective_state_update_cuda_op.cu) includes it; so does the tests' CPU emulation
// (tests/cuda_emulation/), which runs this very code with one fiber per CUDA thread.
//
// Design. A decode step moves each state once in and once out and does a few FMAs per state, so
// it is bound by latency and memory, not math: one launch, no shared memory, no host sync (CUDA
// graph capturable). A row (batch, head, channel) takes R lanes, R = the power of two >= N, at
// most 32: each lane owns the states n = lane, lane + R, ... (at most kMaxStatesPerLane, held in
// registers so their loads are all in flight together), and consecutive lanes read consecutive
// states, so a row's state, A, B and C loads coalesce. The row's sum over states is a fixed
// shuffle butterfly inside its R lanes (deterministic, no atomics); a 128-thread block holds
// 128 / R rows (4 at Mamba-2's N = 128, 8 at Mamba-1's N = 16). x, dt, z, D and dt_bias are
// read by every lane of the row (one broadcast transaction). Offsets are 64-bit. The state index
// is resolved after every other load is issued (see the kernel). Rows of two batch elements that
// pick one state row race: the CPU op rejects such indices, here they are undefined behaviour.
// The exp is exp_acc (math.h's float exp), the same function the CPU kernel uses.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "common/dtypes.h"
#include "common/math.h"
#include "selective_scan/selective_scan.h"  // kMaxDState
#include "selective_state_update/selective_state_update.h"

namespace mvscan {
namespace cuda {

constexpr int kStateUpdateThreads = 128;  // a multiple of 32: every warp is full
constexpr int kMaxStatesPerLane = 8;      // kMaxDState (256) / 32 lanes
static_assert(kMaxStatesPerLane * 32 >= kMaxDState, "a row of 32 lanes must hold N states");

// Lanes per row: the power of two >= N, capped at a warp.
inline int state_update_lanes(int64_t N) {
  int r = 1;
  while (r < N && r < 32) r <<= 1;
  return r;
}

template <typename acc_t, typename input_t>
__device__ __forceinline__ acc_t load_param_as(const void* base, bool is_float32, int64_t i) {
  return is_float32 ? static_cast<acc_t>(static_cast<const float*>(base)[i])
                    : static_cast<acc_t>(static_cast<const input_t*>(base)[i]);
}

// Sum over the R lanes of a row (R a power of two <= 32, rows aligned to R), by a fixed
// butterfly: every lane of the row ends with the same sum, in the same order on every run.
template <typename T>
__device__ __forceinline__ T row_sum(T v, int lanes) {
  for (int o = lanes >> 1; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Grid-stride over groups of kStateUpdateThreads / lanes rows; the loop bound is the same for the
// whole block, so every lane reaches every shuffle (lanes past the last row add zeros).
//
// Latency: everything that depends on (batch, head, channel) alone (x, dt, dt_bias, z, D and the
// lane's A, B and C) is loaded, and dt's softplus, exp(dt A) and dt x B computed, without waiting
// for the row's state index: those loads are in flight together with the index's, and only the
// state's load (and store, and a padding row's zero) waits for it. One DRAM round trip before
// the state's, not two. A padding or out-of-range row loads its inputs for nothing (valid
// addresses: they depend on (batch, head, channel), not on the index).
template <typename input_t, typename state_t>
__global__ void __launch_bounds__(kStateUpdateThreads)
    selective_state_update_kernel(SelectiveStateUpdateParams p, int lanes) {
  using acc_t = typename AccType<input_t>::type;
  const int lane = static_cast<int>(threadIdx.x) & (lanes - 1);
  const int64_t rows_per_block = kStateUpdateThreads / lanes;
  const int64_t total = p.batch * p.heads * p.dim;
  const int64_t N = p.dstate;
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * rows_per_block; first < total;
       first += static_cast<int64_t>(gridDim.x) * rows_per_block) {
    const int64_t r = first + threadIdx.x / lanes;
    // What the row does: update its state, write a padding row's zero, or flag an index past
    // the state (NaN, as the kernel cannot raise); nothing for a lane past the last row.
    enum { kUpdate, kPadding, kBadIndex, kNone } what = r < total ? kUpdate : kNone;
    int64_t d = 0, head = 0, b = 0, s_row = 0;
    acc_t x_v = 0, D_v = 0, z_v = 0;
    // Per owned state i (n = lane + i * lanes < N): exp(dt A[n]), dt x B[n] and C[n].
    acc_t decay[kMaxStatesPerLane], dt_xb[kMaxStatesPerLane], c[kMaxStatesPerLane];
    if (what == kUpdate) {
      d = r % p.dim;
      const int64_t bh = r / p.dim;
      head = bh % p.heads;
      b = bh / p.heads;
      s_row = p.state_batch_indices != nullptr
                  ? static_cast<int64_t>(p.state_batch_indices[b * p.state_batch_indices_stride])
                  : b;
      acc_t dt_v = static_cast<acc_t>(static_cast<const input_t*>(p.dt)[
          b * p.dt_strides.batch + head * p.dt_strides.head + d * p.dt_strides.dim]);
      x_v = static_cast<acc_t>(static_cast<const input_t*>(p.x)[
          b * p.x_strides.batch + head * p.x_strides.head + d * p.x_strides.dim]);
      if (p.dt_bias != nullptr) {
        dt_v += load_param_as<acc_t, input_t>(
            p.dt_bias, p.dt_bias_is_float32,
            head * p.dt_bias_head_stride + d * p.dt_bias_dim_stride);
      }
      if (p.D != nullptr) {
        D_v = load_param_as<acc_t, input_t>(p.D, p.D_is_float32,
                                            head * p.D_head_stride + d * p.D_dim_stride);
      }
      if (p.z != nullptr) {
        z_v = static_cast<acc_t>(static_cast<const input_t*>(p.z)[
            b * p.z_strides.batch + head * p.z_strides.head + d * p.z_strides.dim]);
      }
      const int64_t a_off = head * p.A_head_stride + d * p.A_dim_stride;
      const input_t* Bp = static_cast<const input_t*>(p.B) + b * p.B_batch_stride +
                          head / p.B_heads_per_group * p.B_group_stride;
      const input_t* Cp = static_cast<const input_t*>(p.C) + b * p.C_batch_stride +
                          head / p.C_heads_per_group * p.C_group_stride;
      acc_t a[kMaxStatesPerLane], bn[kMaxStatesPerLane];
#pragma unroll
      for (int i = 0; i < kMaxStatesPerLane; ++i) {
        const int64_t n = lane + static_cast<int64_t>(i) * lanes;
        if (n < N) {
          a[i] = load_param_as<acc_t, input_t>(p.A, p.A_is_float32, a_off + n * p.A_dstate_stride);
          bn[i] = static_cast<acc_t>(Bp[n * p.B_dstate_stride]);
          c[i] = static_cast<acc_t>(Cp[n * p.C_dstate_stride]);
        }
      }
      if (p.dt_softplus) dt_v = softplus_acc(dt_v);
      const acc_t dt_x = dt_v * x_v;
#pragma unroll
      for (int i = 0; i < kMaxStatesPerLane; ++i) {
        const int64_t n = lane + static_cast<int64_t>(i) * lanes;
        if (n < N) {
          decay[i] = exp_acc(dt_v * a[i]);
          dt_xb[i] = dt_x * bn[i];
        }
      }
      what = s_row < 0 ? kPadding : (s_row >= p.state_rows ? kBadIndex : kUpdate);
    }
    acc_t partial = 0;
    if (what == kUpdate) {
      state_t* s = static_cast<state_t*>(p.state) + s_row * p.state_batch_stride +
                   head * p.state_head_stride + d * p.state_dim_stride;
      acc_t h[kMaxStatesPerLane];
#pragma unroll
      for (int i = 0; i < kMaxStatesPerLane; ++i) {
        const int64_t n = lane + static_cast<int64_t>(i) * lanes;
        if (n < N) h[i] = static_cast<acc_t>(s[n * p.state_dstate_stride]) * decay[i] + dt_xb[i];
      }
#pragma unroll
      for (int i = 0; i < kMaxStatesPerLane; ++i) {
        const int64_t n = lane + static_cast<int64_t>(i) * lanes;
        if (n < N) {
          partial += h[i] * c[i];
          // out reads h in the accumulation type; only the stored copy is rounded.
          s[n * p.state_dstate_stride] = static_cast<state_t>(h[i]);
        }
      }
    }
    acc_t y = row_sum(partial, lanes);
    if (lane == 0 && what != kNone) {
      input_t* out = static_cast<input_t*>(p.out) + b * p.out_strides.batch +
                     head * p.out_strides.head + d * p.out_strides.dim;
      if (what == kUpdate) {
        if (p.D != nullptr) y += D_v * x_v;
        if (p.z != nullptr) y *= z_v * sigmoid_acc(z_v);
        *out = static_cast<input_t>(y);
      } else {
        *out = static_cast<input_t>(what == kPadding ? acc_t(0) : acc_t(NAN));
      }
    }
  }
}

}  // namespace cuda
}  // namespace mvscan
