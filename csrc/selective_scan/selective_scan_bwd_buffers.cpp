#include "selective_scan/selective_scan_bwd_buffers.h"

#include "common/outputs.h"
#include "selective_scan/selective_scan_params.h"

namespace mvscan {

SelectiveScanBwdBuffers attach_selective_scan_bwd_buffers(SelectiveScanBwdParams& bp,
                                                          const at::Tensor& u, bool has_z,
                                                          at::Tensor dB_part, at::Tensor dC_part,
                                                          const at::Tensor& dout,
                                                          const at::Tensor& dstates,
                                                          const at::Tensor& states) {
  const SelectiveScanParams& p = bp.fwd;
  const auto acc = u.options().dtype(acc_dtype(u.scalar_type()));
  SelectiveScanBwdBuffers buf;
  buf.du = new_output(u.sizes(), u.options());
  buf.ddelta = new_output(u.sizes(), u.options());
  buf.dz = has_z ? new_output(u.sizes(), u.options()) : at::empty({0}, u.options());
  buf.dA_part = new_output({p.batch, p.dim, p.dstate}, acc);
  buf.dD_part = new_output({p.batch, p.dim}, acc);
  buf.dbias_part = new_output({p.batch, p.dim}, acc);
  buf.dB_part = std::move(dB_part);
  buf.dC_part = std::move(dC_part);
  // Each (batch, channel, state) slot has one writer: no partials to sum.
  buf.dh0 = p.h0 != nullptr ? new_output({p.batch, p.dim, p.dstate}, acc) : at::empty({0}, acc);

  bp.fwd.states = const_cast<void*>(states.data_ptr());
  bp.dout = dout.data_ptr();
  bp.dout_strides = seq_strides_of(dout);
  bp.dstates = dstates.defined() ? dstates.data_ptr() : nullptr;
  bp.du = buf.du.data_ptr();
  bp.ddelta = buf.ddelta.data_ptr();
  bp.dz = has_z ? buf.dz.data_ptr() : nullptr;
  bp.dA_part = buf.dA_part.data_ptr();
  bp.dD_part = buf.dD_part.data_ptr();
  bp.ddelta_bias_part = buf.dbias_part.data_ptr();
  bp.dB_part = buf.dB_part.data_ptr();
  bp.dC_part = buf.dC_part.data_ptr();
  bp.dh0 = p.h0 != nullptr ? buf.dh0.data_ptr() : nullptr;
  return buf;
}

SelectiveScanGrads finish_selective_scan_bwd(const SelectiveScanBwdBuffers& buf,
                                             const SelectiveScanParams& p, bool has_D,
                                             bool has_delta_bias, at::Tensor dB_variable,
                                             at::Tensor dC_variable) {
  const auto acc = buf.dA_part.options();
  at::Tensor dA = buf.dA_part.sum(0);
  at::Tensor dB = p.B_is_variable ? std::move(dB_variable) : buf.dB_part.sum(0);
  at::Tensor dC = p.C_is_variable ? std::move(dC_variable) : buf.dC_part.sum(0);
  at::Tensor dD = has_D ? buf.dD_part.sum(0) : at::empty({0}, acc);
  at::Tensor ddelta_bias = has_delta_bias ? buf.dbias_part.sum(0) : at::empty({0}, acc);
  return {buf.du, buf.ddelta, dA, dB, dC, dD, buf.dz, ddelta_bias, buf.dh0};
}

}  // namespace mvscan
