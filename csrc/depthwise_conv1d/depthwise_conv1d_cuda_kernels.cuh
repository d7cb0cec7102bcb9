// CUDA kernels of the depthwise conv1d, forward and backward: device code only. The launchers
// (depthwise_conv1d_cuda_op.cu) include it; so does the tests' CPU emulation of the kernels
// (tests/cuda_emulation/), which runs this very code with one fiber per CUDA thread.
//
// Design (K <= kSmallWidthCap = 4: Mamba's 4, MambaVision's 3; the "run" kernels). The op is
// memory-light (4-8 bytes an element) so what it costs is instructions per element. A thread
// takes a run of kConvRunSteps = 8 consecutive steps of one row: one index decomposition, one
// load of the K weights and the bias, and one window of x (T + K - 1 values, T + 2K - 2 for dx)
// per run, all in registers over compile-time sizes (every loop unrolled to the cap and guarded
// by K: nothing indexed at run time, no stack). Each x value is loaded once per run, not K
// times, and row pointers are formed once per run in 64 bits (views past 2^31 elements stay
// right) and stepped from there.
// - Lanes: threads are numbered along whichever of channels or runs is contiguous in x. In the
//   channels-fast layout (MambaVision's in_proj(x).transpose(1, 2) and its chunks) a warp's
//   lanes take consecutive channels, so every load and store of a step is one coalesced row. In
//   the steps-fast (contiguous) layout lanes take consecutive runs of one row: one load
//   instruction of a warp spans 32 x 8 consecutive steps, and the warp reads every sector of it
//   in its next 7 loads (L1 hits), so DRAM traffic stays one pass while L1 sees more requests
//   per instruction than a tile staged in shared memory would. We keep it: no barriers, and the
//   same code for both layouts.
// - Sequence ids and initial states (causal_conv1d_fn) take a separate, general loader per run
//   (x_at / seq_id, ids kept in registers beside the window); without them (decided once per
//   launch, from the params) the windows are plain bounded loads and no id is read.
// - dx: the gradient w.r.t. the pre-activation, dout * silu'(pre), is computed once per step of
//   the run's T + K - 1 step window (pre recomputed once per step from the x window, never
//   stored), then dx is a K-tap correlation of those registers: K + K^2/T taps an element, not
//   K^2. The initial states' gradient is one more run per row, ahead of step 0.
// - dweight/dbias: each thread sums g * x (per tap) and g over its runs from the same windows;
//   a block then stores all K + 1 sums to shared memory once and runs one tree over its row lanes
//   (lanes of one warp on one channel first add by shuffles). Fixed (channel, run-range) blocks
//   write per-range partials, summed over ranges by torch.sum: deterministic, no atomics.
// Wider K (up to kMaxConvWidth = 32) runs the per-element "wide" kernels below them: one thread
// per output element, taps re-read through L1/L2 and dx recomputing pre K times; their windows
// would not fit in registers, and K > 4 is rare.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "depthwise_conv1d/depthwise_conv1d.h"
#include "common/dtypes.h"
#include "common/math.h"

