"""CUDA depthwise conv1d + SiLU: mvscan's kernel (and its Triton one) vs F.conv1d + F.silu and vs a
plain copy of x
(torch.clone, the bandwidth bound), forward and forward+backward, in three layouts of x:
steps-fast (contiguous), channels-fast (dense channels-last), and MambaVision's: a chunk of
in_proj's output transposed (mambavision/blocks.py: in_proj(h).transpose(1, 2).chunk(2, dim=1),
K = 3, no bias). Skipped without a GPU."""

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


def triton_conv_silu(x, w, b):
    """mvscan's Triton kernels (mvscan/triton_backend), what runs without compiled CUDA ones."""
    with mvscan.use_backend("triton"):
        return mvscan.depthwise_conv1d(x, w, b, "same", "silu")


BACKENDS = {"reference": torch_conv_silu, "mvscan-triton": triton_conv_silu,
            "mvscan": mvscan_conv_silu, "clone": copy_of_x}
LAYOUTS = ["contiguous", "channels_last", "in_proj_view"]


def conv_input(batch, channels, L, dtype, layout):
    """The base tensor to differentiate and the x view of it that the conv reads."""
    if layout == "in_proj_view":  # (batch, L, 2 * channels): x is the first chunk, as in_proj's
        base = torch.randn(batch, L, 2 * channels, device="cuda", dtype=dtype)
        return base, lambda t: t.transpose(1, 2)[:, :channels]
    if layout == "channels_last":
        base = torch.randn(batch, L, channels, device="cuda", dtype=dtype)
        return base, lambda t: t.transpose(1, 2)
    return torch.randn(batch, channels, L, device="cuda", dtype=dtype), lambda t: t


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{b}x{c}x{l}" for b, c, l in SHAPES])
def test_conv_cuda(benchmark, record_ratio, shape, dtype, layout, backward, backend):
    if backward and backend == "clone":
        pytest.skip("the copy is a forward-only bound")
    batch, channels, L = shape
    base, view = conv_input(batch, channels, L, dtype, layout)
    w = torch.randn(channels, 3, device="cuda", dtype=dtype) * 0.5
    # MambaVision's convs have no bias.
    b = None if layout == "in_proj_view" else torch.randn(channels, device="cuda", dtype=dtype)
    fn = BACKENDS[backend]
    x = view(base)
    if backward:
        leaves = [t.clone().requires_grad_(True) for t in (base, w, b) if t is not None]
        inputs = lambda: (view(leaves[0]), leaves[1], leaves[2] if b is not None else None)  # noqa: E731
        dout = torch.randn_like(x)
        run = synced(lambda: torch.autograd.grad(fn(*inputs()), leaves, dout), "cuda")
    else:
        run = synced(lambda: fn(x, w, b), "cuda")
    group = (f"conv+silu cuda {dtype} {'fwd+bwd' if backward else 'fwd'} {batch}x{channels}x{L}"
             f" {layout}")
    benchmark.group = group
    benchmark(run)
    record_ratio(group, backend)
    if not benchmark.disabled:
        moved = 2 * x.numel() * x.element_size() * (3 if backward else 1)
        benchmark.extra_info["GB_per_s"] = round(moved / benchmark.stats.stats.median / 1e9, 1)
