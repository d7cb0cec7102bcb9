// Builds the CPU kernels once per instruction set and runs them in parallel, choosing the best
// build this CPU supports at run time. Included by the per-dtype files, which instantiate
// selective_scan_{fwd,bwd}_cpu for their input type.
#pragma once

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <vector>

#include "../selective_scan_common.h"
#include "selective_scan_cpu.h"

#define MVSCAN_ISA baseline
#define MVSCAN_ISA_LANES 8
#include "selective_scan_cpu_kernel.h"
#undef MVSCAN_ISA_LANES
#undef MVSCAN_ISA

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define MVSCAN_HAVE_X86_BUILDS 1

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define MVSCAN_ISA avx2
#define MVSCAN_ISA_LANES 8
#include "selective_scan_cpu_kernel.h"
#undef MVSCAN_ISA_LANES
#undef MVSCAN_ISA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(                                                        \
    __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,prefer-vector-width=512"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,prefer-vector-width=512")
#endif
#define MVSCAN_ISA avx512
#define MVSCAN_ISA_LANES 16
#include "selective_scan_cpu_kernel.h"
#undef MVSCAN_ISA_LANES
#undef MVSCAN_ISA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

namespace mvscan {
namespace cpu {

template <typename input_t>
using FwdKernel = void (*)(const SelectiveScanParams&, const BlockGeometry&, int64_t, int64_t,
                           typename AccType<input_t>::type*);
template <typename input_t>
using BwdKernel = void (*)(const SelectiveScanBwdParams&, const BlockGeometry&, int64_t, int64_t,
                           typename AccType<input_t>::type*);

template <typename input_t>
FwdKernel<input_t> fwd_kernel(CpuIsa isa) {
#if defined(MVSCAN_HAVE_X86_BUILDS)
  if (isa == CpuIsa::kAvx512) return &avx512::fwd_block<input_t>;
  if (isa == CpuIsa::kAvx2) return &avx2::fwd_block<input_t>;
#endif
  return &baseline::fwd_block<input_t>;
}

template <typename input_t>
BwdKernel<input_t> bwd_kernel(CpuIsa isa) {
#if defined(MVSCAN_HAVE_X86_BUILDS)
  if (isa == CpuIsa::kAvx512) return &avx512::bwd_split<input_t>;
  if (isa == CpuIsa::kAvx2) return &avx2::bwd_split<input_t>;
#endif
  return &baseline::bwd_split<input_t>;
}

template <typename input_t>
void selective_scan_fwd_cpu(const SelectiveScanParams& p, CpuIsa isa) {
  using acc_t = typename AccType<input_t>::type;
  const BlockGeometry geo = block_geometry(p, lanes_of(isa));
  const FwdKernel<input_t> kernel = fwd_kernel<input_t>(isa);
  const int64_t units = p.batch * geo.n_blocks;
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> workspace(fwd_workspace_elems(p.dstate, geo.lanes));
    for (int64_t i = begin; i < end; ++i)
      kernel(p, geo, i / geo.n_blocks, i % geo.n_blocks, workspace.data());
  });
}

template <typename input_t>
void selective_scan_bwd_cpu(const SelectiveScanBwdParams& bp, CpuIsa isa) {
  using acc_t = typename AccType<input_t>::type;
  const BlockGeometry geo = block_geometry(bp.fwd, lanes_of(isa));
  const BwdKernel<input_t> kernel = bwd_kernel<input_t>(isa);
  const int64_t units = bp.fwd.batch * bp.n_splits;
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> workspace(bwd_workspace_elems(
        bp.fwd.dstate, geo.lanes, max_blocks_per_split(geo, bp.n_splits)));
    for (int64_t i = begin; i < end; ++i)
      kernel(bp, geo, i / bp.n_splits, i % bp.n_splits, workspace.data());
  });
}

}  // namespace cpu
}  // namespace mvscan
