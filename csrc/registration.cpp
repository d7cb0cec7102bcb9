// Every mvscan operator's schema, in one place, and the Python module that loads them. Each op's
// folder registers its CPU and CUDA implementations (TORCH_LIBRARY_IMPL in <op>_*_op.*).
#include <Python.h>
#include <torch/library.h>
#include <torch/version.h>

#include <type_traits>
#include <vector>

#include "common/cpu_isa.h"
#include "selective_scan/selective_scan.h"

namespace {

// The torch name of a C++ type on the input-dtype list.
template <typename T>
const char* torch_name_of() {
#define MVSCAN_DTYPE(suffix, torch_name, cpp_type, acc_type) \
  if (std::is_same_v<T, cpp_type>) return #torch_name;
#include "common/dtypes.def"
#undef MVSCAN_DTYPE
  return "unknown";
}

// The torch names of the input dtypes in list order (acc = false), or of each one's accumulation
// dtype (acc = true), as a new Python tuple of str.
PyObject* dtype_name_tuple(bool acc) {
  std::vector<const char*> names;
#define MVSCAN_DTYPE(suffix, torch_name, cpp_type, acc_type) \
  names.push_back(acc ? torch_name_of<acc_type>() : #torch_name);
#include "common/dtypes.def"
#undef MVSCAN_DTYPE
  PyObject* tuple = PyTuple_New(static_cast<Py_ssize_t>(names.size()));
  for (size_t i = 0; tuple != nullptr && i < names.size(); ++i)
    PyTuple_SET_ITEM(tuple, static_cast<Py_ssize_t>(i), PyUnicode_FromString(names[i]));
  return tuple;
}

}  // namespace

extern "C" {
// `import mvscan._C` loads this library, which runs the TORCH_LIBRARY registrations below and in
// the op folders. The module carries what Python must agree on, so it is defined once, here in
// C++: STATE_CHUNK_LEN (steps between the scan's saved states), MAX_DSTATE, INPUT_DTYPES (the
// torch dtype names of common/dtypes.def, in order) and ACC_DTYPES (each one's accumulation dtype).
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  PyObject* input = dtype_name_tuple(/*acc=*/false);
  PyObject* acc = dtype_name_tuple(/*acc=*/true);
  if (PyModule_AddObject(module, "INPUT_DTYPES", input) < 0 ||
      PyModule_AddObject(module, "ACC_DTYPES", acc) < 0 ||
      PyModule_AddIntConstant(module, "STATE_CHUNK_LEN", mvscan::kStateChunkLen) < 0 ||
      PyModule_AddIntConstant(module, "MAX_DSTATE", mvscan::kMaxDState) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
}

// needs_exact_strides exists from torch 2.7; before it, keeping x's stride order is the closest
// guarantee for the conv operators' output layout rule (stride 1 along channels).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 7)
constexpr at::Tag kExactStrides = at::Tag::needs_exact_strides;
#else
constexpr at::Tag kExactStrides = at::Tag::needs_fixed_stride_order;
#endif

TORCH_LIBRARY(mvscan, m) {
  // Returns (out, states): out (batch, dim, L) in u's dtype; states (batch, dim, n_chunks, N) in
  // the accumulation dtype, the state at the last step of every state chunk (STATE_CHUNK_LEN
  // steps; n_chunks = ceil(L / STATE_CHUNK_LEN)). The last one is h_L; the backward recomputes
  // the rest from them. initial_state: h_0, (batch, dim, N) in the accumulation dtype (zeros
  // when None).
  m.def(
      "selective_scan_fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, "
      "Tensor? z, Tensor? delta_bias, bool delta_softplus, Tensor? initial_state=None) "
      "-> (Tensor, Tensor)");
  // Returns (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dinitial_state), each shaped like its
  // input; the gradient of an absent optional input is an empty (0,) tensor. dstates is the
  // gradient w.r.t. the forward's states (None when they do not reach the loss).
  m.def(
      "selective_scan_bwd(Tensor dout, Tensor? dstates, Tensor u, Tensor delta, Tensor A, "
      "Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? delta_bias, Tensor states, "
      "bool delta_softplus, Tensor? initial_state=None) -> (Tensor, Tensor, Tensor, Tensor, "
      "Tensor, Tensor, Tensor, Tensor, Tensor)");

  // out[b, c, t] = act(bias[c] + sum_k weight[c, k] * x[b, c, t + k - pad_left]), zero outside
  // [0, L); act = silu when silu. weight (channels, K); out has x's dtype and length, and is
  // channels-contiguous when x is (stride 1 along channels), else contiguous. seq_idx (batch, L)
  // int32: taps never cross a change of id and outputs with a negative id are 0.
  // initial_states (batch, channels, K - 1) in x's dtype: x before step 0 (in step 0's
  // sequence), instead of zeros. The output layouts follow x's strides, so torch.compile must
  // hand the operators x with the strides it traced them with (needs_exact_strides).
  m.def(
      "depthwise_conv1d_fwd(Tensor x, Tensor weight, Tensor? bias, int pad_left, bool silu, "
      "Tensor? seq_idx=None, Tensor? initial_states=None) -> Tensor",
      {kExactStrides});
  // Returns (dx, dweight, dbias, dinitial_states); a gradient of an absent input is an empty
  // (0,) tensor.
  m.def(
      "depthwise_conv1d_bwd(Tensor dout, Tensor x, Tensor weight, Tensor? bias, int pad_left, "
      "bool silu, Tensor? seq_idx=None, Tensor? initial_states=None) "
      "-> (Tensor, Tensor, Tensor, Tensor)",
      {kExactStrides});

  // Chooses the instruction set of the CPU kernels ("baseline", "avx2", "avx512", or "" for the
  // best this CPU supports) and returns the one now active. The tests run every build this way.
  m.def("_set_cpu_isa(str name) -> str", &mvscan::cpu::set_cpu_isa);

  // One decode step of the scan (mamba_ssm's selective_state_update); updates state in place.
  m.def(
      "selective_state_update(Tensor(a!) state, Tensor x, Tensor dt, Tensor A, Tensor B, "
      "Tensor C, Tensor? D, Tensor? z, Tensor? dt_bias, bool dt_softplus, "
      "Tensor? state_batch_indices) -> Tensor");
  // L decode steps of the causal conv (causal-conv1d's causal_conv1d_update); conv_state in place.
  m.def(
      "causal_conv1d_update(Tensor x, Tensor(a!) conv_state, Tensor weight, Tensor? bias, "
      "bool silu, Tensor? cache_seqlens, Tensor? conv_state_indices) -> Tensor");
}
