#include "causal_conv1d_update/causal_conv1d_update_params.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "common/dtype_dispatch.h"
#include "common/in_place.h"
#include "common/outputs.h"
#include "common/state_indices.h"

namespace mvscan {
namespace {

constexpr const char* kOpName = "mvscan.causal_conv1d_update";
constexpr const char* kOp = "mvscan.causal_conv1d_update: ";

void check_device(const at::Tensor& t, const char* name, const at::Tensor& x) {
  TORCH_CHECK_VALUE(t.device() == x.device(), kOp, name, " is on ", t.device(), " but x is on ",
                    x.device(), "; all tensors must be on one device");
}

bool check_param_dtype(const at::Tensor& t, const char* name, const at::Tensor& x) {
  TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type() || t.scalar_type() == at::kFloat, kOp,
                   name, " must have x's dtype (", x.scalar_type(), ") or float32, got ",
                   t.scalar_type());
  return t.scalar_type() == at::kFloat;
}

// A (batch, dim) x or out seen as (batch, dim, 1).
SeqStrides steps_strides(const at::Tensor& t) {
  return t.dim() == 3 ? seq_strides_of(t) : SeqStrides{t.stride(0), t.stride(1), 0};
}

}  // namespace

CausalConv1dUpdateParams make_causal_conv1d_update_params(
    const at::Tensor& x, const at::Tensor& conv_state, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, bool silu,
    const std::optional<at::Tensor>& cache_seqlens,
    const std::optional<at::Tensor>& conv_state_indices, bool check_index_values,
    at::Tensor* out) {
  TORCH_CHECK_VALUE(x.dim() == 2 || x.dim() == 3, kOp,
                    "x must have shape (batch, dim) or (batch, dim, L), got ", x.sizes());
  check_input_dtype(x, kOpName, "x");
  const int64_t batch = x.size(0), dim = x.size(1), L = x.dim() == 3 ? x.size(2) : 1;

  check_device(conv_state, "conv_state", x);
  TORCH_CHECK_VALUE(conv_state.dim() == 3 && conv_state.size(1) == dim, kOp,
                    "conv_state must have shape (batch, dim, state_len) with dim = x.shape[1] = ",
                    dim, ", got ", conv_state.sizes());
  TORCH_CHECK_TYPE(conv_state.scalar_type() == x.scalar_type(), kOp,
                   "conv_state must have x's dtype ", x.scalar_type(), ", got ",
                   conv_state.scalar_type());
  if (!conv_state_indices.has_value()) {
    TORCH_CHECK_VALUE(conv_state.size(0) == batch, kOp, "conv_state.shape[0] = ",
                      conv_state.size(0), " must equal x.shape[0] = batch = ", batch,
                      " (pass conv_state_indices to update rows of a larger state)");
  }
  const int64_t S = conv_state.size(2);

  check_device(weight, "weight", x);
  TORCH_CHECK_VALUE(weight.dim() == 2 && weight.size(0) == dim, kOp,
                    "weight must have shape (dim, K) with dim = x.shape[1] = ", dim, ", got ",
                    weight.sizes());
  const bool weight_f32 = check_param_dtype(weight, "weight", x);
  const int64_t K = weight.size(1);
  TORCH_CHECK_VALUE(K >= 1 && K <= kMaxConvWidth, kOp, "kernel width K = ", K,
                    " (weight.shape[1]) is not supported; supported: 1 to ", kMaxConvWidth);
  TORCH_CHECK_VALUE(S >= K - 1, kOp, "conv_state holds state_len = ", S,
                    " steps (conv_state.shape[2]), fewer than K - 1 = ", K - 1);
  if (bias.has_value()) {
    check_device(*bias, "bias", x);
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == dim, kOp,
                      "bias must have shape (dim,) = (", dim, ",), got ", bias->sizes());
  }

  CausalConv1dUpdateParams p;
  p.batch = batch;
  p.dim = dim;
  p.seqlen = L;
  p.width = K;
  p.state_len = S;
  p.state_rows = conv_state.size(0);
  p.silu = silu;
  p.weight_is_float32 = weight_f32;
  if (bias.has_value()) {
    p.bias_is_float32 = check_param_dtype(*bias, "bias", x);
    p.bias = bias->data_ptr();
    p.bias_stride = bias->stride(0);
  }

  const IndexVector seqlens = check_index_vector(cache_seqlens, x, batch, kOpName, "cache_seqlens");
  TORCH_CHECK_VALUE(!cache_seqlens.has_value() || S >= 1, kOp,
                    "a circular conv_state (cache_seqlens given) needs state_len >= 1, got "
                    "conv_state of shape ", conv_state.sizes());
  p.cache_seqlens = seqlens.data;
  p.cache_seqlens_stride = seqlens.stride;
  const IndexVector idx =
      check_index_vector(conv_state_indices, x, batch, kOpName, "conv_state_indices");
  if (check_index_values && conv_state_indices.has_value()) {
    check_state_row_indices(*conv_state_indices, p.state_rows, kOpName, "conv_state_indices",
                            "conv_state.shape[0]");
  }
  // conv_state is updated in place: its rows must not share memory with each other or with an
  // input (host-only checks of strides and storage ranges).
  check_no_internal_overlap(conv_state, kOpName, "conv_state");
  check_no_overlap_with_state(
      conv_state, kOpName, "conv_state",
      {{"x", x}, {"weight", weight}, {"bias", or_undefined(bias)},
       {"cache_seqlens", or_undefined(cache_seqlens)},
       {"conv_state_indices", or_undefined(conv_state_indices)}});
  p.conv_state_indices = idx.data;
  p.conv_state_indices_stride = idx.stride;

  p.x = x.data_ptr();
  p.x_strides = steps_strides(x);
  p.conv_state = conv_state.data_ptr();
  p.state_strides = seq_strides_of(conv_state);
  p.weight = weight.data_ptr();
  p.weight_dim_stride = weight.stride(0);
  p.weight_tap_stride = weight.stride(1);
  *out = poisoned(at::empty(x.sizes(), x.options()));
  p.out = out->data_ptr();
  p.out_strides = steps_strides(*out);
  return p;
}

}  // namespace mvscan
