// What every CPU kernel shares: the instruction sets it is built for, the accumulation type,
// and the per-thread workspace.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#include "common/dtypes.h"

namespace mvscan {
namespace cpu {

// The instruction sets the kernels are built for (see for_each_isa.h); the best one the CPU
// supports runs.
enum class CpuIsa : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

inline int lanes_of(CpuIsa isa) { return isa == CpuIsa::kAvx512 ? 16 : 8; }

// The instruction set the kernels run with: the best this CPU supports, unless
// torch.ops.mvscan._set_cpu_isa chose another (tests run every build this way). cpu_isa.cpp.
CpuIsa active_cpu_isa();
bool cpu_supports(CpuIsa isa);

// Forces the instruction set ("baseline", "avx2", "avx512"; "" for the best supported) and
// returns the name of the one now active: the implementation of mvscan::_set_cpu_isa.
std::string set_cpu_isa(const std::string& name);

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

}  // namespace cpu
}  // namespace mvscan
