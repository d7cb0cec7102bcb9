"""Timing helpers for the CUDA benchmarks."""

from __future__ import annotations

from typing import Callable

import torch


def synced(fn: Callable[[], object]) -> Callable[[], object]:
    """fn followed by a device synchronisation, so a timer sees the kernels' whole run."""
    def run():
        out = fn()
        torch.cuda.synchronize()
        return out
    return run
