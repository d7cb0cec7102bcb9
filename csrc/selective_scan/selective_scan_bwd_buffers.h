// The selective-scan backward's outputs and partial sums, shared by the CPU op and the CUDA
// driver: allocation, attaching them to the parameter block, and the fixed-order final sums.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "selective_scan/selective_scan.h"

namespace mvscan {

struct SelectiveScanBwdBuffers {
  at::Tensor du, ddelta, dz;                // (batch, dim, L) in u's dtype; dz empty without z
  at::Tensor dA_part, dD_part, dbias_part;  // (batch, dim, N), (batch, dim), (batch, dim)
  at::Tensor dB_part, dC_part;              // laid out by the device's kernels
  at::Tensor dh0;                           // (batch, dim, N); empty without an initial state
};

// (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dinitial_state), the order of
// mvscan::selective_scan_bwd.
using SelectiveScanGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                      at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// Allocates du, ddelta, dz and the per-(batch, channel) partials (NaN-poisoned when poisoning is
// on), takes dB_part / dC_part as the caller laid them out, and points bp at every buffer and at
// dout, dstates (undefined when absent) and states.
SelectiveScanBwdBuffers attach_selective_scan_bwd_buffers(SelectiveScanBwdParams& bp,
                                                          const at::Tensor& u, bool has_z,
                                                          at::Tensor dB_part, at::Tensor dC_part,
                                                          const at::Tensor& dout,
                                                          const at::Tensor& dstates,
                                                          const at::Tensor& states);

// Sums the partials over batch, a fixed order. A variable B/C's gradient comes finished from the
// caller (dB_variable / dC_variable; undefined for constant ones). Absent D / delta_bias give
// empty gradients.
SelectiveScanGrads finish_selective_scan_bwd(const SelectiveScanBwdBuffers& buf,
                                             const SelectiveScanParams& p, bool has_D,
                                             bool has_delta_bias, at::Tensor dB_variable,
                                             at::Tensor dC_variable);

}  // namespace mvscan
