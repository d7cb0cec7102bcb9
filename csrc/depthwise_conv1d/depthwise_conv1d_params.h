// Argument checks and parameter blocks for the depthwise conv1d operators, shared by every device.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "depthwise_conv1d/depthwise_conv1d.h"

namespace mvscan {

// Validates the forward's arguments (ValueError/TypeError naming the argument, what was expected
// and what came) and describes them. Output pointers are left unset.
DepthwiseConv1dParams make_depthwise_conv1d_params(const at::Tensor& x, const at::Tensor& weight,
                                                   const std::optional<at::Tensor>& bias,
                                                   int64_t pad_left, bool silu,
                                                   const std::optional<at::Tensor>& seq_idx,
                                                   const std::optional<at::Tensor>& initial_states);

// Validates the backward's arguments (those of the forward, and dout: x's shape, device and
// dtype), allocates dx (laid out like the forward's output, NaN-poisoned when poisoning is on) and,
// with initial states, dinit (contiguous, or an empty (0,) tensor without them), and describes
// them. The partial-sum pointers are left to the device, which lays them out.
DepthwiseConv1dBwdParams make_depthwise_conv1d_bwd_params(const at::Tensor& dout,
                                                          const at::Tensor& x,
                                                          const at::Tensor& weight,
                                                          const std::optional<at::Tensor>& bias,
                                                          int64_t pad_left, bool silu,
                                                          const std::optional<at::Tensor>& seq_idx,
                                                          const std::optional<at::Tensor>& initial_states,
                                                          at::Tensor* dx, at::Tensor* dinit);

// An empty output shaped like x: channels-last when x is dense channels-last (as in_proj's
// output transposed), contiguous otherwise. mvscan/ops.py's fake kernel follows the same rule.
at::Tensor empty_like_conv_input(const at::Tensor& x);

}  // namespace mvscan
