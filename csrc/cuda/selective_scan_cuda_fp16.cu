// The CUDA selective-scan kernels for one input dtype (one file per dtype: they build in parallel).
#include "selective_scan_cuda.cuh"

MVSCAN_INSTANTIATE_SELECTIVE_SCAN_CUDA(c10::Half);
