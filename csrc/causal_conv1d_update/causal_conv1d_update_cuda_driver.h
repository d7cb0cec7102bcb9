// The host side of the CUDA causal conv1d update, independent of how the kernel is launched:
// checks, the output and the launch size. The CUDA op (causal_conv1d_update_cuda_op.cu) passes a
// launcher that runs the kernel on the current stream; the tests' CPU emulation
// (tests/cuda_emulation/) passes one that runs it on CPU fibers.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>

#include "causal_conv1d_update/causal_conv1d_update_cuda_kernels.cuh"
#include "causal_conv1d_update/causal_conv1d_update_params.h"
#include "common/dtype_dispatch.h"

namespace mvscan {
namespace cuda {

// The grid's size cap: past it the kernel's grid-stride loop takes the rest. A grid this large
// already fills any GPU.
constexpr int64_t kConvUpdateMaxBlocks = int64_t(1) << 20;

// launch(tag, width_cap, p, blocks) runs causal_conv1d_update_kernel<input_t, width_cap> (width_cap
// a std::integral_constant<int, ...>: conv_update_width_cap(K)) on `blocks` blocks of
// kConvUpdateThreads threads, blocks <= max_blocks (the tests' emulation passes a small cap so
// that each block strides over several groups of rows). Nothing here reads device memory or
// allocates beyond out, so the op can be captured in a CUDA graph.
template <typename Launch>
at::Tensor causal_conv1d_update_driver(const at::Tensor& x, const at::Tensor& conv_state,
                                       const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias, bool silu,
                                       const std::optional<at::Tensor>& cache_seqlens,
                                       const std::optional<at::Tensor>& conv_state_indices,
                                       Launch&& launch,
                                       int64_t max_blocks = kConvUpdateMaxBlocks) {
  TORCH_CHECK_VALUE(max_blocks >= 1 && max_blocks <= kConvUpdateMaxBlocks,
                    "mvscan.causal_conv1d_update: max_blocks must be in [1, ",
                    kConvUpdateMaxBlocks, "], got ", max_blocks);
  at::Tensor out;
  // Index values stay unchecked here (reading them would synchronise); the kernel guards them.
  const CausalConv1dUpdateParams p = make_causal_conv1d_update_params(
      x, conv_state, weight, bias, silu, cache_seqlens, conv_state_indices,
      /*check_index_values=*/false, &out);
  const int64_t rows = p.batch * p.dim;
  if (rows == 0 || p.seqlen == 0) return out;
  const int64_t blocks =
      std::min<int64_t>((rows + kConvUpdateThreads - 1) / kConvUpdateThreads, max_blocks);
  dispatch_input_type(x.scalar_type(), "mvscan.causal_conv1d_update", [&](auto tag) {
    if (conv_update_width_cap(p.width) == kConvUpdateSmallWidthCap) {
      launch(tag, std::integral_constant<int, kConvUpdateSmallWidthCap>{}, p, blocks);
    } else {
      launch(tag, std::integral_constant<int, kMaxConvWidth>{}, p, blocks);
    }
  });
  return out;
}

}  // namespace cuda
}  // namespace mvscan