namespace mvscan {
namespace cuda {

constexpr int kConvThreads = 256;  // every launch; the dweight trees need a power of two
static_assert((kConvThreads & (kConvThreads - 1)) == 0, "the dweight trees halve kConvThreads");
// Steps of one row a run kernel's thread convolves (T in the design note): the K - 1 halo loads
// and the per-run set-up are small beside 8 steps, and the windows (at most T + 2 * 4 - 2 = 14
// values for dx) stay in registers.
constexpr int kConvRunSteps = 8;
// The run kernels' compile-time tap count: K <= 4 (Mamba's 4, MambaVision's 3); wider K runs the
// wide kernels, whose tap loops run to kMaxConvWidth.
constexpr int kSmallWidthCap = 4;
// Rows (batch x step pairs) one wide dweight/dbias block sums before writing its partial.
constexpr int64_t kRowsPerPart = 8192;
// Channels of one dweight/dbias block when x is channels-fast: a warp's lanes take consecutive
// channels, so each load of a step coalesces; the block's other warps take other runs (rows).
constexpr int kDweightChannels = 32;
static_assert(kConvThreads % kDweightChannels == 0, "whole warps of channel lanes per block");
// Blocks a dweight grid aims at: about two waves of 8 resident blocks on each of 132 SMs, while
// the partial sums (parts x channels x (K + 1)) stay small for long sequences.
constexpr int64_t kDweightTargetBlocks = 2048;

template <typename input_t>
using conv_acc_t = typename AccType<input_t>::type;

template <typename input_t>
__device__ __forceinline__ conv_acc_t<input_t> load_param(const void* base, bool is_float32,
                                                          int64_t i) {
  using acc_t = conv_acc_t<input_t>;
  return is_float32 ? static_cast<acc_t>(static_cast<const float*>(base)[i])
                    : static_cast<acc_t>(static_cast<const input_t*>(base)[i]);
}

struct Element {
  int64_t b, c, t;
};

// *q = n / d, *r = n % d (n >= 0, d > 0): in 32 bits whenever both fit, as they do below 2^32
// elements. A 64-bit division is a long software routine on a GPU, and these run per element.
__device__ __forceinline__ void div_mod(int64_t n, int64_t d, int64_t* q, int64_t* r) {
  if (((n | d) >> 32) == 0) {
    const uint32_t q32 = static_cast<uint32_t>(n) / static_cast<uint32_t>(d);
    *q = q32;
  } else {
    *q = n / d;
  }
  *r = n - *q * d;
}

// Element e in an order whose fastest index is the contiguous one of x.
__device__ __forceinline__ Element element_of(int64_t e, int64_t C, int64_t L,
                                              bool channels_fast) {
  Element el;
  int64_t rest;
  if (channels_fast) {
    div_mod(e, C, &rest, &el.c);
    div_mod(rest, L, &el.b, &el.t);
  } else {
    div_mod(e, L, &rest, &el.t);
    div_mod(rest, C, &el.b, &el.c);
  }
  return el;
}

// The sequence id of step s of batch b (with seq_idx): seq_idx inside [0, L); before step 0,
// step 0's id with initial states (they continue its sequence) and -1 without; -1 from L on.
__device__ __forceinline__ int32_t seq_id(const DepthwiseConv1dParams& p, int64_t b, int64_t s) {
  const int32_t* row = p.seq_idx + b * p.seq_idx_batch_stride;
  if (s < 0) return p.init != nullptr ? row[0] : -1;
  return s < p.seqlen ? row[s * p.seq_idx_len_stride] : -1;
}

// x[b, c, s]; before step 0 the initial states (zeros without them), zero from L on.
template <typename input_t>
__device__ __forceinline__ conv_acc_t<input_t> x_at(const DepthwiseConv1dParams& p, int64_t b,
                                                     int64_t c, int64_t s) {
  using acc_t = conv_acc_t<input_t>;
  if (s >= 0 && s < p.seqlen) {
    return static_cast<acc_t>(static_cast<const input_t*>(
        p.x)[b * p.x_strides.batch + c * p.x_strides.dim + s * p.x_strides.len]);
  }
  if (s < 0 && p.init != nullptr && s >= 1 - p.width) {
    const SeqStrides& is = p.init_strides;
    return static_cast<acc_t>(static_cast<const input_t*>(
        p.init)[b * is.batch + c * is.dim + (s + p.width - 1) * is.len]);
  }
  return acc_t(0);
}

// Whether the tap from step s into the output at step t counts: always without sequence ids,
// else only inside one sequence.
__device__ __forceinline__ bool same_sequence(const DepthwiseConv1dParams& p, int64_t b,
                                              int64_t s, int64_t t) {
  return p.seq_idx == nullptr || seq_id(p, b, s) == seq_id(p, b, t);
}

// bias[c], or 0 without a bias.
template <typename input_t>
__device__ __forceinline__ conv_acc_t<input_t> bias_of(const DepthwiseConv1dParams& p,
                                                       int64_t c) {
  return p.bias != nullptr ? load_param<input_t>(p.bias, p.bias_is_float32, c * p.bias_stride)
                           : conv_acc_t<input_t>(0);
}

// The gradient w.r.t. the pre-activation pre given the output's, dout: dout * silu'(pre) with
// silu, else dout.
template <typename acc_t>
__device__ __forceinline__ acc_t grad_of_pre(acc_t dout, acc_t pre, bool silu) {
  if (!silu) return dout;
  const acc_t sg = sigmoid_acc(pre);
  return dout * (sg * (acc_t(1) + pre * (acc_t(1) - sg)));
}

// ---- Run kernels (K <= kSmallWidthCap) ---------------------------------------------------------

// Runs of kConvRunSteps steps that cover a row of L steps (the last one partial).
__host__ __device__ inline int64_t runs_per_row(int64_t L) {
  return (L + kConvRunSteps - 1) / kConvRunSteps;
}

// w[k] = weight[c, k] for k < K, or weight[c, K - 1 - k] when reversed (dx's correlation);
// zero for k >= K.
template <typename input_t, int kCap>
__device__ __forceinline__ void load_taps(const DepthwiseConv1dParams& p, int64_t c,
                                          bool reversed, conv_acc_t<input_t> (&w)[kCap]) {
#pragma unroll
  for (int k = 0; k < kCap; ++k) {
    const int64_t tap = reversed ? p.width - 1 - k : k;
    w[k] = k < p.width ? load_param<input_t>(p.weight, p.weight_is_float32,
                                             c * p.weight_channel_stride +
                                                 tap * p.weight_tap_stride)
                       : conv_acc_t<input_t>(0);
  }
}

// v[q] = row[(s0 + q) * len_stride] for q < n with s0 + q in [0, L), else 0: a run's window of
// one row of x or dout, each value loaded once. The pointer is stepped, so the offsets stay
// 64-bit without a multiply per value.
template <typename input_t, int kN>
__device__ __forceinline__ void load_row_window(const input_t* row, int64_t len_stride,
                                                int64_t L, int64_t s0, int n,
                                                conv_acc_t<input_t> (&v)[kN]) {
  using acc_t = conv_acc_t<input_t>;
  const input_t* at = row + s0 * len_stride;
#pragma unroll
  for (int q = 0; q < kN; ++q) {
    const int64_t s = s0 + q;
    v[q] = q < n && s >= 0 && s < L ? static_cast<acc_t>(*at) : acc_t(0);
    at += len_stride;
  }
}

// The x window of a run: x[b, c, s0 + q] for q < n; kGeneral: through x_at, so the initial
// states stand before step 0.
template <typename input_t, bool kGeneral, int kN>
__device__ __forceinline__ void load_x_window(const DepthwiseConv1dParams& p, int64_t b,
                                              int64_t c, int64_t s0, int n,
                                              conv_acc_t<input_t> (&v)[kN]) {
  if constexpr (kGeneral) {
#pragma unroll
    for (int q = 0; q < kN; ++q) v[q] = q < n ? x_at<input_t>(p, b, c, s0 + q) : 0;
  } else {
    const input_t* row =
        static_cast<const input_t*>(p.x) + b * p.x_strides.batch + c * p.x_strides.dim;
    load_row_window<input_t>(row, p.x_strides.len, p.seqlen, s0, n, v);
  }
}

// id[q] = seq_id(b, s0 + q), or 0 for every step without sequence ids (every tap counts, no
// step is padding). Only the general path reads ids.
template <int kN>
__device__ __forceinline__ void load_seq_ids(const DepthwiseConv1dParams& p, int64_t b,
                                             int64_t s0, int32_t (&id)[kN]) {
#pragma unroll
  for (int q = 0; q < kN; ++q) id[q] = p.seq_idx != nullptr ? seq_id(p, b, s0 + q) : 0;
}

// The pre-activation of the step whose taps are v[o .. o + K): bias + sum_k w[k] v[o + k] over
// the taps that count (kGeneral: those whose id is own_id; 0 at a padding step, own_id < 0).
// o is a constant once the callers' loops unroll.
template <bool kGeneral, int kCap, int kN, typename acc_t>
__device__ __forceinline__ acc_t window_pre(const acc_t (&w)[kCap], acc_t bias,
                                            const acc_t (&v)[kN], const int32_t (&id)[kN], int o,
                                            int32_t own_id, int K) {
  if (kGeneral && own_id < 0) return acc_t(0);
  acc_t acc = bias;
#pragma unroll
  for (int k = 0; k < kCap; ++k) {
    if (o + k < kN && k < K && (!kGeneral || id[o + k] == own_id)) acc += w[k] * v[o + k];
  }
  return acc;
}

// out[b, c, t0 .. t0 + T) from one window of x.
template <typename input_t, bool kGeneral>
__device__ __forceinline__ void conv_fwd_run(const DepthwiseConv1dParams& p, int64_t b,
                                             int64_t c, int64_t t0) {
  using acc_t = conv_acc_t<input_t>;
  constexpr int T = kConvRunSteps, kCap = kSmallWidthCap, kN = T + kCap - 1;
  const int K = static_cast<int>(p.width);
  acc_t w[kCap];
  load_taps<input_t>(p, c, false, w);
  const acc_t bias = bias_of<input_t>(p, c);
  const int64_t s0 = t0 - p.pad_left;  // x window: v[q] is step s0 + q, output i's taps v[i..]
  acc_t v[kN];
  int32_t id[kN] = {}, own[T] = {};
  load_x_window<input_t, kGeneral>(p, b, c, s0, T + K - 1, v);
  if constexpr (kGeneral) {
    load_seq_ids(p, b, s0, id);
    load_seq_ids(p, b, t0, own);
  }
  input_t* out = static_cast<input_t*>(p.out) + b * p.out_strides.batch +
                 c * p.out_strides.dim + t0 * p.out_strides.len;
  const int64_t steps = p.seqlen - t0;  // > 0; only the last run has fewer than T
#pragma unroll
  for (int i = 0; i < T; ++i) {
    if (i < steps) {
      acc_t y = window_pre<kGeneral>(w, bias, v, id, i, own[i], K);
      if (p.silu) y *= sigmoid_acc(y);
      *out = static_cast<input_t>(y);
    }
    out += p.out_strides.len;
  }
}

// The general path (sequence ids or initial states) or the plain one, decided per launch.
__device__ __forceinline__ bool needs_general_path(const DepthwiseConv1dParams& p) {
  return p.seq_idx != nullptr || p.init != nullptr;
}

// Calls run_at(r, general) for each r < total of this thread's grid-stride loop, general a
// std::true_type on the general path (sequence ids or initial states), else std::false_type:
// one loop per path, the path decided once per launch (and sass_stats counts each loop alone).
template <typename RunAt>
__device__ __forceinline__ void for_each_thread_run(const DepthwiseConv1dParams& p,
                                                    int64_t total, RunAt&& run_at) {
  auto loop = [&](auto general) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < total;
         r += stride) {
      run_at(r, general);
    }
  };
  if (needs_general_path(p)) {
    loop(std::true_type{});
  } else {
    loop(std::false_type{});
  }
}

