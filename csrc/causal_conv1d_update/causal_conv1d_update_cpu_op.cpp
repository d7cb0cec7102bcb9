// mvscan::causal_conv1d_update on CPU: checks, output, dtype dispatch and the kernel.
//
// A decode step convolves one step (or a few) per channel, so the kernel is plain C++ written for
// the compiler's vectoriser (compiled per instruction set: common/isa_targets.h): work units of up
// to kUnitChannels channels of one batch element, split over threads by at::parallel_for. A unit
// gathers its window (the K - 1 steps before x, then x, kSpanLen steps at a time) and its weights
// into [step][channel] buffers, so the taps, the bias and the SiLU run as loops over channels;
// then each channel's state is updated on its own (a few copies).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "causal_conv1d_update/causal_conv1d_update_params.h"
#include "common/dtype_dispatch.h"
#include "common/isa_targets.h"
#include "common/math.h"

namespace mvscan {
namespace cpu {
namespace {

constexpr const char* kOp = "mvscan.causal_conv1d_update";
constexpr int64_t kUnitChannels = 64;
constexpr int64_t kSpanLen = 16;  // steps convolved per pass over a unit's window buffer

template <typename acc_t, typename input_t>
inline acc_t load_param(const void* base, bool is_float32, int64_t i) {
  return is_float32 ? static_cast<acc_t>(static_cast<const float*>(base)[i])
                    : static_cast<acc_t>(static_cast<const input_t*>(base)[i]);
}

// Work units [begin, end): unit u is channels [c0, c0 + kUnitChannels) of one batch element.
// Compiled per instruction set by the wrappers below, which also inline math.h's sigmoid into
// the loops (GCC leaves it out of line by itself, and a loop that calls it is not vectorised).
template <typename input_t>
inline void conv_update_units(const CausalConv1dUpdateParams& p, int64_t begin, int64_t end) {
  using acc_t = typename AccType<input_t>::type;
  const int64_t K = p.width, S = p.state_len, L = p.seqlen;
  const int64_t units_per_batch = (p.dim + kUnitChannels - 1) / kUnitChannels;
  const int64_t ss = p.state_strides.len, xs = p.x_strides.len;
  acc_t w[kMaxConvWidth][kUnitChannels], bias[kUnitChannels], y[kUnitChannels];
  acc_t win[kMaxConvWidth - 1 + kSpanLen][kUnitChannels];  // [window step][channel]
  for (int64_t u = begin; u < end; ++u) {
    const int64_t b = u / units_per_batch, c0 = u % units_per_batch * kUnitChannels;
    const int64_t nc = std::min(kUnitChannels, p.dim - c0);
    input_t* out = static_cast<input_t*>(p.out) + b * p.out_strides.batch +
                   c0 * p.out_strides.dim;
    const input_t* x = static_cast<const input_t*>(p.x) + b * p.x_strides.batch +
                       c0 * p.x_strides.dim;
    int64_t s_row = b;
    if (p.conv_state_indices != nullptr) {
      s_row = p.conv_state_indices[b * p.conv_state_indices_stride];
      if (s_row < 0) {  // padding: no state row behind this batch element
        for (int64_t t = 0; t < L; ++t) {
          for (int64_t i = 0; i < nc; ++i)
            out[i * p.out_strides.dim + t * p.out_strides.len] = input_t(0);
        }
        continue;
      }
    }
    input_t* st = static_cast<input_t*>(p.conv_state) + s_row * p.state_strides.batch +
                  c0 * p.state_strides.dim;
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t i = 0; i < nc; ++i) {
        w[k][i] = load_param<acc_t, input_t>(
            p.weight, p.weight_is_float32,
            (c0 + i) * p.weight_dim_stride + k * p.weight_tap_stride);
      }
    }
    for (int64_t i = 0; i < nc; ++i) {
      bias[i] = p.bias != nullptr ? load_param<acc_t, input_t>(p.bias, p.bias_is_float32,
                                                               (c0 + i) * p.bias_stride)
                                  : acc_t(0);
    }
    const bool circular = p.cache_seqlens != nullptr;
    const int64_t pos =
        circular ? floor_mod(p.cache_seqlens[b * p.cache_seqlens_stride], S) : 0;
    // The K - 1 steps before x, read before anything is written.
    for (int64_t j = 0; j < K - 1; ++j) {
      const int64_t at = circular ? floor_mod(pos - (K - 1) + j, S) : S - (K - 1) + j;
      for (int64_t i = 0; i < nc; ++i)
        win[j][i] = static_cast<acc_t>(st[i * p.state_strides.dim + at * ss]);
    }
    for (int64_t t0 = 0; t0 < L; t0 += kSpanLen) {
      const int64_t T = std::min(kSpanLen, L - t0);
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t i = 0; i < nc; ++i)
          win[K - 1 + t][i] = static_cast<acc_t>(x[i * p.x_strides.dim + (t0 + t) * xs]);
      }
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t i = 0; i < nc; ++i) y[i] = bias[i];
        for (int64_t k = 0; k < K; ++k) {
          for (int64_t i = 0; i < nc; ++i) y[i] += w[k][i] * win[t + k][i];
        }
        if (p.silu) {
          for (int64_t i = 0; i < nc; ++i) y[i] *= sigmoid_acc(y[i]);
        }
        for (int64_t i = 0; i < nc; ++i)
          out[i * p.out_strides.dim + (t0 + t) * p.out_strides.len] = static_cast<input_t>(y[i]);
      }
      // The span's last K - 1 steps precede the next span.
      for (int64_t j = 0; j < K - 1; ++j) {
        for (int64_t i = 0; i < nc; ++i) win[j][i] = win[T + j][i];
      }
    }
    for (int64_t i = 0; i < nc; ++i) {
      input_t* sr = st + i * p.state_strides.dim;
      const input_t* xr = x + i * p.x_strides.dim;
      if (circular) {
        // Only the last S steps survive; writing just those gives the same state.
        int64_t at = floor_mod(pos + std::max<int64_t>(0, L - S), S);
        for (int64_t t = std::max<int64_t>(0, L - S); t < L; ++t) {
          sr[at * ss] = xr[t * xs];
          at = at + 1 == S ? 0 : at + 1;
        }
      } else if (L >= S) {
        for (int64_t j = 0; j < S; ++j) sr[j * ss] = xr[(L - S + j) * xs];
      } else {
        for (int64_t j = 0; j < S - L; ++j) sr[j * ss] = sr[(j + L) * ss];  // ascending: safe
        for (int64_t t = 0; t < L; ++t) sr[(S - L + t) * ss] = xr[t * xs];
      }
    }
  }
}

