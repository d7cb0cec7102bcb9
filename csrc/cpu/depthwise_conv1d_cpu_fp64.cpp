// CPU depthwise conv1d instantiated for double inputs (one file per dtype so they compile in parallel).
#include "depthwise_conv1d_cpu_isa.h"

namespace mvscan {
namespace cpu {
template void depthwise_conv1d_fwd_cpu<double>(const DepthwiseConv1dParams&, CpuIsa);
template void depthwise_conv1d_bwd_cpu<double>(const DepthwiseConv1dBwdParams&, CpuIsa);
}  // namespace cpu
}  // namespace mvscan
