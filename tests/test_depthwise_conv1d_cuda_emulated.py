"""The CUDA depthwise conv1d kernels' own device code, run on CPU through a fiber emulation of
CUDA threads (tests/cuda_emulation/), against the CPU kernel. Runs everywhere, GPU or not; see
tests/test_selective_scan_cuda_emulated.py for what the emulation does and does not check."""

from __future__ import annotations

import itertools

import pytest
import torch

from mvscan.reference import conv_pad_left
from emulation import build_emulation
from helpers import rel_err
from test_depthwise_conv1d import make


@pytest.fixture(scope="module")
def emulated():
    return build_emulation("mvscan_conv_emulation", "depthwise_conv1d_emulated.cpp")


def both(emulated, x, w, b, dout, pad, silu):
    """(out, dx, dweight, dbias) from the emulated CUDA kernels and from the CPU kernel."""
    w2 = w.reshape(w.shape[0], -1)
    ops = torch.ops.mvscan
    got = (emulated.depthwise_conv1d_fwd(x, w2, b, pad, silu),
           *emulated.depthwise_conv1d_bwd(dout, x, w2, b, pad, silu))
    want = (ops.depthwise_conv1d_fwd(x, w2, b, pad, silu),
            *ops.depthwise_conv1d_bwd(dout, x, w2, b, pad, silu))
    return got, want


@pytest.mark.parametrize("L,K,padding", list(itertools.product([1, 3, 49, 300], [1, 3, 4, 7],
                                                               ["same", "causal"])))
def test_emulated_matches_cpu_kernel_fp32(emulated, L, K, padding):
    for bias, silu, channels_last in itertools.product([False, True], [False, True],
                                                       [False, True]):
        x, w, b, dout = make(2, 19, L, K, torch.float32, channels_last, bias, seed=L + K)
        got, want = both(emulated, x, w, b, dout, conv_pad_left(K, padding), silu)
        what = f"bias={bias} silu={silu} channels_last={channels_last}"
        assert got[0].stride() == want[0].stride() and got[1].stride() == want[1].stride(), what
        for name, g, r in zip(("out", "dx", "dweight", "dbias"), got, want):
            assert g.shape == r.shape and g.dtype == r.dtype, f"{what}: {name}"
            if r.numel():
                assert rel_err(g, r) <= 1e-5, f"{what}: {name}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_emulated_low_precision(emulated, dtype):
    x, w, b, dout = make(2, 24, 70, 3, dtype, True, bias=True)
    got, want = both(emulated, x, w, b, dout, 1, True)
    tol = 1e-2 if dtype == torch.bfloat16 else 2e-3
    for name, g, r in zip(("out", "dx", "dweight", "dbias"), got, want):
        assert rel_err(g, r) <= tol, name


def test_emulated_several_dweight_parts(emulated):
    """More than 8192 (batch, step) rows per channel: the dweight partials span several blocks
    of the grid's second dimension before torch.sum adds them."""
    x, w, b, dout = make(3, 4, 3000, 4, torch.float32, False, bias=True, seed=7)
    got, want = both(emulated, x, w, b, dout, 1, True)
    for name, g, r in zip(("out", "dx", "dweight", "dbias"), got, want):
        assert rel_err(g, r) <= 1e-5, name


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_emulated_float64(emulated, channels_last):
    """float64 inputs accumulate in float64 (the dtype list's rule), on CUDA as on CPU."""
    x, w, b, dout = make(2, 7, 300, 4, torch.float64, channels_last, bias=True, seed=5)
    got, want = both(emulated, x, w, b, dout, 3, True)
    for name, g, r in zip(("out", "dx", "dweight", "dbias"), got, want):
        assert g.dtype == r.dtype == torch.float64, name
        assert rel_err(g, r) <= 1e-12, name


def test_emulated_results_do_not_depend_on_thread_order(emulated):
    """See the scan's test of the same name: the dweight tree must not race."""
    x, w, b, dout = make(2, 6, 3000, 3, torch.float32, True, bias=True, seed=3)
    results = []
    try:
        for mode in (0, 1, 2):
            emulated.set_schedule(mode)
            results.append(both(emulated, x, w, b, dout, 1, True)[0])
    finally:
        emulated.set_schedule(0)
    for other in results[1:]:
        for g, r in zip(other, results[0]):
            assert torch.equal(g, r)
