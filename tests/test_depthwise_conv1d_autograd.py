"""The conv operator as PyTorch sees it, on the CPU and on a GPU (the emulated kernels are not
registered operators): torch.library.opcheck of the forward and backward operators,
torch.autograd.gradcheck in float64 and
torch.compile(fullgraph=True) through forward and backward."""

from __future__ import annotations

import pytest
import torch

import backends
import mvscan
from backends import to_backend
from helpers import conv_inputs


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@backends.over("cpu", "cuda")
def test_opcheck(backend, channels_last, bias):
    x, w, b, _ = to_backend(backend, conv_inputs(2, 12, 30, 4, torch.float32, channels_last,
                                                 bias))
    w2 = w.reshape(12, 4)
    for t in (x, w2, b):
        if t is not None:
            t.requires_grad_(True)
    torch.library.opcheck(torch.ops.mvscan.depthwise_conv1d_fwd.default, (x, w2, b, 1, True))
    torch.library.opcheck(torch.ops.mvscan.depthwise_conv1d_bwd.default,
                          (to_backend(backend, torch.randn(2, 12, 30)), x.detach(), w2.detach(),
                           None if b is None else b.detach(), 3, False))


@backends.over("cpu", "cuda")
def test_gradcheck(backend):
    x, w, b, _ = to_backend(backend, conv_inputs(2, 5, 17, 4, torch.float64, True, bias=True))
    for t in (x, w, b):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: mvscan.depthwise_conv1d(x, w, b, "same", "silu"), (x, w, b))


@backends.over("cpu", "cuda")
def test_compile_fullgraph(backend):
    x, w, b, dout = to_backend(backend, conv_inputs(2, 16, 40, 3, torch.float32, True, bias=True))
    torch._dynamo.reset()

    def fn(x, w, b):
        return (mvscan.depthwise_conv1d(x, w, b, "same", "silu") * dout).sum()

    leaves_c = [t.clone().requires_grad_(True) for t in (x, w, b)]
    leaves_e = [t.clone().requires_grad_(True) for t in (x, w, b)]
    out_c = torch.compile(fn, fullgraph=True)(*leaves_c)
    out_e = fn(*leaves_e)
    out_c.backward()
    out_e.backward()
    torch.testing.assert_close(out_c, out_e)
    for a, e in zip(leaves_c, leaves_e):
        torch.testing.assert_close(a.grad, e.grad)
