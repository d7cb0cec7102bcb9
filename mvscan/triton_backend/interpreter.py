"""Two fixes to Triton's interpreter (TRITON_INTERPRET=1), which the tests use to run the Triton
kernels on CPU tensors, applied only when it is on and only where the interpreter still has the
method replaced (otherwise its own runs):

- speed: it scans with a user combine function one element at a time, in Python, about 60 us an
  element: minutes for the test suite's tiles. The same sequential order, one step of the scan
  axis at a time over whole slices (the combine function is elementwise, so it takes slices as
  well as scalars), gives identical results in milliseconds.
- fidelity: it converts float32 to bfloat16 by dropping the low bits, where a GPU rounds to
  nearest even; bfloat16 outputs then carry twice the rounding error they have on the GPU.
"""

from __future__ import annotations

import numpy as np
import torch


def _scan_by_slices(self, inputs):
    axis = self.axis
    datas = [arg.handle.data for arg in inputs]
    outs = [np.empty_like(d) for d in datas]

    def step(i):
        return [self.to_tensor(np.take(d, i, axis=axis), arg.dtype)
                for d, arg in zip(datas, inputs)]

    def put(i, values):
        for out, v in zip(outs, values):
            index = [slice(None)] * out.ndim
            index[axis] = i
            out[tuple(index)] = v.handle.data.reshape(out[tuple(index)].shape)

    acc = step(0)
    put(0, acc)
    for i in range(1, datas[0].shape[axis]):
        ret = self.combine_fn.fn(*acc, *step(i))
        acc = list(ret) if isinstance(ret, tuple) else [ret]
        put(i, acc)
    return [self.to_tensor(out, arg.dtype) for out, arg in zip(outs, inputs)]


def _bf16_rounding_cast(original):
    def cast_impl(self, src, dst_type):
        import triton.language as tl
        from triton.runtime.interpreter import TensorHandle

        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            rounded = torch.from_numpy(np.ascontiguousarray(src.data)).to(torch.bfloat16)
            return TensorHandle(rounded.view(torch.int16).numpy().view(np.uint16),
                                dst_type.scalar)
        return original(self, src, dst_type)

    cast_impl.mvscan_patched = True
    return cast_impl


def patch_interpreter() -> list[str]:
    """Installs both fixes; returns the names of those installed."""
    try:
        from triton.runtime import interpreter
    except ImportError:
        return []
    done = []
    scan_ops = getattr(interpreter, "ScanOps", None)
    if scan_ops is not None and hasattr(scan_ops, "generic_scan"):
        scan_ops.generic_scan = _scan_by_slices
        done.append("scan")
    builder = getattr(interpreter, "InterpreterBuilder", None)
    cast = getattr(builder, "cast_impl", None)
    if cast is not None and not getattr(cast, "mvscan_patched", False):
        builder.cast_impl = _bf16_rounding_cast(cast)  # a plain .to() (fp_trunc) comes here
        done.append("bf16 rounding")
    return done
