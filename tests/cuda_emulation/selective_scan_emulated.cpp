// The CUDA selective-scan kernels (csrc/selective_scan/selective_scan_cuda_kernels.cuh) and their host
// driver, run on CPU tensors through cuda_emulator.h. Built by
// tests/backends.py (tests/emulation.py) with torch.utils.cpp_extension; exposes
// selective_scan_fwd / selective_scan_bwd with the signatures of torch.ops.mvscan.*.
#include <torch/extension.h>

#include <cstring>

#include "cuda_emulator.h"

namespace mvscan {
namespace cuda {
// The kernels' `extern __shared__` buffer. Blocks run one after another, so one buffer serves all.
constexpr size_t kEmulatedSmemBytes = 227 * 1024;  // an H100's per-block limit
alignas(16) unsigned char smem_raw[kEmulatedSmemBytes];
}  // namespace cuda
}  // namespace mvscan

#include "selective_scan/selective_scan_cuda_driver.h"
#include "selective_scan/selective_scan_cuda_kernels.cuh"

namespace mvscan {
namespace cuda {
namespace {

// Every block starts with shared memory full of NaN bytes, so reading a slot no thread wrote
// shows up in the results; a guard band past the block's share must come back untouched.
constexpr size_t kGuardBytes = 4096;
constexpr unsigned char kGuard = 0xa5;

template <typename Kernel>
void run_grid(const ScanGeometry& geo, Kernel&& kernel) {
  TORCH_CHECK(geo.smem_bytes + kGuardBytes <= kEmulatedSmemBytes, "emulator: ", geo.smem_bytes,
              " bytes of shared memory leave no room for the guard band");
  for (int64_t blk = 0; blk < geo.n_blocks; ++blk) {
    std::memset(smem_raw, 0xff, geo.smem_bytes);
    std::memset(smem_raw + geo.smem_bytes, kGuard, kGuardBytes);
    const EmulatedDim3 block{static_cast<unsigned>(blk), 0, 0};
    const EmulatedDim3 grid{static_cast<unsigned>(geo.n_blocks), 1, 1};
    cuda_emulator::run_block(geo.threads, block, grid, kernel);
    for (size_t i = 0; i < kGuardBytes; ++i) {
      TORCH_CHECK(smem_raw[geo.smem_bytes + i] == kGuard, "emulator: block ", blk,
                  " wrote past its ", geo.smem_bytes, " bytes of shared memory (byte ",
                  geo.smem_bytes + i, ")");
    }
  }
}

std::tuple<at::Tensor, at::Tensor> fwd(const at::Tensor& u, const at::Tensor& delta,
                                       const at::Tensor& A, const at::Tensor& B,
                                       const at::Tensor& C, const std::optional<at::Tensor>& D,
                                       const std::optional<at::Tensor>& z,
                                       const std::optional<at::Tensor>& delta_bias,
                                       bool delta_softplus,
                                       const std::optional<at::Tensor>& initial_state) {
  return selective_scan_fwd_driver(
      u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, kEmulatedSmemBytes,
      [&](auto tag, const SelectiveScanParams& p, const ScanGeometry& geo) {
        using input_t = decltype(tag);
        run_grid(geo, [&] { selective_scan_fwd_kernel<input_t>(p, geo); });
      });
}

SelectiveScanGrads bwd(const at::Tensor& dout, const std::optional<at::Tensor>& dstates, const at::Tensor& u,
    const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
    const std::optional<at::Tensor>& delta_bias, const at::Tensor& states, bool delta_softplus,
    const std::optional<at::Tensor>& initial_state) {
  return selective_scan_bwd_driver(
      dout, dstates, u, delta, A, B, C, D, z, delta_bias, states, delta_softplus, initial_state,
      kEmulatedSmemBytes,
      [&](auto tag, const SelectiveScanBwdParams& bp, const ScanGeometry& geo) {
        using input_t = decltype(tag);
        run_grid(geo, [&] { selective_scan_bwd_kernel<input_t>(bp, geo); });
      });
}

// The launch geometry, for tests that pick shapes exercising each code path.
std::map<std::string, int64_t> geometry(const at::Tensor& u, const at::Tensor& delta,
                                        const at::Tensor& A, const at::Tensor& B,
                                        const at::Tensor& C, bool backward) {
  const SelectiveScanParams p = make_selective_scan_params(u, delta, A, B, C, std::nullopt,
                                                           std::nullopt, std::nullopt, false,
                                                           std::nullopt);
  const ScanGeometry g = scan_geometry(p, backward, acc_size_of(u));
  return {{"lanes_per_row", g.lanes_per_row}, {"threads", g.threads},
          {"rows_per_block", g.rows_per_block}, {"cell", g.cell},
          {"n_blocks", g.n_blocks},           {"B_parts", g.B_parts},
          {"C_parts", g.C_parts},             {"stage_B", g.stage_B},
          {"stage_C", g.stage_C},             {"direct_bc_grads", g.direct_bc_grads},
          {"smem_bytes", static_cast<int64_t>(g.smem_bytes)}};
}

}  // namespace
}  // namespace cuda
}  // namespace mvscan

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("set_schedule", &cuda_emulator::set_schedule);
  MVSCAN_COUNTING(cuda_emulator::counters::def_counter_functions(m, mvscan::cuda::smem_raw, sizeof(mvscan::cuda::smem_raw)));
  // initial_state defaults to None, as in the operator schemas.
  m.def("selective_scan_fwd", &mvscan::cuda::fwd, py::arg("u"), py::arg("delta"), py::arg("A"),
        py::arg("B"), py::arg("C"), py::arg("D"), py::arg("z"), py::arg("delta_bias"),
        py::arg("delta_softplus"), py::arg("initial_state") = py::none());
  m.def("selective_scan_bwd", &mvscan::cuda::bwd, py::arg("dout"), py::arg("dstates"),
        py::arg("u"), py::arg("delta"), py::arg("A"), py::arg("B"), py::arg("C"), py::arg("D"),
        py::arg("z"), py::arg("delta_bias"), py::arg("states"), py::arg("delta_softplus"),
        py::arg("initial_state") = py::none());
  m.def("geometry", &mvscan::cuda::geometry);
}