// Thread r takes run r of an order whose fastest index is x's contiguous one (channels, or the
// run within its row): runs_per_row(L) runs per row, total = batch x channels x that.
template <typename input_t>
__global__ void __launch_bounds__(kConvThreads)
    conv_fwd_kernel(DepthwiseConv1dParams p, bool channels_fast, int64_t total) {
  const int64_t runs = runs_per_row(p.seqlen);
  auto run_at = [&](int64_t r, auto general) {
    const Element run = element_of(r, p.channels, runs, channels_fast);  // t: the run's index
    conv_fwd_run<input_t, decltype(general)::value>(p, run.b, run.c, run.t * kConvRunSteps);
  };
  for_each_thread_run(p, total, run_at);
}

// dx[b, c, s0 .. s0 + T) (s0 >= 0), or, for the run at s0 = 1 - K, the initial states'
// gradient dinit[b, c, 0 .. K - 1). g, the gradient w.r.t. the pre-activation, is computed once
// per step of the window [s0 - (K - 1) + pad, s0 + T + pad), from a window of x over
// [s0 - (K - 1), s0 + T + K - 1); then dx(s0 + i) = sum_m w[K - 1 - m] g[i + m].
template <typename input_t, bool kGeneral>
__device__ __forceinline__ void conv_dx_run(const DepthwiseConv1dBwdParams& bp, int64_t b,
                                            int64_t c, int64_t s0) {
  using acc_t = conv_acc_t<input_t>;
  constexpr int T = kConvRunSteps, kCap = kSmallWidthCap;
  constexpr int kNg = T + kCap - 1, kNx = T + 2 * kCap - 2;
  const DepthwiseConv1dParams& p = bp.fwd;
  const int K = static_cast<int>(p.width);
  acc_t w[kCap], w_reversed[kCap];
  load_taps<input_t>(p, c, false, w);
  load_taps<input_t>(p, c, true, w_reversed);
  const acc_t bias = bias_of<input_t>(p, c);
  const int64_t sx = s0 - (K - 1);        // x window: v[q] is step sx + q
  const int64_t tg = sx + p.pad_left;     // g window: g[j] is step tg + j, its taps v[j..]
  acc_t v[kNx], g[kNg];
  int32_t vid[kNx] = {}, gid[kNg] = {}, own[T] = {};
  load_x_window<input_t, kGeneral>(p, b, c, sx, T + 2 * K - 2, v);
  const input_t* dout = static_cast<const input_t*>(bp.dout) + b * bp.dout_strides.batch +
                        c * bp.dout_strides.dim;
  load_row_window<input_t>(dout, bp.dout_strides.len, p.seqlen, tg, T + K - 1, g);
  if constexpr (kGeneral) {
    load_seq_ids(p, b, sx, vid);
    load_seq_ids(p, b, tg, gid);
    load_seq_ids(p, b, s0, own);
  }
#pragma unroll
  for (int j = 0; j < kNg; ++j) {
    const int64_t t = tg + j;
    const bool counts = j < T + K - 1 && t >= 0 && t < p.seqlen && (!kGeneral || gid[j] >= 0);
    if (!counts) {
      g[j] = acc_t(0);
    } else if (p.silu) {
      g[j] = grad_of_pre(g[j], window_pre<kGeneral>(w, bias, v, vid, j, gid[j], K), true);
    }
  }
  // Where the run's gradient goes: dinit for the steps before 0, else dx up to step L.
  input_t* dst;
  int64_t dst_stride, steps;
  if (s0 < 0) {
    dst = static_cast<input_t*>(bp.dinit) + b * bp.dinit_strides.batch +
          c * bp.dinit_strides.dim;
    dst_stride = bp.dinit_strides.len;
    steps = K - 1;
  } else {
    dst = static_cast<input_t*>(bp.dx) + b * bp.dx_strides.batch + c * bp.dx_strides.dim +
          s0 * bp.dx_strides.len;
    dst_stride = bp.dx_strides.len;
    steps = p.seqlen - s0;
  }
#pragma unroll
  for (int i = 0; i < T; ++i) {
    if (i < steps) {
      acc_t acc = 0;
#pragma unroll
      for (int m = 0; m < kCap; ++m) {
        if (m < K && (!kGeneral || gid[i + m] == own[i])) acc += w_reversed[m] * g[i + m];
      }
      *dst = static_cast<input_t>(acc);
    }
    dst += dst_stride;
  }
}

