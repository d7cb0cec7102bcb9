// CUDA kernel of the causal conv1d update (a decode step of the causal depthwise conv): device
// code only. The launcher (causal_conv1d_update_cuda_op.cu) includes it; so does the tests' CPU
// emulation (tests/cuda_emulation/), which runs this very code with one fiber per CUDA thread.
//
// Design. One thread per row (batch, channel), threads numbered along channels so that a decode
// step's x (batch, dim) and out are read and written coalesced; the row's state lives in its
// thread alone, so the in-place update needs no synchronisation: every output is computed (state
// reads) before the state is written. No shared memory, no host sync: one launch, CUDA-graph
// capturable. Offsets are 64-bit; a circular position wraps by one subtraction instead of a
// 64-bit modulo per tap. Rows of two batch elements that pick one state row race: the CPU op
// rejects such indices, here they are undefined behaviour.
//
// Latency, not arithmetic, bounds a decode step, so the loads are issued independently and
// early. The row's K weights, bias, first x step and cache_seqlens depend on (batch, channel)
// alone: they are loaded together with the row's state index, before it resolves. Then the
// K - 1 history steps are loaded at once into a register window (win), and only then come the
// taps' FMAs; further steps (L > 1) slide the window by one register and load the next x step
// before the current step's FMAs. Two DRAM round trips per row (index with inputs, then
// history), not one per tap. The register arrays (weights, window) have kWidthCap entries, a
// compile-time size, and every loop over them is fully unrolled and guarded by the run-time K,
// so no array is indexed at run time (which would put it in local memory): kWidthCap is
// kConvUpdateSmallWidthCap (K <= 4: Mamba's K = 4, and 2, 3) or kMaxConvWidth (any other K, a
// fallback that holds 64 values in registers). The arrays are right-aligned (tap k at entry
// kWidthCap - K + k), so the newest step always enters at the last entry: with x inserted at a
// run-time entry K - 1 behind a guard per entry, the compiler merged those guarded stores into
// one dynamically indexed store and moved the window to the stack.
// A linear state of S <= K steps (causal-conv1d's K - 1, mamba_ssm's K) is rewritten from the
// window's registers alone; a longer one shifts its older steps through memory.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "causal_conv1d_update/causal_conv1d_update.h"
#include "common/dtypes.h"
#include "common/math.h"

