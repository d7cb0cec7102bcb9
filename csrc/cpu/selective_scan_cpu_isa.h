// Builds the CPU kernels once per instruction set and runs them in parallel, choosing the best
// build this CPU supports at run time. Included by the per-dtype files, which instantiate
// selective_scan_{fwd,bwd}_cpu for their input type.
#pragma once

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <type_traits>
#include <vector>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

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
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#define MVSCAN_ISA avx2
#define MVSCAN_ISA_LANES 8
#define MVSCAN_TILE_HEADER "tile_transpose_avx2.h"
#include "selective_scan_cpu_kernel.h"
#undef MVSCAN_TILE_HEADER
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
// GCC 12's own avx512fintrin.h trips -Wmaybe-uninitialized (its _mm512_undefined_* helpers).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define MVSCAN_ISA avx512
#define MVSCAN_ISA_LANES 16
#define MVSCAN_TILE_HEADER "tile_transpose_avx512.h"
#include "selective_scan_cpu_kernel.h"
#undef MVSCAN_TILE_HEADER
#undef MVSCAN_ISA_LANES
#undef MVSCAN_ISA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
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
    return scalar_bc ? &avx512::bwd_split<input_t, true> : &avx512::bwd_split<input_t, false>;
  if (isa == CpuIsa::kAvx2)
    return scalar_bc ? &avx2::bwd_split<input_t, true> : &avx2::bwd_split<input_t, false>;
#endif
  return scalar_bc ? &baseline::bwd_split<input_t, true> : &baseline::bwd_split<input_t, false>;
}

// A thread's workspace: kept between calls (grow-only, up to kMaxCachedWorkspaceBytes), since
// a fresh multi-100-KB allocation per call page-faults or not depending on malloc's adaptive
// mmap threshold, which made run times bimodal. 64-byte aligned, and every buffer carved from
// it is a multiple of 64 bytes long, so full-width vector loads never straddle cache lines.
constexpr std::size_t kWorkspaceAlign = 64;
constexpr std::size_t kMaxCachedWorkspaceBytes = std::size_t(64) << 20;

template <typename acc_t>
class Workspace {
 public:
  explicit Workspace(int64_t elems) {
    const std::size_t need = static_cast<std::size_t>(elems) + kWorkspaceAlign / sizeof(acc_t);
    std::vector<acc_t>& cached = cache();
    if (need * sizeof(acc_t) > kMaxCachedWorkspaceBytes) {
      own_.resize(need);
      base_ = own_.data();
    } else {
      if (cached.size() < need) cached.resize(need);
      base_ = cached.data();
    }
  }
  acc_t* data() const {
    const auto addr = reinterpret_cast<std::uintptr_t>(base_);
    const auto mask = static_cast<std::uintptr_t>(kWorkspaceAlign - 1);
    return reinterpret_cast<acc_t*>((addr + mask) & ~mask);
  }

 private:
  static std::vector<acc_t>& cache() {
    thread_local std::vector<acc_t> storage;
    return storage;
  }
  std::vector<acc_t> own_;
  acc_t* base_ = nullptr;
};

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
  const int64_t units = bp.fwd.batch * bp.n_splits;
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
    Workspace<acc_t> workspace(
        bwd_workspace_elems(bp.fwd.dstate, geo.lanes, max_blocks_per_split(geo, bp.n_splits)));
    for (int64_t i = begin; i < end; ++i)
      kernel(bp, geo, i / bp.n_splits, i % bp.n_splits, workspace.data());
  });
}

}  // namespace cpu
}  // namespace mvscan
