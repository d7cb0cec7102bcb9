// mvscan::depthwise_conv1d_fwd / _bwd on CUDA: the host driver (depthwise_conv1d_cuda_driver.h)
// with launchers that run the kernels (depthwise_conv1d_cuda_kernels.cuh) on the current stream,
// without synchronising.

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>  // not ATen/cuda/CUDAContext.h: it needs cuSPARSE/cuBLAS headers
#include <torch/library.h>

#include <tuple>

#include "depthwise_conv1d/depthwise_conv1d_cuda_driver.h"
#include "depthwise_conv1d/depthwise_conv1d_cuda_kernels.cuh"

namespace mvscan {
namespace cuda {
namespace {

// Runs a conv kernel on the current stream: launch(kernel, grid, kernel arguments...).
struct StreamLauncher {
  cudaStream_t stream;
  template <typename... Params, typename... Args>
  void operator()(void (*kernel)(Params...), const ConvGrid& grid, const Args&... args) const {
    const dim3 blocks(static_cast<unsigned>(grid.x), static_cast<unsigned>(grid.y));
    kernel<<<blocks, kConvThreads, grid.smem, stream>>>(args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

at::Tensor depthwise_conv1d_fwd(const at::Tensor& x, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, int64_t pad_left,
                                bool silu, const std::optional<at::Tensor>& seq_idx,
                                const std::optional<at::Tensor>& initial_states) {
  const c10::cuda::CUDAGuard guard(x.device());
  return depthwise_conv1d_fwd_driver(x, weight, bias, pad_left, silu, seq_idx, initial_states,
                                     StreamLauncher{c10::cuda::getCurrentCUDAStream()});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> depthwise_conv1d_bwd(
    const at::Tensor& dout, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, int64_t pad_left, bool silu,
    const std::optional<at::Tensor>& seq_idx, const std::optional<at::Tensor>& initial_states) {
  const c10::cuda::CUDAGuard guard(x.device());
  return depthwise_conv1d_bwd_driver(dout, x, weight, bias, pad_left, silu, seq_idx,
                                     initial_states,
                                     StreamLauncher{c10::cuda::getCurrentCUDAStream()});
}

}  // namespace

TORCH_LIBRARY_IMPL(mvscan, CUDA, m) {
  m.impl("depthwise_conv1d_fwd", &depthwise_conv1d_fwd);
  m.impl("depthwise_conv1d_bwd", &depthwise_conv1d_bwd);
}

}  // namespace cuda
}  // namespace mvscan
