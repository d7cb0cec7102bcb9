#include "selective_state_update/selective_state_update_params.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <string>
#include <vector>

#include "common/dtype_dispatch.h"
#include "common/in_place.h"
#include "common/outputs.h"
#include "common/state_indices.h"
#include "selective_scan/selective_scan.h"  // kMaxDState

namespace mvscan {
namespace {

constexpr const char* kOpName = "mvscan.selective_state_update";
constexpr const char* kOp = "mvscan.selective_state_update: ";

void check_device(const at::Tensor& t, const char* name, const at::Tensor& x) {
  TORCH_CHECK_VALUE(t.device() == x.device(), kOp, name, " is on ", t.device(), " but x is on ",
                    x.device(), "; all tensors must be on one device");
}

void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected,
                 const std::string& layout) {
  TORCH_CHECK_VALUE(t.sizes() == expected, kOp, name, " must have shape ", layout, " = ",
                    expected, ", got ", t.sizes());
}

void check_like_x(const at::Tensor& t, const char* name, const at::Tensor& x,
                  const std::string& layout) {
  check_device(t, name, x);
  check_shape(t, name, x.sizes(), layout + " like x");
  TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), kOp, name, " must have x's dtype ",
                   x.scalar_type(), ", got ", t.scalar_type());
}

// A, D and dt_bias: x's dtype, or float32 (the model's parameters under autocast).
bool check_param_dtype(const at::Tensor& t, const char* name, const at::Tensor& x) {
  TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type() || t.scalar_type() == at::kFloat, kOp,
                   name, " must have x's dtype (", x.scalar_type(), ") or float32, got ",
                   t.scalar_type());
  return t.scalar_type() == at::kFloat;
}

// The sizes of a tensor given in the 3-d layout (no heads) or the 4-d one: `full` with the
// heads entry (at `head_axis`) dropped when there are no heads.
std::vector<int64_t> layout_sizes(std::vector<int64_t> full, bool has_heads, size_t head_axis) {
  if (!has_heads) full.erase(full.begin() + static_cast<std::ptrdiff_t>(head_axis));
  return full;
}

// The stride of a dimension that the 3-d layout lacks is 0 (one head or one group).
int64_t stride_or_zero(const at::Tensor& t, bool present, int64_t axis) {
  return present ? t.stride(axis) : 0;
}

}  // namespace

