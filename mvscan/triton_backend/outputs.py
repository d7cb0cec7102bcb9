"""What the Triton launchers share: the operators' constants, output allocation and the device
a launch runs on."""

from __future__ import annotations

import contextlib
import os
import warnings

import torch

from .._extension import STATE_CHUNK_LEN

# As the C++ operators do (csrc/common/outputs.cpp): fill outputs with NaN before a kernel writes
# them, so that an element no program writes fails a test instead of passing on stale memory.
POISON_OUTPUTS: bool = os.environ.get("MVSCAN_POISON_OUTPUTS", "0") not in ("", "0")


def n_state_chunks(seqlen: int) -> int:
    return (seqlen + STATE_CHUNK_LEN - 1) // STATE_CHUNK_LEN


def new_output(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An output every element of which a kernel writes (NaN-filled when POISON_OUTPUTS)."""
    if POISON_OUTPUTS:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def strides_or_zeros(t: torch.Tensor | None, ndim: int) -> tuple[int, ...]:
    """t's strides, or zeros for an absent optional tensor (its kernel flag is off)."""
    return tuple(t.stride()) if t is not None else (0,) * ndim


def next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def on_device(device: torch.device):
    """Launches go to the current CUDA device: make it the tensors' one (a no-op on CPU, where
    the kernels run in Triton's interpreter)."""
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def alert_not_deterministic(what: str) -> None:
    """What PyTorch's own nondeterministic kernels do under torch.use_deterministic_algorithms:
    raise (or warn, with warn_only=True) naming the operation."""
    if not torch.are_deterministic_algorithms_enabled():
        return
    message = (f"{what} is not deterministic, but torch.use_deterministic_algorithms(True) is "
               "set: use the compiled CUDA kernels (a build with nvcc), or constant B and C")
    if torch.is_deterministic_algorithms_warn_only_enabled():
        warnings.warn(message, UserWarning, stacklevel=3)
    else:
        raise RuntimeError(message)
