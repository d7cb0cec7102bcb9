// mvscan::causal_conv1d_update on CUDA: the host driver (causal_conv1d_update_cuda_driver.h) with
// a launcher that runs the kernel on the current stream, without synchronising.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>  // not ATen/cuda/CUDAContext.h: it needs cuSPARSE/cuBLAS headers
#include <torch/library.h>

#include "causal_conv1d_update/causal_conv1d_update_cuda_driver.h"

namespace mvscan {
namespace cuda {
namespace {

at::Tensor causal_conv1d_update(const at::Tensor& x, const at::Tensor& conv_state,
                                const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                bool silu, const std::optional<at::Tensor>& cache_seqlens,
                                const std::optional<at::Tensor>& conv_state_indices) {
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  return causal_conv1d_update_driver(
      x, conv_state, weight, bias, silu, cache_seqlens, conv_state_indices,
      [&](auto tag, auto width_cap, const CausalConv1dUpdateParams& p, int64_t blocks) {
        causal_conv1d_update_kernel<decltype(tag), decltype(width_cap)::value>
            <<<static_cast<unsigned>(blocks), kConvUpdateThreads, 0, stream>>>(p);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

}  // namespace

TORCH_LIBRARY_IMPL(mvscan, CUDA, m) {
  m.impl("causal_conv1d_update", &causal_conv1d_update);
}

}  // namespace cuda
}  // namespace mvscan
