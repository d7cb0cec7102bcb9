// mvscan::selective_scan_fwd / _bwd on CPU: checks, output allocation, dtype dispatch, and the
// final (deterministic) reductions of the backward's partial sums.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "selective_scan/selective_scan_bwd_buffers.h"
#include "selective_scan/selective_scan_params.h"
#include "common/outputs.h"
#include "selective_scan/selective_scan_cpu.h"

namespace mvscan {
namespace cpu {

namespace {

void check_cpu(const at::Tensor& u) {
  TORCH_CHECK_VALUE(u.device().is_cpu(), "mvscan.selective_scan: CPU kernel called with u on ",
                    u.device());
}

std::tuple<at::Tensor, at::Tensor> selective_scan_fwd(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
    const std::optional<at::Tensor>& delta_bias, bool delta_softplus,
    const std::optional<at::Tensor>& initial_state) {
  check_cpu(u);
  SelectiveScanParams p =
      make_selective_scan_params(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                 initial_state);
  at::Tensor out = new_output({p.batch, p.dim, p.seqlen}, u.options());
  at::Tensor states = new_output({p.batch, p.dim, p.n_chunks, p.dstate},
                                 u.options().dtype(acc_dtype(u.scalar_type())));
  p.out = out.data_ptr();
  p.states = states.data_ptr();
  const CpuIsa isa = active_cpu_isa();
  dispatch_input_type(u.scalar_type(), "mvscan.selective_scan", [&](auto tag) {
    selective_scan_fwd_cpu<decltype(tag)>(p, isa);
  });
  return {out, states};
}

// The gradient of a variable B/C from its (parts, batch, groups, L, N) partials, in B's shape
// and u's dtype.
at::Tensor finish_variable_grad(const at::Tensor& part, const at::Tensor& like) {
  at::Tensor g = part.sum(0).transpose(2, 3).to(like.scalar_type()).contiguous();
  return g.view(like.sizes());
}

SelectiveScanGrads selective_scan_bwd(const at::Tensor& dout,
                                      const std::optional<at::Tensor>& dstates,
                                      const at::Tensor& u, const at::Tensor& delta,
                                      const at::Tensor& A, const at::Tensor& B,
                                      const at::Tensor& C, const std::optional<at::Tensor>& D,
                                      const std::optional<at::Tensor>& z,
                                      const std::optional<at::Tensor>& delta_bias,
                                      const at::Tensor& states, bool delta_softplus,
                                      const std::optional<at::Tensor>& initial_state) {
  check_cpu(u);
  SelectiveScanBwdParams bp;
  bp.fwd = make_selective_scan_params(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                 initial_state);
  SelectiveScanParams& p = bp.fwd;
  const at::Tensor dstates_c = check_selective_scan_bwd_args(p, u, dout, dstates, states);
  const auto acc = u.options().dtype(acc_dtype(u.scalar_type()));
  const CpuIsa isa = active_cpu_isa();
  const BlockGeometry geo = block_geometry(p, lanes_of(isa));
  bp.n_parts = bwd_parts(p, geo, at::get_num_threads());

  auto bc_part = [&](bool variable, int64_t groups) {
    return variable ? at::zeros({bp.n_parts, p.batch, groups, p.seqlen, p.dstate}, acc)
                    : new_output({p.batch, p.dim, p.dstate}, acc);
  };
  const SelectiveScanBwdBuffers buf = attach_selective_scan_bwd_buffers(
      bp, u, z.has_value(), bc_part(p.B_is_variable, p.B_groups),
      bc_part(p.C_is_variable, p.C_groups), dout, dstates_c, states);
  dispatch_input_type(u.scalar_type(), "mvscan.selective_scan", [&](auto tag) {
    selective_scan_bwd_cpu<decltype(tag)>(bp, isa);
  });
  return finish_selective_scan_bwd(
      buf, p, D.has_value(), delta_bias.has_value(),
      p.B_is_variable ? finish_variable_grad(buf.dB_part, B) : at::Tensor(),
      p.C_is_variable ? finish_variable_grad(buf.dC_part, C) : at::Tensor());
}

}  // namespace

TORCH_LIBRARY_IMPL(mvscan, CPU, m) {
  m.impl("selective_scan_fwd", &selective_scan_fwd);
  m.impl("selective_scan_bwd", &selective_scan_bwd);
}

}  // namespace cpu
}  // namespace mvscan
