// mvscan::depthwise_conv1d_fwd / _bwd on CPU: checks, output allocation, dtype dispatch, and the
// (deterministic) sum of the backward's per-batch partials.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "depthwise_conv1d/depthwise_conv1d_params.h"
#include "depthwise_conv1d/depthwise_conv1d_cpu.h"
#include "common/outputs.h"

namespace mvscan {
namespace cpu {
namespace {

constexpr const char* kOp = "mvscan.depthwise_conv1d";

void check_cpu(const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.device().is_cpu(), kOp, ": CPU kernel called with x on ", x.device());
}

at::Tensor depthwise_conv1d_fwd(const at::Tensor& x, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, int64_t pad_left,
                                bool silu, const std::optional<at::Tensor>& seq_idx,
                                const std::optional<at::Tensor>& initial_states) {
  check_cpu(x);
  DepthwiseConv1dParams p =
      make_depthwise_conv1d_params(x, weight, bias, pad_left, silu, seq_idx, initial_states);
  at::Tensor out = poisoned(empty_like_conv_input(x));
  p.out = out.data_ptr();
  p.out_strides = seq_strides_of(out);
  const CpuIsa isa = active_cpu_isa();
  dispatch_input_type(x.scalar_type(), kOp, [&](auto tag) {
    depthwise_conv1d_fwd_cpu<decltype(tag)>(p, isa);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> depthwise_conv1d_bwd(
    const at::Tensor& dout, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, int64_t pad_left, bool silu,
    const std::optional<at::Tensor>& seq_idx, const std::optional<at::Tensor>& initial_states) {
  check_cpu(x);
  at::Tensor dx, dinit;
  DepthwiseConv1dBwdParams bp = make_depthwise_conv1d_bwd_params(
      dout, x, weight, bias, pad_left, silu, seq_idx, initial_states, &dx, &dinit);
  const DepthwiseConv1dParams& p = bp.fwd;
  const auto acc = x.options().dtype(acc_dtype(x.scalar_type()));
  at::Tensor dweight_part = new_output({p.batch, p.channels, p.width}, acc);
  at::Tensor dbias_part = new_output({p.batch, p.channels}, acc);
  bp.dweight_part = dweight_part.data_ptr();
  bp.dbias_part = dbias_part.data_ptr();
  const CpuIsa isa = active_cpu_isa();
  dispatch_input_type(x.scalar_type(), kOp, [&](auto tag) {
    depthwise_conv1d_bwd_cpu<decltype(tag)>(bp, isa);
  });
  at::Tensor dweight = dweight_part.sum(0).to(weight.scalar_type());
  at::Tensor dbias = bias.has_value() ? dbias_part.sum(0).to(bias->scalar_type())
                                      : at::empty({0}, acc);
  return {dx, dweight, dbias, dinit};
}

}  // namespace

TORCH_LIBRARY_IMPL(mvscan, CPU, m) {
  m.impl("depthwise_conv1d_fwd", &depthwise_conv1d_fwd);
  m.impl("depthwise_conv1d_bwd", &depthwise_conv1d_bwd);
}

}  // namespace cpu
}  // namespace mvscan