// Thread r takes run r, ordered as in conv_fwd_kernel, over rows of runs_per_row(L) runs, plus
// (with initial states) one run ahead of step 0 whose outputs are the states' gradient.
template <typename input_t>
__global__ void __launch_bounds__(kConvThreads)
    conv_bwd_dx_kernel(DepthwiseConv1dBwdParams bp, bool channels_fast, int64_t total) {
  const DepthwiseConv1dParams& p = bp.fwd;
  // K = 1 has no initial states: nothing before step 0 is read.
  const int64_t states_runs = p.init != nullptr && p.width > 1 ? 1 : 0;
  const int64_t runs = runs_per_row(p.seqlen) + states_runs;
  auto run_at = [&](int64_t r, auto general) {
    const Element run = element_of(r, p.channels, runs, channels_fast);  // t: the run's index
    const int64_t s0 =
        run.t < states_runs ? 1 - p.width : (run.t - states_runs) * kConvRunSteps;
    conv_dx_run<input_t, decltype(general)::value>(bp, run.b, run.c, s0);
  };
  for_each_thread_run(p, total, run_at);
}

// Adds run (b, t0 .. t0 + T) of channel c to the tap sums: sum[k] += g(t) x(t + k - pad) and
// sum_bias += g(t), over the run's steps before L (taps inside one sequence).
template <typename input_t, bool kGeneral>
__device__ __forceinline__ void add_dweight_run(const DepthwiseConv1dBwdParams& bp, int64_t b,
                                                int64_t c, int64_t t0,
                                                const conv_acc_t<input_t> (&w)[kSmallWidthCap],
                                                conv_acc_t<input_t> bias,
                                                conv_acc_t<input_t> (&sum)[kSmallWidthCap],
                                                conv_acc_t<input_t>& sum_bias) {
  using acc_t = conv_acc_t<input_t>;
  constexpr int T = kConvRunSteps, kCap = kSmallWidthCap, kN = T + kCap - 1;
  const DepthwiseConv1dParams& p = bp.fwd;
  const int K = static_cast<int>(p.width);
  const int64_t s0 = t0 - p.pad_left;  // x window: v[q] is step s0 + q, step t0 + i's taps v[i..]
  acc_t v[kN], d[T];
  int32_t id[kN] = {}, own[T] = {};
  load_x_window<input_t, kGeneral>(p, b, c, s0, T + K - 1, v);
  const input_t* dout = static_cast<const input_t*>(bp.dout) + b * bp.dout_strides.batch +
                        c * bp.dout_strides.dim;
  load_row_window<input_t>(dout, bp.dout_strides.len, p.seqlen, t0, T, d);
  if constexpr (kGeneral) {
    load_seq_ids(p, b, s0, id);
    load_seq_ids(p, b, t0, own);
  }
  const int64_t steps = p.seqlen - t0;
#pragma unroll
  for (int i = 0; i < T; ++i) {
    if (i < steps && (!kGeneral || own[i] >= 0)) {
      const acc_t g =
          p.silu ? grad_of_pre(d[i], window_pre<kGeneral>(w, bias, v, id, i, own[i], K), true)
                 : d[i];
      sum_bias += g;
#pragma unroll
      for (int k = 0; k < kCap; ++k) {
        if (k < K && (!kGeneral || id[i + k] == own[i])) sum[k] += g * v[i + k];
      }
    }
  }
}

