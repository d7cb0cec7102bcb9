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

// The values of a state-row index vector (negative = padding row): raises a ValueError naming
// the first value >= rows (the state's rows it indexes), or the first two entries that pick the
// same row (two batch elements updating one state row in place would race). Reads the values,
// so only for CPU tensors: on a GPU it would need a synchronising copy, so the CUDA drivers leave
// them unchecked (their kernels guard the bound; duplicates there are undefined behaviour).
void check_state_row_indices(const at::Tensor& t, int64_t rows, const char* op,
                             const char* name, const char* rows_name);

}  // namespace mvscan
