// The CUDA depthwise conv1d kernels (csrc/depthwise_conv1d/depthwise_conv1d_cuda_kernels.cuh) and
// their host driver, run on CPU tensors through cuda_emulator.h. Built by
// tests/backends.py (tests/emulation.py); exposes depthwise_conv1d_fwd / _bwd with the
// signatures of torch.ops.mvscan.*.
#include <torch/extension.h>

#include <cstring>

#include "cuda_emulator.h"

namespace mvscan {
namespace cuda {
// The dweight kernels' `extern __shared__` reduction tree (blocks run one after another): room
// for the largest launch (5 x kConvThreads doubles) plus the guard band.
constexpr size_t kGuardBytes = 4096;
constexpr size_t kEmulatedTreeBytes = 5 * 256 * 8 + kGuardBytes;
alignas(16) unsigned char conv_tree[kEmulatedTreeBytes];
}  // namespace cuda
}  // namespace mvscan

#include "depthwise_conv1d/depthwise_conv1d_cuda_driver.h"
#include "depthwise_conv1d/depthwise_conv1d_cuda_kernels.cuh"

namespace mvscan {
namespace cuda {
namespace {

// Runs `kernel` over a (grid_x, grid_y) grid of kConvThreads-thread blocks, one block at a time,
// with smem_bytes of dynamic shared memory: filled with NaN bytes (NaN in float and in double)
// before each block, and followed by a guard band that must come back untouched, so a launch
// that passes too little shared memory fails here as it would on a GPU.
constexpr unsigned char kGuard = 0xa5;

template <typename Kernel>
void run_grid(int64_t grid_x, int64_t grid_y, size_t smem_bytes, Kernel&& kernel) {
  TORCH_CHECK(smem_bytes + kGuardBytes <= kEmulatedTreeBytes, "emulator: ", smem_bytes,
              " bytes of shared memory leave no room for the guard band");
  const EmulatedDim3 grid{static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y), 1};
  for (int64_t y = 0; y < grid_y; ++y) {
    for (int64_t x = 0; x < grid_x; ++x) {
      std::memset(conv_tree, 0xff, smem_bytes);
      std::memset(conv_tree + smem_bytes, kGuard, kGuardBytes);
      const EmulatedDim3 block{static_cast<unsigned>(x), static_cast<unsigned>(y), 0};
      cuda_emulator::run_block(kConvThreads, block, grid, kernel);
      for (size_t i = smem_bytes; i < smem_bytes + kGuardBytes; ++i)
        TORCH_CHECK(conv_tree[i] == kGuard, "emulator: block (", x, ", ", y, ") wrote past its ",
                    smem_bytes, " bytes of shared memory (byte ", i, ")");
    }
  }
}

// Runs a conv kernel on CPU fibers: launch(kernel, grid, kernel arguments...).
struct FiberLauncher {
  template <typename... Params, typename... Args>
  void operator()(void (*kernel)(Params...), const ConvGrid& grid, const Args&... args) const {
    run_grid(grid.x, grid.y, grid.smem, [&] { kernel(args...); });
  }
};

at::Tensor fwd(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
               int64_t pad_left, bool silu, const std::optional<at::Tensor>& seq_idx,
               const std::optional<at::Tensor>& initial_states) {
  return depthwise_conv1d_fwd_driver(x, weight, bias, pad_left, silu, seq_idx, initial_states,
                                     FiberLauncher{});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bwd(
    const at::Tensor& dout, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, int64_t pad_left, bool silu,
    const std::optional<at::Tensor>& seq_idx, const std::optional<at::Tensor>& initial_states) {
  return depthwise_conv1d_bwd_driver(dout, x, weight, bias, pad_left, silu, seq_idx,
                                     initial_states, FiberLauncher{});
}

}  // namespace
}  // namespace cuda
}  // namespace mvscan

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("set_schedule", &cuda_emulator::set_schedule);
  MVSCAN_COUNTING(cuda_emulator::counters::def_counter_functions(m, mvscan::cuda::conv_tree, sizeof(mvscan::cuda::conv_tree)));
  // seq_idx and initial_states default to None, as in the operator schemas.
  m.def("depthwise_conv1d_fwd", &mvscan::cuda::fwd, py::arg("x"), py::arg("weight"),
        py::arg("bias"), py::arg("pad_left"), py::arg("silu"), py::arg("seq_idx") = py::none(),
        py::arg("initial_states") = py::none());
  m.def("depthwise_conv1d_bwd", &mvscan::cuda::bwd, py::arg("dout"), py::arg("x"),
        py::arg("weight"), py::arg("bias"), py::arg("pad_left"), py::arg("silu"),
        py::arg("seq_idx") = py::none(), py::arg("initial_states") = py::none());
}
