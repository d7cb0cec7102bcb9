// Entry points of the CUDA selective-scan kernels (selective_scan_cuda_instances.inl).
#pragma once

#include <cuda_runtime_api.h>

#include "selective_scan/selective_scan_cuda_geometry.h"

namespace mvscan {
namespace cuda {

// Launches on `stream`, without synchronising. Instantiated for every input dtype by
// selective_scan_cuda_instances.inl.
template <typename input_t>
void launch_selective_scan_fwd(const SelectiveScanParams& p, const ScanGeometry& geo,
                               cudaStream_t stream);

// bp's dB_part / dC_part: (batch, groups, parts, N, L) for variable B / C, (batch, dim, N) for
// constant ones; dA_part (batch, dim, N); dD_part and ddelta_bias_part (batch, dim).
template <typename input_t>
void launch_selective_scan_bwd(const SelectiveScanBwdParams& bp, const ScanGeometry& geo,
                               cudaStream_t stream);

}  // namespace cuda
}  // namespace mvscan
