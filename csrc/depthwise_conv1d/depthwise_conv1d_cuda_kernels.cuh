// CUDA kernels of the depthwise conv1d, forward and backward: device code only. The launchers
// (depthwise_conv1d_cuda_op.cu) include it; so does the tests' CPU emulation of the kernels
// (tests/cuda_emulation/), which runs this very code with one fiber per CUDA thread.
//
// Design: one thread per output element, with threads numbered along whichever of channels or
// steps is contiguous in x, so loads and stores coalesce in both layouts (in_proj's output is
// channels-contiguous). Taps re-read neighbouring x values through L1/L2 rather than staging
// tiles in shared memory: K <= 32 and typical K = 3-4, so the op stays bandwidth-bound.
// The backward recomputes the pre-activation (never stored), computes dx the same way, and sums
// dweight/dbias deterministically: fixed (channel, row-range) blocks write per-range partials
// with a fixed-order shared-memory tree, and the partials are summed over ranges by torch.sum.
// Sequence ids and initial states (causal_conv1d_fn) enter through seq_id / x_at, which every
// kernel reads x and taps through; the dx launch covers the initial states' gradient as extra
// elements past x's.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>

#include "depthwise_conv1d/depthwise_conv1d.h"
#include "common/dtypes.h"
#include "common/math.h"

namespace mvscan {
namespace cuda {

constexpr int kConvThreads = 256;  // every launch; the dweight tree needs a power of two
static_assert((kConvThreads & (kConvThreads - 1)) == 0, "the dweight tree halves kConvThreads");
// Rows (batch x step pairs) one dweight/dbias block sums before writing its partial.
constexpr int64_t kRowsPerPart = 8192;
// Channels of one dweight/dbias block when x is channels-fast: a warp's lanes take consecutive
// channels, so each load of a row coalesces; the block's other warps take other rows.
constexpr int kDweightChannels = 32;
static_assert(kConvThreads % kDweightChannels == 0, "whole row lanes per block");
// The dweight kernel keeps one partial sum per tap in registers, over a compile-time number of
// taps: kDweightSmallWidthCap (K <= 4: Mamba's 4, MambaVision's 3) or kMaxConvWidth (any other
// K). Indexed at run time, the sums lived on a 136-byte stack.
constexpr int kDweightSmallWidthCap = 4;
// Blocks a channels-fast dweight grid aims at (about 8 resident blocks on each of 132 SMs).
constexpr int64_t kDweightTargetBlocks = 1024;

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

// bias + sum_k w[c, k] x[b, c, t + k - pad_left] over the taps that count; 0 at a padding step
// (negative sequence id).
template <typename input_t>
__device__ conv_acc_t<input_t> conv_pre(const DepthwiseConv1dParams& p, int64_t b, int64_t c,
                                        int64_t t) {
  using acc_t = conv_acc_t<input_t>;
  if (p.seq_idx != nullptr && seq_id(p, b, t) < 0) return acc_t(0);
  acc_t acc = p.bias != nullptr
                  ? load_param<input_t>(p.bias, p.bias_is_float32, c * p.bias_stride)
                  : acc_t(0);
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
  acc_t g = static_cast<acc_t>(
      dout[b * bp.dout_strides.batch + c * bp.dout_strides.dim + s * bp.dout_strides.len]);
  if (p.silu) {
    const acc_t z = conv_pre<input_t>(p, b, c, s);
    const acc_t sg = sigmoid_acc(z);
    g *= sg * (acc_t(1) + z * (acc_t(1) - sg));
  }
  return g;
}

template <typename input_t>
__global__ void conv_fwd_kernel(DepthwiseConv1dParams p, bool channels_fast, int64_t total) {
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
__global__ void conv_bwd_dx_kernel(DepthwiseConv1dBwdParams bp, bool channels_fast,
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
// K = p.width <= kWidthCap; every loop over the taps' sums is unrolled to kWidthCap and guarded
// by K, so no sum is indexed at run time.
// The K <= 4 instance is held to 64 registers: 4 blocks an SM (without the bound ptxas took 66,
// which leaves room for 3).
template <typename input_t, int kWidthCap>
__global__ void __launch_bounds__(kConvThreads, kWidthCap <= kDweightSmallWidthCap ? 4 : 1)
    conv_bwd_dweight_kernel(DepthwiseConv1dBwdParams bp, int64_t rows_per_part, void* partial_out,
                            bool channels_fast) {
  using acc_t = conv_acc_t<input_t>;
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
  // kConvThreads values of acc_t (dynamic: see dweight_smem_bytes); declared as bytes because
  // the instantiations for float and double share the one extern symbol.
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

// Dynamic shared memory of conv_bwd_dweight_kernel: its reduction tree.
template <typename input_t>
constexpr size_t dweight_smem_bytes() {
  return kConvThreads * sizeof(conv_acc_t<input_t>);
}

}  // namespace cuda
}  // namespace mvscan
