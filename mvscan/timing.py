"""The one timing loop of every benchmark: warm-up runs, then timed runs with the device
synchronised after each (CUDA kernels run asynchronously: without the sync a timer would see
only the launch), timed with time.perf_counter; the median is what the benchmarks report."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Iterable, TypeVar

import torch

T = TypeVar("T")


def synchronize(device: torch.device | str) -> None:
    """Waits until every kernel queued on device has finished; a no-op off CUDA."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synced(fn: Callable[[], T], device: torch.device | str) -> Callable[[], T]:
    """fn followed by synchronize(device), so a timer (pytest-benchmark's included) sees the
    kernels' whole run. The wrapper returns what fn returns."""
    def run() -> T:
        out = fn()
        synchronize(device)
        return out
    return run


def timed_runs(fn: Callable[[], object], repeats: int, warmup: int = 3,
               device: torch.device | str = "cpu",
               progress: Callable[[Iterable[int]], Iterable[int]] | None = None) -> list[float]:
    """Seconds of each of `repeats` runs of fn, after `warmup` untimed runs.

    Args:
        fn: the unit to time, called with no arguments.
        repeats: timed runs, at least 1.
        warmup: untimed runs first (allocator, autotuning, lazy initialisation).
        device: where fn's kernels run; CUDA is synchronised before the clock starts and after
            each run.
        progress: wraps the timed runs' range, e.g. tqdm, to show progress.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    runs: Iterable[int] = range(repeats)
    if progress is not None:
        runs = progress(runs)
    times = []
    for _ in runs:
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 3,
                   device: torch.device | str = "cpu") -> float:
    """The median of timed_runs(fn, repeats, warmup, device), in seconds."""
    return statistics.median(timed_runs(fn, repeats, warmup, device))
