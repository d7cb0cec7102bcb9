// Which instruction-set build of the CPU kernels runs, and the override behind mvscan::_set_cpu_isa.
#include "common/cpu_isa.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <string>

namespace mvscan {
namespace cpu {

bool cpu_supports(CpuIsa isa) {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
  switch (isa) {
    case CpuIsa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CpuIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case CpuIsa::kBaseline:
      return true;
  }
  return false;
#else
  return isa == CpuIsa::kBaseline;
#endif
}

namespace {

CpuIsa best_cpu_isa() {
  for (CpuIsa isa : {CpuIsa::kAvx512, CpuIsa::kAvx2})
    if (cpu_supports(isa)) return isa;
  return CpuIsa::kBaseline;
}

// -1: no override.
std::atomic<int> g_isa_override{-1};

constexpr const char* kIsaNames[] = {"baseline", "avx2", "avx512"};

}  // namespace

CpuIsa active_cpu_isa() {
  static const CpuIsa best = best_cpu_isa();
  const int forced = g_isa_override.load();
  return forced < 0 ? best : static_cast<CpuIsa>(forced);
}

std::string set_cpu_isa(const std::string& name) {
  if (name.empty()) {
    g_isa_override.store(-1);
  } else {
    int found = -1;
    for (int i = 0; i < 3; ++i)
      if (name == kIsaNames[i]) found = i;
    TORCH_CHECK_VALUE(found >= 0, "mvscan: unknown CPU instruction set '", name,
                      "'; expected one of baseline, avx2, avx512 (or '' for the best)");
    TORCH_CHECK_VALUE(cpu_supports(static_cast<CpuIsa>(found)), "mvscan: this CPU (or build) ",
                      "does not support the instruction set '", name, "'");
    g_isa_override.store(found);
  }
  return kIsaNames[static_cast<int>(active_cpu_isa())];
}

}  // namespace cpu
}  // namespace mvscan