// Block (x, part) sums g * x (per tap) and g over runs [part * runs_per_part, (part + 1) *
// runs_per_part) of the flattened (batch, run) range of its channels, and writes
// partial[part][c][0..K] (K = bias) in the accumulation type. Channels-fast: block x takes
// kDweightChannels channels, one per lane, and its 8 warps take runs; steps-fast: block x is
// channel x and all 256 threads take consecutive runs. Reduction, in a fixed order: a warp on
// one channel adds its lanes by shuffles; then every thread stores its K + 1 sums to shared
// memory once, and one tree over the 8 warps leaves each channel's sums in the first warp.
template <typename input_t>
__global__ void __launch_bounds__(kConvThreads)
    conv_bwd_dweight_kernel(DepthwiseConv1dBwdParams bp, int64_t runs_per_part,
                            void* partial_out, bool channels_fast) {
  using acc_t = conv_acc_t<input_t>;
  constexpr int kCap = kSmallWidthCap;
  const DepthwiseConv1dParams& p = bp.fwd;
  const int K = static_cast<int>(p.width);
  const int channel_lanes = channels_fast ? kDweightChannels : 1;
  const int run_lanes = kConvThreads / channel_lanes;
  const int tid = static_cast<int>(threadIdx.x);
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * channel_lanes;
  const int64_t c = c0 + tid % channel_lanes;
  const int64_t runs = runs_per_row(p.seqlen), total_runs = p.batch * runs;
  const int64_t begin = blockIdx.y * runs_per_part;
  const int64_t end = c < p.channels ? std::min(begin + runs_per_part, total_runs)
                                     : begin;  // a lane past the last channel sums nothing
  acc_t w[kCap], sum[kCap];
  load_taps<input_t>(p, c < p.channels ? c : 0, false, w);
  const acc_t bias = bias_of<input_t>(p, c < p.channels ? c : 0);
  acc_t sum_bias = 0;
#pragma unroll
  for (int k = 0; k < kCap; ++k) sum[k] = acc_t(0);
  auto add_runs = [&](auto general) {  // one loop per path
    for (int64_t r = begin + tid / channel_lanes; r < end; r += run_lanes) {
      int64_t b, run;
      div_mod(r, runs, &b, &run);
      add_dweight_run<input_t, decltype(general)::value>(bp, b, c, run * kConvRunSteps, w, bias,
                                                         sum, sum_bias);
    }
  };
  if (needs_general_path(p)) {
    add_runs(std::true_type{});
  } else {
    add_runs(std::false_type{});
  }
  if (!channels_fast) {  // the warp's lanes share a channel: butterfly, every lane gets the sum
#pragma unroll
    for (int m = 16; m >= 1; m >>= 1) {
      sum_bias += __shfl_xor_sync(0xffffffffu, sum_bias, m);
#pragma unroll
      for (int k = 0; k < kCap; ++k) {
        if (k < K) sum[k] += __shfl_xor_sync(0xffffffffu, sum[k], m);
      }
    }
  }
  // (K + 1) x kConvThreads values of acc_t (dynamic: see dweight_smem_bytes): slot k < K holds
  // tap k's sums, slot K the bias'. Declared as bytes because the instantiations for float and
  // double share the one extern symbol.
  extern __shared__ __align__(16) unsigned char conv_tree[];
  acc_t* buf = reinterpret_cast<acc_t*>(conv_tree);
#pragma unroll
  for (int k = 0; k < kCap; ++k) {
    if (k < K) buf[k * kConvThreads + tid] = sum[k];
  }
  buf[K * kConvThreads + tid] = sum_bias;
  __syncthreads();
  for (int s = kConvThreads / 2; s >= 32; s >>= 1) {
    if (tid < s) {
#pragma unroll
      for (int k = 0; k <= kCap; ++k) {
        if (k <= K) buf[k * kConvThreads + tid] += buf[k * kConvThreads + tid + s];
      }
    }
    __syncthreads();
  }
  // The block's (channel, k) sums are consecutive in partial: one coalesced store of them.
  const int64_t channels_here = std::min<int64_t>(channel_lanes, p.channels - c0);
  if (tid < channels_here * (K + 1)) {
    const int lane = tid / (K + 1), k = tid % (K + 1);
    static_cast<acc_t*>(partial_out)[(blockIdx.y * p.channels + c0) * (K + 1) + tid] =
        buf[k * kConvThreads + lane];
  }
}

