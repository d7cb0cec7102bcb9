// The CPU depthwise conv1d kernels instantiated for one input dtype: setup.py compiles this file
// once per dtype of common/dtypes.def, through a generated wrapper that defines
// MVSCAN_INSTANCE_DTYPE_INDEX, so the dtypes build in parallel.
#ifndef MVSCAN_INSTANCE_DTYPE_INDEX
#error "compiled through the per-dtype files setup.py generates, which define MVSCAN_INSTANCE_DTYPE_INDEX"
#endif
#include "depthwise_conv1d/depthwise_conv1d_cpu_isa.h"

namespace mvscan {
namespace cpu {
using instance_t = InputTypeAt<MVSCAN_INSTANCE_DTYPE_INDEX>;
template void depthwise_conv1d_fwd_cpu<instance_t>(const DepthwiseConv1dParams&, CpuIsa);
template void depthwise_conv1d_bwd_cpu<instance_t>(const DepthwiseConv1dBwdParams&, CpuIsa);
}  // namespace cpu
}  // namespace mvscan
