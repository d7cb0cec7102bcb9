// The CUDA causal-conv1d-update kernel
// (csrc/causal_conv1d_update/causal_conv1d_update_cuda_kernels.cuh) and its host driver, run on
// CPU tensors through cuda_emulator.h. Built by tests/backends.py (tests/emulation.py); exposes
// causal_conv1d_update with the signature of torch.ops.mvscan.causal_conv1d_update.
#include <torch/extension.h>

#include "cuda_emulator.h"
#include "causal_conv1d_update/causal_conv1d_update_cuda_driver.h"

namespace mvscan {
namespace cuda {
namespace {

// The kernel uses no shared memory and no barriers: blocks run one after another, threads as
// fibers. max_blocks: the driver's cap on the grid (None: the CUDA op's); a small one makes each
// block stride over several groups of rows.
at::Tensor causal_conv1d_update(const at::Tensor& x, const at::Tensor& conv_state,
                                const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                bool silu, const std::optional<at::Tensor>& cache_seqlens,
                                const std::optional<at::Tensor>& conv_state_indices,
                                std::optional<int64_t> max_blocks) {
  return causal_conv1d_update_driver(
      x, conv_state, weight, bias, silu, cache_seqlens, conv_state_indices,
      [&](auto tag, auto width_cap, const CausalConv1dUpdateParams& p, int64_t blocks) {
        const EmulatedDim3 grid{static_cast<unsigned>(blocks), 1, 1};
        for (int64_t blk = 0; blk < blocks; ++blk) {
          const EmulatedDim3 block{static_cast<unsigned>(blk), 0, 0};
          cuda_emulator::run_block(kConvUpdateThreads, block, grid, [&] {
            causal_conv1d_update_kernel<decltype(tag), decltype(width_cap)::value>(p);
          });
        }
      },
      max_blocks.value_or(kConvUpdateMaxBlocks));
}

}  // namespace
}  // namespace cuda
}  // namespace mvscan

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("set_schedule", &cuda_emulator::set_schedule);
  m.def("causal_conv1d_update", &mvscan::cuda::causal_conv1d_update, py::arg("x"),
        py::arg("conv_state"), py::arg("weight"), py::arg("bias"), py::arg("silu"),
        py::arg("cache_seqlens"), py::arg("conv_state_indices"),
        py::arg("max_blocks") = py::none());
}
