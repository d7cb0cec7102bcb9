"""Builds mvscan._C, the hand-written CPU (and, where a CUDA toolchain exists, CUDA) kernels.

Environment variables:
  MVSCAN_FORCE_CPU=1       build the CPU kernels only, even when torch and nvcc support CUDA.
  CUDA_HOME / CUDA_PATH    the CUDA toolkit to use. When unset, torch's guess is used if it holds
                           a real toolkit; otherwise /usr/local/cuda (torch guesses wrong when the
                           nvcc on PATH is a wrapper script outside the toolkit).
  TORCH_CUDA_ARCH_LIST     GPU architectures, e.g. "9.0" or "8.0;9.0+PTX". Default: the visible
                           GPUs' own; with no GPU visible, "8.0;9.0+PTX" (A100, H100, and PTX
                           that newer GPUs compile at load time).
  MAX_JOBS                 parallel compile jobs (ninja).
"""

import glob
import os
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCH_LIST = "8.0;9.0+PTX"


def _is_toolkit(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "bin", "nvcc")) and os.path.isfile(
        os.path.join(path, "include", "cuda_runtime.h")
    )


def _find_cuda_home() -> str | None:
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    # What torch would guess: the directory above the nvcc on PATH.
    from shutil import which

    nvcc = which("nvcc")
    if nvcc:
        guess = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        if _is_toolkit(guess):
            return guess
    for candidate in ("/usr/local/cuda", "/opt/cuda"):
        if _is_toolkit(candidate):
            return candidate
    return None


# torch.utils.cpp_extension reads CUDA_HOME once, when it is imported: decide it first.
_cuda_home = None if os.environ.get("MVSCAN_FORCE_CPU") == "1" else _find_cuda_home()
if _cuda_home:
    os.environ["CUDA_HOME"] = _cuda_home

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _extension():
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu") + glob.glob("csrc/cuda/*.cpp"))
    # No code here reads floating-point exception flags; without -fno-trapping-math GCC will not
    # turn the branch-free selects of the kernels' math into vector blends.
    cxx_flags = ["-O3", "-fno-trapping-math", "-fno-math-errno"]
    link_flags = []
    if sys.platform.startswith("linux"):
        # at::parallel_for only runs on several threads when the extension itself is compiled
        # and linked with OpenMP; libgomp then resolves to the copy torch already loaded.
        cxx_flags.append("-fopenmp")
        link_flags.append("-fopenmp")
    use_cuda = bool(cuda_sources) and _cuda_home is not None and torch.version.cuda is not None
    if cuda_sources and not use_cuda:
        print(
            "mvscan: building the CPU kernels only "
            f"(torch CUDA: {torch.version.cuda}, CUDA toolkit: {_cuda_home}, "
            f"MVSCAN_FORCE_CPU={os.environ.get('MVSCAN_FORCE_CPU', '')})",
            file=sys.stderr,
        )
    if not use_cuda:
        return CppExtension(
            "mvscan._C",
            sources,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
    return CUDAExtension(
        "mvscan._C",
        sources + cuda_sources,
        extra_compile_args={
            "cxx": cxx_flags + ["-DMVSCAN_WITH_CUDA"],
            "nvcc": ["-O3", "-lineinfo", "--expt-relaxed-constexpr", "-DMVSCAN_WITH_CUDA"],
        },
        extra_link_args=link_flags,
    )


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
