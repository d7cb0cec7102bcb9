#include "common/dtype_dispatch.h"

namespace mvscan {

const std::string& input_dtype_names() {
  static const std::string names = [] {
    const char* list[] = {
#define MVSCAN_DTYPE(suffix, torch_name, cpp_type, acc_type) #torch_name,
#include "dtypes.def"
#undef MVSCAN_DTYPE
    };
    const int n = static_cast<int>(sizeof(list) / sizeof(list[0]));
    std::string s;
    for (int i = 0; i < n; ++i) {
      if (i > 0) s += i + 1 == n ? " or " : ", ";
      s += list[i];
    }
    return s;
  }();
  return names;
}

void check_input_dtype(const at::Tensor& t, const char* op, const char* name) {
  bool listed = false;
#define MVSCAN_DTYPE(suffix, torch_name, cpp_type, acc_type) \
  listed = listed || t.scalar_type() == c10::CppTypeToScalarType<cpp_type>::value;
#include "dtypes.def"
#undef MVSCAN_DTYPE
  TORCH_CHECK_TYPE(listed, op, ": ", name, " must be ", input_dtype_names(), ", got ",
                   t.scalar_type());
}

}  // namespace mvscan
