// Every mvscan operator's schema, in one place, and the Python module stub that loads them.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import mvscan._C` loads this library, which runs the TORCH_LIBRARY registrations below and in
// the kernel files; the module itself is empty.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(mvscan, m) {
  // Returns (out, states): out (batch, dim, L) in u's dtype; states (batch, dim, ceil(L/64), N)
  // in fp32 (fp64 for fp64 inputs), the state at the last step of every 64-step chunk. The last
  // one is h_L; the backward recomputes the rest from them.
  m.def(
      "selective_scan_fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, "
      "Tensor? z, Tensor? delta_bias, bool delta_softplus) -> (Tensor, Tensor)");
  // Returns (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias), each shaped like its input; the
  // gradient of an absent optional input is an empty (0,) tensor. dstates is the gradient
  // w.r.t. the forward's states (None when they do not reach the loss).
  m.def(
      "selective_scan_bwd(Tensor dout, Tensor? dstates, Tensor u, Tensor delta, Tensor A, "
      "Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? delta_bias, Tensor states, "
      "bool delta_softplus) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");

  // out[b, c, t] = act(bias[c] + sum_k weight[c, k] * x[b, c, t + k - pad_left]), zero outside
  // [0, L); act = silu when silu. weight (channels, K); out has x's dtype and length, and x's
  // layout when x is dense channels-last (else contiguous).
  m.def(
      "depthwise_conv1d_fwd(Tensor x, Tensor weight, Tensor? bias, int pad_left, bool silu) "
      "-> Tensor");
  // Returns (dx, dweight, dbias); dbias is an empty (0,) tensor without bias.
  m.def(
      "depthwise_conv1d_bwd(Tensor dout, Tensor x, Tensor weight, Tensor? bias, int pad_left, "
      "bool silu) -> (Tensor, Tensor, Tensor)");
}
