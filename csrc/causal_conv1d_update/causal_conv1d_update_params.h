// Argument checks and the parameter block of the causal conv1d update, shared by every device.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "causal_conv1d_update/causal_conv1d_update.h"

namespace mvscan {

// Validates the arguments (ValueError/TypeError naming the argument, what was expected and what
// came), allocates out (x's shape and dtype, contiguous, NaN-poisoned when poisoning is on) and
// describes everything. conv_state must not overlap itself (a stride-0 expand) or an input
// (ValueError; host-only checks). check_index_values: also check that the conv_state_indices
// values are below conv_state.shape[0] and that the non-negative ones are distinct, which reads
// them on the host: the CPU op does, the CUDA driver does not (a device tensor would need a
// synchronising copy; its kernel guards the bound, and duplicates are undefined behaviour).
CausalConv1dUpdateParams make_causal_conv1d_update_params(
    const at::Tensor& x, const at::Tensor& conv_state, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, bool silu,
    const std::optional<at::Tensor>& cache_seqlens,
    const std::optional<at::Tensor>& conv_state_indices, bool check_index_values,
    at::Tensor* out);

}  // namespace mvscan
