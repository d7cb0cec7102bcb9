// mvscan::selective_state_update on CUDA: the host driver (selective_state_update_cuda_driver.h)
// with a launcher that runs the kernel on the current stream, without synchronising.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>  // not ATen/cuda/CUDAContext.h: it needs cuSPARSE/cuBLAS headers
#include <torch/library.h>

#include "selective_state_update/selective_state_update_cuda_driver.h"

namespace mvscan {
namespace cuda {
namespace {

at::Tensor selective_state_update(const at::Tensor& state, const at::Tensor& x,
                                  const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                                  const at::Tensor& C, const std::optional<at::Tensor>& D,
                                  const std::optional<at::Tensor>& z,
                                  const std::optional<at::Tensor>& dt_bias, bool dt_softplus,
                                  const std::optional<at::Tensor>& state_batch_indices) {
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  return selective_state_update_driver(
      state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices,
      [&](auto in_tag, auto state_tag, const SelectiveStateUpdateParams& p, int lanes,
          int64_t blocks) {
        selective_state_update_kernel<decltype(in_tag), decltype(state_tag)>
            <<<static_cast<unsigned>(blocks), kStateUpdateThreads, 0, stream>>>(p, lanes);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

}  // namespace

TORCH_LIBRARY_IMPL(mvscan, CUDA, m) {
  m.impl("selective_state_update", &selective_state_update);
}

}  // namespace cuda
}  // namespace mvscan
