// Exact counts of how the emulated kernels touch memory, for the GPU cost model
// (benchmarks/gpu_cost_model.py): global 32-byte sectors per warp request, shared-memory
// wavefronts (bank conflicts), shuffles and barriers.
//
// How: an emulation built with -fsanitize=thread (tests/emulation.py, counted=True) has GCC
// call __tsan_readN / __tsan_writeN before every memory access the compiled code makes. This
// file defines those hooks (no ThreadSanitizer runtime is linked): while a fiber runs, each
// access to memory that is neither a stack nor the emulator's own state is logged for its
// thread, tagged with the thread's barrier epoch (the count of __syncthreads and shuffle
// barriers it has passed) and its site (the instrumented instruction's address). At the end of a
// block the lanes of each warp are zipped: within one epoch, the n-th time each lane reached a
// site forms one warp request, as one warp instruction serves every lane that executes it. A
// lane that skips an access (a predicated load at a row edge) leaves that request short, not
// the later ones shifted. A request whose lanes disagree on space or direction is split and
// counted as "unzipped" (it should not happen: one site is one kind of access).
//
// What the counts are: the accesses the CPU compiler kept in memory. Values the compiler holds
// in registers (and nvcc may hold differently) are not counted; on a GPU, loads of kernel
// parameters and the special registers (threadIdx, ...) are not memory accesses, and neither
// are they here (both live on stacks or in excluded globals).
// Include it from cuda_emulator.h only (it needs the scheduler), in builds that define
// MVSCAN_COUNT_ACCESSES.
#pragma once

#include <pthread.h>
#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <unordered_set>
#include <vector>

#define MVSCAN_NOT_COUNTED __attribute__((no_sanitize_thread, noinline))

