// Builds the depthwise conv1d CPU kernels once per instruction set and runs them in parallel
// over (batch, channel block). Included by
// depthwise_conv1d_cpu_instances.inl.
#pragma once

#include <ATen/Parallel.h>

#include "common/math.h"
#include "common/cpu_isa.h"
#include "depthwise_conv1d/depthwise_conv1d_cpu.h"

#define MVSCAN_ISA_KERNEL "depthwise_conv1d/depthwise_conv1d_cpu_kernel.h"
#include "common/for_each_isa.h"
#undef MVSCAN_ISA_KERNEL

namespace mvscan {
namespace cpu {

template <typename params_t, typename input_t>
using ConvKernel = void (*)(const params_t&, int64_t, int64_t, typename AccType<input_t>::type*);

// Runs kernel(params, batch, block) for every (batch, channel block) pair on the CPU threads.
template <typename input_t, typename params_t>
void run_conv_blocks(const params_t& params, const DepthwiseConv1dParams& p, CpuIsa isa,
                     ConvKernel<params_t, input_t> kernel, int64_t workspace_elems) {
  using acc_t = typename AccType<input_t>::type;
  const int lanes = lanes_of(isa);
  const int64_t blocks = (p.channels + lanes - 1) / lanes;
  at::parallel_for(0, p.batch * blocks, 1, [&](int64_t begin, int64_t end) {
    Workspace<acc_t> workspace(workspace_elems);
    for (int64_t i = begin; i < end; ++i) kernel(params, i / blocks, i % blocks, workspace.data());
  });
}

template <typename input_t>
void depthwise_conv1d_fwd_cpu(const DepthwiseConv1dParams& p, CpuIsa isa) {
  ConvKernel<DepthwiseConv1dParams, input_t> kernel = &baseline::conv_fwd_block<input_t>;
#if defined(MVSCAN_HAVE_X86_BUILDS)
  if (isa == CpuIsa::kAvx512) kernel = &avx512::conv_fwd_block<input_t>;
  if (isa == CpuIsa::kAvx2) kernel = &avx2::conv_fwd_block<input_t>;
#endif
  run_conv_blocks<input_t>(p, p, isa, kernel, conv_fwd_workspace_elems(p.width, lanes_of(isa)));
}

template <typename input_t>
void depthwise_conv1d_bwd_cpu(const DepthwiseConv1dBwdParams& bp, CpuIsa isa) {
  ConvKernel<DepthwiseConv1dBwdParams, input_t> kernel = &baseline::conv_bwd_block<input_t>;
#if defined(MVSCAN_HAVE_X86_BUILDS)
  if (isa == CpuIsa::kAvx512) kernel = &avx512::conv_bwd_block<input_t>;
  if (isa == CpuIsa::kAvx2) kernel = &avx2::conv_bwd_block<input_t>;
#endif
  run_conv_blocks<input_t>(bp, bp.fwd, isa, kernel,
                           conv_bwd_workspace_elems(bp.fwd.width, lanes_of(isa)));
}

}  // namespace cpu
}  // namespace mvscan
