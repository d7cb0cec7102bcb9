"""CPU depthwise conv1d + SiLU: mvscan's fused kernel vs F.conv1d + F.silu, forward and
forward+backward, at MambaVision's mixer shapes, for x contiguous and for x as in_proj produces
it (channels contiguous). `pytest benchmarks/ --benchmark-only`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mvscan

# (name, batch, channels, L): MambaVision-T's stage-3 and stage-4 mixers (x and z halves).
SHAPES = [("stage 3", 8, 320, 196), ("stage 3", 128, 320, 196), ("stage 4", 8, 640, 49)]


def torch_conv_silu(x, w, b):
    return F.silu(F.conv1d(x, w.unsqueeze(1), b, groups=x.shape[1], padding="same"))


def mvscan_conv_silu(x, w, b):
    return mvscan.depthwise_conv1d(x, w, b, "same", "silu")


BACKENDS = {"reference": torch_conv_silu, "mvscan": mvscan_conv_silu}


def inputs(batch, channels, L, channels_last):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, L, channels, generator=g)
    x = x.transpose(1, 2) if channels_last else x.transpose(1, 2).contiguous()
    return x, torch.randn(channels, 3, generator=g) * 0.5, torch.randn(channels, generator=g)


def forward(fn, x, w, b):
    def run():
        with torch.no_grad():
            return fn(x, w, b)
    return run


def forward_backward(fn, x, w, b):
    leaves = [t.clone().requires_grad_(True) for t in (x, w, b)]
    dout = torch.randn(x.shape)

    def run():
        return torch.autograd.grad(fn(*leaves), leaves, dout)
    return run


@pytest.mark.parametrize("backend", list(BACKENDS))  # reference first: the ratio needs it
@pytest.mark.parametrize("pass_name,make", [("fwd", forward), ("fwd+bwd", forward_backward)],
                         ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels-last"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{s[0]}-b{s[1]}" for s in SHAPES])
def test_conv_cpu(benchmark, record_ratio, shape, channels_last, pass_name, make, backend):
    name, batch, channels, L = shape
    layout = "channels-last" if channels_last else "contiguous"
    group = f"conv+silu cpu fp32 {pass_name} {batch}x{channels}x{L} K3 {layout}"
    benchmark.group = group
    benchmark.extra_info.update(batch=batch, channels=channels, L=L, layout=layout)
    x, w, b = inputs(batch, channels, L, channels_last)
    result = benchmark(make(BACKENDS[backend], x, w, b))
    assert result is not None
    record_ratio(group, backend)