namespace cuda_emulator {
namespace counters {
// Internal linkage: every counted module has its own counters (inline variables and functions
// would be merged or interposed across the modules loaded in one process).
namespace {

enum Space : uint8_t { kGlobal = 0, kShared = 1 };

struct Access {
  uintptr_t addr;
  uintptr_t site;
  uint32_t epoch;
  uint16_t size;
  uint8_t space;
  uint8_t store;
};

// What one kernel launch (all its sampled blocks) did.
struct LaunchCounts {
  std::string kernel;  // the emulated launch's label (the body's type, demangled by Python)
  int64_t blocks_run = 0, blocks_in_grid = 0, threads_per_block = 0;
  // [space][store]: warp requests, bytes the lanes asked for (distinct bytes per request),
  // 32-byte sectors (global) or wavefronts (shared) they took, and the ideal number of those.
  int64_t requests[2][2] = {}, bytes[2][2] = {}, transactions[2][2] = {}, ideal[2][2] = {};
  int64_t unzipped_requests = 0;  // requests whose lanes disagreed (split, counted anyway)
  // Barrier epochs in which a warp loads from global memory, summed over warps: each is at
  // least one memory latency the warp waits through (its loads are used before the barrier).
  int64_t global_load_phases = 0;
  int64_t warp_shuffles = 0, block_barriers = 0;
  // Distinct global sectors touched (loads, stores) over the sampled blocks: what DRAM must
  // move at least once if no other block shares them.
  std::unordered_set<uintptr_t> load_sectors, store_sectors;
};

struct State {
  bool enabled = false;  // counting requested (counters_enable)
  bool active = false;   // a fiber is running and counting is enabled
  bool in_hook = false;  // the hook's own bookkeeping runs instrumented code: ignore it
  std::vector<std::pair<uintptr_t, uintptr_t>> shared, excluded;
  std::vector<std::vector<Access>> per_thread;
  std::vector<uint32_t> epoch;
  std::vector<int64_t> shuffles, barriers;
  std::vector<LaunchCounts> launches;
  const void* last_body = nullptr;
  int64_t last_block = -1;
  int64_t sample_blocks = 0;  // 0: run every block
};

inline State state;

inline bool within(uintptr_t a, const std::vector<std::pair<uintptr_t, uintptr_t>>& ranges) {
  for (const auto& r : ranges)
    if (a >= r.first && a < r.second) return true;
  return false;
}

MVSCAN_NOT_COUNTED inline void record(const void* p, unsigned size, bool store, int thread,
                                      const void* site) {
  if (!state.active || state.in_hook) return;
  state.in_hook = true;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (!within(a, state.excluded)) {
    const uint8_t space = within(a, state.shared) ? kShared : kGlobal;
    state.per_thread[thread].push_back(Access{a, reinterpret_cast<uintptr_t>(site),
                                              state.epoch[thread], static_cast<uint16_t>(size),
                                              space, store});
  }
  state.in_hook = false;
}

// The memory ranges that are not device memory: the main thread's stack (the launch lambdas'
// captures), the emulator's globals and its per-block vectors; fiber stacks are added per block.
inline void add_excluded(const void* p, size_t n) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  state.excluded.emplace_back(a, a + n);
}

inline void add_main_stack() {
  pthread_attr_t attr;
  void* addr = nullptr;
  size_t size = 0;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
  }
  TORCH_CHECK(size > 0, "access counters: cannot find the main thread's stack");
  add_excluded(addr, size);
}

// Sectors (global) or wavefronts (shared) one request takes, with the distinct bytes it asks for.
inline void tally(LaunchCounts& c, const std::vector<Access>& lanes) {
  const Access& first = lanes.front();
  std::vector<std::pair<uintptr_t, uintptr_t>> spans;  // [begin, end) per lane
  for (const Access& a : lanes) spans.emplace_back(a.addr, a.addr + a.size);
  std::sort(spans.begin(), spans.end());
  int64_t distinct = 0;
  uintptr_t covered = 0;
  for (const auto& s : spans) {
    const uintptr_t b = std::max(s.first, covered);
    if (s.second > b) distinct += static_cast<int64_t>(s.second - b);
    covered = std::max(covered, s.second);
  }
  const int sp = first.space, st = first.store;
  c.requests[sp][st] += 1;
  c.bytes[sp][st] += distinct;
  if (sp == kGlobal) {
    std::unordered_set<uintptr_t> sectors;
    for (const Access& a : lanes)
      for (uintptr_t s = a.addr >> 5; s <= (a.addr + a.size - 1) >> 5; ++s) sectors.insert(s);
    c.transactions[sp][st] += static_cast<int64_t>(sectors.size());
    c.ideal[sp][st] += (distinct + 31) / 32;
    auto& all = st ? c.store_sectors : c.load_sectors;
    all.insert(sectors.begin(), sectors.end());
  } else {
    // 32 banks of 4-byte words: a wavefront serves one word per bank (any number of lanes
    // reading that word); the request takes as many as its busiest bank has distinct words.
    std::vector<std::unordered_set<uintptr_t>> bank_words(32);
    for (const Access& a : lanes)
      for (uintptr_t w = a.addr >> 2; w <= (a.addr + a.size - 1) >> 2; ++w)
        bank_words[w & 31].insert(w);
    size_t busiest = 0;
    for (const auto& words : bank_words) busiest = std::max(busiest, words.size());
    c.transactions[sp][st] += static_cast<int64_t>(busiest);
    c.ideal[sp][st] += std::max<int64_t>(1, (distinct + 127) / 128);
  }
}

// Zips each warp's lanes within each epoch by (site, n-th visit of the site): see the top of
// the file.
inline void tally_warp(LaunchCounts& c, int warp) {
  std::map<std::tuple<uint32_t, uintptr_t, uint32_t>, std::vector<Access>> requests;
  std::map<std::pair<uint32_t, uintptr_t>, uint32_t> visits;
  std::set<uint32_t> load_epochs;
  for (int l = 0; l < 32; ++l) {
    visits.clear();
    for (const Access& a : state.per_thread[warp * 32 + l]) {
      const uint32_t n = visits[{a.epoch, a.site}]++;
      requests[{a.epoch, a.site, n}].push_back(a);
      if (a.space == kGlobal && !a.store) load_epochs.insert(a.epoch);
    }
  }
  for (const auto& entry : requests) {
    std::vector<Access> group[2][2];
    for (const Access& a : entry.second) group[a.space][a.store].push_back(a);
    int kinds = 0;
    for (auto& by_space : group)
      for (auto& g : by_space)
        if (!g.empty()) {
          tally(c, g);
          ++kinds;
        }
    if (kinds > 1) c.unzipped_requests += kinds;
  }
  c.global_load_phases += static_cast<int64_t>(load_epochs.size());
}

// Whether block `linear` of a grid of `total` runs: all of them, or sample_blocks spread evenly.
inline bool block_selected(int64_t linear, int64_t total) {
  if (!state.enabled) return true;  // sampling is for counting runs only
  const int64_t n = state.sample_blocks;
  if (n <= 0 || n >= total) return true;
  for (int64_t i = 0; i < n; ++i)
    if (linear == i * total / n) return true;
  return false;
}

// Called by the emulator while fibers run (so not instrumented themselves).
MVSCAN_NOT_COUNTED inline void passed_barrier(int thread) { state.epoch[thread] += 1; }
MVSCAN_NOT_COUNTED inline void note_barrier(int thread) { state.barriers[thread] += 1; }
MVSCAN_NOT_COUNTED inline void note_shuffle(int thread) { state.shuffles[thread] += 1; }
MVSCAN_NOT_COUNTED inline void set_active(bool fiber_running) {
  state.active = fiber_running && state.enabled;
}

// Before block `linear` of a `total`-block grid runs `body` as `threads` fibers: a new launch
// starts when the body changes or the block index does not grow. `own` are the emulator's
// ranges (fiber stacks, its vectors) that are not device memory.
inline void begin_block(const void* body, int64_t linear, int64_t total, int threads,
                        const std::vector<std::pair<uintptr_t, uintptr_t>>& own) {
  if (!state.enabled) return;
  if (body != state.last_body || linear <= state.last_block || state.launches.empty()) {
    state.launches.emplace_back();
    state.launches.back().blocks_in_grid = total;
    state.launches.back().threads_per_block = threads;
  }
  state.last_body = body;
  state.last_block = linear;
  state.per_thread.assign(threads, {});
  state.epoch.assign(threads, 0);
  state.shuffles.assign(threads, 0);
  state.barriers.assign(threads, 0);
  state.excluded = own;
  add_main_stack();
}

inline void end_block(int threads) {
  if (!state.enabled) return;
  LaunchCounts& c = state.launches.back();
  c.blocks_run += 1;
  for (int w = 0; w < threads / 32; ++w) tally_warp(c, w);
  int64_t shuffles = 0;
  for (int64_t n : state.shuffles) shuffles += n;
  c.warp_shuffles += shuffles / 32;
  c.block_barriers += state.barriers.empty() ? 0 : state.barriers[0];
  state.per_thread.clear();
}

}  // namespace
}  // namespace counters
}  // namespace cuda_emulator