namespace mvscan {
namespace cuda {

constexpr int kConvUpdateThreads = 128;
constexpr int kConvUpdateSmallWidthCap = 4;

// The register-array size the kernel is compiled for, for K taps: two instances per dtype.
inline int conv_update_width_cap(int64_t K) {
  return K <= kConvUpdateSmallWidthCap ? kConvUpdateSmallWidthCap : kMaxConvWidth;
}

template <typename acc_t, typename input_t>
__device__ __forceinline__ acc_t conv_update_param(const void* base, bool is_float32, int64_t i) {
  return is_float32 ? static_cast<acc_t>(static_cast<const float*>(base)[i])
                    : static_cast<acc_t>(static_cast<const input_t*>(base)[i]);
}

// K = p.width <= kWidthCap (the driver picks kWidthCap by conv_update_width_cap).
template <typename input_t, int kWidthCap>
__global__ void __launch_bounds__(kConvUpdateThreads)
    causal_conv1d_update_kernel(CausalConv1dUpdateParams p) {
  using acc_t = typename AccType<input_t>::type;
  const int K = static_cast<int>(p.width);
  const int64_t S = p.state_len, L = p.seqlen;
  const int64_t total = p.batch * p.dim;
  const bool circular = p.cache_seqlens != nullptr;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < total;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = r / p.dim, c = r % p.dim;
    // Loads that depend on (batch, channel) alone, issued with the index's (none waits on it):
    // the state index, the circular position, the weights, the bias, x's first step (which only
    // an updated row reads: nvcc issues it just past the index test, with the history's loads,
    // still no extra round trip).
    const int64_t s_row =
        p.conv_state_indices != nullptr
            ? static_cast<int64_t>(p.conv_state_indices[b * p.conv_state_indices_stride])
            : b;
    const int64_t seqlen = circular ? p.cache_seqlens[b * p.cache_seqlens_stride] : 0;
    // The register arrays are right-aligned: tap k is entry kWidthCap - K + k, so the newest
    // window step is always the last entry and every index below is a compile-time constant.
    constexpr int kLast = kWidthCap - 1;
    const int first = kWidthCap - K;  // the entry of tap 0
    acc_t w[kWidthCap];
#pragma unroll
    for (int j = 0; j < kWidthCap; ++j) {
      acc_t v = 0;
      if (j >= first) {
        v = conv_update_param<acc_t, input_t>(
            p.weight, p.weight_is_float32,
            c * p.weight_dim_stride + (j - first) * p.weight_tap_stride);
      }
      w[j] = v;
    }
    const acc_t bias =
        p.bias != nullptr
            ? conv_update_param<acc_t, input_t>(p.bias, p.bias_is_float32, c * p.bias_stride)
            : acc_t(0);
    const input_t* x = static_cast<const input_t*>(p.x) + b * p.x_strides.batch +
                       c * p.x_strides.dim;
    const int64_t xs = p.x_strides.len;
    acc_t win[kWidthCap];  // win[first + k] = window step t + k for the current step t
    win[kLast] = static_cast<acc_t>(x[0]);  // L >= 1: the driver skips L = 0
    input_t* out = static_cast<input_t*>(p.out) + b * p.out_strides.batch + c * p.out_strides.dim;
    if (s_row < 0 || s_row >= p.state_rows) {
      // Padding (zero), or an index past the state, which the kernel cannot raise (NaN).
      const input_t fill = static_cast<input_t>(s_row < 0 ? acc_t(0) : acc_t(NAN));
      for (int64_t t = 0; t < L; ++t) out[t * p.out_strides.len] = fill;
      continue;
    }
    input_t* st = static_cast<input_t*>(p.conv_state) + s_row * p.state_strides.batch +
                  c * p.state_strides.dim;
    const int64_t ss = p.state_strides.len;
    const int64_t pos = circular ? floor_mod(seqlen, S) : 0;
    // State position of window step 0 (the oldest of the K - 1 steps before x).
    const int64_t hist0 = circular ? floor_mod(pos - (K - 1), S) : S - (K - 1);
#pragma unroll
    for (int j = 0; j < kLast; ++j) {  // the K - 1 steps before x: entries first .. kLast - 1
      acc_t v = 0;
      if (j >= first) {
        int64_t at = hist0 + (j - first);
        at = at >= S ? at - S : at;
        v = static_cast<acc_t>(st[at * ss]);
      }
      win[j] = v;
    }
    for (int64_t t = 0; t < L; ++t) {
      // The next step's x, loaded before this step's taps.
      const acc_t x_next = t + 1 < L ? static_cast<acc_t>(x[(t + 1) * xs]) : acc_t(0);
      acc_t y = bias;
#pragma unroll
      for (int j = 0; j < kWidthCap; ++j) {
        if (j >= first) y += w[j] * win[j];
      }
      if (p.silu) y *= sigmoid_acc(y);
      out[t * p.out_strides.len] = static_cast<input_t>(y);
      if (t + 1 < L) {  // slide the window one step: register moves, the new x last
#pragma unroll
        for (int j = 0; j < kLast; ++j) win[j] = win[j + 1];
        win[kLast] = x_next;
      }
    }
    // Now win[first + k] = window step L - 1 + k = F[S - K + L + k], k < K, with F = (state, x)
    // the whole sequence: x[L - 1] is win[kLast]. Every value written below is an input_t
    // converted to acc_t and back: exact.
    if (circular) {
      // x[t] goes to position (pos + t) mod S; only the last S steps survive, so just those
      // are written, the last one from its register.
      const int64_t t0 = L > S ? L - S : 0;
      int64_t at = floor_mod(pos + t0, S);
      for (int64_t t = t0; t + 1 < L; ++t) {
        st[at * ss] = x[t * xs];
        at = at + 1 == S ? 0 : at + 1;
      }
      st[at * ss] = static_cast<input_t>(win[kLast]);
    } else {
      // The state becomes F[L .. L + S). Its steps i >= S - K are F[S - K + L + k] =
      // win[first + k], k = i - (S - K), in registers; a state longer than K first shifts its
      // older steps through memory (ascending, each read before it is overwritten; the
      // register steps are written after).
      for (int64_t i = 0; i < S - K; ++i) {
        st[i * ss] = L + i < S ? st[(L + i) * ss] : x[(L + i - S) * xs];
      }
#pragma unroll
      for (int j = 0; j < kWidthCap; ++j) {
        const int64_t i = S - kWidthCap + j;  // = S - K + (j - first)
        if (j >= first && i >= 0) st[i * ss] = static_cast<input_t>(win[j]);
      }
    }
  }
}

}  // namespace cuda
}  // namespace mvscan
