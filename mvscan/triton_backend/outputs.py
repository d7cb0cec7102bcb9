"""What the Triton launchers share: the operators' constants, output allocation and the device
a launch runs on."""

from __future__ import annotations

import contextlib
import os

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


def next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def on_device(device: torch.device):
    """Launches go to the current CUDA device: make it the tensors' one (a no-op on CPU, where
    the kernels run in Triton's interpreter)."""
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()
