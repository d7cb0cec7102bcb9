#include "common/state_indices.h"

#include <c10/util/Exception.h>

namespace mvscan {

IndexVector check_index_vector(const std::optional<at::Tensor>& t, const at::Tensor& x,
                               int64_t batch, const char* op, const char* name) {
  if (!t.has_value()) return {};
  TORCH_CHECK_VALUE(t->device() == x.device(), op, ": ", name, " is on ", t->device(),
                    " but x is on ", x.device(), "; all tensors must be on one device");
  TORCH_CHECK_TYPE(t->scalar_type() == at::kInt, op, ": ", name, " must be int32, got ",
                   t->scalar_type());
  TORCH_CHECK_VALUE(t->dim() == 1 && t->size(0) == batch, op, ": ", name,
                    " must have shape (batch,) = (", batch, ",), got ", t->sizes());
  return IndexVector{t->data_ptr<int32_t>(), t->stride(0)};
}

void check_index_values_below(const at::Tensor& t, int64_t rows, const char* op,
                              const char* name, const char* rows_name) {
  TORCH_INTERNAL_ASSERT(t.device().is_cpu(), op, ": ", name, " values read on the host");
  const int32_t* v = t.data_ptr<int32_t>();
  for (int64_t i = 0; i < t.size(0); ++i) {
    const int64_t value = v[i * t.stride(0)];
    TORCH_CHECK_VALUE(value < rows, op, ": ", name, "[", i, "] = ", value,
                      " is out of range for ", rows_name, " = ", rows,
                      " (a negative index marks a padding row)");
  }
}

}  // namespace mvscan
