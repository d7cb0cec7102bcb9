"""Builds the CPU emulations of the CUDA kernels (tests/cuda_emulation/) as torch extensions."""

from __future__ import annotations

import glob
import os

from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def host_sources() -> list[str]:
    """The package's host-side C++ that the emulated drivers call (argument checks, outputs, dtype
    rules): every csrc .cpp but the registrations (registration.cpp, *_op.cpp, which would
    register the operators a second time) and CUDA-only files."""
    found = glob.glob(os.path.join(ROOT, "csrc", "*", "*.cpp"))
    return sorted(s for s in found
                  if not s.endswith("_op.cpp") and "_cuda" not in os.path.basename(s))


# A counted build (access_counter.h): GCC's ThreadSanitizer instrumentation calls our hooks before
# every memory access; no ThreadSanitizer runtime is linked.
COUNTING_FLAGS = ["-fsanitize=thread", "--param=tsan-instrument-func-entry-exit=0",
                  "-DMVSCAN_COUNT_ACCESSES"]


def build_emulation(name: str, source: str, counted: bool = False, host: bool = True):
    """Compiles tests/cuda_emulation/<source> with the package's host sources (about 25 s on 2
    cores the first time; ninja rebuilds only what changed) and imports it. counted=True builds
    the variant with memory-access counters (module name + "_counted"; counters_* functions);
    host=False leaves out the package's host sources (for self-contained kernels)."""
    if counted:
        name += "_counted"
    build_dir = os.path.join(ROOT, "build", "cuda_emulation", name)
    os.makedirs(build_dir, exist_ok=True)
    return cpp_extension.load(
        name=name,
        sources=([os.path.join(ROOT, "tests", "cuda_emulation", source)]
                 + (host_sources() if host else [])),
        extra_include_paths=[os.path.join(ROOT, "csrc")],
        extra_cflags=["-O2"] + (COUNTING_FLAGS if counted else []),
        build_directory=build_dir,
    )
