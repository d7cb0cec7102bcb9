// mvscan::selective_state_update on CPU: checks, output, dtype dispatch and the kernel.
//
// One decode step is a few multiply-adds per state, so the kernel is plain C++ written for the
// compiler's vectoriser (compiled per instruction set: common/isa_targets.h): work units of up
// to kUnitChannels channels of one (batch, head), split over threads by at::parallel_for. Per unit,
// B and C are loaded once; the per-channel scalars (dt with bias and softplus, the D skip and the
// silu(z) gate, each a few transcendental calls) run as loops over the unit's channels, and per
// channel the N states run as loops over states. Where Mamba-2 ties A over the states (stride 0),
// exp(dt A) is computed once per channel, not N times. The sum over states keeps kSumLanes
// partial sums added in a fixed order: one dependent chain of N adds would bound the speed, and
// the result must not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>

#include "common/isa_targets.h"
#include "common/math.h"
#include "selective_scan/selective_scan.h"  // kMaxDState
#include "selective_state_update/selective_state_update_params.h"

namespace mvscan {
namespace cpu {
namespace {

constexpr const char* kOp = "mvscan.selective_state_update";
constexpr int64_t kUnitChannels = 64;
constexpr int kSumLanes = 16;  // a power of two: one AVX-512 vector of float partial sums

// dst[i] = src[i * stride], i < n, in the accumulation type; the unit-stride loop vectorises.
template <typename acc_t, typename T>
inline void load_row(acc_t* dst, const T* src, int64_t stride, int64_t n) {
  if (stride == 1) {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<acc_t>(src[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<acc_t>(src[i * stride]);
  }
}

template <typename T, typename acc_t>
inline void store_row(T* dst, int64_t stride, const acc_t* src, int64_t n) {
  if (stride == 1) {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<T>(src[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i * stride] = static_cast<T>(src[i]);
  }
}

// A parameter stored as float32 or as input_t, from element `offset` on.
template <typename acc_t, typename input_t>
inline void load_param_row(acc_t* dst, const void* base, bool is_float32, int64_t offset,
                           int64_t stride, int64_t n) {
  if (is_float32) {
    load_row(dst, static_cast<const float*>(base) + offset, stride, n);
  } else {
    load_row(dst, static_cast<const input_t*>(base) + offset, stride, n);
  }
}

// sum_n h[n] c[n] as kSumLanes interleaved partial sums, then added pairwise: a fixed order.
template <typename acc_t>
inline acc_t dot(const acc_t* h, const acc_t* c, int64_t n) {
  acc_t part[kSumLanes] = {};
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes) {
    for (int j = 0; j < kSumLanes; ++j) part[j] += h[i + j] * c[i + j];
  }
  for (int j = 0; i + j < n; ++j) part[j] += h[i + j] * c[i + j];
  for (int width = kSumLanes / 2; width > 0; width /= 2) {
    for (int j = 0; j < width; ++j) part[j] += part[j + width];
  }
  return part[0];
}

// Work units [begin, end): unit u is channels [d0, d0 + kUnitChannels) of one (batch, head).
// Compiled per instruction set by the wrappers below, which also inline math.h's exp, softplus
// and sigmoid into its loops (GCC leaves them out of line by itself, and a loop that calls a
// function is not vectorised).
template <typename input_t, typename state_t>
inline void update_units(const SelectiveStateUpdateParams& p, int64_t begin, int64_t end) {
  using acc_t = typename AccType<input_t>::type;
  const int64_t N = p.dstate;
  const int64_t units_per_head = (p.dim + kUnitChannels - 1) / kUnitChannels;
  const bool A_tied = p.A_dstate_stride == 0;  // Mamba-2: one A per head
  acc_t a[kMaxDState], b_row[kMaxDState], c_row[kMaxDState], h[kMaxDState];
  acc_t dt_v[kUnitChannels], x_v[kUnitChannels], y[kUnitChannels], tmp[kUnitChannels];
  for (int64_t u = begin; u < end; ++u) {
    const int64_t d0 = u % units_per_head * kUnitChannels;
    const int64_t rows = std::min(kUnitChannels, p.dim - d0);
    const int64_t head = u / units_per_head % p.heads, b = u / (units_per_head * p.heads);
    input_t* out = static_cast<input_t*>(p.out) + b * p.out_strides.batch +
                   head * p.out_strides.head + d0 * p.out_strides.dim;
    int64_t s_row = b;
    if (p.state_batch_indices != nullptr) {
      s_row = p.state_batch_indices[b * p.state_batch_indices_stride];
      if (s_row < 0) {  // padding: no state row behind this batch element
        for (int64_t i = 0; i < rows; ++i) y[i] = 0;
        store_row(out, p.out_strides.dim, y, rows);
        continue;
      }
    }
    load_row(b_row,
             static_cast<const input_t*>(p.B) + b * p.B_batch_stride +
                 head / (p.heads / p.B_groups) * p.B_group_stride,
             p.B_dstate_stride, N);
    load_row(c_row,
             static_cast<const input_t*>(p.C) + b * p.C_batch_stride +
                 head / (p.heads / p.C_groups) * p.C_group_stride,
             p.C_dstate_stride, N);

    load_row(dt_v,
             static_cast<const input_t*>(p.dt) + b * p.dt_strides.batch +
                 head * p.dt_strides.head + d0 * p.dt_strides.dim,
             p.dt_strides.dim, rows);
    if (p.dt_bias != nullptr) {
      load_param_row<acc_t, input_t>(tmp, p.dt_bias, p.dt_bias_is_float32,
                                     head * p.dt_bias_head_stride + d0 * p.dt_bias_dim_stride,
                                     p.dt_bias_dim_stride, rows);
      for (int64_t i = 0; i < rows; ++i) dt_v[i] += tmp[i];
    }
    if (p.dt_softplus) {
      for (int64_t i = 0; i < rows; ++i) dt_v[i] = softplus_acc(dt_v[i]);
    }
    load_row(x_v,
             static_cast<const input_t*>(p.x) + b * p.x_strides.batch +
                 head * p.x_strides.head + d0 * p.x_strides.dim,
             p.x_strides.dim, rows);

    for (int64_t i = 0; i < rows; ++i) {
      const int64_t d = d0 + i;
      state_t* s = static_cast<state_t*>(p.state) + s_row * p.state_batch_stride +
                   head * p.state_head_stride + d * p.state_dim_stride;
      const int64_t a_off = head * p.A_head_stride + d * p.A_dim_stride;
      const acc_t dt_i = dt_v[i], dt_x = dt_i * x_v[i];
      // A dense state in the accumulation type is updated where it lies; any other goes
      // through h (the copies would otherwise cost as much as the update).
      acc_t* hp = h;
      if constexpr (std::is_same_v<state_t, acc_t>) {
        if (p.state_dstate_stride == 1) hp = s;
      }
      if (hp == h) load_row(h, s, p.state_dstate_stride, N);
      if (A_tied) {
        acc_t a0;
        load_param_row<acc_t, input_t>(&a0, p.A, p.A_is_float32, a_off, 0, 1);
        const acc_t decay = exp_acc(dt_i * a0);
        for (int64_t n = 0; n < N; ++n) hp[n] = hp[n] * decay + dt_x * b_row[n];
      } else {
        load_param_row<acc_t, input_t>(a, p.A, p.A_is_float32, a_off, p.A_dstate_stride, N);
        for (int64_t n = 0; n < N; ++n) hp[n] = hp[n] * exp_acc(dt_i * a[n]) + dt_x * b_row[n];
      }
      // out reads the new state in the accumulation type; only the stored copy is rounded.
      y[i] = dot(hp, c_row, N);
      if (hp == h) store_row(s, p.state_dstate_stride, h, N);
    }

    if (p.D != nullptr) {
      load_param_row<acc_t, input_t>(tmp, p.D, p.D_is_float32,
                                     head * p.D_head_stride + d0 * p.D_dim_stride,
                                     p.D_dim_stride, rows);
      for (int64_t i = 0; i < rows; ++i) y[i] += tmp[i] * x_v[i];
    }
    if (p.z != nullptr) {
      load_row(tmp,
               static_cast<const input_t*>(p.z) + b * p.z_strides.batch +
                   head * p.z_strides.head + d0 * p.z_strides.dim,
               p.z_strides.dim, rows);
      for (int64_t i = 0; i < rows; ++i) y[i] *= tmp[i] * sigmoid_acc(tmp[i]);
    }
    store_row(out, p.out_strides.dim, y, rows);
  }
}

MVSCAN_ISA_WRAPPERS(update_units_isa, update_units,
                    (const SelectiveStateUpdateParams& p, int64_t begin, int64_t end),
                    (p, begin, end))

template <typename input_t, typename state_t>
void selective_state_update_cpu(const SelectiveStateUpdateParams& p) {
  const auto units_fn = MVSCAN_PICK_ISA_WRAPPER(update_units_isa, input_t, state_t);
  const int64_t units = p.batch * p.heads * ((p.dim + kUnitChannels - 1) / kUnitChannels);
  // About 16k states (some 10 us) per task: waking a thread for less costs more than it saves.
  const int64_t grain = std::max<int64_t>(1, 16384 / (kUnitChannels * p.dstate));
  at::parallel_for(0, units, grain,
                   [&](int64_t begin, int64_t end) { units_fn(p, begin, end); });
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
