// The host side of the CUDA selective state update, independent of how the kernel is launched:
// checks, the output and the launch size. The CUDA op (selective_state_update_cuda_op.cu) passes
// a launcher that runs the kernel on the current stream; the tests' CPU emulation
// (tests/cuda_emulation/) passes one that runs it on CPU fibers.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <optional>

#include "selective_state_update/selective_state_update_cuda_kernels.cuh"
#include "selective_state_update/selective_state_update_params.h"

namespace mvscan {
namespace cuda {

// The grid's size cap: past it the kernel's grid-stride loop takes the rest. A grid this large
// already fills any GPU.
constexpr int64_t kStateUpdateMaxBlocks = int64_t(1) << 20;

// launch(input_tag, state_tag, p, lanes, blocks) runs selective_state_update_kernel on `blocks`
// blocks of kStateUpdateThreads threads, blocks <= max_blocks (the tests' emulation passes a
// small cap so that each block strides over several groups of rows). Nothing here reads device
// memory or allocates beyond out, so the op can be captured in a CUDA graph.
template <typename Launch>
at::Tensor selective_state_update_driver(const at::Tensor& state, const at::Tensor& x,
                                         const at::Tensor& dt, const at::Tensor& A,
                                         const at::Tensor& B, const at::Tensor& C,
                                         const std::optional<at::Tensor>& D,
                                         const std::optional<at::Tensor>& z,
                                         const std::optional<at::Tensor>& dt_bias,
                                         bool dt_softplus,
                                         const std::optional<at::Tensor>& state_batch_indices,
                                         Launch&& launch,
                                         int64_t max_blocks = kStateUpdateMaxBlocks) {
  TORCH_CHECK_VALUE(max_blocks >= 1 && max_blocks <= kStateUpdateMaxBlocks,
                    "mvscan.selective_state_update: max_blocks must be in [1, ",
                    kStateUpdateMaxBlocks, "], got ", max_blocks);
  at::Tensor out;
  // Index values stay unchecked here (reading them would synchronise); the kernel guards them.
  const SelectiveStateUpdateParams p = make_selective_state_update_params(
      state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices,
      /*check_index_values=*/false, &out);
  const int64_t rows = state_update_rows(p);
  if (rows == 0) return out;
  const int lanes = state_update_lanes(p.dstate);
  const int64_t rows_per_block = kStateUpdateThreads / lanes;
  const int64_t blocks =
      std::min<int64_t>((rows + rows_per_block - 1) / rows_per_block, max_blocks);
  dispatch_state_update_types(x.scalar_type(), state.scalar_type(),
                              "mvscan.selective_state_update",
                              [&](auto in_tag, auto state_tag) {
    launch(in_tag, state_tag, p, lanes, blocks);
  });
  return out;
}

}  // namespace cuda
}  // namespace mvscan
