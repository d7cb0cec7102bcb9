// Helpers shared by the operator entry points (CPU and CUDA): dtype dispatch and outputs.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "selective_scan.h"  // SeqStrides

namespace mvscan {

// Calls fn(T{}) with T the C++ type of an input dtype.
template <typename Fn>
void dispatch_input_type(at::ScalarType t, const char* op, Fn&& fn) {
  switch (t) {
    case at::kFloat: fn(float{}); break;
    case at::kDouble: fn(double{}); break;
    case at::kHalf: fn(c10::Half{}); break;
    case at::kBFloat16: fn(c10::BFloat16{}); break;
    default: TORCH_CHECK_TYPE(false, op, ": unsupported dtype ", t);
  }
}

// The strides of a (batch, channels, L) tensor.
inline SeqStrides seq_strides_of(const at::Tensor& t) {
  return SeqStrides{t.stride(0), t.stride(1), t.stride(2)};
}

// With MVSCAN_POISON_OUTPUTS=1 (the tests set it) every kernel output starts as NaN, so an
// element a kernel never writes cannot pass for a result.
bool poison_outputs();

// Fills t with NaN when poisoning is on; returns t.
at::Tensor poisoned(at::Tensor t);

inline at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  return poisoned(at::empty(sizes, options));
}

}  // namespace mvscan
