// mvscan::causal_conv1d_update on CPU: checks, output, dtype dispatch and the kernel.
//
// A decode step convolves one (or a few) steps per row, so the kernel is plain C++: rows (batch,
// channel) split over threads by at::parallel_for, each walking its L steps through a K-tap
// window, then updating its state.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "causal_conv1d_update/causal_conv1d_update_params.h"
#include "common/dtype_dispatch.h"
#include "common/math.h"

namespace mvscan {
namespace cpu {
namespace {

constexpr const char* kOp = "mvscan.causal_conv1d_update";

template <typename acc_t, typename input_t>
inline acc_t load_param(const void* base, bool is_float32, int64_t i) {
  return is_float32 ? static_cast<acc_t>(static_cast<const float*>(base)[i])
                    : static_cast<acc_t>(static_cast<const input_t*>(base)[i]);
}

template <typename input_t>
void causal_conv1d_update_cpu(const CausalConv1dUpdateParams& p) {
  using acc_t = typename AccType<input_t>::type;
  const int64_t K = p.width, S = p.state_len, L = p.seqlen;
  const input_t* x = static_cast<const input_t*>(p.x);
  input_t* state = static_cast<input_t*>(p.conv_state);
  input_t* out = static_cast<input_t*>(p.out);
  // About 8k multiply-adds or copies per task: below that, waking a thread costs more.
  const int64_t grain = std::max<int64_t>(1, 8192 / (K * L + S));

  at::parallel_for(0, p.batch * p.dim, grain, [&](int64_t begin, int64_t end) {
    acc_t w[kMaxConvWidth], win[kMaxConvWidth];
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / p.dim, c = r % p.dim;
      input_t* out_row = out + b * p.out_strides.batch + c * p.out_strides.dim;
      int64_t s_row = b;
      if (p.conv_state_indices != nullptr) {
        s_row = p.conv_state_indices[b * p.conv_state_indices_stride];
        if (s_row < 0) {  // padding: no state row behind this batch element
          for (int64_t t = 0; t < L; ++t) out_row[t * p.out_strides.len] = input_t(0);
          continue;
        }
      }
      input_t* st = state + s_row * p.state_strides.batch + c * p.state_strides.dim;
      const int64_t ss = p.state_strides.len;
      const input_t* x_row = x + b * p.x_strides.batch + c * p.x_strides.dim;
      const int64_t xs = p.x_strides.len;
      for (int64_t k = 0; k < K; ++k) {
        w[k] = load_param<acc_t, input_t>(p.weight, p.weight_is_float32,
                                          c * p.weight_dim_stride + k * p.weight_tap_stride);
      }
      const acc_t bias = p.bias != nullptr
                             ? load_param<acc_t, input_t>(p.bias, p.bias_is_float32,
                                                          c * p.bias_stride)
                             : acc_t(0);
      const bool circular = p.cache_seqlens != nullptr;
      const int64_t pos =
          circular ? floor_mod(p.cache_seqlens[b * p.cache_seqlens_stride], S) : 0;
      // The K - 1 steps before x, read before anything is written.
      for (int64_t j = 0; j < K - 1; ++j) {
        const int64_t i = circular ? floor_mod(pos - (K - 1) + j, S) : S - (K - 1) + j;
        win[j] = static_cast<acc_t>(st[i * ss]);
      }
      for (int64_t t = 0; t < L; ++t) {
        win[K - 1] = static_cast<acc_t>(x_row[t * xs]);
        acc_t y = bias;
        for (int64_t k = 0; k < K; ++k) y += w[k] * win[k];
        if (p.silu) y *= sigmoid_acc(y);
        out_row[t * p.out_strides.len] = static_cast<input_t>(y);
        for (int64_t k = 0; k + 1 < K; ++k) win[k] = win[k + 1];
      }
      if (circular) {
        // Only the last S steps survive; writing just those gives the same state.
        for (int64_t t = std::max<int64_t>(0, L - S); t < L; ++t)
          st[floor_mod(pos + t, S) * ss] = x_row[t * xs];
      } else if (L >= S) {
        for (int64_t i = 0; i < S; ++i) st[i * ss] = x_row[(L - S + i) * xs];
      } else {
        for (int64_t i = 0; i < S - L; ++i) st[i * ss] = st[(i + L) * ss];  // ascending: safe
        for (int64_t t = 0; t < L; ++t) st[(S - L + t) * ss] = x_row[t * xs];
      }
    }
  });
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
