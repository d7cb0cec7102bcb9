"""CUDA depthwise conv1d + SiLU: mvscan's kernel vs F.conv1d + F.silu and vs a plain copy of x
(torch.clone, the bandwidth bound), forward and forward+backward. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mvscan
from mvscan.timing import synced

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SHAPES = [(8, 320, 196), (128, 320, 196), (128, 640, 49)]


def torch_conv_silu(x, w, b):
    return F.silu(F.conv1d(x, w.unsqueeze(1), b, groups=x.shape[1], padding="same"))


def mvscan_conv_silu(x, w, b):
    return mvscan.depthwise_conv1d(x, w, b, "same", "silu")


def copy_of_x(x, w, b):
    return x.clone()


BACKENDS = {"reference": torch_conv_silu, "mvscan": mvscan_conv_silu, "clone": copy_of_x}


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{b}x{c}x{l}" for b, c, l in SHAPES])
def test_conv_cuda(benchmark, record_ratio, shape, dtype, backward, backend):
    if backward and backend == "clone":
        pytest.skip("the copy is a forward-only bound")
    batch, channels, L = shape
    x = torch.randn(batch, L, channels, device="cuda", dtype=dtype).transpose(1, 2)
    w = torch.randn(channels, 3, device="cuda", dtype=dtype) * 0.5
    b = torch.randn(channels, device="cuda", dtype=dtype)
    fn = BACKENDS[backend]
    if backward:
        leaves = [t.clone().requires_grad_(True) for t in (x, w, b)]
        dout = torch.randn_like(x)
        run = synced(lambda: torch.autograd.grad(fn(*leaves), leaves, dout), "cuda")
    else:
        run = synced(lambda: fn(x, w, b), "cuda")
    group = f"conv+silu cuda {dtype} {'fwd+bwd' if backward else 'fwd'} {batch}x{channels}x{L}"
    benchmark.group = group
    benchmark(run)
    record_ratio(group, backend)
    if not benchmark.disabled:
        moved = 2 * x.numel() * x.element_size() * (3 if backward else 1)
        benchmark.extra_info["GB_per_s"] = round(moved / benchmark.stats.stats.median / 1e9, 1)
