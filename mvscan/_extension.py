"""Loads the compiled kernels (mvscan._C) and tells which devices they cover."""

from __future__ import annotations

import warnings

import torch

try:
    from . import _C  # loading the library registers torch.ops.mvscan.*

    EXTENSION_ERROR: Exception | None = None
except ImportError as exc:  # a source checkout that was never built, or a broken build
    _C = None
    EXTENSION_ERROR = exc

# Constants defined once, in C++ (csrc/registration.cpp and csrc/common/dtypes.def), and read here:
# the steps between the scan's saved states, and the input dtypes every kernel accepts with their
# accumulation dtypes. Without the extension the Triton kernels (mvscan/triton_backend) still run,
# with the same values, written out below.
STATE_CHUNK_LEN: int = _C.STATE_CHUNK_LEN if _C is not None else 64
INPUT_DTYPES: tuple[torch.dtype, ...] = (
    tuple(getattr(torch, n) for n in _C.INPUT_DTYPES) if _C is not None
    else (torch.float32, torch.float16, torch.bfloat16, torch.float64))
_ACC_DTYPE: dict[torch.dtype, torch.dtype] = (
    {getattr(torch, i): getattr(torch, a) for i, a in zip(_C.INPUT_DTYPES, _C.ACC_DTYPES)}
    if _C is not None else {})

_warned_fallback: set[str] = set()


def kernel_devices(op_name: str) -> frozenset[str]:
    """Device types with a compiled kernel for op_name ('meta' runs the fake kernel)."""
    if EXTENSION_ERROR is not None:
        return frozenset()
    devices = {"cpu", "meta"}
    has_kernel = getattr(torch._C, "_dispatch_has_kernel_for_dispatch_key", None)
    if has_kernel is not None and has_kernel(op_name, "CUDA"):
        devices.add("cuda")
    return frozenset(devices)


def warn_fallback(op: str, device_type: str, stacklevel: int = 3,
                  triton_missing: bool = False) -> None:
    """Warns once per (op, device) that the pure-PyTorch reference runs instead of a kernel
    (triton_missing: the Triton kernels could have run but Triton does not import)."""
    key = f"{op}:{device_type}"
    if key in _warned_fallback:
        return
    _warned_fallback.add(key)
    why = (f"the compiled extension failed to load ({EXTENSION_ERROR})"
           if EXTENSION_ERROR is not None else f"no compiled kernel for {device_type!r} tensors")
    if triton_missing:
        why += " and Triton is not installed"
    warnings.warn(f"{op}: {why}; running the pure-PyTorch reference (slow).", RuntimeWarning,
                  stacklevel=stacklevel)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The state and accumulation dtype of an input dtype (csrc/common/dtypes.def): float64 for
    float64, else float32."""
    return _ACC_DTYPE.get(dtype, torch.float64 if dtype == torch.float64 else torch.float32)


def check_same_device(op: str, first: str, tensors: dict[str, torch.Tensor | None]) -> None:
    """Raises a ValueError naming the first tensor not on the device of tensors[first]. Checked
    before dispatch: a mix of real and meta tensors would otherwise reach the fake kernel."""
    device = tensors[first].device
    for name, t in tensors.items():
        if t is not None and t.device != device:
            raise ValueError(f"{op}: {name} is on {t.device} but {first} is on {device}; "
                             "all tensors must be on one device")


def register_fake_and_autograd(namespace: str, op: str, fwd_fake, bwd_fake, backward_with,
                               setup_context) -> None:
    """Registers the fake kernels of <namespace>::<op>_fwd / _bwd and the forward's autograd,
    whose backward (backward_with(bwd operator)) calls that namespace's _bwd: shared by the
    compiled operators (torch.ops.mvscan) and the Triton ones (torch.ops.mvscan_triton)."""
    torch.library.register_fake(f"{namespace}::{op}_fwd")(fwd_fake)
    torch.library.register_fake(f"{namespace}::{op}_bwd")(bwd_fake)
    bwd_op = getattr(getattr(torch.ops, namespace), f"{op}_bwd")
    torch.library.register_autograd(f"{namespace}::{op}_fwd", backward_with(bwd_op),
                                    setup_context=setup_context)
