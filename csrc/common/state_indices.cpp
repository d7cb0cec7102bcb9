#include "common/state_indices.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <utility>
#include <vector>

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

void check_state_row_indices(const at::Tensor& t, int64_t rows, const char* op,
                             const char* name, const char* rows_name) {
  TORCH_INTERNAL_ASSERT(t.device().is_cpu(), op, ": ", name, " values read on the host");
  const int32_t* v = t.data_ptr<int32_t>();
  std::vector<std::pair<int32_t, int64_t>> picked;  // (row, position) of the real rows
  picked.reserve(static_cast<size_t>(t.size(0)));
  for (int64_t i = 0; i < t.size(0); ++i) {
    const int32_t value = v[i * t.stride(0)];
    TORCH_CHECK_VALUE(value < rows, op, ": ", name, "[", i, "] = ", value,
                      " is out of range for ", rows_name, " = ", rows,
                      " (a negative index marks a padding row)");
    if (value >= 0) picked.emplace_back(value, i);
  }
  // Sorted by row, then position: equal rows are neighbours, the first two positions first.
  std::sort(picked.begin(), picked.end());
  for (size_t k = 1; k < picked.size(); ++k) {
    TORCH_CHECK_VALUE(picked[k].first != picked[k - 1].first, op, ": ", name, "[",
                      picked[k - 1].second, "] = ", name, "[", picked[k].second, "] = ",
                      picked[k].first,
                      ": two batch elements would update the same state row in place; the "
                      "non-negative indices must be distinct (negative ones, padding rows, may "
                      "repeat)");
  }
}

}  // namespace mvscan
