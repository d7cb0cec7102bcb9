// The CPU depthwise conv1d kernels, forward and backward, for one instruction set.
//
// No include guard: for_each_isa.h compiles this file once per instruction set, inside its own
// namespace and target options (see selective_scan_cpu_kernel.h for why).
//
// A block is kLanes channels of one batch element, walked in spans of kConvSpanLen steps:
// the x panel of a span, with its K - 1 steps of halo, is held as [t][lane], so every tap is one
// vector multiply-add over channels whatever the input layout, and SiLU is fused into the pass.

namespace mvscan {
namespace cpu {
namespace MVSCAN_ISA {

constexpr int kLanes = MVSCAN_ISA_LANES;

#include "common/panel_io.h"

// A weight or bias value, which is float32 or x's dtype.
template <typename input_t, typename acc_t>
inline acc_t param_at(const void* base, bool is_float32, int64_t index) {
  return is_float32 ? static_cast<acc_t>(static_cast<const float*>(base)[index])
                    : static_cast<acc_t>(static_cast<const input_t*>(base)[index]);
}

// weight as w[k][lane] and bias as bias[lane] for channels d0..d0+lanes (zero elsewhere).
template <typename input_t, typename acc_t>
inline void load_conv_params(const DepthwiseConv1dParams& p, int64_t d0, int lanes, acc_t* w,
                             acc_t* bias) {
  zero(w, p.width * kLanes);
  zero(bias, kLanes);
  for (int l = 0; l < lanes; ++l) {
    for (int64_t k = 0; k < p.width; ++k)
      w[k * kLanes + l] = param_at<input_t, acc_t>(
          p.weight, p.weight_is_float32, (d0 + l) * p.weight_channel_stride + k * p.weight_tap_stride);
    if (p.bias != nullptr)
      bias[l] = param_at<input_t, acc_t>(p.bias, p.bias_is_float32, (d0 + l) * p.bias_stride);
  }
}

// Loads steps [lo, lo + n) of the block into buf[t][lane], reading zero outside [0, L).
template <typename input_t, typename acc_t>
inline void load_halo_panel(const void* base, const SeqStrides& s, int64_t L, int64_t b,
                           int64_t d0, int lanes, int64_t lo, int64_t n, acc_t* buf) {
  const int64_t first = lo < 0 ? 0 : lo;
  const int64_t last = lo + n > L ? L : lo + n;
  zero(buf, (first - lo) * kLanes);
  if (last > first) load_panel<input_t>(base, s, b, d0, lanes, first, last - first,
                                       buf + (first - lo) * kLanes);
  const int64_t filled = (last > first ? last : first) - lo;
  zero(buf + filled * kLanes, (n - filled) * kLanes);
}

// out[t] = bias + sum_k w[k] x[t + k] for t < T, x holding T + K - 1 steps; then SiLU if asked.
template <typename acc_t>
inline void conv_steps(const acc_t* x, const acc_t* w, const acc_t* bias, int64_t K, int64_t T,
                       bool silu, acc_t* out) {
  for (int64_t t = 0; t < T; ++t) {
    acc_t y[kLanes];
    MVSCAN_LANES y[l] = bias[l];
    for (int64_t k = 0; k < K; ++k) {
      const acc_t* xk = x + (t + k) * kLanes;
      const acc_t* wk = w + k * kLanes;
      MVSCAN_LANES y[l] += wk[l] * xk[l];
    }
    MVSCAN_LANES out[t * kLanes + l] = y[l];
  }
  if (silu) {
    for (int64_t i = 0; i < T * kLanes; i += kLanes) {
      acc_t* o = out + i;
      MVSCAN_LANES o[l] = o[l] * sigmoid_acc(o[l]);
    }
  }
}

template <typename input_t>
void conv_fwd_block(const DepthwiseConv1dParams& p, int64_t b, int64_t k,
                    typename AccType<input_t>::type* workspace) {
  using acc_t = typename AccType<input_t>::type;
  const int64_t K = p.width, L = p.seqlen, TC = kConvSpanLen;
  const int64_t d0 = k * kLanes;
  const int lanes = static_cast<int>(p.channels - d0 < kLanes ? p.channels - d0 : kLanes);
  Bump<acc_t> ws{workspace};
  acc_t* w = ws.take(K * kLanes);
  acc_t* bias = ws.take(kLanes);
  acc_t* xb = ws.take((TC + K - 1) * kLanes);
  acc_t* yb = ws.take(TC * kLanes);
  load_conv_params<input_t>(p, d0, lanes, w, bias);
  for (int64_t t0 = 0; t0 < L; t0 += TC) {
    const int64_t T = L - t0 < TC ? L - t0 : TC;
    load_halo_panel<input_t>(p.x, p.x_strides, L, b, d0, lanes, t0 - p.pad_left, T + K - 1, xb);
    conv_steps(xb, w, bias, K, T, p.silu, yb);
    store_panel<input_t>(p.out, p.out_strides, b, d0, lanes, t0, T, yb);
  }
}

// dx[t] = sum_k w[k] g[t - k + pad_left] and dweight[k] = sum_t g[t] x[t + k - pad_left], with
// g = dout * silu'(pre) (pre recomputed, never stored) or dout. A span needs g on K - 1 extra
// steps and x on 2 (K - 1) extra steps; dweight and dbias only sum the span's own steps.
template <typename input_t>
void conv_bwd_block(const DepthwiseConv1dBwdParams& bp, int64_t b, int64_t k,
                    typename AccType<input_t>::type* workspace) {
  using acc_t = typename AccType<input_t>::type;
  const DepthwiseConv1dParams& p = bp.fwd;
  const int64_t K = p.width, L = p.seqlen, TC = kConvSpanLen;
  const int64_t pad_l = p.pad_left, pad_r = K - 1 - p.pad_left;
  const int64_t d0 = k * kLanes;
  const int lanes = static_cast<int>(p.channels - d0 < kLanes ? p.channels - d0 : kLanes);
  const bool silu = p.silu;
  Bump<acc_t> ws{workspace};
  acc_t* w = ws.take(K * kLanes);
  acc_t* bias = ws.take(kLanes);
  acc_t* dw = ws.take(K * kLanes);
  acc_t* db = ws.take(kLanes);
  acc_t* xb = ws.take((TC + 2 * (K - 1)) * kLanes);
  acc_t* gb = ws.take((TC + K - 1) * kLanes);
  acc_t* pre = ws.take((TC + K - 1) * kLanes);
  acc_t* dxb = ws.take(TC * kLanes);
  load_conv_params<input_t>(p, d0, lanes, w, bias);
  zero(dw, K * kLanes);
  zero(db, kLanes);

  for (int64_t t0 = 0; t0 < L; t0 += TC) {
    const int64_t T = L - t0 < TC ? L - t0 : TC;
    const int64_t G = T + K - 1;        // g on [t0 - pad_r, t0 + T + pad_l)
    const int64_t g_lo = t0 - pad_r;
    load_halo_panel<input_t>(bp.dout, bp.dout_strides, L, b, d0, lanes, g_lo, G, gb);
    load_halo_panel<input_t>(p.x, p.x_strides, L, b, d0, lanes, g_lo - pad_l, G + K - 1, xb);
    if (silu) {
      conv_steps(xb, w, bias, K, G, false, pre);
      for (int64_t i = 0; i < G * kLanes; i += kLanes) {
        const acc_t* z = pre + i;
        acc_t* g = gb + i;
        MVSCAN_LANES {
          const acc_t s = sigmoid_acc(z[l]);
          g[l] = g[l] * s * (acc_t(1) + z[l] * (acc_t(1) - s));
        }
      }
    }
    // dx[t0 + i] = sum_k w[k] gb[i + K - 1 - k]
    for (int64_t i = 0; i < T; ++i) {
      acc_t acc[kLanes];
      MVSCAN_LANES acc[l] = acc_t(0);
      for (int64_t kk = 0; kk < K; ++kk) {
        const acc_t* gk = gb + (i + K - 1 - kk) * kLanes;
        const acc_t* wk = w + kk * kLanes;
        MVSCAN_LANES acc[l] += wk[l] * gk[l];
      }
      MVSCAN_LANES dxb[i * kLanes + l] = acc[l];
    }
    // dweight[k] += sum_i gb[i + pad_r] xb[i + k + pad_r]; dbias += sum_i gb[i + pad_r]
    for (int64_t i = 0; i < T; ++i) {
      const acc_t* g = gb + (i + pad_r) * kLanes;
      MVSCAN_LANES db[l] += g[l];
      for (int64_t kk = 0; kk < K; ++kk) {
        const acc_t* x = xb + (i + kk + pad_r) * kLanes;
        acc_t* dwk = dw + kk * kLanes;
        MVSCAN_LANES dwk[l] += g[l] * x[l];
      }
    }
    store_panel<input_t>(bp.dx, bp.dx_strides, b, d0, lanes, t0, T, dxb);
  }
  acc_t* dw_out = static_cast<acc_t*>(bp.dweight_part) + (b * p.channels + d0) * K;
  acc_t* db_out = static_cast<acc_t*>(bp.dbias_part) + b * p.channels + d0;
  for (int l = 0; l < lanes; ++l) {
    for (int64_t kk = 0; kk < K; ++kk) dw_out[l * K + kk] = dw[kk * kLanes + l];
    db_out[l] = db[l];
  }
}

#undef MVSCAN_LANES

}  // namespace MVSCAN_ISA
}  // namespace cpu
}  // namespace mvscan
