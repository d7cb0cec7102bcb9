// The selective state update's parameter block, shared by the CPU and CUDA kernels: one decode
// step of the selective scan, the state updated in place.
//
//   dt'  = softplus?(dt + dt_bias)
//   h'   = exp(dt' A) h + dt' x B          (h: the N states of one row, read from `state`)
//   out  = (sum_n C[n] h'[n] + D x) silu(z)
//
// A row is one (batch, head, channel) triple; a 3-d state (batch, dim, N) is one head. B and C
// are shared by the heads of a group: head h reads group h / (heads / groups). Every tensor is
// a raw pointer with 64-bit element strides (a stride-0 view, as Mamba-2 passes A, dt, D and
// dt_bias, is read in place); the math runs in the accumulation type whatever the state's dtype,
// and out is computed from h' before h' is rounded into the state.
#pragma once

#include <cstdint>

namespace mvscan {

// Element strides of a (batch, heads, dim) tensor: x, dt, z, out (head stride 0 for 3-d state).
struct RowStrides {
  int64_t batch = 0, head = 0, dim = 0;
};

struct SelectiveStateUpdateParams {
  int64_t batch = 0, heads = 1, dim = 0, dstate = 0;
  int64_t B_groups = 1, C_groups = 1;  // each divides heads
  // heads / B_groups and heads / C_groups: head h reads B group h / B_heads_per_group (computed
  // on the host, so a kernel row does one division per group instead of two).
  int64_t B_heads_per_group = 1, C_heads_per_group = 1;
  int64_t state_rows = 0;              // state.shape[0]: the rows state_batch_indices may pick
  bool dt_softplus = false;
  // A, D and dt_bias hold float32 or x's dtype (float32 parameters under autocast); x, dt, z, B
  // and C hold x's dtype; the state holds its own dtype (the kernels' state_t).
  bool A_is_float32 = false, D_is_float32 = false, dt_bias_is_float32 = false;

  void* state = nullptr;  // (state_rows, heads, dim, N), updated in place
  int64_t state_batch_stride = 0, state_head_stride = 0, state_dim_stride = 0,
          state_dstate_stride = 0;
  const void* x = nullptr;
  const void* dt = nullptr;
  const void* z = nullptr;  // nullptr when absent
  RowStrides x_strides, dt_strides, z_strides;
  const void* A = nullptr;  // (heads, dim, N)
  int64_t A_head_stride = 0, A_dim_stride = 0, A_dstate_stride = 0;
  const void* B = nullptr;  // (batch, groups, N)
  const void* C = nullptr;
  int64_t B_batch_stride = 0, B_group_stride = 0, B_dstate_stride = 0;
  int64_t C_batch_stride = 0, C_group_stride = 0, C_dstate_stride = 0;
  const void* D = nullptr;  // (heads, dim) or nullptr
  const void* dt_bias = nullptr;
  int64_t D_head_stride = 0, D_dim_stride = 0, dt_bias_head_stride = 0, dt_bias_dim_stride = 0;
  // (batch,) int32 or nullptr: the state row of each batch element; negative = padding (out 0,
  // state untouched). An index >= state_rows never reaches memory: the CPU op rejects it, the
  // CUDA kernel (which cannot raise without a host sync) writes NaN to the row's out instead.
  // Two batch elements picking one row would race: the CPU op rejects duplicate non-negative
  // indices; on CUDA (no host sync) they are undefined behaviour.
  const int32_t* state_batch_indices = nullptr;
  int64_t state_batch_indices_stride = 0;

  void* out = nullptr;  // x's shape and dtype, contiguous
  RowStrides out_strides;
};

}  // namespace mvscan
