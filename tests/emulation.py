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


def build_emulation(name: str, source: str):
    """Compiles tests/cuda_emulation/<source> with the package's host sources (about 25 s on 2
    cores the first time; ninja rebuilds only what changed) and imports it."""
    build_dir = os.path.join(ROOT, "build", "cuda_emulation", name)
    os.makedirs(build_dir, exist_ok=True)
    return cpp_extension.load(
        name=name,
        sources=[os.path.join(ROOT, "tests", "cuda_emulation", source)] + host_sources(),
        extra_include_paths=[os.path.join(ROOT, "csrc")],
        extra_cflags=["-O2"],
        build_directory=build_dir,
    )
