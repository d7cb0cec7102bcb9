// The depthwise conv1d's parameter block, shared by the CPU and CUDA kernels.
//
//   out[b, c, t] = act(bias[c] + sum_k weight[c, k] * x[b, c, t + k - pad_left])
//
// with x read as zero outside [0, L); pad_left = (K - 1) / 2 for 'same' (as F.conv1d pads),
// K - 1 for 'causal'; the output has x's length. Raw pointers, 64-bit strides.
//
// causal_conv1d_fn's options: initial states supply x before step 0 instead of zeros, and
// sequence ids (several sequences packed in one row) mask every tap that would cross from one
// sequence into another; an output whose id is negative (padding) is 0.
#pragma once

#include <cstdint>

#include "common/strides.h"

namespace mvscan {

constexpr int64_t kMaxConvWidth = 32;

struct DepthwiseConv1dParams {
  int64_t batch = 0, channels = 0, seqlen = 0, width = 0, pad_left = 0;
  bool silu = false;
  // weight and bias hold float32 or x's dtype (float32 weights under autocast).
  bool weight_is_float32 = false, bias_is_float32 = false;

  const void* x = nullptr;
  SeqStrides x_strides;
  const void* weight = nullptr;  // (channels, K)
  int64_t weight_channel_stride = 0, weight_tap_stride = 0;
  const void* bias = nullptr;  // (channels,) or nullptr
  int64_t bias_stride = 0;

  // (batch, L) int32 sequence ids, or nullptr. Steps before 0 carry step 0's id when there are
  // initial states (they continue that sequence).
  const int32_t* seq_idx = nullptr;
  int64_t seq_idx_batch_stride = 0, seq_idx_len_stride = 0;
  // (batch, channels, K - 1) in x's dtype, or nullptr for zeros: x at step s < 0 is
  // init[b, c, s + K - 1].
  const void* init = nullptr;
  SeqStrides init_strides;

  void* out = nullptr;  // x's dtype; x's layout when x is dense channels-last, else contiguous
  SeqStrides out_strides;
};

struct DepthwiseConv1dBwdParams {
  DepthwiseConv1dParams fwd;
  const void* dout = nullptr;
  SeqStrides dout_strides;
  void* dx = nullptr;  // laid out like out
  SeqStrides dx_strides;
  void* dinit = nullptr;  // (batch, channels, K - 1), contiguous, x's dtype; nullptr without init
  SeqStrides dinit_strides;
  // Per-batch partials in the accumulation type, summed over batch by the caller (a fixed order,
  // so the result is deterministic): dweight (batch, channels, K), dbias (batch, channels).
  void* dweight_part = nullptr;
  void* dbias_part = nullptr;
};

}  // namespace mvscan