SelectiveStateUpdateParams make_selective_state_update_params(
    const at::Tensor& state, const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A,
    const at::Tensor& B, const at::Tensor& C, const std::optional<at::Tensor>& D,
    const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& dt_bias,
    bool dt_softplus, const std::optional<at::Tensor>& state_batch_indices,
    bool check_index_values, at::Tensor* out) {
  TORCH_CHECK_VALUE(state.dim() == 3 || state.dim() == 4, kOp,
                    "state must have shape (batch, dim, N) or (batch, heads, dim, N), got ",
                    state.sizes());
  const bool has_heads = state.dim() == 4;
  check_input_dtype(x, kOpName, "x");
  check_device(state, "state", x);
  check_input_dtype(state, kOpName, "state");
  TORCH_CHECK_TYPE(state.scalar_type() != at::kDouble || x.scalar_type() == at::kDouble, kOp,
                   "state may be float64 only with float64 x, got state float64 and x ",
                   x.scalar_type());

  const int64_t heads = has_heads ? state.size(1) : 1;
  const int64_t dim = state.size(-2), N = state.size(-1);
  TORCH_CHECK_VALUE(N >= 1 && N <= kMaxDState, kOp, "state has N = ", N,
                    " states (state.shape[-1]); supported: 1 to ", kMaxDState);
  const std::string rows_layout = has_heads ? "(batch, heads, dim)" : "(batch, dim)";
  TORCH_CHECK_VALUE(
      x.dim() == state.dim() - 1 && x.dim() >= 2 &&
          x.sizes().slice(1) == state.sizes().slice(1, state.dim() - 2),
      kOp, "x must have shape ", rows_layout, " with ",
      has_heads ? "(heads, dim) = state.shape[1:3] = " : "dim = state.shape[1] = ",
      state.sizes().slice(1, state.dim() - 2), ", got ", x.sizes());
  const int64_t batch = x.size(0);
  if (!state_batch_indices.has_value()) {
    TORCH_CHECK_VALUE(state.size(0) == batch, kOp, "state.shape[0] = ", state.size(0),
                      " must equal x.shape[0] = batch = ", batch,
                      " (pass state_batch_indices to update rows of a larger state)");
  }
  check_like_x(dt, "dt", x, rows_layout);
  if (z.has_value()) check_like_x(*z, "z", x, rows_layout);

  check_device(A, "A", x);
  check_shape(A, "A", layout_sizes({heads, dim, N}, has_heads, 0),
              has_heads ? "(heads, dim, N)" : "(dim, N)");
  const bool A_f32 = check_param_dtype(A, "A", x);

  SelectiveStateUpdateParams p;
  p.batch = batch;
  p.heads = heads;
  p.dim = dim;
  p.dstate = N;
  p.state_rows = state.size(0);
  p.dt_softplus = dt_softplus;
  p.A_is_float32 = A_f32;

  // B and C: (batch, groups, N) with groups dividing heads, or (batch, N) for a 3-d state.
  const auto describe_bc = [&](const at::Tensor& t, const char* name, const void** ptr,
                               int64_t* groups, int64_t* batch_stride, int64_t* group_stride,
                               int64_t* dstate_stride) {
    check_device(t, name, x);
    TORCH_CHECK_VALUE(t.dim() == state.dim() - 1, kOp, name, " must have shape ",
                      has_heads ? "(batch, groups, N)" : "(batch, N)", ", got ", t.sizes());
    const int64_t G = has_heads ? t.size(1) : 1;
    TORCH_CHECK_VALUE(G >= 1 && heads % G == 0, kOp, name, " has ", G,
                      " groups (", name, ".shape[1]), which must divide heads = ", heads);
    check_shape(t, name, layout_sizes({batch, G, N}, has_heads, 1),
                has_heads ? "(batch, groups, N)" : "(batch, N)");
    TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), kOp, name, " must have x's dtype ",
                     x.scalar_type(), ", got ", t.scalar_type());
    *ptr = t.data_ptr();
    *groups = G;
    *batch_stride = t.stride(0);
    *group_stride = stride_or_zero(t, has_heads, 1);
    *dstate_stride = t.stride(-1);
  };
  describe_bc(B, "B", &p.B, &p.B_groups, &p.B_batch_stride, &p.B_group_stride,
              &p.B_dstate_stride);
  describe_bc(C, "C", &p.C, &p.C_groups, &p.C_batch_stride, &p.C_group_stride,
              &p.C_dstate_stride);
  p.B_heads_per_group = heads / p.B_groups;
  p.C_heads_per_group = heads / p.C_groups;

  // D and dt_bias: (heads, dim), or (dim,) for a 3-d state.
  const auto describe_channel_param = [&](const std::optional<at::Tensor>& t, const char* name,
                                          const void** ptr, bool* is_f32, int64_t* head_stride,
                                          int64_t* dim_stride) {
    if (!t.has_value()) return;
    check_device(*t, name, x);
    check_shape(*t, name, layout_sizes({heads, dim}, has_heads, 0),
                has_heads ? "(heads, dim)" : "(dim,)");
    *is_f32 = check_param_dtype(*t, name, x);
    *ptr = t->data_ptr();
    *head_stride = stride_or_zero(*t, has_heads, 0);
    *dim_stride = t->stride(-1);
  };
  describe_channel_param(D, "D", &p.D, &p.D_is_float32, &p.D_head_stride, &p.D_dim_stride);
  describe_channel_param(dt_bias, "dt_bias", &p.dt_bias, &p.dt_bias_is_float32,
                         &p.dt_bias_head_stride, &p.dt_bias_dim_stride);

  const IndexVector idx =
      check_index_vector(state_batch_indices, x, batch, kOpName, "state_batch_indices");
  if (check_index_values && state_batch_indices.has_value()) {
    check_state_row_indices(*state_batch_indices, p.state_rows, kOpName, "state_batch_indices",
                            "state.shape[0]");
  }
  // The state is updated in place: its rows must not share memory with each other or with an
  // input (host-only checks of strides and storage ranges).
  check_no_internal_overlap(state, kOpName, "state");
  check_no_overlap_with_state(
      state, kOpName, "state",
      {{"x", x}, {"dt", dt}, {"A", A}, {"B", B}, {"C", C}, {"D", or_undefined(D)},
       {"z", or_undefined(z)}, {"dt_bias", or_undefined(dt_bias)},
       {"state_batch_indices", or_undefined(state_batch_indices)}});
  p.state_batch_indices = idx.data;
  p.state_batch_indices_stride = idx.stride;

  const auto row_strides = [&](const at::Tensor& t) {
    return has_heads ? RowStrides{t.stride(0), t.stride(1), t.stride(2)}
                     : RowStrides{t.stride(0), 0, t.stride(1)};
  };
  p.state = state.data_ptr();
  p.state_batch_stride = state.stride(0);
  p.state_head_stride = stride_or_zero(state, has_heads, 1);
  p.state_dim_stride = state.stride(-2);
  p.state_dstate_stride = state.stride(-1);
  p.x = x.data_ptr();
  p.x_strides = row_strides(x);
  p.dt = dt.data_ptr();
  p.dt_strides = row_strides(dt);
  if (z.has_value()) {
    p.z = z->data_ptr();
    p.z_strides = row_strides(*z);
  }
  p.A = A.data_ptr();
  p.A_head_stride = stride_or_zero(A, has_heads, 0);
  p.A_dim_stride = A.stride(-2);
  p.A_dstate_stride = A.stride(-1);

  *out = poisoned(at::empty(x.sizes(), x.options()));
  p.out = out->data_ptr();
  p.out_strides = row_strides(*out);
  return p;
}

}  // namespace mvscan
