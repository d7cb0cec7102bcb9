"""CUDA selective scan: mvscan's kernels vs the pure-PyTorch reference, mamba_ssm's
selective_scan_fn (when importable) and mvscan's own Triton kernels, forward and forward+backward,
at MambaVision-T's shapes (batch 128; contiguous inputs, and in bf16 also in the layout
MambaVision's mixer passes them) and a Mamba language-model row (batch 8, dim 1536, L 2048,
N 16). Reports the median time, the ratios, and the bandwidth achieved against the bytes the op
must move. Skipped without a GPU: `pytest benchmarks/test_scan_cuda.py --benchmark-only`."""

from __future__ import annotations

import pytest
import torch

import mvscan
from mvscan.benchmark import forward_backward_fn, forward_fn, make_scan_inputs
from mvscan.timing import synced

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

try:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as mamba_scan
except ImportError:  # not installed (it needs a GPU build): its rows are skipped
    mamba_scan = None

SHAPES = [  # name, batch, dim, L, N
    ("mambavision-t-stage3", 128, 160, 196, 8),
    ("mambavision-t-stage4", 128, 320, 49, 8),
    ("mamba-lm-row", 8, 1536, 2048, 16),
]


def triton_scan(*args, **kwargs):
    """mvscan's Triton kernels (mvscan/triton_backend), what runs without compiled CUDA ones."""
    with mvscan.use_backend("triton"):
        return mvscan.selective_scan(*args, **kwargs)


# Peers first: ratios are taken against backends measured before in the same group.
BACKENDS = {"reference": mvscan.selective_scan_ref, "mamba_ssm": mamba_scan,
            "mvscan-triton": triton_scan, "mvscan": mvscan.selective_scan}
PASSES = {"fwd": forward_fn, "fwd+bwd": forward_backward_fn}


def bytes_moved(batch: int, dim: int, L: int, N: int, itemsize: int, backward: bool) -> int:
    """What the op must read and write at least: forward reads u, delta, B, C and writes out;
    the backward also reads dout and writes du, ddelta, dB, dC."""
    seq, bc = batch * dim * L, batch * N * L
    moved = 3 * seq + 2 * bc
    if backward:
        moved += 5 * seq + 4 * bc
    return moved * itemsize


def as_mambavision_lays_them_out(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same values in the layout MambaVision's mixer hands the scan (mambavision/blocks.py):
    u and delta channels-fast ((batch, L, dim) storage transposed), B and C (batch, N, L) views
    of one (batch, L, 2N) projection (stride 1 along N)."""
    out = dict(inputs)
    for k in ("u", "delta"):
        out[k] = inputs[k].transpose(1, 2).contiguous().transpose(1, 2)
    bc = torch.cat([inputs["B"], inputs["C"]], dim=1).transpose(1, 2).contiguous()
    N = inputs["B"].shape[1]
    out["B"], out["C"] = bc[..., :N].transpose(1, 2), bc[..., N:].transpose(1, 2)
    return out


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("pass_name", list(PASSES))
@pytest.mark.parametrize("layout", ["contiguous", "mambavision"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32],
                         ids=["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("shape", SHAPES, ids=[s[0] for s in SHAPES])
def test_scan_cuda(benchmark, record_ratio, shape, dtype, layout, pass_name, backend):
    scan = BACKENDS[backend]
    if scan is None:
        pytest.skip(f"{backend} is not importable")
    name, batch, dim, L, N = shape
    if layout == "mambavision" and (not name.startswith("mambavision") or dtype != torch.bfloat16):
        pytest.skip("MambaVision's layout: at its shapes, in bf16")
    group = f"scan cuda {str(dtype)[6:]} {pass_name} {batch}x{dim}x{L} N{N} {layout}"
    benchmark.group = group
    benchmark.extra_info.update(batch=batch, dim=dim, L=L, N=N, layout=layout,
                                device=torch.cuda.get_device_name())
    inputs = make_scan_inputs(batch, dim, L, N, dtype=dtype, device="cuda")
    if layout == "mambavision":
        inputs = as_mambavision_lays_them_out(inputs)
    run = synced(PASSES[pass_name](scan, inputs), "cuda")
    if backend == "reference":  # a Python loop over L: a few rounds are enough
        benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    else:
        benchmark.pedantic(run, rounds=30, warmup_rounds=3)
    record_ratio(group, backend)
    if not benchmark.disabled:
        moved = bytes_moved(batch, dim, L, N, inputs["u"].element_size(), pass_name != "fwd")
        benchmark.extra_info["GB_per_s"] = round(moved / benchmark.stats.stats.median / 1e9, 1)
