// CUDA kernel of the causal conv1d update (a decode step of the causal depthwise conv): device
// code only. The launcher (causal_conv1d_update_cuda_op.cu) includes it; so does the tests' CPU
// emulation (tests/cuda_emulation/), which runs this very code with one fiber per CUDA thread.
//
// Design. One thread per row (batch, channel), threads numbered along channels so that a decode
// step's x (batch, dim) and out are read and written coalesced; the row's state lives in its
// thread alone, so the in-place update needs no synchronisation: every output is computed (state
// reads) before the state is written. Taps are read from memory per output (K <= 32, L is 1 or a
// few speculative steps), which keeps the kernel free of per-thread arrays and local memory.
// No shared memory, no host sync: one launch, CUDA-graph capturable. Offsets are 64-bit; a
// circular position wraps by one subtraction instead of a 64-bit modulo per tap.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "causal_conv1d_update/causal_conv1d_update.h"
#include "common/dtypes.h"
#include "common/math.h"

namespace mvscan {
namespace cuda {

constexpr int kConvUpdateThreads = 128;

template <typename acc_t, typename input_t>
__device__ __forceinline__ acc_t conv_update_param(const void* base, bool is_float32, int64_t i) {
  return is_float32 ? static_cast<acc_t>(static_cast<const float*>(base)[i])
                    : static_cast<acc_t>(static_cast<const input_t*>(base)[i]);
}

template <typename input_t>
__global__ void __launch_bounds__(kConvUpdateThreads)
    causal_conv1d_update_kernel(CausalConv1dUpdateParams p) {
  using acc_t = typename AccType<input_t>::type;
  const int64_t K = p.width, S = p.state_len, L = p.seqlen;
  const int64_t total = p.batch * p.dim;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < total;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = r / p.dim, c = r % p.dim;
    input_t* out = static_cast<input_t*>(p.out) + b * p.out_strides.batch + c * p.out_strides.dim;
    int64_t s_row = b;
    if (p.conv_state_indices != nullptr) {
      s_row = p.conv_state_indices[b * p.conv_state_indices_stride];
      if (s_row < 0 || s_row >= p.state_rows) {
        // Padding (zero), or an index past the state, which the kernel cannot raise (NaN).
        const input_t fill = static_cast<input_t>(s_row < 0 ? acc_t(0) : acc_t(NAN));
        for (int64_t t = 0; t < L; ++t) out[t * p.out_strides.len] = fill;
        continue;
      }
    }
    input_t* st = static_cast<input_t*>(p.conv_state) + s_row * p.state_strides.batch +
                  c * p.state_strides.dim;
    const int64_t ss = p.state_strides.len;
    const input_t* x = static_cast<const input_t*>(p.x) + b * p.x_strides.batch +
                       c * p.x_strides.dim;
    const int64_t xs = p.x_strides.len;
    const bool circular = p.cache_seqlens != nullptr;
    const int64_t pos = circular ? floor_mod(p.cache_seqlens[b * p.cache_seqlens_stride], S) : 0;
    // State position of window step 0 (the oldest of the K - 1 steps before x).
    const int64_t hist0 = circular ? floor_mod(pos - (K - 1), S) : S - (K - 1);
    const acc_t bias =
        p.bias != nullptr
            ? conv_update_param<acc_t, input_t>(p.bias, p.bias_is_float32, c * p.bias_stride)
            : acc_t(0);
    for (int64_t t = 0; t < L; ++t) {
      acc_t y = bias;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t i = t + k;  // window step: K - 1 state steps, then x
        acc_t v;
        if (i < K - 1) {
          int64_t j = hist0 + i;
          j = j >= S ? j - S : j;
          v = static_cast<acc_t>(st[j * ss]);
        } else {
          v = static_cast<acc_t>(x[(i - (K - 1)) * xs]);
        }
        y += conv_update_param<acc_t, input_t>(p.weight, p.weight_is_float32,
                                               c * p.weight_dim_stride + k * p.weight_tap_stride) *
             v;
      }
      if (p.silu) y *= sigmoid_acc(y);
      out[t * p.out_strides.len] = static_cast<input_t>(y);
    }
    if (circular) {
      // Only the last S steps survive; writing just those gives the same state.
      const int64_t t0 = L > S ? L - S : 0;
      int64_t j = floor_mod(pos + t0, S);
      for (int64_t t = t0; t < L; ++t) {
        st[j * ss] = x[t * xs];
        j = j + 1 == S ? 0 : j + 1;
      }
    } else if (L >= S) {
      for (int64_t i = 0; i < S; ++i) st[i * ss] = x[(L - S + i) * xs];
    } else {
      for (int64_t i = 0; i < S - L; ++i) st[i * ss] = st[(i + L) * ss];  // ascending: safe
      for (int64_t t = 0; t < L; ++t) st[(S - L + t) * ss] = x[t * xs];
    }
  }
}

}  // namespace cuda
}  // namespace mvscan