namespace cuda_emulator {
namespace counters {
namespace {

// counters_enable(on), counters_reset(), set_block_sample(n) and counters_read() -> one dict
// per launch, for the extension module m; shared_mem is the TU's `extern __shared__` buffer.
inline void def_counter_functions(pybind11::module& m, const void* shared_mem, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(shared_mem);
  state.shared = {{a, a + bytes}};
  m.def("counters_enable", [](bool on) { state.enabled = on; });
  m.def("counters_reset", [] {
    state.launches.clear();
    state.last_body = nullptr;
    state.last_block = -1;
  });
  m.def("set_block_sample", [](int64_t n) { state.sample_blocks = n; });
  m.def("counters_read", [] {
    pybind11::list out;
    const char* spaces[2] = {"global", "shared"};
    const char* dirs[2] = {"load", "store"};
    for (const LaunchCounts& c : state.launches) {
      pybind11::dict d;
      d["blocks_run"] = c.blocks_run;
      d["blocks_in_grid"] = c.blocks_in_grid;
      d["threads_per_block"] = c.threads_per_block;
      for (int sp = 0; sp < 2; ++sp)
        for (int st = 0; st < 2; ++st) {
          const std::string k = std::string(spaces[sp]) + "_" + dirs[st];
          d[(k + "_requests").c_str()] = c.requests[sp][st];
          d[(k + "_bytes").c_str()] = c.bytes[sp][st];
          d[(k + (sp == kGlobal ? "_sectors" : "_wavefronts")).c_str()] = c.transactions[sp][st];
          d[(k + "_ideal").c_str()] = c.ideal[sp][st];
        }
      d["distinct_load_sectors"] = static_cast<int64_t>(c.load_sectors.size());
      d["distinct_store_sectors"] = static_cast<int64_t>(c.store_sectors.size());
      d["unzipped_requests"] = c.unzipped_requests;
      d["global_load_phases"] = c.global_load_phases;
      d["warp_shuffles"] = c.warp_shuffles;
      d["block_barriers"] = c.block_barriers;
      out.append(d);
    }
    return out;
  });
}

}  // namespace
}  // namespace counters
}  // namespace cuda_emulator

// The ThreadSanitizer entry points GCC's instrumentation calls. Hidden: each counted extension
// has its own.
#define MVSCAN_TSAN_HOOK extern "C" __attribute__((visibility("hidden"), no_sanitize_thread))
// The return address names the access site (the instruction after the hook's call).
#define MVSCAN_RECORD(p, n, store)                                                             \
  cuda_emulator::counters::record(p, n, store, cuda_emulator::sched.current,                   \
                                  __builtin_return_address(0))
