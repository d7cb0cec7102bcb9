// The host side of the CUDA selective scan, independent of how kernels are launched: argument
// checks, geometry, output and partial-sum allocation, and the fixed-order reductions of the
// backward's partials. The CUDA op (selective_scan_cuda_op.cpp) passes launchers that run the
// kernels on the current stream; the tests' CPU emulation (tests/cuda_emulation/) passes
// launchers that run the same kernels on CPU fibers.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>

#include "common/outputs.h"
#include "selective_scan/selective_scan_bwd_buffers.h"
#include "selective_scan/selective_scan_params.h"
#include "selective_scan/selective_scan_cuda_geometry.h"

namespace mvscan {
namespace cuda {

inline size_t acc_size_of(const at::Tensor& u) { return c10::elementSize(acc_dtype(u.scalar_type())); }

inline void check_launchable(const SelectiveScanParams& p, const ScanGeometry& geo,
                             const at::Tensor& u, size_t smem_limit) {
  TORCH_CHECK_VALUE(geo.smem_bytes <= smem_limit, "mvscan.selective_scan: N = ", p.dstate,
                    " with ", u.scalar_type(), " inputs needs ", geo.smem_bytes / 1024,
                    " KiB of shared memory per block; this GPU allows ", smem_limit / 1024,
                    " KiB. Use float32/float16/bfloat16 inputs or a smaller N.");
  TORCH_CHECK_VALUE(geo.n_blocks <= std::numeric_limits<int32_t>::max(),
                    "mvscan.selective_scan: batch x dim = ", p.batch * p.dim,
                    " rows is too many for one launch");
}

// launch(tag, p, geo) runs the forward kernel for input type decltype(tag).
template <typename Launch>
std::tuple<at::Tensor, at::Tensor> selective_scan_fwd_driver(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
    const std::optional<at::Tensor>& delta_bias, bool delta_softplus,
    const std::optional<at::Tensor>& initial_state, size_t smem_limit, Launch&& launch) {
  SelectiveScanParams p =
      make_selective_scan_params(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                 initial_state);
  const ScanGeometry geo = scan_geometry(p, /*backward=*/false, acc_size_of(u));
  check_launchable(p, geo, u, smem_limit);
  at::Tensor out = new_output({p.batch, p.dim, p.seqlen}, u.options());
  at::Tensor states = new_output({p.batch, p.dim, p.n_chunks, p.dstate},
                                 u.options().dtype(acc_dtype(u.scalar_type())));
  p.out = out.data_ptr();
  p.states = states.data_ptr();
  dispatch_input_type(u.scalar_type(), "mvscan.selective_scan",
                      [&](auto tag) { launch(tag, p, geo); });
  return {out, states};
}

// The gradient of a variable B/C from its (batch, groups, parts, N, L) partials, in B's shape
// and u's dtype.
inline at::Tensor finish_variable_grad(const at::Tensor& part, const at::Tensor& like) {
  return part.sum(2).to(like.scalar_type()).reshape(like.sizes());
}

// launch(tag, bp, geo) runs the backward kernel for input type decltype(tag).
template <typename Launch>
SelectiveScanGrads selective_scan_bwd_driver(
    const at::Tensor& dout, const std::optional<at::Tensor>& dstates, const at::Tensor& u,
    const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
    const std::optional<at::Tensor>& delta_bias, const at::Tensor& states, bool delta_softplus,
    const std::optional<at::Tensor>& initial_state, size_t smem_limit, Launch&& launch) {
  SelectiveScanBwdParams bp;
  bp.fwd = make_selective_scan_params(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                 initial_state);
  SelectiveScanParams& p = bp.fwd;
  const at::Tensor dstates_c = check_selective_scan_bwd_args(p, u, dout, dstates, states);
  const ScanGeometry geo = scan_geometry(p, /*backward=*/true, acc_size_of(u));
  check_launchable(p, geo, u, smem_limit);
  const auto acc = u.options().dtype(acc_dtype(u.scalar_type()));

  auto bc_part = [&](bool variable, int64_t groups, int64_t parts) {
    return variable ? new_output({p.batch, groups, parts, p.dstate, p.seqlen}, acc)
                    : new_output({p.batch, p.dim, p.dstate}, acc);
  };
  const SelectiveScanBwdBuffers buf = attach_selective_scan_bwd_buffers(
      bp, u, z.has_value(), bc_part(p.B_is_variable, p.B_groups, geo.B_parts),
      bc_part(p.C_is_variable, p.C_groups, geo.C_parts), dout, dstates_c, states);
  dispatch_input_type(u.scalar_type(), "mvscan.selective_scan",
                      [&](auto tag) { launch(tag, bp, geo); });
  return finish_selective_scan_bwd(
      buf, p, D.has_value(), delta_bias.has_value(),
      p.B_is_variable ? finish_variable_grad(buf.dB_part, B) : at::Tensor(),
      p.C_is_variable ? finish_variable_grad(buf.dC_part, C) : at::Tensor());
}

}  // namespace cuda
}  // namespace mvscan