// Dynamic shared memory of conv_bwd_dweight_kernel: K + 1 <= kSmallWidthCap + 1 slots of sums.
template <typename input_t>
constexpr size_t dweight_smem_bytes() {
  return (kSmallWidthCap + 1) * kConvThreads * sizeof(conv_acc_t<input_t>);
}

// ---- Wide kernels (K > kSmallWidthCap): one thread per output element --------------------------

// bias + sum_k w[c, k] x[b, c, t + k - pad_left] over the taps that count; 0 at a padding step
// (negative sequence id).
template <typename input_t>
__device__ conv_acc_t<input_t> conv_pre(const DepthwiseConv1dParams& p, int64_t b, int64_t c,
                                        int64_t t) {
  using acc_t = conv_acc_t<input_t>;
  if (p.seq_idx != nullptr && seq_id(p, b, t) < 0) return acc_t(0);
  acc_t acc = bias_of<input_t>(p, c);
  for (int64_t k = 0; k < p.width; ++k) {
    const int64_t s = t + k - p.pad_left;
    if (!same_sequence(p, b, s, t)) continue;
    const acc_t w = load_param<input_t>(p.weight, p.weight_is_float32,
                                        c * p.weight_channel_stride + k * p.weight_tap_stride);
    acc += w * x_at<input_t>(p, b, c, s);
  }
  return acc;
}

