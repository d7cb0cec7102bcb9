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

// Steps [lo, lo + n) of x for the block into buf[t][lane]: the initial states before step 0
// (zeros without them), zeros from L on.
template <typename input_t, typename acc_t>
inline void load_x_span(const DepthwiseConv1dParams& p, int64_t b, int64_t d0, int lanes,
                        int64_t lo, int64_t n, acc_t* buf) {
  load_halo_panel<input_t>(p.x, p.x_strides, p.seqlen, b, d0, lanes, lo, n, buf);
  if (p.init == nullptr || lo >= 0) return;
  const int64_t first = lo > 1 - p.width ? lo : 1 - p.width;  // the states hold K - 1 steps
  const int64_t last = lo + n < 0 ? lo + n : 0;
  if (last > first)
    load_panel<input_t>(p.init, p.init_strides, b, d0, lanes, first + p.width - 1, last - first,
                        buf + (first - lo) * kLanes);
}

// Sequence ids of steps [lo, lo + n) of batch b (one per step, shared by every lane): seq_idx in
// [0, L); before step 0, step 0's id with initial states (they continue its sequence) and -1
// without (x is zero there); -1 from L on.
inline void load_seq_ids(const DepthwiseConv1dParams& p, int64_t b, int64_t lo, int64_t n,
                         int32_t* ids) {
  const int32_t* row = p.seq_idx + b * p.seq_idx_batch_stride;
  const int32_t before = p.init != nullptr ? row[0] : -1;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = lo + i;
    ids[i] = s < 0 ? before : (s < p.seqlen ? row[s * p.seq_idx_len_stride] : -1);
  }
}

