// The causal conv1d update's parameter block, shared by the CPU and CUDA kernels: L new steps of
// a causal depthwise conv whose last inputs live in a per-row conv state, updated in place
// (causal-conv1d 1.7's causal_conv1d_update). Per row (batch b, channel c), with K taps and a
// state of S >= K - 1 steps:
//
//   window = the K - 1 steps before x (from the state) followed by x[0 .. L)
//   out[t] = act(bias[c] + sum_k weight[c, k] window[t + k]),   t in [0, L)
//
// Linear state (no cache_seqlens): the state holds the last S inputs, oldest first; the K - 1
// steps before x are its last K - 1, and it becomes the last S steps of (state, x).
// Circular state (cache_seqlens): with p = cache_seqlens[b] mod S, the K - 1 steps before x are
// state[(p - K + 1 + j) mod S], j = 0 .. K - 2, and x[t] is then written to state[(p + t) mod S]
// in order of t (so with L > S the last S steps remain). Reads happen before writes.
#pragma once

#include <cstdint>

#include "common/math.h"
#include "common/strides.h"
#include "depthwise_conv1d/depthwise_conv1d.h"  // kMaxConvWidth, the K limit of both convs

namespace mvscan {

struct CausalConv1dUpdateParams {
  int64_t batch = 0, dim = 0, seqlen = 0, width = 0;
  int64_t state_len = 0;   // S = conv_state.shape[2]
  int64_t state_rows = 0;  // conv_state.shape[0]: the rows conv_state_indices may pick
  bool silu = false;
  // weight and bias hold float32 or x's dtype; x, conv_state and out hold x's dtype.
  bool weight_is_float32 = false, bias_is_float32 = false;

  const void* x = nullptr;  // (batch, dim, L); a 2-d x is seen with L = 1
  SeqStrides x_strides;
  void* conv_state = nullptr;  // (state_rows, dim, S), updated in place
  SeqStrides state_strides;
  const void* weight = nullptr;  // (dim, K)
  int64_t weight_dim_stride = 0, weight_tap_stride = 0;
  const void* bias = nullptr;  // (dim,) or nullptr
  int64_t bias_stride = 0;
  // (batch,) int32 or nullptr: each batch element's position in its circular state.
  const int32_t* cache_seqlens = nullptr;
  int64_t cache_seqlens_stride = 0;
  // (batch,) int32 or nullptr: each batch element's state row; negative = padding (out 0,
  // state untouched). An index >= state_rows never reaches memory: the CPU op rejects it, the
  // CUDA kernel (which cannot raise without a host sync) writes NaN to the row's out instead.
  // Two batch elements picking one row would race: the CPU op rejects duplicate non-negative
  // indices; on CUDA (no host sync) they are undefined behaviour.
  const int32_t* conv_state_indices = nullptr;
  int64_t conv_state_indices_stride = 0;

  void* out = nullptr;  // x's shape and dtype, contiguous
  SeqStrides out_strides;
};

// a mod S in [0, S) for any sign of a (Python's %, which causal-conv1d's reference uses).
MVSCAN_HOST_DEVICE int64_t floor_mod(int64_t a, int64_t S) {
  const int64_t m = a % S;
  return m < 0 ? m + S : m;
}

}  // namespace mvscan
