// Argument checks and parameter blocks for the selective-scan operators, shared by every device.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "selective_scan/selective_scan.h"

namespace mvscan {

// Validates the forward's arguments (raising a ValueError/TypeError that names the argument,
// what was expected and what came) and describes them by pointers and strides. Output pointers
// are left unset.
SelectiveScanParams make_selective_scan_params(const at::Tensor& u, const at::Tensor& delta,
                                               const at::Tensor& A, const at::Tensor& B,
                                               const at::Tensor& C,
                                               const std::optional<at::Tensor>& D,
                                               const std::optional<at::Tensor>& z,
                                               const std::optional<at::Tensor>& delta_bias,
                                               bool delta_softplus,
                                               const std::optional<at::Tensor>& initial_state);

// Checks the backward-only arguments against the forward's parameters. Returns dstates made
// contiguous (or an undefined tensor when absent) since the kernels index it densely.
at::Tensor check_selective_scan_bwd_args(const SelectiveScanParams& p, const at::Tensor& u,
                                         const at::Tensor& dout,
                                         const std::optional<at::Tensor>& dstates,
                                         const at::Tensor& states);

}  // namespace mvscan
