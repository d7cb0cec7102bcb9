// Argument checks and the parameter block of the selective state update, shared by every device.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <type_traits>

#include "common/dtype_dispatch.h"
#include "selective_state_update/selective_state_update.h"

namespace mvscan {

// Validates the arguments (ValueError/TypeError naming the argument, what was expected and what
// came), allocates out (x's shape and dtype, contiguous, NaN-poisoned when poisoning is on) and
// describes everything. state must not overlap itself (a stride-0 expand) or an input
// (ValueError; host-only checks). check_index_values: also check that the state_batch_indices
// values are below state.shape[0] and that the non-negative ones are distinct, which reads them
// on the host: the CPU op does, the CUDA driver does not (a device tensor would need a
// synchronising copy; its kernel guards the bound, and duplicates are undefined behaviour).
SelectiveStateUpdateParams make_selective_state_update_params(
    const at::Tensor& state, const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A,
    const at::Tensor& B, const at::Tensor& C, const std::optional<at::Tensor>& D,
    const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& dt_bias,
    bool dt_softplus, const std::optional<at::Tensor>& state_batch_indices,
    bool check_index_values, at::Tensor* out);

// Rows of the update: batch x heads x dim.
inline int64_t state_update_rows(const SelectiveStateUpdateParams& p) {
  return p.batch * p.heads * p.dim;
}

// Calls fn(input_t{}, state_t{}) with the C++ types of x's and the state's dtypes. Pairs the
// checks reject (a float64 state with another x) are never instantiated.
template <typename Fn>
void dispatch_state_update_types(at::ScalarType x_type, at::ScalarType state_type, const char* op,
                                 Fn&& fn) {
  dispatch_input_type(x_type, op, [&](auto in_tag) {
    dispatch_input_type(state_type, op, [&](auto state_tag) {
      using input_t = decltype(in_tag);
      using state_t = decltype(state_tag);
      if constexpr (!std::is_same_v<state_t, double> || std::is_same_v<input_t, double>) {
        fn(in_tag, state_tag);
      }
    });
  });
}

}  // namespace mvscan
