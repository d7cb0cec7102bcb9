// CPU selective scan instantiated for c10::Half inputs (one file per dtype so they compile in parallel).
#include "selective_scan_cpu_isa.h"

namespace mvscan {
namespace cpu {
template void selective_scan_fwd_cpu<c10::Half>(const SelectiveScanParams&, CpuIsa);
template void selective_scan_bwd_cpu<c10::Half>(const SelectiveScanBwdParams&, CpuIsa);
}  // namespace cpu
}  // namespace mvscan
