// The CUDA selective-state-update kernel
// (csrc/selective_state_update/selective_state_update_cuda_kernels.cuh) and its host driver, run on
// CPU tensors through cuda_emulator.h. Built by tests/backends.py (tests/emulation.py); exposes
// selective_state_update with the signature of torch.ops.mvscan.selective_state_update.
#include <torch/extension.h>

#include "cuda_emulator.h"
#include "selective_state_update/selective_state_update_cuda_driver.h"

namespace mvscan {
namespace cuda {
namespace {

// The kernel uses no shared memory: blocks run one after another, each as fibers whose shuffles
// the emulator checks (every lane of a warp must reach each one). max_blocks: the driver's cap on
// the grid (None: the CUDA op's); a small one makes each block stride over several groups of
// rows.
at::Tensor selective_state_update(const at::Tensor& state, const at::Tensor& x,
                                  const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                                  const at::Tensor& C, const std::optional<at::Tensor>& D,
                                  const std::optional<at::Tensor>& z,
                                  const std::optional<at::Tensor>& dt_bias, bool dt_softplus,
                                  const std::optional<at::Tensor>& state_batch_indices,
                                  std::optional<int64_t> max_blocks) {
  return selective_state_update_driver(
      state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices,
      [&](auto in_tag, auto state_tag, const SelectiveStateUpdateParams& p, int lanes,
          int64_t blocks) {
        const EmulatedDim3 grid{static_cast<unsigned>(blocks), 1, 1};
        for (int64_t blk = 0; blk < blocks; ++blk) {
          const EmulatedDim3 block{static_cast<unsigned>(blk), 0, 0};
          cuda_emulator::run_block(kStateUpdateThreads, block, grid, [&] {
            selective_state_update_kernel<decltype(in_tag), decltype(state_tag)>(p, lanes);
          });
        }
      },
      max_blocks.value_or(kStateUpdateMaxBlocks));
}

}  // namespace
}  // namespace cuda
}  // namespace mvscan

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("set_schedule", &cuda_emulator::set_schedule);
  m.def("selective_state_update", &mvscan::cuda::selective_state_update, py::arg("state"),
        py::arg("x"), py::arg("dt"), py::arg("A"), py::arg("B"), py::arg("C"), py::arg("D"),
        py::arg("z"), py::arg("dt_bias"), py::arg("dt_softplus"),
        py::arg("state_batch_indices"), py::arg("max_blocks") = py::none());
}
