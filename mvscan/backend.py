"""Which kernels run a call: the compiled C++ (CPU) or CUDA kernels, the Triton kernels, or the
pure-PyTorch reference.

On a device, by default: the compiled kernels when the extension has them for it (CPU always;
CUDA when it was built with nvcc), else on CUDA the Triton kernels when Triton imports, else the
reference (with a one-time warning). ``MVSCAN_BACKEND=cuda|triton|reference|cpu`` (read at
import) or ``with mvscan.use_backend(name):`` forces one; a forced backend that cannot run on a
device raises instead of falling back. With ``triton`` and ``TRITON_INTERPRET=1`` (set before the
first Triton call), CPU tensors run the Triton kernels through Triton's interpreter: slow, exact,
and how the tests check those kernels without a GPU.

The decode steps (selective_state_update, causal_conv1d_update) have compiled kernels only: they
follow the compiled / reference part of this rule.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator

import torch

from ._extension import kernel_devices, warn_fallback

BACKENDS = ("cuda", "triton", "reference", "cpu")
# The operators the Triton backend implements, by the name of their _fwd / _bwd pair.
TRITON_OPS = ("selective_scan", "depthwise_conv1d")
ENV_VAR = "MVSCAN_BACKEND"
# Device types with compiled kernels, per op: looked up once (torch.compile cannot trace the
# dispatcher query).
COMPILED_DEVICES: dict[str, frozenset[str]] = {
    op: kernel_devices(f"mvscan::{op}_fwd") for op in TRITON_OPS}


def _backend_from_env() -> str | None:
    name = os.environ.get(ENV_VAR, "").strip().lower()
    if name in ("", "auto"):
        return None
    if name not in BACKENDS:
        raise ValueError(f"{ENV_VAR}={os.environ[ENV_VAR]!r}: expected one of "
                         f"{', '.join(BACKENDS)} (or unset / 'auto' to choose by device)")
    return name


_forced: str | None = _backend_from_env()


def forced_backend() -> str | None:
    """The backend forced by MVSCAN_BACKEND or use_backend, or None (chosen per device)."""
    return _forced


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Forces a backend ("cuda", "triton", "reference", "cpu"; None: choose per device) for the
    calls made inside the block, in every thread. Under torch.compile the choice made while
    tracing is the one compiled in."""
    global _forced
    if name is not None and name not in BACKENDS:
        raise ValueError(f"mvscan.use_backend: name must be one of {BACKENDS} or None, got {name!r}")
    previous, _forced = _forced, name
    try:
        yield
    finally:
        _forced = previous


_TRITON_FOUND = importlib.util.find_spec("triton") is not None  # once: find_spec walks sys.path


def triton_importable() -> bool:
    return _TRITON_FOUND


def triton_interpreting() -> bool:
    """Whether Triton kernels run in the interpreter (TRITON_INTERPRET, Triton's own rule)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on", "y")


def _compiled_name(device_type: str) -> str:
    return "cpu" if device_type in ("cpu", "meta") else device_type


def active_backend(device: torch.device | str, op: str = "selective_scan") -> str:
    """The backend a call of `op` ("selective_scan" or "depthwise_conv1d", the public functions
    built on them included) on tensors of `device` runs: "cpu", "cuda", "triton" or
    "reference". Raises ValueError when a forced backend cannot run there."""
    if op not in TRITON_OPS:
        raise ValueError(f"mvscan.active_backend: op must be one of {TRITON_OPS}, got {op!r}")
    device_type = torch.device(device).type
    compiled = device_type in COMPILED_DEVICES[op]
    forced = _forced
    if forced is None:
        if compiled:
            return _compiled_name(device_type)
        if device_type == "cuda" and triton_importable():
            return "triton"
        return "reference"
    if forced == "reference":
        return forced
    if forced == "triton":
        if not triton_importable():
            raise ValueError(f"{ENV_VAR}=triton: Triton is not installed (pip install triton)")
        if device_type == "cuda" or (device_type == "cpu" and triton_interpreting()):
            return forced
        raise ValueError(f"{ENV_VAR}=triton runs CUDA tensors, and CPU tensors only through "
                         "Triton's interpreter (set TRITON_INTERPRET=1 before the first call); "
                         f"got tensors on {device_type!r}")
    if forced != _compiled_name(device_type) or not compiled:
        raise ValueError(f"{ENV_VAR}={forced}: the compiled {forced} kernels cannot run {op} on "
                         f"{device_type!r} tensors (extension kernels here: "
                         f"{sorted(COMPILED_DEVICES[op] - {'meta'}) or 'none'})")
    return forced


def kernel_ops(backend: str, op: str):
    """(fwd, bwd): the operators of `op` that `backend` ("cpu", "cuda" or "triton") runs, with
    torch.ops.mvscan's signatures and autograd."""
    if backend == "triton":
        from .triton_backend import ops as triton_ops  # registers torch.ops.mvscan_triton
        namespace = triton_ops.namespace()
    else:
        namespace = torch.ops.mvscan
    return getattr(namespace, f"{op}_fwd"), getattr(namespace, f"{op}_bwd")


def ops_for(op: str, device: torch.device, public_name: str):
    """(fwd, bwd) for a call of `public_name` on `device`, or None when the reference runs (with
    the one-time warning unless the reference was forced)."""
    backend = active_backend(device, op)
    if backend == "reference":
        if _forced != "reference":
            warn_fallback(public_name, device.type, stacklevel=4,
                          triton_missing=device.type == "cuda")
        return None
    return kernel_ops(backend, op)