// The gradient w.r.t. the pre-activation at (b, c, s): dout * silu'(pre), or dout; zero
// outside [0, L) and at padding steps.
template <typename input_t>
__device__ conv_acc_t<input_t> grad_pre(const DepthwiseConv1dBwdParams& bp, int64_t b, int64_t c,
                                        int64_t s) {
  using acc_t = conv_acc_t<input_t>;
  const DepthwiseConv1dParams& p = bp.fwd;
  if (s < 0 || s >= p.seqlen) return acc_t(0);
  if (p.seq_idx != nullptr && seq_id(p, b, s) < 0) return acc_t(0);
  const input_t* dout = static_cast<const input_t*>(bp.dout);
  const acc_t g = static_cast<acc_t>(
      dout[b * bp.dout_strides.batch + c * bp.dout_strides.dim + s * bp.dout_strides.len]);
  return p.silu ? grad_of_pre(g, conv_pre<input_t>(p, b, c, s), true) : g;
}

template <typename input_t>
__global__ void conv_fwd_wide_kernel(DepthwiseConv1dParams p, bool channels_fast,
                                     int64_t total) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    const Element el = element_of(e, p.channels, p.seqlen, channels_fast);
    conv_acc_t<input_t> y = conv_pre<input_t>(p, el.b, el.c, el.t);
    if (p.silu) y *= sigmoid_acc(y);
    static_cast<input_t*>(p.out)[el.b * p.out_strides.batch + el.c * p.out_strides.dim +
                                 el.t * p.out_strides.len] = static_cast<input_t>(y);
  }
}

// sum_k w[c, k] g[b, c, t - k + pad_left] over the taps that count: the gradient w.r.t. x at
// step s (s < 0: an initial state).
template <typename input_t>
__device__ conv_acc_t<input_t> grad_x(const DepthwiseConv1dBwdParams& bp, int64_t b, int64_t c,
                                      int64_t s) {
  const DepthwiseConv1dParams& p = bp.fwd;
  conv_acc_t<input_t> acc = 0;
  for (int64_t k = 0; k < p.width; ++k) {
    const int64_t t = s - k + p.pad_left;
    if (!same_sequence(p, b, s, t)) continue;
    const conv_acc_t<input_t> w = load_param<input_t>(
        p.weight, p.weight_is_float32, c * p.weight_channel_stride + k * p.weight_tap_stride);
    acc += w * grad_pre<input_t>(bp, b, c, t);
  }
  return acc;
}

