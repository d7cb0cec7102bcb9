"""Collects each benchmark's median and prints, per group, every backend's speed relative to
the reference (and to mamba_ssm, where it ran) measured in the same run."""

from __future__ import annotations

from collections import defaultdict

import pytest

_medians: dict[str, dict[str, float]] = defaultdict(dict)
# Backends others are compared with, when measured earlier in the same group ("unfused": the same
# computation as separate mvscan functions, the baseline of a fused one; "mambapy": transformers'
# parallel-scan path of its Mamba models).
PEERS = ("reference", "unfused", "mamba_ssm", "mambapy")


@pytest.fixture
def record_ratio(benchmark):
    """Call with (group, backend) after `benchmark(...)`: stores the median and, for a backend
    other than a peer, its speedup over each peer measured before it into extra_info."""

    def record(group: str, backend: str) -> None:
        if benchmark.disabled or benchmark.stats is None:
            return
        median = benchmark.stats.stats.median
        _medians[group][backend] = median
        for peer in PEERS:
            peer_median = _medians[group].get(peer)
            if backend != peer and peer_median is not None:
                benchmark.extra_info[f"speedup_vs_{peer}"] = round(peer_median / median, 2)
        benchmark.extra_info["median_ms"] = round(median * 1e3, 4)

    return record


def pytest_terminal_summary(terminalreporter):
    if not _medians:
        return
    terminalreporter.section("speed relative to the reference (same run, median)")
    for group, rows in _medians.items():
        ref, mamba = rows.get("reference", rows.get("unfused")), rows.get("mamba_ssm")
        for backend, median in rows.items():
            ratio = f"{ref / median:8.1f}x" if ref else "        -"
            vs_mamba = f" {mamba / median:6.2f}x vs mamba_ssm" if mamba else ""
            terminalreporter.write_line(
                f"{group:48} {backend:10} {median * 1e3:10.3f} ms {ratio}{vs_mamba}")
