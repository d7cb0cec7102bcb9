// A CPU stand-in for the few CUDA features the mvscan kernels use, so that the tests can
// run the kernels' own device code without a GPU: each CUDA thread of a block is a fiber
// (ucontext) on one OS thread; __syncthreads and warp shuffles are barriers at which the fibers
// yield. A barrier that not every thread of the block (or warp) reaches is reported as an error,
// so divergent __syncthreads or shuffles fail loudly instead of hanging.
//
// Between two barriers each fiber runs alone, in the order the schedule gives (see
// set_schedule): running the same kernel under different orders and comparing the results
// exposes a thread reading shared memory that another thread writes between the same two
// barriers. What this does not check: races finer than that (fibers never interleave between
// barriers), timing, and anything about real GPU hardware.
// Include it after the torch headers and before the kernels.
#pragma once

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __shared__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

struct EmulatedDim3 {
  unsigned x = 0, y = 0, z = 0;
};

inline EmulatedDim3 threadIdx, blockIdx, blockDim, gridDim;

namespace cuda_emulator {

enum class Wait { kRunning, kBlock, kWarp, kDone };

struct Fiber {
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;
  Wait wait = Wait::kRunning;
};

struct Scheduler {
  ucontext_t main_ctx;
  std::vector<Fiber> fibers;
  int current = -1;
  std::function<void()> body;
  std::vector<double> lanes;  // one slot per thread: values in flight through a shuffle
};

inline Scheduler sched;

}  // namespace cuda_emulator

#ifdef MVSCAN_COUNT_ACCESSES
#include "access_counter.h"
#define MVSCAN_COUNTING(statement) statement
#else
#define MVSCAN_COUNTING(statement)
#endif

namespace cuda_emulator {

// The order fibers run in between barriers: 0 by thread index, 1 reversed, 2 odd threads first.
inline int schedule_mode = 0;

inline void set_schedule(int mode) {
  if (mode < 0 || mode > 2) throw std::runtime_error("emulator: schedule must be 0, 1 or 2");
  schedule_mode = mode;
}

inline int scheduled_thread(int i, int threads) {
  if (schedule_mode == 1) return threads - 1 - i;
  if (schedule_mode == 2) return i < threads / 2 ? 2 * i + 1 : 2 * (i - threads / 2);
  return i;
}

inline void yield_at(Wait w) {
  MVSCAN_COUNTING(counters::passed_barrier(sched.current));
  Fiber& f = sched.fibers[sched.current];
  f.wait = w;
  swapcontext(&f.ctx, &sched.main_ctx);
}

inline void fiber_entry() {
  sched.body();
  sched.fibers[sched.current].wait = Wait::kDone;
  // Returning resumes uc_link, the scheduler.
}

constexpr size_t kStackBytes = 256 * 1024;

#ifdef MVSCAN_COUNT_ACCESSES
// What is not device memory besides the stacks: the emulator's globals and vectors.
inline std::vector<std::pair<uintptr_t, uintptr_t>> emulator_ranges() {
  std::vector<std::pair<uintptr_t, uintptr_t>> r;
  auto add = [&r](const void* p, size_t n) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    r.emplace_back(a, a + n);
  };
  add(&sched, sizeof(sched));
  add(sched.fibers.data(), sched.fibers.size() * sizeof(Fiber));
  add(sched.lanes.data(), sched.lanes.size() * sizeof(double));
  for (const Fiber& f : sched.fibers) add(f.stack.get(), kStackBytes);
  for (const EmulatedDim3* d : {&threadIdx, &blockIdx, &blockDim, &gridDim}) add(d, sizeof(*d));
  return r;
}
#endif

// Runs body() as `threads` CUDA threads of block `block` of a `grid`, until every thread
// returns. body stays the caller's object (a lambda on the caller's stack), not a copy.
template <typename Body>
inline void run_block(int threads, EmulatedDim3 block, EmulatedDim3 grid, Body&& body) {
  if (threads % 32 != 0) throw std::runtime_error("emulator: threads must be a multiple of 32");
  const int64_t linear = static_cast<int64_t>(block.y) * grid.x + block.x;
  const int64_t total = static_cast<int64_t>(grid.x) * grid.y;
  MVSCAN_COUNTING(if (!counters::block_selected(linear, total)) return;)
  blockIdx = block;
  gridDim = grid;
  blockDim = EmulatedDim3{static_cast<unsigned>(threads), 1, 1};
  sched.body = [&body] { body(); };
  sched.fibers.clear();
  sched.fibers.resize(threads);
  sched.lanes.assign(threads, 0.0);
  for (Fiber& f : sched.fibers) {
    f.stack.reset(new char[kStackBytes]);
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.get();
    f.ctx.uc_stack.ss_size = kStackBytes;
    f.ctx.uc_link = &sched.main_ctx;
    makecontext(&f.ctx, fiber_entry, 0);
    f.wait = Wait::kRunning;
  }
  MVSCAN_COUNTING(counters::begin_block(&body, linear, total, threads, emulator_ranges()));
  for (;;) {
    for (int k = 0; k < threads; ++k) {
      const int i = scheduled_thread(k, threads);
      if (sched.fibers[i].wait != Wait::kRunning) continue;
      sched.current = i;
      threadIdx.x = static_cast<unsigned>(i);
      MVSCAN_COUNTING(counters::set_active(true));
      swapcontext(&sched.main_ctx, &sched.fibers[i].ctx);
      MVSCAN_COUNTING(counters::set_active(false));
    }
    int done = 0, at_block = 0;
    for (const Fiber& f : sched.fibers) {
      done += f.wait == Wait::kDone;
      at_block += f.wait == Wait::kBlock;
    }
    if (done == threads) {
      MVSCAN_COUNTING(counters::end_block(threads));
      return;
    }
    if (at_block == threads) {
      for (Fiber& f : sched.fibers) f.wait = Wait::kRunning;
      continue;
    }
    bool released = false;
    for (int w = 0; w < threads / 32; ++w) {
      bool whole_warp = true;
      for (int l = 0; l < 32; ++l) whole_warp &= sched.fibers[w * 32 + l].wait == Wait::kWarp;
      if (!whole_warp) continue;
      for (int l = 0; l < 32; ++l) sched.fibers[w * 32 + l].wait = Wait::kRunning;
      released = true;
    }
    if (!released) {
      throw std::runtime_error("emulator: block (" + std::to_string(block.x) + ", " +
                               std::to_string(block.y) + "): " +
                               std::to_string(done) + " threads returned, " +
                               std::to_string(at_block) +
                               " wait at __syncthreads, the rest at a warp shuffle: the "
                               "threads do not reach the same barriers");
    }
  }
}

}  // namespace cuda_emulator

inline void __syncthreads() {
  MVSCAN_COUNTING(cuda_emulator::counters::note_barrier(cuda_emulator::sched.current));
  cuda_emulator::yield_at(cuda_emulator::Wait::kBlock);
}

// Every lane of the warp must call it, as with a full mask on a GPU.
template <typename T>
T __shfl_xor_sync(unsigned /*mask*/, T v, int lane_mask) {
  using cuda_emulator::sched;
  const int tid = sched.current;
  MVSCAN_COUNTING(cuda_emulator::counters::note_shuffle(tid));
  sched.lanes[tid] = static_cast<double>(v);
  cuda_emulator::yield_at(cuda_emulator::Wait::kWarp);  // every lane has written
  const T r = static_cast<T>(sched.lanes[(tid & ~31) | ((tid & 31) ^ lane_mask)]);
  cuda_emulator::yield_at(cuda_emulator::Wait::kWarp);  // every lane has read
  return r;
}
