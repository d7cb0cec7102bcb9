// Launchers of the CUDA selective-scan kernels, instantiated for one input dtype: setup.py compiles
// this file once per dtype of common/dtypes.def, through a generated wrapper that defines
// MVSCAN_INSTANCE_DTYPE_INDEX, so the dtypes build in parallel.
#ifndef MVSCAN_INSTANCE_DTYPE_INDEX
#error "compiled through the per-dtype files setup.py generates, which define MVSCAN_INSTANCE_DTYPE_INDEX"
#endif

#include <c10/cuda/CUDAException.h>
#include <c10/util/CallOnce.h>
#include <c10/util/Exception.h>

#include <array>

#include "selective_scan/selective_scan_cuda.h"
#include "selective_scan/selective_scan_cuda_kernels.cuh"

namespace mvscan {
namespace cuda {

// Lets `kernel` launch with more than the default 48 KiB of dynamic shared memory on the current
// device: raises its limit to the device's opt-in maximum, once per (kernel, device). Setting the
// limit to each launch's own size, per launch, raced: two host threads launching one kernel with
// different N could each undo the other's limit between its set and its launch. The driver has
// already checked that the launch fits the opt-in maximum (the kernels declare no static shared
// memory, so all of it is theirs to use dynamically). c10::call_once, not std::call_once: after a
// throwing first call, libstdc++'s std::call_once blocks every later caller instead of retrying.
template <auto kernel>
void allow_large_smem(size_t bytes) {
  if (bytes <= 48 * 1024) return;
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  static std::array<c10::once_flag, 64> once;
  TORCH_CHECK(device >= 0 && device < static_cast<int>(once.size()),
              "mvscan.selective_scan: unexpected CUDA device index ", device);
  c10::call_once(once[device], [device] {
    int optin = 0;
    C10_CUDA_CHECK(
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    C10_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin));
  });
}

template <typename input_t>
void launch_selective_scan_fwd(const SelectiveScanParams& p, const ScanGeometry& geo,
                               cudaStream_t stream) {
  if (geo.n_blocks == 0) return;
  constexpr auto kernel = &selective_scan_fwd_kernel<input_t>;
  allow_large_smem<kernel>(geo.smem_bytes);
  kernel<<<static_cast<unsigned>(geo.n_blocks), geo.threads, geo.smem_bytes, stream>>>(p, geo);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename input_t>
void launch_selective_scan_bwd(const SelectiveScanBwdParams& bp, const ScanGeometry& geo,
                               cudaStream_t stream) {
  if (geo.n_blocks == 0) return;
  constexpr auto kernel = &selective_scan_bwd_kernel<input_t>;
  allow_large_smem<kernel>(geo.smem_bytes);
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
