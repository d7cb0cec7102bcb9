// The C++ side of the input-dtype list (dtypes.def) that device code needs: the element types and
// their accumulation type. Host-side dispatch and checks: dtype_dispatch.h.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <tuple>

namespace mvscan {

// State and accumulation type of an input type.
template <typename input_t>
struct AccType;
#define MVSCAN_DTYPE(suffix, torch_name, cpp_type, acc_type) \
  template <>                                                \
  struct AccType<cpp_type> {                                 \
    using type = acc_type;                                   \
  };
#include "dtypes.def"
#undef MVSCAN_DTYPE

// The input types in list order, for the generated per-dtype instantiation files
// (MVSCAN_INSTANCE_DTYPE_INDEX picks one); the trailing void only closes the list.
using InputTypes = std::tuple<
#define MVSCAN_DTYPE(suffix, torch_name, cpp_type, acc_type) cpp_type,
#include "dtypes.def"
#undef MVSCAN_DTYPE
    void>;
template <int index>
using InputTypeAt = std::tuple_element_t<index, InputTypes>;

}  // namespace mvscan
