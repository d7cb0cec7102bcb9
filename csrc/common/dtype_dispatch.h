// Host-side rules that follow from the input-dtype list (dtypes.def): the accumulation dtype, the
// dispatcher, and the allowed-dtype check with its message.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include <string>

#include "common/dtypes.h"

namespace mvscan {

// The accumulation dtype of an input dtype (which the caller has checked is on the list).
inline at::ScalarType acc_dtype(at::ScalarType input) {
#define MVSCAN_DTYPE(suffix, torch_name, cpp_type, acc_type) \
  if (input == c10::CppTypeToScalarType<cpp_type>::value)    \
    return c10::CppTypeToScalarType<acc_type>::value;
#include "dtypes.def"
#undef MVSCAN_DTYPE
  return at::kFloat;
}

// "float32, float16, bfloat16 or float64", for error messages.
const std::string& input_dtype_names();

// Raises a TypeError "<op>: <name> must be float32, ... or float64, got <dtype>" unless t's dtype
// is on the list.
void check_input_dtype(const at::Tensor& t, const char* op, const char* name);

// Calls fn(T{}) with T the C++ type of input dtype t.
template <typename Fn>
void dispatch_input_type(at::ScalarType t, const char* op, Fn&& fn) {
#define MVSCAN_DTYPE(suffix, torch_name, cpp_type, acc_type)  \
  if (t == c10::CppTypeToScalarType<cpp_type>::value) {        \
    fn(cpp_type{});                                            \
    return;                                                    \
  }
#include "dtypes.def"
#undef MVSCAN_DTYPE
  TORCH_CHECK_TYPE(false, op, ": unsupported dtype ", t, "; supported: ", input_dtype_names());
}

}  // namespace mvscan
