// Builds the CPU kernels once per instruction set and runs them in parallel, choosing the best
// build this CPU supports at run time. Included by selective_scan_cpu_instances.inl, which
// instantiates selective_scan_{fwd,bwd}_cpu for one input dtype.
#pragma once

#include <ATen/Parallel.h>

#include "common/math.h"
#include "common/cpu_isa.h"
#include "selective_scan/selective_scan_cpu.h"

#define MVSCAN_ISA_KERNEL "selective_scan/selective_scan_cpu_kernel.h"
#include "common/for_each_isa.h"
#undef MVSCAN_ISA_KERNEL

namespace mvscan {
namespace cpu {

template <typename input_t>
using FwdKernel = void (*)(const SelectiveScanParams&, const BlockGeometry&, int64_t, int64_t,
                           typename AccType<input_t>::type*);
template <typename input_t>
using BwdKernel = void (*)(const SelectiveScanBwdParams&, const BlockGeometry&, int64_t, int64_t,
                           typename AccType<input_t>::type*);

// scalar_bc: B and C are both variable, so the kernels read them as one value per state and
// step (see StepBC) instead of broadcasting them into memory first.
template <typename input_t>
FwdKernel<input_t> fwd_kernel(CpuIsa isa, bool scalar_bc) {
#if defined(MVSCAN_HAVE_X86_BUILDS)
  if (isa == CpuIsa::kAvx512)
    return scalar_bc ? &avx512::fwd_block<input_t, true> : &avx512::fwd_block<input_t, false>;
  if (isa == CpuIsa::kAvx2)
    return scalar_bc ? &avx2::fwd_block<input_t, true> : &avx2::fwd_block<input_t, false>;
#endif
  return scalar_bc ? &baseline::fwd_block<input_t, true> : &baseline::fwd_block<input_t, false>;
}

template <typename input_t>
BwdKernel<input_t> bwd_kernel(CpuIsa isa, bool scalar_bc) {
#if defined(MVSCAN_HAVE_X86_BUILDS)
  if (isa == CpuIsa::kAvx512)
    return scalar_bc ? &avx512::bwd_part<input_t, true> : &avx512::bwd_part<input_t, false>;
  if (isa == CpuIsa::kAvx2)
    return scalar_bc ? &avx2::bwd_part<input_t, true> : &avx2::bwd_part<input_t, false>;
#endif
  return scalar_bc ? &baseline::bwd_part<input_t, true> : &baseline::bwd_part<input_t, false>;
}

template <typename input_t>
void selective_scan_fwd_cpu(const SelectiveScanParams& p, CpuIsa isa) {
  using acc_t = typename AccType<input_t>::type;
  const BlockGeometry geo = block_geometry(p, lanes_of(isa));
  const FwdKernel<input_t> kernel = fwd_kernel<input_t>(isa, p.B_is_variable && p.C_is_variable);
  const int64_t units = p.batch * geo.n_blocks;
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
    Workspace<acc_t> workspace(fwd_workspace_elems(p.dstate, geo.lanes));
    for (int64_t i = begin; i < end; ++i)
      kernel(p, geo, i / geo.n_blocks, i % geo.n_blocks, workspace.data());
  });
}

template <typename input_t>
void selective_scan_bwd_cpu(const SelectiveScanBwdParams& bp, CpuIsa isa) {
  using acc_t = typename AccType<input_t>::type;
  const BlockGeometry geo = block_geometry(bp.fwd, lanes_of(isa));
  const BwdKernel<input_t> kernel =
      bwd_kernel<input_t>(isa, bp.fwd.B_is_variable && bp.fwd.C_is_variable);
  const int64_t units = bp.fwd.batch * bp.n_parts;
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
    Workspace<acc_t> workspace(
        bwd_workspace_elems(bp.fwd.dstate, geo.lanes, max_blocks_per_part(geo, bp.n_parts)));
    for (int64_t i = begin; i < end; ++i)
      kernel(bp, geo, i / bp.n_parts, i % bp.n_parts, workspace.data());
  });
}

}  // namespace cpu
}  // namespace mvscan
