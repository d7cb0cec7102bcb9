"""Builds the CPU emulations of the CUDA kernels (tests/cuda_emulation/) as torch extensions."""

from __future__ import annotations

import os

from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Host-side C++ of the package that the emulated drivers call (argument checks, outputs).
HOST_SOURCES = ("selective_scan_params.cpp", "selective_scan_bwd_buffers.cpp",
                "depthwise_conv1d_params.cpp", "op_utils.cpp")


def build_emulation(name: str, source: str):
    """Compiles tests/cuda_emulation/<source> with the package's host sources (about 25 s on 2
    cores the first time; ninja rebuilds only what changed) and imports it."""
    build_dir = os.path.join(ROOT, "build", "cuda_emulation", name)
    os.makedirs(build_dir, exist_ok=True)
    return cpp_extension.load(
        name=name,
        sources=[os.path.join(ROOT, "tests", "cuda_emulation", source)]
        + [os.path.join(ROOT, "csrc", s) for s in HOST_SOURCES],
        extra_include_paths=[os.path.join(ROOT, "csrc")],
        extra_cflags=["-O2"],
        build_directory=build_dir,
    )
