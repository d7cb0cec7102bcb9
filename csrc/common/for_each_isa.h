// Compiles the kernel header named by MVSCAN_ISA_KERNEL once per instruction set, each time in
// its own namespace (mvscan::cpu::baseline / avx2 / avx512) and with its own target options, so
// the builds of one template never meet at link time. Defines MVSCAN_HAVE_X86_BUILDS when the
// AVX2 and AVX-512 builds exist. No include guard: a file includes it once per kernel header.
//
// Kernel headers see MVSCAN_ISA (the namespace), MVSCAN_ISA_LANES (vector width in floats) and,
// for the x86 builds, MVSCAN_TRANSPOSE_HEADER (in-register square transposes, see panel_io.h).

#define MVSCAN_ISA baseline
#define MVSCAN_ISA_LANES 8
#include MVSCAN_ISA_KERNEL
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
#define MVSCAN_TRANSPOSE_HEADER "common/transpose_avx2.h"
#include MVSCAN_ISA_KERNEL
#undef MVSCAN_TRANSPOSE_HEADER
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
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#define MVSCAN_ISA avx512
#define MVSCAN_ISA_LANES 16
#define MVSCAN_TRANSPOSE_HEADER "common/transpose_avx512.h"
#include MVSCAN_ISA_KERNEL
#undef MVSCAN_TRANSPOSE_HEADER
#undef MVSCAN_ISA_LANES
#undef MVSCAN_ISA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
#endif