// out[t] = bias + sum_k w[k] x[t + k] for t < T, x holding T + K - 1 steps; then SiLU if asked.
// With ids (aligned with x; step t's own id at ids[t + pad_left]), a tap counts only inside the
// output's sequence, and an output with a negative id is 0.
template <typename acc_t>
inline void conv_steps(const acc_t* x, const int32_t* ids, int64_t pad_left, const acc_t* w,
                       const acc_t* bias, int64_t K, int64_t T, bool silu, acc_t* out) {
  if (ids == nullptr) {
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
  } else {
    for (int64_t t = 0; t < T; ++t) {
      const int32_t own = ids[t + pad_left];
      acc_t y[kLanes];
      MVSCAN_LANES y[l] = own < 0 ? acc_t(0) : bias[l];
      for (int64_t k = 0; own >= 0 && k < K; ++k) {
        if (ids[t + k] != own) continue;  // one id per step: the branch is lane-uniform
        const acc_t* xk = x + (t + k) * kLanes;
        const acc_t* wk = w + k * kLanes;
        MVSCAN_LANES y[l] += wk[l] * xk[l];
      }
      MVSCAN_LANES out[t * kLanes + l] = y[l];
    }
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
  int32_t ids_buf[kConvSpanIds];
  const int32_t* ids = p.seq_idx != nullptr ? ids_buf : nullptr;
  load_conv_params<input_t>(p, d0, lanes, w, bias);
  for (int64_t t0 = 0; t0 < L; t0 += TC) {
    const int64_t T = L - t0 < TC ? L - t0 : TC;
    load_x_span<input_t>(p, b, d0, lanes, t0 - p.pad_left, T + K - 1, xb);
    if (ids != nullptr) load_seq_ids(p, b, t0 - p.pad_left, T + K - 1, ids_buf);
    conv_steps(xb, ids, p.pad_left, w, bias, K, T, p.silu, yb);
    store_panel<input_t>(p.out, p.out_strides, b, d0, lanes, t0, T, yb);
  }
}

// dx[t] = sum_k w[k] g[t - k + pad_left] and dweight[k] = sum_t g[t] x[t + k - pad_left], with
// g = dout * silu'(pre) (pre recomputed, never stored) or dout. A span needs g on K - 1 extra
// steps and x on 2 (K - 1) extra steps; dweight and dbias only sum the span's own steps. With
// sequence ids every sum skips the taps the forward skipped, and g is 0 where the output was
// forced to 0; with initial states the first span also gives their gradient (dx before step 0).
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
  // Sequence ids aligned with xb: step g_lo - pad_l + i at ids[i], so gb[i]'s at ids[i + pad_l].
  int32_t ids_buf[kConvSpanIds];
  const int32_t* ids = p.seq_idx != nullptr ? ids_buf : nullptr;
  load_conv_params<input_t>(p, d0, lanes, w, bias);
  zero(dw, K * kLanes);
  zero(db, kLanes);

  for (int64_t t0 = 0; t0 < L; t0 += TC) {
    const int64_t T = L - t0 < TC ? L - t0 : TC;
    const int64_t G = T + K - 1;        // g on [t0 - pad_r, t0 + T + pad_l)
    const int64_t g_lo = t0 - pad_r;
    load_halo_panel<input_t>(bp.dout, bp.dout_strides, L, b, d0, lanes, g_lo, G, gb);
    load_x_span<input_t>(p, b, d0, lanes, g_lo - pad_l, G + K - 1, xb);
    if (ids != nullptr) load_seq_ids(p, b, g_lo - pad_l, G + K - 1, ids_buf);
    if (silu) {
      conv_steps(xb, ids, pad_l, w, bias, K, G, false, pre);
      for (int64_t i = 0; i < G * kLanes; i += kLanes) {
        const acc_t* z = pre + i;
        acc_t* g = gb + i;
        MVSCAN_LANES {
          const acc_t s = sigmoid_acc(z[l]);
          g[l] = g[l] * s * (acc_t(1) + z[l] * (acc_t(1) - s));
        }
      }
    }
    if (ids != nullptr) {  // outputs of padding steps were forced to 0: no gradient flows back
      for (int64_t i = 0; i < G; ++i)
        if (ids[i + pad_l] < 0) zero(gb + i * kLanes, kLanes);
    }
    // dx[t0 + i] = sum_k w[k] gb[i + K - 1 - k]; the input step's id is ids[i + K - 1], the
    // output step's ids[i + K - 1 - k + pad_l].
    for (int64_t i = 0; i < T; ++i) {
      acc_t acc[kLanes];
      MVSCAN_LANES acc[l] = acc_t(0);
      for (int64_t kk = 0; kk < K; ++kk) {
        if (ids != nullptr && ids[i + K - 1] != ids[i + K - 1 - kk + pad_l]) continue;
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
        if (ids != nullptr && ids[i + K - 1] != ids[i + kk + pad_r]) continue;
        const acc_t* x = xb + (i + kk + pad_r) * kLanes;
        acc_t* dwk = dw + kk * kLanes;
        MVSCAN_LANES dwk[l] += g[l] * x[l];
      }
    }
    store_panel<input_t>(bp.dx, bp.dx_strides, b, d0, lanes, t0, T, dxb);
    if (t0 == 0 && bp.dinit != nullptr && K > 1) {
      // dx at step j - (K - 1) < 0, the initial state j: sum over taps k <= j of w[k] gb[j - k]
      // (gb[j - k] is step j - (K - 1) - k + pad_l; its id is ids[j - k + pad_l], the state's
      // ids[j]). xb and dxb are free: the state gradient goes through dxb.
      for (int64_t j = 0; j < K - 1; ++j) {
        acc_t acc[kLanes];
        MVSCAN_LANES acc[l] = acc_t(0);
        for (int64_t kk = 0; kk <= j; ++kk) {
          if (ids != nullptr && ids[j] != ids[j - kk + pad_l]) continue;
          const acc_t* gk = gb + (j - kk) * kLanes;
          const acc_t* wk = w + kk * kLanes;
          MVSCAN_LANES acc[l] += wk[l] * gk[l];
        }
        MVSCAN_LANES dxb[j * kLanes + l] = acc[l];
      }
      store_panel<input_t>(bp.dinit, bp.dinit_strides, b, d0, lanes, 0, K - 1, dxb);
    }
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
