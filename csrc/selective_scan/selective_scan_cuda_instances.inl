// Launchers of the CUDA selective-scan kernels, instantiated for one input dtype: setup.py compiles
// this file once per dtype of common/dtypes.def, through a generated wrapper that defines
// MVSCAN_INSTANCE_DTYPE_INDEX, so the dtypes build in parallel.
#ifndef MVSCAN_INSTANCE_DTYPE_INDEX
#error "compiled through the per-dtype files setup.py generates, which define MVSCAN_INSTANCE_DTYPE_INDEX"
#endif

#include <c10/cuda/CUDAException.h>

#include "selective_scan/selective_scan_cuda.h"
#include "selective_scan/selective_scan_cuda_kernels.cuh"

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

namespace mvscan {
namespace cuda {
using instance_t = InputTypeAt<MVSCAN_INSTANCE_DTYPE_INDEX>;
template void launch_selective_scan_fwd<instance_t>(const SelectiveScanParams&,
                                                    const ScanGeometry&, cudaStream_t);
template void launch_selective_scan_bwd<instance_t>(const SelectiveScanBwdParams&,
                                                    const ScanGeometry&, cudaStream_t);
}  // namespace cuda
}  // namespace mvscan
