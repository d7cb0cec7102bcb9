// The selective scan's parameter block, shared by the CPU and CUDA kernels.
//
// Every tensor is described by a raw pointer and its element strides, so kernels read
// non-contiguous views (transposes, slices) without a copy. Strides and sizes are 64-bit:
// buffers past 2^31 elements must index correctly (mamba_ssm's kernels index in 32 bits and fail there).
#pragma once

#include <cstdint>

#include "common/strides.h"

namespace mvscan {

// Forward states are saved every kStateChunkLen steps (the state at the last step of each chunk)
// so the backward can recompute the forward chunk by chunk instead of storing all of h.
// mvscan/ops.py mirrors this constant for the fake kernel.
constexpr int64_t kStateChunkLen = 64;
constexpr int64_t kMaxDState = 256;

inline int64_t n_state_chunks(int64_t seqlen) {
  return (seqlen + kStateChunkLen - 1) / kStateChunkLen;
}

// Strides of B or C seen as (batch, group, state, L). A constant (dim, N) matrix is described as
// dim groups with batch and length strides 0, so one indexing rule serves every kind.
struct BCStrides {
  int64_t batch = 0, group = 0, state = 0, len = 0;
};

struct SelectiveScanParams {
  int64_t batch = 0, dim = 0, seqlen = 0, dstate = 0;
  int64_t n_chunks = 0;
  // Groups of channels that share B (resp. C): channel d reads group d / (dim / groups).
  int64_t B_groups = 1, C_groups = 1;
  bool B_is_variable = false, C_is_variable = false;
  bool delta_softplus = false;

  // Inputs; D, z and delta_bias are nullptr when absent. A, D, delta_bias and constant B/C hold
  // the accumulation type (float, or double for float64 inputs); u, delta, z and variable B/C
  // hold the input type.
  const void* u = nullptr;
  const void* delta = nullptr;
  const void* A = nullptr;
  const void* B = nullptr;
  const void* C = nullptr;
  const void* D = nullptr;
  const void* z = nullptr;
  const void* delta_bias = nullptr;
  SeqStrides u_strides, delta_strides, z_strides;
  int64_t A_dim_stride = 0, A_state_stride = 0;
  BCStrides B_strides, C_strides;
  int64_t D_stride = 0, delta_bias_stride = 0;
  // h_0 (batch, dim, dstate) in the accumulation type, or nullptr for zeros.
  const void* h0 = nullptr;
  int64_t h0_batch_stride = 0, h0_dim_stride = 0, h0_state_stride = 0;

  // Forward outputs, contiguous: out (batch, dim, L) in the input type; states
  // (batch, dim, n_chunks, dstate) in the accumulation type.
  void* out = nullptr;
  void* states = nullptr;
};

// What the backward reads besides the forward's parameters, and what it writes.
struct SelectiveScanBwdParams {
  SelectiveScanParams fwd;  // inputs as in the forward; fwd.states holds the saved states (read)
  const void* dout = nullptr;
  SeqStrides dout_strides;
  const void* dstates = nullptr;  // (batch, dim, n_chunks, dstate), contiguous, or nullptr

  // Contiguous outputs in the input type: du, ddelta, dz (dz nullptr without z).
  void* du = nullptr;
  void* ddelta = nullptr;
  void* dz = nullptr;
  // dL/dh_0 (batch, dim, dstate), contiguous, in the accumulation type; nullptr without h_0.
  void* dh0 = nullptr;
  // Per-(batch, channel) partials in the accumulation type, summed over batch by the caller so
  // that the reduction order never depends on thread scheduling:
  //   dA_part (batch, dim, dstate), dD_part (batch, dim), ddelta_bias_part (batch, dim),
  //   dB_part / dC_part for constant B / C: (batch, dim, dstate).
  void* dA_part = nullptr;
  void* dD_part = nullptr;
  void* ddelta_bias_part = nullptr;
  // For variable B / C: (n_parts, batch, groups, L, dstate), zero-filled by the caller and
  // summed over parts; for constant B / C: (batch, dim, dstate) as above.
  void* dB_part = nullptr;
  void* dC_part = nullptr;
  // The backward runs one work unit per (batch, part); a part is a fixed range of channel
  // blocks, so each partial slot is written by one unit in one order: deterministic.
  int64_t n_parts = 1;
};

}  // namespace mvscan
