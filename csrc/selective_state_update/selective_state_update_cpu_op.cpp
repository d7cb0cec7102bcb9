// mvscan::selective_state_update on CPU: checks, output, dtype dispatch and the kernel.
//
// One decode step is a few multiply-adds per state, so the kernel is plain C++: rows split over
// threads by at::parallel_for, and per row a loop over the N states whose float exp (exp_f32,
// branch-free) the compiler vectorises. A row's B and C are loaded once per (batch, group) run of
// rows, not per row.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "common/math.h"
#include "selective_scan/selective_scan.h"  // kMaxDState
#include "selective_state_update/selective_state_update_params.h"

namespace mvscan {
namespace cpu {
namespace {

constexpr const char* kOp = "mvscan.selective_state_update";

// Element i of a parameter stored as float32 or as input_t.
template <typename acc_t, typename input_t>
inline acc_t load_param(const void* base, bool is_float32, int64_t i) {
  return is_float32 ? static_cast<acc_t>(static_cast<const float*>(base)[i])
                    : static_cast<acc_t>(static_cast<const input_t*>(base)[i]);
}

template <typename input_t, typename state_t>
void selective_state_update_cpu(const SelectiveStateUpdateParams& p) {
  using acc_t = typename AccType<input_t>::type;
  const int64_t N = p.dstate;
  const input_t* x = static_cast<const input_t*>(p.x);
  const input_t* dt = static_cast<const input_t*>(p.dt);
  const input_t* z = static_cast<const input_t*>(p.z);
  const input_t* B = static_cast<const input_t*>(p.B);
  const input_t* C = static_cast<const input_t*>(p.C);
  state_t* state = static_cast<state_t*>(p.state);
  input_t* out = static_cast<input_t*>(p.out);
  const int64_t B_heads = p.heads / p.B_groups, C_heads = p.heads / p.C_groups;
  // About 8k states per task: below that, waking a thread costs more than the work.
  const int64_t grain = std::max<int64_t>(1, 8192 / N);

  at::parallel_for(0, state_update_rows(p), grain, [&](int64_t begin, int64_t end) {
    acc_t a[kMaxDState], b_row[kMaxDState], c_row[kMaxDState], h[kMaxDState];
    int64_t loaded_B = -1, loaded_C = -1;  // (batch, group) whose B / C is in b_row / c_row
    for (int64_t r = begin; r < end; ++r) {
      const int64_t d = r % p.dim, head = (r / p.dim) % p.heads, b = r / (p.dim * p.heads);
      input_t& out_el =
          out[b * p.out_strides.batch + head * p.out_strides.head + d * p.out_strides.dim];
      int64_t s_row = b;
      if (p.state_batch_indices != nullptr) {
        s_row = p.state_batch_indices[b * p.state_batch_indices_stride];
        if (s_row < 0) {  // padding: no state row behind this batch element
          out_el = input_t(0);
          continue;
        }
      }
      const int64_t gB = head / B_heads, gC = head / C_heads;
      if (b * p.B_groups + gB != loaded_B) {
        const input_t* src = B + b * p.B_batch_stride + gB * p.B_group_stride;
        for (int64_t n = 0; n < N; ++n) b_row[n] = static_cast<acc_t>(src[n * p.B_dstate_stride]);
        loaded_B = b * p.B_groups + gB;
      }
      if (b * p.C_groups + gC != loaded_C) {
        const input_t* src = C + b * p.C_batch_stride + gC * p.C_group_stride;
        for (int64_t n = 0; n < N; ++n) c_row[n] = static_cast<acc_t>(src[n * p.C_dstate_stride]);
        loaded_C = b * p.C_groups + gC;
      }

      acc_t dt_v = static_cast<acc_t>(
          dt[b * p.dt_strides.batch + head * p.dt_strides.head + d * p.dt_strides.dim]);
      if (p.dt_bias != nullptr) {
        dt_v += load_param<acc_t, input_t>(
            p.dt_bias, p.dt_bias_is_float32,
            head * p.dt_bias_head_stride + d * p.dt_bias_dim_stride);
      }
      if (p.dt_softplus) dt_v = softplus_acc(dt_v);
      const acc_t x_v = static_cast<acc_t>(
          x[b * p.x_strides.batch + head * p.x_strides.head + d * p.x_strides.dim]);
      const acc_t dt_x = dt_v * x_v;

      const int64_t a_off = head * p.A_head_stride + d * p.A_dim_stride;
      for (int64_t n = 0; n < N; ++n)
        a[n] = load_param<acc_t, input_t>(p.A, p.A_is_float32, a_off + n * p.A_dstate_stride);
      state_t* s = state + s_row * p.state_batch_stride + head * p.state_head_stride +
                   d * p.state_dim_stride;
      for (int64_t n = 0; n < N; ++n) h[n] = static_cast<acc_t>(s[n * p.state_dstate_stride]);
      for (int64_t n = 0; n < N; ++n) h[n] = h[n] * exp_acc(dt_v * a[n]) + dt_x * b_row[n];
      acc_t y = 0;
      for (int64_t n = 0; n < N; ++n) y += h[n] * c_row[n];
      // out reads the new state in the accumulation type; only the stored copy is rounded.
      for (int64_t n = 0; n < N; ++n) s[n * p.state_dstate_stride] = static_cast<state_t>(h[n]);

      if (p.D != nullptr) {
        y += load_param<acc_t, input_t>(p.D, p.D_is_float32,
                                        head * p.D_head_stride + d * p.D_dim_stride) * x_v;
      }
      if (z != nullptr) {
        const acc_t z_v = static_cast<acc_t>(
            z[b * p.z_strides.batch + head * p.z_strides.head + d * p.z_strides.dim]);
        y *= z_v * sigmoid_acc(z_v);
      }
      out_el = static_cast<input_t>(y);
    }
  });
}

at::Tensor selective_state_update(const at::Tensor& state, const at::Tensor& x,
                                  const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                                  const at::Tensor& C, const std::optional<at::Tensor>& D,
                                  const std::optional<at::Tensor>& z,
                                  const std::optional<at::Tensor>& dt_bias, bool dt_softplus,
                                  const std::optional<at::Tensor>& state_batch_indices) {
  TORCH_CHECK_VALUE(x.device().is_cpu(), kOp, ": CPU kernel called with x on ", x.device());
  at::Tensor out;
  const SelectiveStateUpdateParams p = make_selective_state_update_params(
      state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices,
      /*check_index_values=*/true, &out);
  dispatch_state_update_types(x.scalar_type(), state.scalar_type(), kOp,
                              [&](auto in_tag, auto state_tag) {
    selective_state_update_cpu<decltype(in_tag), decltype(state_tag)>(p);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(mvscan, CPU, m) {
  m.impl("selective_state_update", &selective_state_update);
}

}  // namespace cpu
}  // namespace mvscan
