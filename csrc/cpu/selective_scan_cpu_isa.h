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
#include "selective_scan_cpu_kernel.h"
#undef MVSCAN_ISA

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define MVSCAN_HAVE_AVX2_BUILD 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define MVSCAN_ISA avx2
#include "selective_scan_cpu_kernel.h"
#undef MVSCAN_ISA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

namespace mvscan {
namespace cpu {

inline bool cpu_has_avx2() {
#if defined(MVSCAN_HAVE_AVX2_BUILD)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

template <typename input_t>
void selective_scan_fwd_cpu(const SelectiveScanParams& p) {
  using acc_t = typename AccType<input_t>::type;
  const BlockGeometry geo = block_geometry(p);
  auto* kernel = &baseline::fwd_block<input_t>;
#if defined(MVSCAN_HAVE_AVX2_BUILD)
  if (cpu_has_avx2()) kernel = &avx2::fwd_block<input_t>;
#endif
  const int64_t units = p.batch * geo.n_blocks;
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> workspace(fwd_workspace_elems(p.dstate));
    for (int64_t i = begin; i < end; ++i)
      kernel(p, geo, i / geo.n_blocks, i % geo.n_blocks, workspace.data());
  });
}

template <typename input_t>
void selective_scan_bwd_cpu(const SelectiveScanBwdParams& bp) {
  using acc_t = typename AccType<input_t>::type;
  const BlockGeometry geo = block_geometry(bp.fwd);
  auto* kernel = &baseline::bwd_split<input_t>;
#if defined(MVSCAN_HAVE_AVX2_BUILD)
  if (cpu_has_avx2()) kernel = &avx2::bwd_split<input_t>;
#endif
  const int64_t units = bp.fwd.batch * bp.n_splits;
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> workspace(bwd_workspace_elems(bp.fwd.dstate));
    for (int64_t i = begin; i < end; ++i)
      kernel(bp, geo, i / bp.n_splits, i % bp.n_splits, workspace.data());
  });
}

}  // namespace cpu
}  // namespace mvscan