MVSCAN_ISA_WRAPPERS(conv_update_units_isa, conv_update_units,
                    (const CausalConv1dUpdateParams& p, int64_t begin, int64_t end),
                    (p, begin, end))

template <typename input_t>
void causal_conv1d_update_cpu(const CausalConv1dUpdateParams& p) {
  const auto units_fn = MVSCAN_PICK_ISA_WRAPPER(conv_update_units_isa, input_t);
  const int64_t units = p.batch * ((p.dim + kUnitChannels - 1) / kUnitChannels);
  // About 16k taps or copies (some 10 us) per task: waking a thread for less costs more.
  const int64_t grain =
      std::max<int64_t>(1, 16384 / (kUnitChannels * (p.width * p.seqlen + p.state_len)));
  at::parallel_for(0, units, grain,
                   [&](int64_t begin, int64_t end) { units_fn(p, begin, end); });
}

at::Tensor causal_conv1d_update(const at::Tensor& x, const at::Tensor& conv_state,
                                const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                bool silu, const std::optional<at::Tensor>& cache_seqlens,
                                const std::optional<at::Tensor>& conv_state_indices) {
  TORCH_CHECK_VALUE(x.device().is_cpu(), kOp, ": CPU kernel called with x on ", x.device());
  at::Tensor out;
  const CausalConv1dUpdateParams p = make_causal_conv1d_update_params(
      x, conv_state, weight, bias, silu, cache_seqlens, conv_state_indices,
      /*check_index_values=*/true, &out);
  dispatch_input_type(x.scalar_type(), kOp, [&](auto tag) {
    causal_conv1d_update_cpu<decltype(tag)>(p);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(mvscan, CPU, m) {
  m.impl("causal_conv1d_update", &causal_conv1d_update);
}

}  // namespace cpu
}  // namespace mvscan
