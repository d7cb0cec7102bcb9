#include "selective_scan/selective_scan_params.h"

#include <c10/util/Exception.h>

#include <array>
#include <string>

#include "common/dtype_dispatch.h"
#include "common/outputs.h"

namespace mvscan {
namespace {

constexpr const char* kOp = "mvscan.selective_scan: ";

void check_real(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(!at::isComplexType(t.scalar_type()), kOp, name, " is complex (",
                   t.scalar_type(), "); the selective scan supports real tensors only");
}

void check_dtype(const at::Tensor& t, const char* name, at::ScalarType expected,
                 const char* rule) {
  check_real(t, name);
  TORCH_CHECK_TYPE(t.scalar_type() == expected, kOp, name, " must be ", expected, " (", rule,
                   "), got ", t.scalar_type());
}

void check_device(const at::Tensor& t, const char* name, const at::Tensor& u) {
  TORCH_CHECK_VALUE(t.device() == u.device(), kOp, name, " is on ", t.device(), " but u is on ",
                    u.device(), "; all tensors must be on one device");
}

void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected,
                 const char* layout) {
  TORCH_CHECK_VALUE(t.sizes() == expected, kOp, name, " must have shape ", layout, " = ",
                    expected, ", got ", t.sizes());
}

// Describes B or C (argument `name`) and checks it against the other arguments.
void describe_bc(const at::Tensor& t, const char* name, const at::Tensor& u, int64_t N,
                 at::ScalarType weight_type, const void** ptr, BCStrides* strides,
                 int64_t* groups, bool* variable) {
  const int64_t batch = u.size(0), dim = u.size(1), L = u.size(2);
  check_device(t, name, u);
  *ptr = t.data_ptr();
  if (t.dim() == 2) {
    check_shape(t, name, {dim, N}, "(dim, N) for a constant matrix");
    check_dtype(t, name, weight_type, "a constant B/C has A's dtype");
    *strides = BCStrides{0, t.stride(0), t.stride(1), 0};
    *groups = dim;
    *variable = false;
    return;
  }
  TORCH_CHECK_VALUE(t.dim() == 3 || t.dim() == 4, kOp, name,
                    " must be (dim, N) constant, (batch, N, L) variable or (batch, groups, N, L) "
                    "grouped, got a ",
                    t.dim(), "-d tensor of shape ", t.sizes());
  check_dtype(t, name, u.scalar_type(), "a variable B/C has u's dtype");
  *variable = true;
  if (t.dim() == 3) {
    check_shape(t, name, {batch, N, L}, "(batch, N, L)");
    *strides = BCStrides{t.stride(0), 0, t.stride(1), t.stride(2)};
    *groups = 1;
    return;
  }
  const int64_t G = t.size(1);
  TORCH_CHECK_VALUE(G >= 1 && dim % G == 0, kOp, name, " has ", G,
                    " groups, which must divide dim = ", dim);
  check_shape(t, name, {batch, G, N, L}, "(batch, groups, N, L)");
  *strides = BCStrides{t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
  *groups = G;
}

void check_channel_vector(const std::optional<at::Tensor>& t, const char* name,
                          const at::Tensor& u, at::ScalarType weight_type) {
  if (!t.has_value()) return;
  check_device(*t, name, u);
  check_shape(*t, name, {u.size(1)}, "(dim,)");
  check_dtype(*t, name, weight_type, "the accumulation dtype of u's dtype");
}

}  // namespace

SelectiveScanParams make_selective_scan_params(const at::Tensor& u, const at::Tensor& delta,
                                               const at::Tensor& A, const at::Tensor& B,
                                               const at::Tensor& C,
                                               const std::optional<at::Tensor>& D,
                                               const std::optional<at::Tensor>& z,
                                               const std::optional<at::Tensor>& delta_bias,
                                               bool delta_softplus,
                                               const std::optional<at::Tensor>& initial_state) {
  TORCH_CHECK_VALUE(u.dim() == 3, kOp, "u must be a 3-d tensor (batch, dim, L), got shape ",
                    u.sizes());
  check_real(u, "u");
  check_input_dtype(u, "mvscan.selective_scan", "u");
  const at::ScalarType itype = u.scalar_type();
  const int64_t batch = u.size(0), dim = u.size(1), L = u.size(2);
  TORCH_CHECK_VALUE(L >= 1, kOp, "the sequence length L = u.shape[2] must be at least 1, got ",
                    u.sizes());

  check_device(delta, "delta", u);
  check_shape(delta, "delta", u.sizes(), "(batch, dim, L) like u");
  check_dtype(delta, "delta", itype, "delta must have u's dtype");

  const at::ScalarType wtype = acc_dtype(itype);
  check_device(A, "A", u);
  check_real(A, "A");
  TORCH_CHECK_VALUE(A.dim() == 2 && A.size(0) == dim, kOp,
                    "A must have shape (dim, N) with dim = u.shape[1] = ", dim, ", got ",
                    A.sizes());
  check_dtype(A, "A", wtype, "the accumulation dtype of u's dtype");
  const int64_t N = A.size(1);
  TORCH_CHECK_VALUE(N >= 1 && N <= kMaxDState, kOp, "A has N = ", N,
                    " states (A.shape[1]); supported: 1 to ", kMaxDState);

  SelectiveScanParams p;
  p.batch = batch;
  p.dim = dim;
  p.seqlen = L;
  p.dstate = N;
  p.n_chunks = n_state_chunks(L);
  p.delta_softplus = delta_softplus;
  describe_bc(B, "B", u, N, wtype, &p.B, &p.B_strides, &p.B_groups, &p.B_is_variable);
  describe_bc(C, "C", u, N, wtype, &p.C, &p.C_strides, &p.C_groups, &p.C_is_variable);
  check_channel_vector(D, "D", u, wtype);
  check_channel_vector(delta_bias, "delta_bias", u, wtype);
  if (z.has_value()) {
    check_device(*z, "z", u);
    check_shape(*z, "z", u.sizes(), "(batch, dim, L) like u");
    check_dtype(*z, "z", itype, "z must have u's dtype");
  }
  if (initial_state.has_value()) {
    const at::Tensor& h0 = *initial_state;
    check_device(h0, "initial_state", u);
    check_shape(h0, "initial_state", {batch, dim, N}, "(batch, dim, N)");
    check_dtype(h0, "initial_state", wtype, "the accumulation dtype of u's dtype");
    p.h0 = h0.data_ptr();
    p.h0_batch_stride = h0.stride(0);
    p.h0_dim_stride = h0.stride(1);
    p.h0_state_stride = h0.stride(2);
  }

  p.u = u.data_ptr();
  p.u_strides = seq_strides_of(u);
  p.delta = delta.data_ptr();
  p.delta_strides = seq_strides_of(delta);
  p.A = A.data_ptr();
  p.A_dim_stride = A.stride(0);
  p.A_state_stride = A.stride(1);
  if (D.has_value()) {
    p.D = D->data_ptr();
    p.D_stride = D->stride(0);
  }
  if (delta_bias.has_value()) {
    p.delta_bias = delta_bias->data_ptr();
    p.delta_bias_stride = delta_bias->stride(0);
  }
  if (z.has_value()) {
    p.z = z->data_ptr();
    p.z_strides = seq_strides_of(*z);
  }
  return p;
}

at::Tensor check_selective_scan_bwd_args(const SelectiveScanParams& p, const at::Tensor& u,
                                         const at::Tensor& dout,
                                         const std::optional<at::Tensor>& dstates,
                                         const at::Tensor& states) {
  const at::ScalarType wtype = acc_dtype(u.scalar_type());
  const std::array<int64_t, 4> states_shape{p.batch, p.dim, p.n_chunks, p.dstate};
  check_device(dout, "dout", u);
  check_shape(dout, "dout", u.sizes(), "(batch, dim, L) like u");
  check_dtype(dout, "dout", u.scalar_type(), "the output's dtype");
  check_device(states, "states", u);
  const std::string states_layout =
      "(batch, dim, ceil(L / " + std::to_string(kStateChunkLen) + "), N)";
  check_shape(states, "states", states_shape, states_layout.c_str());
  check_dtype(states, "states", wtype, "the accumulation dtype");
  TORCH_CHECK_VALUE(states.is_contiguous(), kOp,
                    "states must be contiguous: pass the tensor the forward returned");
  if (!dstates.has_value()) return at::Tensor();
  check_device(*dstates, "dstates", u);
  check_shape(*dstates, "dstates", states_shape, (states_layout + " like states").c_str());
  check_dtype(*dstates, "dstates", wtype, "the accumulation dtype");
  return dstates->contiguous();
}

}  // namespace mvscan
