"""mvscan.depthwise_conv1d against the float64 oracle and F.conv1d (+ F.silu): values and
gradients, every size/width/padding/layout/dtype of the issue, every CPU instruction-set build."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mvscan
import oracle
from helpers import cpu_isa, rel_err, supported_isas

ISAS = supported_isas()
REL_TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def make(batch, channels, L, K, dtype, channels_last, bias, seed=0, weight_3d=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, L, channels, generator=g, dtype=torch.float64).to(dtype)
    x = x.transpose(1, 2) if channels_last else x.transpose(1, 2).contiguous()
    wshape = (channels, 1, K) if weight_3d else (channels, K)
    w = (torch.randn(*wshape, generator=g, dtype=torch.float64) * 0.5).to(dtype)
    b = torch.randn(channels, generator=g, dtype=torch.float64).to(dtype) if bias else None
    dout = torch.randn(batch, channels, L, generator=g, dtype=torch.float64).to(dtype)
    return x, w, b, dout


def run(fn, x, w, b, dout, padding, activation):
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in (x, w, b)]
    y = fn(leaves[0], leaves[1], leaves[2], padding, activation)
    wanted = [t for t in leaves if t is not None]
    grads = torch.autograd.grad(y, wanted, dout)
    return y.detach(), grads


def torch_conv(x, w, b, padding, activation):
    """The plain PyTorch statement of the op: F.conv1d, then F.silu."""
    K = w.shape[-1]
    w3 = w.reshape(w.shape[0], 1, K)
    if padding == "same":
        y = F.conv1d(x, w3, b, groups=x.shape[1], padding="same")
    else:
        y = F.conv1d(F.pad(x, (K - 1, 0)), w3, b, groups=x.shape[1])
    return F.silu(y) if activation == "silu" else y


def oracle_results(x, w, b, dout, padding, activation):
    K = w.shape[-1]
    pad_left = K - 1 if padding == "causal" else (K - 1) // 2
    args = (x.double().numpy(), w.reshape(w.shape[0], K).double().numpy(),
            None if b is None else b.double().numpy())
    y = oracle.conv_forward(*args, pad_left, activation == "silu")
    dx, dw, db = oracle.conv_backward(dout.double().numpy(), *args, pad_left, activation == "silu")
    grads = [dx, dw.reshape(tuple(w.shape))] + ([db] if b is not None else [])
    return torch.from_numpy(y), [torch.from_numpy(np.ascontiguousarray(t)) for t in grads]


GRID = list(itertools.product([1, 2, 3, 49, 196, 1031], [1, 2, 3, 4, 7], ["same", "causal"]))


@pytest.mark.parametrize("L,K,padding", GRID)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
def test_against_oracle(L, K, padding, dtype):
    for (bias, activation, channels_last), isa in zip(
            itertools.product([False, True], [None, "silu"], [False, True]),
            itertools.cycle(ISAS)):
        x, w, b, dout = make(2, 19, L, K, dtype, channels_last, bias, seed=L * 7 + K)
        ref_y, ref_grads = oracle_results(x, w, b, dout, padding, activation)
        with cpu_isa(isa):
            y, grads = run(mvscan.depthwise_conv1d, x, w, b, dout, padding, activation)
        assert y.dtype == dtype and y.shape == x.shape
        tol = REL_TOL[dtype]
        what = f"{isa} bias={bias} act={activation} channels_last={channels_last}"
        assert rel_err(y, ref_y) <= tol, what
        for name, g, r in zip(("dx", "dweight", "dbias"), grads, ref_grads):
            assert g.shape == r.shape, name
            assert rel_err(g, r) <= tol, f"{name} {what}: {rel_err(g, r):.2e}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("K,padding", [(3, "same"), (4, "causal"), (2, "same")])
@pytest.mark.parametrize("channels_last", [False, True])
def test_low_precision(dtype, K, padding, channels_last):
    """fp16/bf16: within twice the error of F.conv1d + F.silu run in that dtype."""
    x, w, b, dout = make(3, 40, 197, K, dtype, channels_last, bias=True, seed=K)
    ref_y, ref_grads = oracle_results(x, w, b, dout, padding, "silu")
    base_y, base_grads = run(torch_conv, x, w, b, dout, padding, "silu")
    for isa in ISAS:
        with cpu_isa(isa):
            y, grads = run(mvscan.depthwise_conv1d, x, w, b, dout, padding, "silu")
        assert rel_err(y, ref_y) <= 2 * rel_err(base_y, ref_y) + 1e-6, isa
        for g, base, r in zip(grads, base_grads, ref_grads):
            assert rel_err(g, r) <= 2 * rel_err(base, r) + 1e-5, isa


def test_float32_weights_with_half_input():
    """Under autocast the model's float32 weights meet half inputs: accepted, math in float32."""
    x, w, b, dout = make(2, 16, 50, 3, torch.float16, False, bias=True)
    y, grads = run(mvscan.depthwise_conv1d, x, w.float(), b.float(), dout, "same", "silu")
    ref_y, ref_grads = oracle_results(x, w.float(), b.float(), dout, "same", "silu")
    assert y.dtype == torch.float16 and grads[1].dtype == torch.float32
    assert rel_err(y, ref_y) < 2e-3 and rel_err(grads[1], ref_grads[1]) < 2e-3


def test_channels_last_input_is_not_copied_and_layout_kept():
    x, w, b, _ = make(2, 32, 64, 3, torch.float32, True, bias=True)
    assert x.stride(1) == 1
    y = mvscan.depthwise_conv1d(x, w, b, "same", "silu")
    assert y.stride() == x.stride()
    torch.testing.assert_close(y, torch_conv(x, w, b, "same", "silu"), rtol=1e-5, atol=1e-6)


