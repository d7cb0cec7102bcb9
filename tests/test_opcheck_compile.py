"""The operators' registration: torch.library.opcheck on both, and torch.compile(fullgraph=True)
through forward and backward."""

from __future__ import annotations

import pytest
import torch

import mvscan
from helpers import ARGS, Case, cotangents, make_inputs, run_with_grads


def op_args(case: Case, requires_grad: bool):
    inputs = make_inputs(case)
    if requires_grad:
        for v in inputs.values():
            if v is not None and v.dtype.is_floating_point:
                v.requires_grad_(True)
    return [inputs[k] for k in ARGS] + [case.softplus]


CASES = [
    Case(batch=2, dim=16, L=70, N=4, B_kind="variable", C_kind="grouped"),
    Case(batch=1, dim=8, L=5, N=8, B_kind="constant", C_kind="constant", D=False, z=False,
         delta_bias=False, softplus=False),
    Case(batch=2, dim=8, L=130, N=2, B_kind="grouped", C_kind="variable", dtype=torch.bfloat16),
]


@pytest.mark.parametrize("case", CASES, ids=["var-grouped", "const-plain", "bf16"])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck_forward(case, requires_grad):
    torch.library.opcheck(torch.ops.mvscan.selective_scan_fwd.default,
                          op_args(case, requires_grad))


@pytest.mark.parametrize("case", CASES, ids=["var-grouped", "const-plain", "bf16"])
@pytest.mark.parametrize("with_dstates", [False, True])
def test_opcheck_backward(case, with_dstates):
    args = op_args(case, requires_grad=False)
    out, states = torch.ops.mvscan.selective_scan_fwd(*args)
    dstates = torch.randn_like(states) if with_dstates else None
    torch.library.opcheck(torch.ops.mvscan.selective_scan_bwd.default,
                          [torch.randn_like(out), dstates] + args[:8] + [states, args[8]])


def test_compile_fullgraph_forward_backward():
    case = Case(batch=2, dim=16, L=100, N=8, B_kind="variable", C_kind="grouped")
    inputs = make_inputs(case)
    dout, dlast = cotangents(inputs)

    def loss_fn(**kw):
        out, last = mvscan.selective_scan(**kw, delta_softplus=True, return_last_state=True)
        return (out * dout).sum() + (last * dlast).sum() + out.square().mean()

    def grads_of(fn):
        leaves = {k: v.detach().clone().requires_grad_(True)
                  for k, v in inputs.items() if v is not None}
        loss = fn(**leaves)
        return loss.detach(), torch.autograd.grad(loss, list(leaves.values()))

    torch._dynamo.reset()
    compiled = torch.compile(loss_fn, fullgraph=True)
    loss_c, grads_c = grads_of(compiled)
    loss_e, grads_e = grads_of(loss_fn)
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-5)
    for gc, ge in zip(grads_c, grads_e):
        torch.testing.assert_close(gc, ge, rtol=1e-4, atol=1e-5)


def test_compile_dynamic_shapes():
    """One compiled graph serves several sequence lengths (symbolic L in the fake kernels)."""
    torch._dynamo.reset()

    @torch.compile(fullgraph=True, dynamic=True)
    def fn(u, delta, A, B, C):
        return mvscan.selective_scan(u, delta, A, B, C, delta_softplus=True).sum()

    for L in (10, 64, 65, 200):
        inp = make_inputs(Case(batch=2, dim=8, L=L, N=4, D=False, z=False, delta_bias=False))
        want = mvscan.selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"],
                                     delta_softplus=True).sum()
        torch.testing.assert_close(fn(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"]), want)


def test_run_with_grads_helper_uses_kernel():
    """Guards the helpers: the op path, not the reference fallback, is what the tests exercise."""
    assert "cpu" in mvscan.KERNEL_DEVICES
    case = Case(batch=1, dim=8, L=10, N=4)
    inputs = make_inputs(case)
    dout, dlast = cotangents(inputs)
    out, _, _ = run_with_grads(mvscan.selective_scan, inputs, True, dout, dlast)
    assert out.shape == (1, 8, 10)
