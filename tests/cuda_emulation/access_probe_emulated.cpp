// Tiny kernels whose memory-access counts are known by hand, to check the emulator's access
// counters (access_counter.h) before trusting them on the real kernels: a coalesced copy, a
// stride-32 gather, a load only some lanes make, a broadcast, shared-memory stores with 1-way and 32-way bank conflicts, a
// contiguous 8-byte shared access, and a kernel with a known number of shuffles and barriers.
// Built only as a counted emulation (tests/test_access_counters.py).
#include <torch/extension.h>

#include "cuda_emulator.h"

namespace {

constexpr int kThreads = 64;
alignas(16) unsigned char probe_smem[kThreads * 32 * sizeof(double)];

__global__ void copy_kernel(const float* in, float* out, int stride) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = in[static_cast<int64_t>(i) * stride];
}

__global__ void broadcast_kernel(const float* in, float* out) {
  out[blockIdx.x * blockDim.x + threadIdx.x] = in[0];
}

// Odd lanes load from the far half of `in` first; then every lane loads its own element: two
// warp requests of 4 sectors each (a counter zipping lanes by their k-th access would pair the
// even lanes' second load with the odd lanes' first).
__global__ void predicated_kernel(const float* in, float* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int n = gridDim.x * blockDim.x;
  float v = 0;
  if (threadIdx.x % 2) v = in[n + i];
  out[i] = v + in[i];
}

// Each lane stores one float at word lane * stride of shared memory, then reads it back.
__global__ void shared_kernel(float* out, int stride) {
  float* s = reinterpret_cast<float*>(probe_smem);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  volatile float* slot = s + warp * 32 * stride + lane * stride;
  *slot = static_cast<float>(threadIdx.x);
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = *slot;
}

__global__ void shared_double_kernel(double* out) {
  volatile double* s = reinterpret_cast<double*>(probe_smem);
  s[threadIdx.x] = threadIdx.x;
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = s[threadIdx.x];
}

// 5 shuffles per warp and 3 barriers per block.
__global__ void sync_kernel(float* out) {
  float v = static_cast<float>(threadIdx.x);
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  for (int i = 0; i < 3; ++i) __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

template <typename Kernel>
void run(int64_t blocks, Kernel&& kernel) {
  const EmulatedDim3 grid{static_cast<unsigned>(blocks), 1, 1};
  for (int64_t b = 0; b < blocks; ++b)
    cuda_emulator::run_block(kThreads, EmulatedDim3{static_cast<unsigned>(b), 0, 0}, grid,
                             kernel);
}

// Runs probe `name` over `blocks` blocks of kThreads threads; in and out are float32 (float64
// for "shared_double") CPU tensors large enough for it.
void probe(const std::string& name, int64_t blocks, const at::Tensor& in, at::Tensor& out,
           int64_t stride) {
  // Pointers taken here, not inside the kernels' lambdas: a tensor's data_ptr() reads the
  // tensor's heap object, which the counters would count as device memory.
  const float* x = in.data_ptr<float>();
  void* y = out.data_ptr();
  const int s = static_cast<int>(stride);
  if (name == "copy") {
    run(blocks, [&] { copy_kernel(x, static_cast<float*>(y), s); });
  } else if (name == "predicated") {
    run(blocks, [&] { predicated_kernel(x, static_cast<float*>(y)); });
  } else if (name == "broadcast") {
    run(blocks, [&] { broadcast_kernel(x, static_cast<float*>(y)); });
  } else if (name == "shared") {
    run(blocks, [&] { shared_kernel(static_cast<float*>(y), s); });
  } else if (name == "shared_double") {
    run(blocks, [&] { shared_double_kernel(static_cast<double*>(y)); });
  } else if (name == "sync") {
    run(blocks, [&] { sync_kernel(static_cast<float*>(y)); });
  } else {
    TORCH_CHECK(false, "probe: unknown kernel ", name);
  }
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  MVSCAN_COUNTING(cuda_emulator::counters::def_counter_functions(m, probe_smem, sizeof(probe_smem)));
  m.def("probe", &probe);
  m.attr("threads") = kThreads;
}
