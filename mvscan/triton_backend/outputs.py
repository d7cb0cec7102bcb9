"""What the Triton launchers share: the operators' constants, output allocation and the device
a launch runs on."""

from __future__ import annotations

import contextlib
import os

import torch

from .. import _extension

# Defined in C++ (csrc/selective_scan/selective_scan.h, csrc/common/dtypes.def) and read from the
# extension; the Triton kernels also run where the extension failed to build, with the same values.
STATE_CHUNK_LEN: int = _extension.STATE_CHUNK_LEN or 64
INPUT_DTYPES: tuple[torch.dtype, ...] = _extension.INPUT_DTYPES or (
    torch.float32, torch.float16, torch.bfloat16, torch.float64)

# As the C++ operators do (csrc/common/outputs.cpp): fill outputs with NaN before a kernel writes
# them, so that an element no program writes fails a test instead of passing on stale memory.
POISON_OUTPUTS: bool = os.environ.get("MVSCAN_POISON_OUTPUTS", "0") not in ("", "0")


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The state and accumulation dtype of an input dtype: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


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
