"""The CUDA depthwise conv1d kernel against the CPU kernel and the float64 oracle. Skipped
without a GPU; on a GPU machine run them all (scripts/gpu_check.sh)."""

from __future__ import annotations

import itertools

import pytest
import torch

import mvscan
from helpers import rel_err
from test_depthwise_conv1d import make, oracle_results, run, torch_conv

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def to_cuda(*tensors):
    return [t.cuda() if t is not None else None for t in tensors]


@pytest.mark.parametrize("L,K,padding", list(itertools.product([1, 2, 3, 49, 196, 1031],
                                                               [1, 2, 3, 4, 7],
                                                               ["same", "causal"])))
def test_cuda_matches_oracle_fp32(L, K, padding):
    for bias, activation, channels_last in itertools.product([False, True], [None, "silu"],
                                                             [False, True]):
        x, w, b, dout = make(2, 19, L, K, torch.float32, channels_last, bias, seed=L + K)
        ref_y, ref_grads = oracle_results(x, w, b, dout, padding, activation)
        y, grads = run(mvscan.depthwise_conv1d, *to_cuda(x, w, b, dout), padding, activation)
        what = f"bias={bias} act={activation} channels_last={channels_last}"
        assert y.is_cuda and y.stride() == mvscan.depthwise_conv1d(x, w, b, padding).stride()
        assert rel_err(y.cpu(), ref_y) <= 1e-5, what
        for g, r in zip(grads, ref_grads):
            assert rel_err(g.cpu(), r) <= 1e-5, what


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cuda_low_precision(dtype, channels_last):
    x, w, b, dout = make(4, 64, 197, 3, dtype, channels_last, bias=True)
    ref_y, ref_grads = oracle_results(x, w, b, dout, "same", "silu")
    base_y, base_grads = run(torch_conv, *to_cuda(x, w, b, dout), "same", "silu")
    y, grads = run(mvscan.depthwise_conv1d, *to_cuda(x, w, b, dout), "same", "silu")
    assert rel_err(y.cpu(), ref_y) <= 2 * rel_err(base_y.cpu(), ref_y) + 1e-6
    for g, base, r in zip(grads, base_grads, ref_grads):
        assert rel_err(g.cpu(), r) <= 2 * rel_err(base.cpu(), r) + 1e-5


def test_cuda_deterministic_backward():
    x, w, b, dout = to_cuda(*make(8, 320, 196, 3, torch.float32, True, bias=True))
    first = run(mvscan.depthwise_conv1d, x, w, b, dout, "same", "silu")[1]
    for _ in range(3):
        for g1, g2 in zip(first, run(mvscan.depthwise_conv1d, x, w, b, dout, "same", "silu")[1]):
            assert torch.equal(g1, g2)


def test_cuda_opcheck():
    x, w, b, _ = to_cuda(*make(2, 12, 30, 4, torch.float32, True, bias=True, weight_3d=False))
    for t in (x, w, b):
        t.requires_grad_(True)
    torch.library.opcheck(torch.ops.mvscan.depthwise_conv1d_fwd.default, (x, w, b, 1, True))


def test_cuda_graph_capture():
    """No host synchronisation inside the op: it can be captured in a CUDA graph."""
    x, w, b, _ = to_cuda(*make(4, 64, 100, 3, torch.float32, True, bias=True))
    expected = mvscan.depthwise_conv1d(x, w, b, "same", "silu")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        mvscan.depthwise_conv1d(x, w, b, "same", "silu")  # warm-up on the side stream
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = mvscan.depthwise_conv1d(x, w, b, "same", "silu")
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, expected)


def test_cuda_float64_matches_cpu_kernel():
    """float64 accumulates in float64 on CUDA as on CPU (the dtype list's rule)."""
    x, w, b, dout = make(2, 7, 300, 4, torch.float64, True, bias=True, seed=5)
    want = (torch.ops.mvscan.depthwise_conv1d_fwd(x, w.reshape(7, -1), b, 3, True),
            *torch.ops.mvscan.depthwise_conv1d_bwd(dout, x, w.reshape(7, -1), b, 3, True))
    xc, wc, bc, doutc = to_cuda(x, w, b, dout)
    got = (torch.ops.mvscan.depthwise_conv1d_fwd(xc, wc.reshape(7, -1), bc, 3, True),
           *torch.ops.mvscan.depthwise_conv1d_bwd(doutc, xc, wc.reshape(7, -1), bc, 3, True))
    for name, g, r in zip(("out", "dx", "dweight", "dbias"), got, want):
        assert rel_err(g.cpu(), r) <= 1e-12, name
