// mvscan::selective_scan_fwd / _bwd on CUDA: the host driver (selective_scan_cuda_driver.h) with
// launchers that run the kernels on the current stream, without synchronising.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>  // not ATen/cuda/CUDAContext.h: it needs cuSPARSE/cuBLAS headers
#include <torch/library.h>

#include <array>
#include <atomic>
#include <tuple>

#include "selective_scan/selective_scan_cuda.h"
#include "selective_scan/selective_scan_cuda_driver.h"

namespace mvscan {
namespace cuda {
namespace {

// The most dynamic shared memory one block may use on a device, cached per device. Atomic: host
// threads may ask at once (they compute and store the same value).
size_t max_smem_per_block(int device) {
  static std::array<std::atomic<int>, 64> cache{};
  TORCH_CHECK(device >= 0 && device < static_cast<int>(cache.size()),
              "mvscan.selective_scan: unexpected CUDA device index ", device);
  int v = cache[device].load(std::memory_order_relaxed);
  if (v == 0) {
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    cache[device].store(v, std::memory_order_relaxed);
  }
  return static_cast<size_t>(v);
}

void check_cuda(const at::Tensor& u) {
  TORCH_CHECK_VALUE(u.is_cuda(), "mvscan.selective_scan: CUDA kernel called with u on ",
                    u.device());
}

std::tuple<at::Tensor, at::Tensor> selective_scan_fwd(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
    const std::optional<at::Tensor>& delta_bias, bool delta_softplus,
    const std::optional<at::Tensor>& initial_state) {
  check_cuda(u);
  const c10::cuda::CUDAGuard guard(u.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  return selective_scan_fwd_driver(
      u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, max_smem_per_block(u.get_device()),
      [&](auto tag, const SelectiveScanParams& p, const ScanGeometry& geo) {
        launch_selective_scan_fwd<decltype(tag)>(p, geo, stream);
      });
}

SelectiveScanGrads selective_scan_bwd(const at::Tensor& dout,
                                      const std::optional<at::Tensor>& dstates,
                                      const at::Tensor& u, const at::Tensor& delta,
                                      const at::Tensor& A, const at::Tensor& B,
                                      const at::Tensor& C, const std::optional<at::Tensor>& D,
                                      const std::optional<at::Tensor>& z,
                                      const std::optional<at::Tensor>& delta_bias,
                                      const at::Tensor& states, bool delta_softplus,
                                      const std::optional<at::Tensor>& initial_state) {
  check_cuda(u);
  const c10::cuda::CUDAGuard guard(u.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  return selective_scan_bwd_driver(
      dout, dstates, u, delta, A, B, C, D, z, delta_bias, states, delta_softplus, initial_state,
      max_smem_per_block(u.get_device()),
      [&](auto tag, const SelectiveScanBwdParams& bp, const ScanGeometry& geo) {
        launch_selective_scan_bwd<decltype(tag)>(bp, geo, stream);
      });
}

}  // namespace

TORCH_LIBRARY_IMPL(mvscan, CUDA, m) {
  m.impl("selective_scan_fwd", &selective_scan_fwd);
  m.impl("selective_scan_bwd", &selective_scan_bwd);
}

}  // namespace cuda
}  // namespace mvscan
