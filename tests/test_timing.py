"""mvscan.timing, the one timing loop every benchmark uses: warm-up and timed run counts, the
median, the progress hook, and synced passing fn's result through."""

from __future__ import annotations

import pytest
import torch

from mvscan.timing import median_seconds, synced, synchronize, timed_runs


def counter():
    calls = []

    def fn():
        calls.append(None)
        return len(calls)
    return fn, calls


def test_timed_runs_warms_up_then_times_each_run():
    fn, calls = counter()
    seen = []

    def progress(runs):
        seen.append(len(runs))
        return runs

    times = timed_runs(fn, repeats=4, warmup=2, device="cpu", progress=progress)
    assert len(calls) == 6 and len(times) == 4 and seen == [4]
    assert all(t >= 0 for t in times)


def test_median_seconds_is_the_median_of_the_runs(monkeypatch):
    ticks = iter([0.0, 1.0, 10.0, 13.0, 20.0, 22.0])  # runs of 1 s, 3 s and 2 s
    monkeypatch.setattr("mvscan.timing.time.perf_counter", lambda: next(ticks))
    fn, calls = counter()
    assert median_seconds(fn, repeats=3, warmup=1) == 2.0
    assert len(calls) == 4


def test_synced_returns_what_fn_returns():
    fn, _ = counter()
    run = synced(fn, "cpu")
    assert run() == 1 and run() == 2
    synchronize(torch.device("cpu"))  # a no-op off CUDA


def test_repeats_must_be_positive():
    with pytest.raises(ValueError, match="repeats must be at least 1, got 0"):
        timed_runs(lambda: None, repeats=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_runs_are_synchronised():
    x = torch.randn(1024, 1024, device="cuda")
    out = synced(lambda: x @ x, "cuda")()
    assert out.shape == (1024, 1024)
    assert median_seconds(lambda: x @ x, repeats=2, warmup=1, device="cuda") > 0