// dx for the first x.numel() elements (total = x.numel(), or x.numel() + batch x channels x
// (K - 1) with initial states: the elements past x's are their gradient, (batch, channels, K - 1)
// in order).
template <typename input_t>
__global__ void conv_bwd_dx_wide_kernel(DepthwiseConv1dBwdParams bp, bool channels_fast,
                                        int64_t total) {
  const DepthwiseConv1dParams& p = bp.fwd;
  const int64_t n_x = p.batch * p.channels * p.seqlen;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    if (e < n_x) {
      const Element el = element_of(e, p.channels, p.seqlen, channels_fast);
      static_cast<input_t*>(bp.dx)[el.b * bp.dx_strides.batch + el.c * bp.dx_strides.dim +
                                   el.t * bp.dx_strides.len] =
          static_cast<input_t>(grad_x<input_t>(bp, el.b, el.c, el.t));
    } else {
      const int64_t i = e - n_x, K1 = p.width - 1;
      int64_t rest, j, b, c;
      div_mod(i, K1, &rest, &j);
      div_mod(rest, p.channels, &b, &c);
      static_cast<input_t*>(bp.dinit)[b * bp.dinit_strides.batch + c * bp.dinit_strides.dim +
                                      j * bp.dinit_strides.len] =
          static_cast<input_t>(grad_x<input_t>(bp, b, c, j - K1));
    }
  }
}

// Block (x, part) sums g * x (per tap) and g over rows [part * rows, (part + 1) * rows) of the
// flattened (batch, step) range of its channels, and writes partial[part][c][0..K] (K = bias) in
// the accumulation type for each. Steps contiguous in x: block x is channel x, its threads take
// consecutive rows. Channels contiguous (channels_fast): block x takes kDweightChannels channels
// from x * kDweightChannels, one per lane, and kConvThreads / kDweightChannels row lanes.
// K = p.width <= kMaxConvWidth; every loop over the taps' sums is unrolled to kMaxConvWidth and
// guarded by K, so no sum is indexed at run time (indexed, they lived on a 136-byte stack).
template <typename input_t>
__global__ void __launch_bounds__(kConvThreads, 1)
    conv_bwd_dweight_wide_kernel(DepthwiseConv1dBwdParams bp, int64_t rows_per_part,
                                 void* partial_out, bool channels_fast) {
  using acc_t = conv_acc_t<input_t>;
  constexpr int kWidthCap = kMaxConvWidth;
  acc_t* partial = static_cast<acc_t*>(partial_out);
  const DepthwiseConv1dParams& p = bp.fwd;
  const int channel_lanes = channels_fast ? kDweightChannels : 1;
  const int row_lanes = kConvThreads / channel_lanes;
  const int row_lane = static_cast<int>(threadIdx.x) / channel_lanes;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * channel_lanes +
                    static_cast<int>(threadIdx.x) % channel_lanes;
  const int64_t part = blockIdx.y, K = p.width;
  const int64_t rows = p.batch * p.seqlen;
  const int64_t begin = part * rows_per_part;
  const int64_t end = c < p.channels ? (begin + rows_per_part < rows ? begin + rows_per_part : rows)
                                     : begin;  // a lane past the last channel sums nothing
  acc_t acc[kWidthCap];  // tap k's sum of g * x
  acc_t acc_bias = 0;    // the sum of g
#pragma unroll
  for (int k = 0; k < kWidthCap; ++k) acc[k] = acc_t(0);
  for (int64_t r = begin + row_lane; r < end; r += row_lanes) {
    int64_t b, t;
    div_mod(r, p.seqlen, &b, &t);
    const acc_t g = grad_pre<input_t>(bp, b, c, t);
    acc_bias += g;
#pragma unroll
    for (int k = 0; k < kWidthCap; ++k) {
      if (k < K) {
        const int64_t s = t + k - p.pad_left;
        if (same_sequence(p, b, s, t)) acc[k] += g * x_at<input_t>(p, b, c, s);
      }
    }
  }
  extern __shared__ __align__(16) unsigned char conv_tree[];
  acc_t* buf = reinterpret_cast<acc_t*>(conv_tree);
  // A tree over the row lanes: halving down to channel_lanes leaves thread i < channel_lanes
  // with its channel's sum over every row lane.
  for (int64_t k = 0; k <= K; ++k) {
    acc_t v = acc_bias;  // k == K: the bias; else tap k's sum, picked without indexing
#pragma unroll
    for (int j = 0; j < kWidthCap; ++j) {
      if (j == k && k < K) v = acc[j];
    }
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int s = kConvThreads / 2; s >= channel_lanes; s >>= 1) {
      if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
      __syncthreads();
    }
    if (static_cast<int>(threadIdx.x) < channel_lanes && c < p.channels) {
      partial[(part * p.channels + c) * (K + 1) + k] = buf[threadIdx.x];
    }
    __syncthreads();
  }
}

// Dynamic shared memory of conv_bwd_dweight_wide_kernel: its reduction tree.
template <typename input_t>
constexpr size_t dweight_wide_smem_bytes() {
  return kConvThreads * sizeof(conv_acc_t<input_t>);
}

}  // namespace cuda
}  // namespace mvscan
