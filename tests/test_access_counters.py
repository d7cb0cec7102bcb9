"""The emulator's memory-access counters (tests/cuda_emulation/access_counter.h), checked on tiny
kernels whose counts are known by hand before benchmarks/gpu_cost_model.py trusts them on the
real kernels: a coalesced copy, a stride-32 gather, a load some lanes skip, a broadcast, shared stores without and with
a 32-way bank conflict, 8-byte shared accesses, and a known number of shuffles and barriers."""

from __future__ import annotations

import pytest
import torch

from emulation import build_emulation

BLOCKS = 3


@pytest.fixture(scope="module")
def probe_module():
    return build_emulation("mvscan_access_probe", "access_probe_emulated.cpp", counted=True,
                           host=False)


def counts(module, name: str, stride: int = 1, blocks: int = BLOCKS) -> dict:
    n = blocks * module.threads
    x = torch.randn(n * stride)
    y = torch.empty(n, dtype=torch.float64 if name == "shared_double" else torch.float32)
    module.counters_enable(True)
    module.counters_reset()
    try:
        module.probe(name, blocks, x, y, stride)
    finally:
        module.counters_enable(False)
    (launch,) = module.counters_read()
    return launch


def warps(module, blocks: int = BLOCKS) -> int:
    return blocks * module.threads // 32


def test_coalesced_copy_takes_four_sectors_per_warp(probe_module):
    c = counts(probe_module, "copy")
    w = warps(probe_module)
    for d in ("load", "store"):
        assert c[f"global_{d}_requests"] == w
        assert c[f"global_{d}_bytes"] == 128 * w
        assert c[f"global_{d}_sectors"] == c[f"global_{d}_ideal"] == 4 * w
    assert c["unzipped_requests"] == 0
    assert c["shared_load_requests"] == c["shared_store_requests"] == 0
    assert c["global_load_phases"] == w  # one epoch with loads per warp


def test_stride_32_gather_takes_a_sector_per_lane(probe_module):
    c = counts(probe_module, "copy", stride=32)
    w = warps(probe_module)
    assert c["global_load_sectors"] == 32 * w
    assert c["global_load_ideal"] == 4 * w  # efficiency 1/8
    assert c["distinct_load_sectors"] == 32 * w
    assert c["global_store_sectors"] == 4 * w


def test_a_load_some_lanes_skip_is_its_own_request(probe_module):
    c = counts(probe_module, "predicated", stride=2)
    w = warps(probe_module)
    assert c["global_load_requests"] == 2 * w
    assert c["global_load_sectors"] == 8 * w  # zipping by k-th access would give 12
    assert c["global_load_bytes"] == (64 + 128) * w


def test_broadcast_is_one_sector(probe_module):
    c = counts(probe_module, "broadcast")
    w = warps(probe_module)
    assert c["global_load_requests"] == w
    assert c["global_load_bytes"] == 4 * w
    assert c["global_load_sectors"] == c["global_load_ideal"] == w
    assert c["distinct_load_sectors"] == 1


@pytest.mark.parametrize("stride,ways", [(1, 1), (2, 2), (32, 32), (33, 1)])
def test_shared_bank_conflicts(probe_module, stride, ways):
    c = counts(probe_module, "shared", stride=stride)
    w = warps(probe_module)
    for d in ("load", "store"):
        assert c[f"shared_{d}_requests"] == w
        assert c[f"shared_{d}_ideal"] == w
        assert c[f"shared_{d}_wavefronts"] == ways * w


def test_eight_byte_shared_accesses_take_two_wavefronts(probe_module):
    c = counts(probe_module, "shared_double")
    w = warps(probe_module)
    assert c["shared_load_wavefronts"] == c["shared_load_ideal"] == 2 * w


def test_shuffles_and_barriers(probe_module):
    c = counts(probe_module, "sync")
    assert c["warp_shuffles"] == 5 * warps(probe_module)
    assert c["block_barriers"] == 3 * BLOCKS
    assert c["shared_load_requests"] == 0 and c["global_load_requests"] == 0
    assert c["global_load_phases"] == 0


def test_block_sample_runs_the_blocks_asked_for(probe_module):
    probe_module.set_block_sample(2)
    try:
        c = counts(probe_module, "copy", blocks=10)
    finally:
        probe_module.set_block_sample(0)
    assert c["blocks_run"] == 2 and c["blocks_in_grid"] == 10
    assert c["global_load_requests"] == 2 * probe_module.threads // 32


def test_counts_stay_right_beside_another_counted_module(probe_module):
    """Counted modules share the counters' state (inline variables are merged across shared
    libraries): loading a second one must not change what the first counts as shared memory."""
    build_emulation("mvscan_conv_emulation", "depthwise_conv1d_emulated.cpp", counted=True)
    c = counts(probe_module, "shared", stride=32)
    assert c["shared_store_wavefronts"] == 32 * warps(probe_module)
