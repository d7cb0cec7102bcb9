// Kernel outputs: allocation, and NaN poisoning so that an element a kernel never writes shows.
#pragma once

#include <ATen/ATen.h>

#include "common/dtype_dispatch.h"
#include "common/strides.h"

namespace mvscan {

// With MVSCAN_POISON_OUTPUTS=1 (the tests set it) every kernel output starts as NaN, so an
// element a kernel never writes cannot pass for a result.
bool poison_outputs();

// Fills t with NaN when poisoning is on; returns t.
at::Tensor poisoned(at::Tensor t);

inline at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  return poisoned(at::empty(sizes, options));
}

}  // namespace mvscan
