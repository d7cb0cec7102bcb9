"""The Triton backend: the selective scan and the depthwise conv1d as Triton kernels, for CUDA
tensors when the compiled extension has no CUDA kernels (built without nvcc), and as a second,
independent GPU implementation. With TRITON_INTERPRET=1 (set before this package is imported)
they run on CPU tensors through Triton's interpreter, which is how the tests check them on a
machine without a GPU."""

from ..backend import triton_interpreting
from .interpreter import patch_interpreter

if triton_interpreting():
    patch_interpreter()
