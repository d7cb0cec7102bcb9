// CPU selective scan instantiated for float inputs (one file per dtype so they compile in parallel).
#include "selective_scan_cpu_isa.h"

namespace mvscan {
namespace cpu {
template void selective_scan_fwd_cpu<float>(const SelectiveScanParams&, CpuIsa);
template void selective_scan_bwd_cpu<float>(const SelectiveScanBwdParams&, CpuIsa);
}  // namespace cpu
}  // namespace mvscan
