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

at::Tensor depthwise_conv1d_fwd(const at::Tensor& x, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, int64_t pad_left,
                                bool silu, const std::optional<at::Tensor>& seq_idx,
                                const std::optional<at::Tensor>& initial_states) {
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  return depthwise_conv1d_fwd_driver(
      x, weight, bias, pad_left, silu, seq_idx, initial_states,
      [&](auto tag, const DepthwiseConv1dParams& p, bool fast_c, int64_t total, int64_t blocks) {
        conv_fwd_kernel<decltype(tag)>
            <<<static_cast<unsigned>(blocks), kConvThreads, 0, stream>>>(p, fast_c, total);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> depthwise_conv1d_bwd(
    const at::Tensor& dout, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, int64_t pad_left, bool silu,
    const std::optional<at::Tensor>& seq_idx, const std::optional<at::Tensor>& initial_states) {
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  return depthwise_conv1d_bwd_driver(
      dout, x, weight, bias, pad_left, silu, seq_idx, initial_states,
      [&](auto tag, const DepthwiseConv1dBwdParams& bp, bool fast_c, int64_t total,
          int64_t blocks) {
        conv_bwd_dx_kernel<decltype(tag)>
            <<<static_cast<unsigned>(blocks), kConvThreads, 0, stream>>>(bp, fast_c, total);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      },
      [&](auto tag, auto width_cap, const DepthwiseConv1dBwdParams& bp, int64_t rows_per_part,
          void* partial, int64_t channel_blocks, int64_t parts, size_t smem_bytes, bool fast_c) {
        const dim3 grid(static_cast<unsigned>(channel_blocks), static_cast<unsigned>(parts));
        conv_bwd_dweight_kernel<decltype(tag), decltype(width_cap)::value>
            <<<grid, kConvThreads, smem_bytes, stream>>>(bp, rows_per_part, partial, fast_c);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

}  // namespace

TORCH_LIBRARY_IMPL(mvscan, CUDA, m) {
  m.impl("depthwise_conv1d_fwd", &depthwise_conv1d_fwd);
  m.impl("depthwise_conv1d_bwd", &depthwise_conv1d_bwd);
}

}  // namespace cuda
}  // namespace mvscan
