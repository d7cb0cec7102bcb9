// Checks for the tensor a decode operator updates in place (the state), shared by every op and
// device. Host-only (strides and storage ranges; no element is read), so they run under CUDA
// graph capture too.
#pragma once

#include <ATen/core/Tensor.h>

#include <initializer_list>
#include <optional>
#include <utility>

namespace mvscan {

// Raises a ValueError "<op>: <name> has elements that share memory ..." when elements of t
// overlap (a stride-0 expand of one row, say): rows updated in place would write the same memory.
void check_no_internal_overlap(const at::Tensor& t, const char* op, const char* name);

// Raises a ValueError naming state and the input when the in-place state and one of `inputs`
// ((name, tensor) pairs; an undefined tensor, an absent optional, is skipped) overlap in memory:
// the update would change the input while it is being read.
// Only overlaps PyTorch can decide are caught (at::get_overlap_status: both tensors dense; an
// interleaved strided view is assumed distinct), as with at::assert_no_overlap.
void check_no_overlap_with_state(
    const at::Tensor& state, const char* op, const char* state_name,
    std::initializer_list<std::pair<const char*, at::Tensor>> inputs);

// An optional argument as check_no_overlap_with_state takes it (undefined when absent).
inline at::Tensor or_undefined(const std::optional<at::Tensor>& t) {
  return t.has_value() ? *t : at::Tensor();
}

}  // namespace mvscan
