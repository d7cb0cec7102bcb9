"""mvscan: the selective scan (Mamba's core op) as a PyTorch operator with hand-written kernels.

``from mvscan import selective_scan_fn`` is a drop-in for mamba_ssm's function of that name.
"""

from .ops import KERNEL_DEVICES, STATE_CHUNK_LEN, selective_scan
from .reference import selective_scan_ref

# mamba_ssm's name for the same function, so existing Mamba code swaps one import.
selective_scan_fn = selective_scan

__all__ = [
    "KERNEL_DEVICES",
    "STATE_CHUNK_LEN",
    "selective_scan",
    "selective_scan_fn",
    "selective_scan_ref",
]
__version__ = "0.1.0"
