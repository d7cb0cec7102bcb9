"""torch.autograd.gradcheck of the operator in float64: its backward kernel against finite
differences of its forward kernel."""

from __future__ import annotations

import pytest
import torch

import mvscan
from helpers import ARGS, Case, make_inputs


@pytest.mark.parametrize("B_kind,C_kind", [("constant", "constant"), ("variable", "grouped"),
                                           ("grouped", "variable")])
@pytest.mark.parametrize("softplus", [False, True])
def test_gradcheck(B_kind, C_kind, softplus):
    case = Case(batch=2, dim=6, L=70, N=3, B_kind=B_kind, C_kind=C_kind, softplus=softplus,
                dtype=torch.float64, B_groups=2, C_groups=3)
    inputs = make_inputs(case, seed=2)
    names = [k for k in ARGS if inputs[k] is not None]

    def fn(*tensors):
        kwargs = dict(zip(names, tensors))
        return mvscan.selective_scan(**kwargs, delta_softplus=softplus, return_last_state=True)

    tensors = [inputs[k].requires_grad_(True) for k in names]
    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-6, rtol=1e-5)
