#include "common/in_place.h"

#include <ATen/MemoryOverlap.h>
#include <c10/util/Exception.h>

namespace mvscan {

void check_no_internal_overlap(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(at::has_internal_overlap(t) != at::MemOverlap::Yes, op, ": ", name,
                    " has elements that share memory (shape ", t.sizes(), ", strides ",
                    t.strides(), ", e.g. an expand()ed view); it is updated in place, so each of "
                    "its elements must have its own memory: pass a copy (.contiguous() or "
                    ".clone())");
}

void check_no_overlap_with_state(
    const at::Tensor& state, const char* op, const char* state_name,
    std::initializer_list<std::pair<const char*, at::Tensor>> inputs) {
  for (const auto& [name, t] : inputs) {
    if (!t.defined()) continue;
    const at::MemOverlapStatus status = at::get_overlap_status(state, t);
    TORCH_CHECK_VALUE(status != at::MemOverlapStatus::Full &&
                          status != at::MemOverlapStatus::Partial,
                      op, ": ", state_name, " and ", name,
                      " overlap in memory; ", state_name, " is updated in place while ", name,
                      " is read, so they must not share memory: pass a copy of ", name);
  }
}

}  // namespace mvscan