def test_strided_input():
    """Neither L nor channels contiguous (a slice): still exact."""
    base = torch.randn(2, 20, 3 * 41)
    x = base[:, :, ::3]
    w = torch.randn(20, 3)
    torch.testing.assert_close(mvscan.depthwise_conv1d(x, w, None, "causal"),
                               torch_conv(x, w, None, "causal", None), rtol=1e-5, atol=1e-6)


def test_deterministic_backward():
    x, w, b, dout = make(4, 48, 300, 4, torch.float32, True, bias=True)
    first = run(mvscan.depthwise_conv1d, x, w, b, dout, "same", "silu")[1]
    for _ in range(3):
        again = run(mvscan.depthwise_conv1d, x, w, b, dout, "same", "silu")[1]
        for g1, g2 in zip(first, again):
            assert torch.equal(g1, g2)


def test_empty_batch():
    x = torch.randn(0, 8, 10, requires_grad=True)
    w = torch.randn(8, 3, requires_grad=True)
    y = mvscan.depthwise_conv1d(x, w, None, "same", "silu")
    assert y.shape == (0, 8, 10)
    y.sum().backward()
    assert torch.all(w.grad == 0)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_opcheck(channels_last, bias):
    x, w, b, _ = make(2, 12, 30, 4, torch.float32, channels_last, bias)
    w2 = w.reshape(12, 4)
    for t in (x, w2, b):
        if t is not None:
            t.requires_grad_(True)
    torch.library.opcheck(torch.ops.mvscan.depthwise_conv1d_fwd.default, (x, w2, b, 1, True))
    torch.library.opcheck(torch.ops.mvscan.depthwise_conv1d_bwd.default,
                          (torch.randn(2, 12, 30), x.detach(), w2.detach(),
                           None if b is None else b.detach(), 3, False))


def test_gradcheck():
    x, w, b, _ = make(2, 5, 17, 4, torch.float64, True, bias=True)
    for t in (x, w, b):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: mvscan.depthwise_conv1d(x, w, b, "same", "silu"), (x, w, b))


def test_compile_fullgraph():
    x, w, b, dout = make(2, 16, 40, 3, torch.float32, True, bias=True)
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


ERRORS = (ValueError, TypeError)
BAD = [
    ("K too large", lambda: (torch.randn(2, 4, 10), torch.randn(4, 33), None, "same", None),
     r"kernel width K = 33 .* 1 to 32"),
    ("channel mismatch", lambda: (torch.randn(2, 4, 10), torch.randn(5, 3), None, "same", None),
     r"weight must have shape \(channels, K\) with channels = x.shape\[1\] = 4"),
    ("x 2-d", lambda: (torch.randn(4, 10), torch.randn(4, 3), None, "same", None),
     r"x must be a 3-d tensor"),
    ("weight (C, 2, K)", lambda: (torch.randn(2, 4, 10), torch.randn(4, 2, 3), None, "same", None),
     r"3-d weight must be nn.Conv1d's depthwise \(channels, 1, K\)"),
    ("bias shape", lambda: (torch.randn(2, 4, 10), torch.randn(4, 3), torch.randn(3), "same", None),
     r"bias must have shape \(channels,\)"),
    ("unknown padding", lambda: (torch.randn(2, 4, 10), torch.randn(4, 3), None, "valid", None),
     r"padding must be one of \('same', 'causal'\), got 'valid'"),
    ("unknown activation", lambda: (torch.randn(2, 4, 10), torch.randn(4, 3), None, "same", "gelu"),
     r"activation must be one of \(None, 'silu'\), got 'gelu'"),
    ("int x", lambda: (torch.ones(2, 4, 10, dtype=torch.int32), torch.randn(4, 3), None, "same",
                       None), r"x must be float32, float16, bfloat16 or float64, got Int"),
    ("weight dtype", lambda: (torch.randn(2, 4, 10).half(), torch.randn(4, 3).double(), None,
                              "same", None), r"weight must have x's dtype \(Half\) or float32"),
    ("device mismatch", lambda: (torch.randn(2, 4, 10), torch.randn(4, 3, device="meta"), None,
                                 "same", None), r"weight is on meta but x is on cpu"),
]


@pytest.mark.parametrize("make_args,pattern", [(m, p) for _, m, p in BAD],
                         ids=[n for n, _, _ in BAD])
def test_bad_input(make_args, pattern):
    with pytest.raises(ERRORS, match=pattern):
        mvscan.depthwise_conv1d(*make_args())


def test_reference_matches_f_conv1d():
    x, w, b, dout = make(2, 8, 33, 4, torch.float64, False, bias=True)
    for padding in ("same", "causal"):
        torch.testing.assert_close(mvscan.depthwise_conv1d_ref(x, w, b, padding, "silu"),
                                   torch_conv(x, w, b, padding, "silu"))


def test_backward_op_checks_dout():
    x, w = torch.randn(2, 4, 10), torch.randn(4, 3)
    with pytest.raises(ERRORS, match=r"dout must have x's shape \[2, 4, 10\]"):
        torch.ops.mvscan.depthwise_conv1d_bwd(torch.randn(2, 4, 9), x, w, None, 1, False)
    with pytest.raises(ERRORS, match=r"dout must have x's dtype Float, got Double"):
        torch.ops.mvscan.depthwise_conv1d_bwd(torch.randn(2, 4, 10).double(), x, w, None, 1, False)
