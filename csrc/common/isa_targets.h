// Per-instruction-set copies of small CPU kernels written as plain C++ loops for the compiler's
// vectoriser (the decode steps), without for_each_isa.h's machinery: the kernel is an ordinary
// inline template, and one wrapper per instruction set carries a target attribute and flattens
// the kernel into itself (MVSCAN_ISA_WRAPPERS); the caller picks a wrapper by active_cpu_isa(),
// so torch.ops.mvscan._set_cpu_isa (and the tests) choose among them as for the other kernels.
//
// Why this is safe where for_each_isa.h needs its rules: nothing but the wrappers is compiled
// under the wider targets. Every call in the kernel is inlined into each wrapper (flatten), or,
// if the compiler declines, calls the one out-of-line copy, compiled for the baseline, so no
// AVX-512 code can stand in for a baseline symbol at link time, and the kernel may call std::
// and c10 inline functions.
#pragma once

#include "common/cpu_isa.h"

#if defined(__GNUC__) || defined(__clang__)
#define MVSCAN_FLATTEN __attribute__((flatten))
#else
#define MVSCAN_FLATTEN
#endif

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define MVSCAN_HAVE_ISA_TARGETS 1
// The same instruction sets as for_each_isa.h's builds.
#define MVSCAN_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define MVSCAN_TARGET_AVX512                                                   \
  __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,f16c," \
                        "prefer-vector-width=512")))
#endif

// Defines name_baseline, name_avx2 and name_avx512: templates on <Ts...> taking PARAMS (a
// parenthesised parameter list) that run kernel<Ts...> ARGS (the parenthesised arguments).
#define MVSCAN_ISA_WRAPPER(name, target, kernel, PARAMS, ARGS) \
  template <typename... Ts>                                    \
  target MVSCAN_FLATTEN void name PARAMS {                     \
    kernel<Ts...> ARGS;                                        \
  }
#if defined(MVSCAN_HAVE_ISA_TARGETS)
#define MVSCAN_ISA_WRAPPERS(name, kernel, PARAMS, ARGS)                          \
  MVSCAN_ISA_WRAPPER(name##_baseline, , kernel, PARAMS, ARGS)                    \
  MVSCAN_ISA_WRAPPER(name##_avx2, MVSCAN_TARGET_AVX2, kernel, PARAMS, ARGS)      \
  MVSCAN_ISA_WRAPPER(name##_avx512, MVSCAN_TARGET_AVX512, kernel, PARAMS, ARGS)
// The wrapper name<...> for the active instruction set (see cpu_isa.h).
#define MVSCAN_PICK_ISA_WRAPPER(name, ...)                                             \
  ::mvscan::cpu::pick_isa_wrapper(&name##_baseline<__VA_ARGS__>, &name##_avx2<__VA_ARGS__>, \
                                  &name##_avx512<__VA_ARGS__>)
#else
#define MVSCAN_ISA_WRAPPERS(name, kernel, PARAMS, ARGS) \
  MVSCAN_ISA_WRAPPER(name##_baseline, , kernel, PARAMS, ARGS)
#define MVSCAN_PICK_ISA_WRAPPER(name, ...) (&name##_baseline<__VA_ARGS__>)
#endif

namespace mvscan {
namespace cpu {

template <typename Fn>
Fn pick_isa_wrapper(Fn baseline, Fn avx2, Fn avx512) {
  const CpuIsa isa = active_cpu_isa();
  return isa == CpuIsa::kAvx512 ? avx512 : isa == CpuIsa::kAvx2 ? avx2 : baseline;
}

}  // namespace cpu
}  // namespace mvscan
