"""Collects each benchmark's median and prints, per group, every backend's speed relative to
the reference measured in the same run."""

from __future__ import annotations

import os
import sys
from collections import defaultdict

import pytest

sys.path.insert(0, os.path.dirname(__file__))

_medians: dict[str, dict[str, float]] = defaultdict(dict)


@pytest.fixture
def record_ratio(benchmark):
    """Call with (group, backend) after `benchmark(...)`: stores the median and, for a backend
    other than the reference, its speedup over the reference into extra_info."""

    def record(group: str, backend: str) -> None:
        if benchmark.disabled or benchmark.stats is None:
            return
        median = benchmark.stats.stats.median
        _medians[group][backend] = median
        ref = _medians[group].get("reference")
        if backend != "reference" and ref is not None:
            benchmark.extra_info["speedup_vs_reference"] = round(ref / median, 2)
        benchmark.extra_info["median_ms"] = round(median * 1e3, 4)

    return record


def pytest_terminal_summary(terminalreporter):
    if not _medians:
        return
    terminalreporter.section("speed relative to the reference (same run, median)")
    for group, rows in _medians.items():
        ref = rows.get("reference")
        for backend, median in rows.items():
            ratio = f"{ref / median:8.1f}x" if ref else "        -"
            terminalreporter.write_line(
                f"{group:48} {backend:10} {median * 1e3:10.3f} ms {ratio}")