#define MVSCAN_TSAN_ACCESS(n)                                                                  \
  MVSCAN_TSAN_HOOK void __tsan_read##n(void* p) { MVSCAN_RECORD(p, n, false); }                \
  MVSCAN_TSAN_HOOK void __tsan_write##n(void* p) { MVSCAN_RECORD(p, n, true); }                \
  MVSCAN_TSAN_HOOK void __tsan_unaligned_read##n(void* p) { MVSCAN_RECORD(p, n, false); }      \
  MVSCAN_TSAN_HOOK void __tsan_unaligned_write##n(void* p) { MVSCAN_RECORD(p, n, true); }
MVSCAN_TSAN_ACCESS(1)
MVSCAN_TSAN_ACCESS(2)
MVSCAN_TSAN_ACCESS(4)
MVSCAN_TSAN_ACCESS(8)
MVSCAN_TSAN_ACCESS(16)
// Ranges (memcpy-like code): counted as one 16-byte access per 16 bytes.
#define MVSCAN_TSAN_RANGE(name, store)                                                         \
  MVSCAN_TSAN_HOOK void name(void* p, unsigned long n) {                                       \
    for (unsigned long i = 0; i < n; i += 16)                                                  \
      MVSCAN_RECORD(static_cast<char*>(p) + i, static_cast<unsigned>(std::min(n - i, 16ul)),   \
                    store);                                                                    \
  }
MVSCAN_TSAN_RANGE(__tsan_read_range, false)
MVSCAN_TSAN_RANGE(__tsan_write_range, true)
MVSCAN_TSAN_HOOK void __tsan_init() {}
MVSCAN_TSAN_HOOK void __tsan_func_entry(void*) {}
MVSCAN_TSAN_HOOK void __tsan_func_exit() {}
MVSCAN_TSAN_HOOK void __tsan_vptr_update(void**, void*) {}
MVSCAN_TSAN_HOOK void __tsan_vptr_read(void**) {}
MVSCAN_TSAN_HOOK void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
MVSCAN_TSAN_HOOK void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
// Atomics (torch's reference counts, in host code): performed, not counted.
#define MVSCAN_TSAN_ATOMIC(bits, T)                                                            \
  MVSCAN_TSAN_HOOK T __tsan_atomic##bits##_load(const volatile T* a, int) {                    \
    return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                               \
  }                                                                                            \
  MVSCAN_TSAN_HOOK void __tsan_atomic##bits##_store(volatile T* a, T v, int) {                 \
    __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                  \
  }                                                                                            \
  MVSCAN_TSAN_HOOK T __tsan_atomic##bits##_exchange(volatile T* a, T v, int) {                 \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                        \
  }                                                                                            \
  MVSCAN_TSAN_HOOK T __tsan_atomic##bits##_fetch_add(volatile T* a, T v, int) {                \
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                         \
  }                                                                                            \
  MVSCAN_TSAN_HOOK T __tsan_atomic##bits##_fetch_sub(volatile T* a, T v, int) {                \
    return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                         \
  }                                                                                            \
  MVSCAN_TSAN_HOOK T __tsan_atomic##bits##_fetch_and(volatile T* a, T v, int) {                \
    return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                         \
  }                                                                                            \
  MVSCAN_TSAN_HOOK T __tsan_atomic##bits##_fetch_or(volatile T* a, T v, int) {                 \
    return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                          \
  }                                                                                            \
  MVSCAN_TSAN_HOOK T __tsan_atomic##bits##_fetch_xor(volatile T* a, T v, int) {                \
    return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                         \
  }                                                                                            \
  MVSCAN_TSAN_HOOK T __tsan_atomic##bits##_fetch_nand(volatile T* a, T v, int) {               \
    return __atomic_fetch_nand(a, v, __ATOMIC_SEQ_CST);                                        \
  }                                                                                            \
  MVSCAN_TSAN_HOOK int __tsan_atomic##bits##_compare_exchange_strong(volatile T* a, T* c, T v, \
                                                                     int, int) {               \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);    \
  }                                                                                            \
  MVSCAN_TSAN_HOOK int __tsan_atomic##bits##_compare_exchange_weak(volatile T* a, T* c, T v,   \
                                                                   int, int) {                 \
    return __atomic_compare_exchange_n(a, c, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);     \
  }                                                                                            \
  MVSCAN_TSAN_HOOK T __tsan_atomic##bits##_compare_exchange_val(volatile T* a, T c, T v, int,  \
                                                                int) {                         \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);          \
    return c;                                                                                  \
  }
MVSCAN_TSAN_ATOMIC(8, char)
MVSCAN_TSAN_ATOMIC(16, short)
MVSCAN_TSAN_ATOMIC(32, int)
MVSCAN_TSAN_ATOMIC(64, long)
