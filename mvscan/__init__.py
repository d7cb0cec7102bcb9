"""mvscan: the selective scan (Mamba's core op) and the depthwise conv1d around it, as PyTorch
operators with hand-written kernels, and their decode steps.

``from mvscan import selective_scan_fn`` is a drop-in for mamba_ssm's function of that name;
``selective_state_update`` and ``causal_conv1d_update`` for mamba_ssm's and causal-conv1d's.
``active_backend(device)`` names the kernels a call runs (compiled CPU / CUDA, Triton, or the
reference) and ``use_backend`` or ``MVSCAN_BACKEND`` forces one (mvscan/backend.py).
"""

from ._extension import INPUT_DTYPES
from .backend import active_backend, use_backend
from .causal_conv1d import causal_conv1d_fn
from .decode import causal_conv1d_update, selective_state_update
from .depthwise_conv import depthwise_conv1d
from .mamba_inner import mamba_inner_fn
from .ops import KERNEL_DEVICES, STATE_CHUNK_LEN, selective_scan
from .reference import (causal_conv1d_ref, causal_conv1d_update_ref, depthwise_conv1d_ref,
                        mamba_inner_ref, selective_scan_ref, selective_state_update_ref)

# mamba_ssm's name for the same function, so existing Mamba code swaps one import.
selective_scan_fn = selective_scan

__all__ = [
    "INPUT_DTYPES",
    "active_backend",
    "causal_conv1d_fn",
    "causal_conv1d_ref",
    "KERNEL_DEVICES",
    "causal_conv1d_update",
    "causal_conv1d_update_ref",
    "depthwise_conv1d",
    "depthwise_conv1d_ref",
    "mamba_inner_fn",
    "mamba_inner_ref",
    "STATE_CHUNK_LEN",
    "selective_scan",
    "selective_scan_fn",
    "selective_scan_ref",
    "selective_state_update",
    "selective_state_update_ref",
    "use_backend",
]
__version__ = "0.1.0"
