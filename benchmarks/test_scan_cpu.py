"""CPU selective scan: mvscan's kernels vs the pure-PyTorch sequential reference, forward and
forward+backward, at MambaVision-T's shapes. `pytest benchmarks/ --benchmark-only`."""

from __future__ import annotations

import pytest
import torch

import mvscan
from mvscan.benchmark import (MAMBAVISION_T_SHAPES, forward_backward_fn, forward_fn,
                              make_scan_inputs)

BACKENDS = {"reference": mvscan.selective_scan_ref, "mvscan": mvscan.selective_scan}
PASSES = {"fwd": forward_fn, "fwd+bwd": forward_backward_fn}


@pytest.mark.parametrize("backend", list(BACKENDS))  # reference first: the ratio needs it
@pytest.mark.parametrize("pass_name", list(PASSES))
@pytest.mark.parametrize("shape", MAMBAVISION_T_SHAPES, ids=[s[0] for s in MAMBAVISION_T_SHAPES])
def test_scan_cpu(benchmark, record_ratio, shape, pass_name, backend):
    name, batch, dim, L, N = shape
    group = f"scan cpu fp32 {pass_name} {batch}x{dim}x{L} N{N}"
    benchmark.group = group
    benchmark.extra_info.update(batch=batch, dim=dim, L=L, N=N, threads=torch.get_num_threads())
    fn = PASSES[pass_name](BACKENDS[backend], make_scan_inputs(batch, dim, L, N))
    result = benchmark(fn)
    assert result is not None
    record_ratio(group, backend)
