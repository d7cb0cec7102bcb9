// The decode operators' optional row indices (state_batch_indices, conv_state_indices,
// cache_seqlens): checks shared by every op and device.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

namespace mvscan {

// Checks an optional (batch,) int32 tensor on x's device (ValueError/TypeError "<op>: <name> ...")
// and returns its data pointer (nullptr when absent) and element stride.
struct IndexVector {
  const int32_t* data = nullptr;
  int64_t stride = 0;
};
IndexVector check_index_vector(const std::optional<at::Tensor>& t, const at::Tensor& x,
                               int64_t batch, const char* op, const char* name);

// Raises a ValueError naming the first value >= rows (the state's rows it indexes). Reads the
// values, so only for CPU tensors: on a GPU it would need a synchronising copy.
void check_index_values_below(const at::Tensor& t, int64_t rows, const char* op,
                              const char* name, const char* rows_name);

}  // namespace mvscan
