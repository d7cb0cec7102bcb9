// Launchers of the CUDA selective-scan kernels. Included once per input dtype by
// selective_scan_cuda_<dtype>.cu, which instantiates them.
//
// STATUS: compiled, not yet run on a GPU (see selective_scan_cuda_kernels.cuh).
#pragma once

#include <c10/cuda/CUDAException.h>

#include "selective_scan_cuda.h"
#include "selective_scan_cuda_kernels.cuh"

namespace mvscan {
namespace cuda {

template <typename Kernel>
void set_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(bytes)));
  }
}

template <typename input_t>
void launch_selective_scan_fwd(const SelectiveScanParams& p, const ScanGeometry& geo,
                               cudaStream_t stream) {
  if (geo.n_blocks == 0) return;
  auto kernel = &selective_scan_fwd_kernel<input_t>;
  set_smem(kernel, geo.smem_bytes);
  kernel<<<static_cast<unsigned>(geo.n_blocks), geo.threads, geo.smem_bytes, stream>>>(p, geo);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename input_t>
void launch_selective_scan_bwd(const SelectiveScanBwdParams& bp, const ScanGeometry& geo,
                               cudaStream_t stream) {
  if (geo.n_blocks == 0) return;
  auto kernel = &selective_scan_bwd_kernel<input_t>;
  set_smem(kernel, geo.smem_bytes);
  kernel<<<static_cast<unsigned>(geo.n_blocks), geo.threads, geo.smem_bytes, stream>>>(bp, geo);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace mvscan

#define MVSCAN_INSTANTIATE_SELECTIVE_SCAN_CUDA(T)                                              \
  template void mvscan::cuda::launch_selective_scan_fwd<T>(                                   \
      const mvscan::SelectiveScanParams&, const mvscan::cuda::ScanGeometry&, cudaStream_t);   \
  template void mvscan::cuda::launch_selective_scan_bwd<T>(                                   \
      const mvscan::SelectiveScanBwdParams&, const mvscan::cuda::ScanGeometry&, cudaStream_t)
