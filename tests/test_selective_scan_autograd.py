"""The scan operator as PyTorch sees it, on the CPU and on a GPU (the emulated kernels are not
registered operators): torch.autograd.gradcheck in float64 (the backward kernel against finite
differences of the forward kernel), torch.library.opcheck of the forward and backward
operators, and torch.compile(fullgraph=True) through forward and backward."""

from __future__ import annotations

import pytest
import torch

import backends
import mvscan
from backends import to_backend
from helpers import ARGS, Case, cotangents, make_inputs


@pytest.mark.parametrize("B_kind,C_kind", [("constant", "constant"), ("variable", "grouped"),
                                           ("grouped", "variable")])
@pytest.mark.parametrize("softplus", [False, True])
@backends.over("cpu", "cuda")
def test_gradcheck(backend, B_kind, C_kind, softplus):
    case = Case(batch=2, dim=6, L=70, N=3, B_kind=B_kind, C_kind=C_kind, softplus=softplus,
                dtype=torch.float64, B_groups=2, C_groups=3)
    inputs = to_backend(backend, make_inputs(case, seed=2))
    names = [k for k in ARGS if inputs[k] is not None]

    def fn(*tensors):
        kwargs = dict(zip(names, tensors))
        return mvscan.selective_scan(**kwargs, delta_softplus=softplus, return_last_state=True)

    tensors = [inputs[k].requires_grad_(True) for k in names]
    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-6, rtol=1e-5)


def op_args(backend: str, case: Case, requires_grad: bool):
    inputs = to_backend(backend, make_inputs(case))
    if requires_grad:
        for v in inputs.values():
            if v is not None and v.dtype.is_floating_point:
                v.requires_grad_(True)
    return [inputs[k] for k in ARGS] + [case.softplus]


OPCHECK_CASES = {
    "var-grouped": Case(batch=2, dim=16, L=70, N=4, B_kind="variable", C_kind="grouped"),
    "const-plain": Case(batch=1, dim=8, L=5, N=8, B_kind="constant", C_kind="constant", D=False,
                        z=False, delta_bias=False, softplus=False),
    "bf16": Case(batch=2, dim=8, L=130, N=2, B_kind="grouped", C_kind="variable",
                 dtype=torch.bfloat16),
}
CUDA_OPCHECK_CASES = {
    "grouped-const": Case(batch=2, dim=12, L=70, N=4, B_kind="grouped", C_kind="constant"),
    **OPCHECK_CASES}


@backends.parametrize("case_name,requires_grad", {
    "cpu": [(c, r) for c in OPCHECK_CASES for r in (False, True)],
    "cuda": [(c, r) for c in CUDA_OPCHECK_CASES for r in (False, True)]},
    id=lambda c, r: f"{c}-{'grad' if r else 'nograd'}")
def test_opcheck_forward(backend, case_name, requires_grad):
    case = CUDA_OPCHECK_CASES[case_name]
    torch.library.opcheck(torch.ops.mvscan.selective_scan_fwd.default,
                          op_args(backend, case, requires_grad))


@backends.parametrize("case_name,with_dstates", {
    "cpu": [(c, d) for c in OPCHECK_CASES for d in (False, True)],
    "cuda": [(c, d) for c in CUDA_OPCHECK_CASES for d in (False, True)]},
    id=lambda c, d: f"{c}-{'dstates' if d else 'no-dstates'}")
def test_opcheck_backward(backend, case_name, with_dstates):
    args = op_args(backend, CUDA_OPCHECK_CASES[case_name], requires_grad=False)
    out, states = torch.ops.mvscan.selective_scan_fwd(*args)
    dstates = torch.randn_like(states) if with_dstates else None
    torch.library.opcheck(torch.ops.mvscan.selective_scan_bwd.default,
                          [torch.randn_like(out), dstates] + args[:8] + [states, args[8]])


@backends.over("cpu", "cuda")
def test_compile_fullgraph_forward_backward(backend):
    case = Case(batch=2, dim=16, L=100, N=8, B_kind="variable", C_kind="grouped")
    inputs = to_backend(backend, make_inputs(case))
    dout, dlast = to_backend(backend, cotangents(inputs))

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


@backends.over("cpu", "cuda")
def test_compile_dynamic_shapes(backend):
    """One compiled graph serves several sequence lengths (symbolic L in the fake kernels)."""
    torch._dynamo.reset()

    @torch.compile(fullgraph=True, dynamic=True)
    def fn(u, delta, A, B, C):
        return mvscan.selective_scan(u, delta, A, B, C, delta_softplus=True).sum()

    for L in (10, 64, 65, 200):
        inp = to_backend(backend, make_inputs(Case(batch=2, dim=8, L=L, N=4, D=False, z=False,
                                                   delta_bias=False)))
        want = mvscan.selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"],
                                     delta_softplus=True).sum()
        torch.testing.assert_close(fn(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"]), want)
