#include "depthwise_conv1d/depthwise_conv1d_params.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "common/outputs.h"

namespace mvscan {
namespace {

constexpr const char* kOp = "mvscan.depthwise_conv1d: ";

void check_param_dtype(const at::Tensor& t, const char* name, at::ScalarType x_type) {
  TORCH_CHECK_TYPE(t.scalar_type() == x_type || t.scalar_type() == at::kFloat, kOp, name,
                   " must have x's dtype (", x_type, ") or float32, got ", t.scalar_type());
}

}  // namespace

at::Tensor empty_like_conv_input(const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), L = x.size(2);
  // Channels-fast x (dense channels-last, or a view of a wider (B, L, *) projection such as
  // in_proj's output): the kernels walk channels fastest, so the outputs take that layout too
  // and their stores coalesce.
  const bool channels_last = C > 1 && x.stride(1) == 1;
  if (channels_last) return at::empty({B, L, C}, x.options()).transpose(1, 2);
  return at::empty({B, C, L}, x.options());
}

DepthwiseConv1dParams make_depthwise_conv1d_params(const at::Tensor& x, const at::Tensor& weight,
                                                   const std::optional<at::Tensor>& bias,
                                                   int64_t pad_left, bool silu,
                                                   const std::optional<at::Tensor>& seq_idx,
                                                   const std::optional<at::Tensor>& initial_states) {
  TORCH_CHECK_VALUE(x.dim() == 3, kOp, "x must be a 3-d tensor (batch, channels, L), got shape ",
                    x.sizes());
  check_input_dtype(x, "mvscan.depthwise_conv1d", "x");
  const at::ScalarType xt = x.scalar_type();
  const int64_t C = x.size(1);
  TORCH_CHECK_VALUE(weight.device() == x.device(), kOp, "weight is on ", weight.device(),
                    " but x is on ", x.device(), "; all tensors must be on one device");
  TORCH_CHECK_VALUE(weight.dim() == 2 && weight.size(0) == C, kOp,
                    "weight must have shape (channels, K) with channels = x.shape[1] = ", C,
                    ", got ", weight.sizes());
  check_param_dtype(weight, "weight", xt);
  const int64_t K = weight.size(1);
  TORCH_CHECK_VALUE(K >= 1 && K <= kMaxConvWidth, kOp, "kernel width K = ", K,
                    " (weight.shape[-1]) is not supported; supported: 1 to ", kMaxConvWidth);
  TORCH_CHECK_VALUE(pad_left >= 0 && pad_left <= K - 1, kOp, "pad_left = ", pad_left,
                    " must be in [0, K - 1] = [0, ", K - 1, "]");
  if (bias.has_value()) {
    TORCH_CHECK_VALUE(bias->device() == x.device(), kOp, "bias is on ", bias->device(),
                      " but x is on ", x.device(), "; all tensors must be on one device");
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == C, kOp,
                      "bias must have shape (channels,) = (", C, ",), got ", bias->sizes());
    check_param_dtype(*bias, "bias", xt);
  }

  const int64_t batch = x.size(0), L = x.size(2);
  if (seq_idx.has_value()) {
    TORCH_CHECK_VALUE(seq_idx->device() == x.device(), kOp, "seq_idx is on ", seq_idx->device(),
                      " but x is on ", x.device(), "; all tensors must be on one device");
    TORCH_CHECK_TYPE(seq_idx->scalar_type() == at::kInt, kOp,
                     "seq_idx must be int32 (torch.int32), got ", seq_idx->scalar_type());
    TORCH_CHECK_VALUE(seq_idx->dim() == 2 && seq_idx->size(0) == batch && seq_idx->size(1) == L,
                      kOp, "seq_idx must have shape (batch, L) = (", batch, ", ", L, "), got ",
                      seq_idx->sizes());
  }
  if (initial_states.has_value()) {
    const at::Tensor& h = *initial_states;
    TORCH_CHECK_VALUE(h.device() == x.device(), kOp, "initial_states is on ", h.device(),
                      " but x is on ", x.device(), "; all tensors must be on one device");
    TORCH_CHECK_TYPE(h.scalar_type() == xt, kOp, "initial_states must have x's dtype (", xt,
                     "), got ", h.scalar_type());
    TORCH_CHECK_VALUE(h.dim() == 3 && h.size(0) == batch && h.size(1) == C && h.size(2) == K - 1,
                      kOp, "initial_states must have shape (batch, channels, K - 1) = (", batch,
                      ", ", C, ", ", K - 1, "), got ", h.sizes());
  }

  DepthwiseConv1dParams p;
  p.batch = x.size(0);
  p.channels = C;
  p.seqlen = x.size(2);
  p.width = K;
  p.pad_left = pad_left;
  p.silu = silu;
  p.x = x.data_ptr();
  p.x_strides = seq_strides_of(x);
  p.weight = weight.data_ptr();
  p.weight_is_float32 = weight.scalar_type() == at::kFloat;
  p.weight_channel_stride = weight.stride(0);
  p.weight_tap_stride = weight.stride(1);
  if (bias.has_value()) {
    p.bias = bias->data_ptr();
    p.bias_is_float32 = bias->scalar_type() == at::kFloat;
    p.bias_stride = bias->stride(0);
  }
  if (seq_idx.has_value()) {
    p.seq_idx = seq_idx->data_ptr<int32_t>();
    p.seq_idx_batch_stride = seq_idx->stride(0);
    p.seq_idx_len_stride = seq_idx->stride(1);
  }
  if (initial_states.has_value()) {
    p.init = initial_states->data_ptr();
    p.init_strides = seq_strides_of(*initial_states);
  }
  return p;
}

DepthwiseConv1dBwdParams make_depthwise_conv1d_bwd_params(const at::Tensor& dout,
                                                          const at::Tensor& x,
                                                          const at::Tensor& weight,
                                                          const std::optional<at::Tensor>& bias,
                                                          int64_t pad_left, bool silu,
                                                          const std::optional<at::Tensor>& seq_idx,
                                                          const std::optional<at::Tensor>& initial_states,
                                                          at::Tensor* dx, at::Tensor* dinit) {
  DepthwiseConv1dBwdParams bp;
  bp.fwd = make_depthwise_conv1d_params(x, weight, bias, pad_left, silu, seq_idx, initial_states);
  TORCH_CHECK_VALUE(dout.device() == x.device() && dout.sizes() == x.sizes(), kOp,
                    "dout must have x's shape ", x.sizes(), " and device ", x.device(), ", got ",
                    dout.sizes(), " on ", dout.device());
  TORCH_CHECK_TYPE(dout.scalar_type() == x.scalar_type(), kOp, "dout must have x's dtype ",
                   x.scalar_type(), ", got ", dout.scalar_type());
  *dx = poisoned(empty_like_conv_input(x));
  bp.dout = dout.data_ptr();
  bp.dout_strides = seq_strides_of(dout);
  bp.dx = dx->data_ptr();
  bp.dx_strides = seq_strides_of(*dx);
  if (initial_states.has_value()) {
    // Without steps no kernel writes it (and none may read seq_idx's empty rows): no tap reads
    // the states, so their gradient is 0.
    *dinit = x.size(2) == 0 ? at::zeros(initial_states->sizes(), x.options())
                            : poisoned(at::empty(initial_states->sizes(), x.options()));
    bp.dinit = dinit->data_ptr();
    bp.dinit_strides = seq_strides_of(*dinit);
  } else {
    *dinit = at::empty({0}, x.options());
  }
  return bp;
}

}  // namespace mvscan
