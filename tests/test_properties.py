"""Property-based: random shapes, kinds, options and memory layouts against the oracle."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mvscan
from helpers import (REL_TOL, Case, all_errors, cotangents, make_inputs, oracle_results,
                     run_with_grads)


def relayout(t: torch.Tensor | None, how: int) -> torch.Tensor | None:
    """The same values in another memory layout: 0 contiguous, 1 last-two-dims transposed
    storage, 2 a strided slice of a larger buffer, 3 a flipped-stride (expanded copy) view."""
    if t is None or how == 0:
        return t
    if how == 1 and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if how == 2:
        big = torch.zeros(t.shape[:-1] + (t.shape[-1] * 3,), dtype=t.dtype)
        big[..., 1::3] = t
        return big[..., 1::3]
    return t.unsqueeze(0).expand(2, *t.shape).contiguous()[1]


@st.composite
def cases(draw):
    kinds = st.sampled_from(["constant", "variable", "grouped"])
    dim = draw(st.integers(1, 40))
    divisors = [g for g in range(1, dim + 1) if dim % g == 0]
    return Case(
        batch=draw(st.integers(1, 3)), dim=dim, L=draw(st.integers(1, 150)),
        N=draw(st.integers(1, 20)), B_kind=draw(kinds), C_kind=draw(kinds),
        D=draw(st.booleans()), z=draw(st.booleans()), delta_bias=draw(st.booleans()),
        softplus=draw(st.booleans()), dtype=draw(st.sampled_from([torch.float32, torch.float64])),
        B_groups=draw(st.sampled_from(divisors)), C_groups=draw(st.sampled_from(divisors)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), layouts=st.lists(st.integers(0, 3), min_size=8, max_size=8),
       seed=st.integers(0, 2**16))
def test_random_shapes_and_layouts(case, layouts, seed):
    inputs = make_inputs(case, seed)
    views = {k: relayout(v, how) for (k, v), how in zip(inputs.items(), layouts)}
    for k in inputs:
        if inputs[k] is not None:
            assert torch.equal(views[k], inputs[k])
    dout, dlast = cotangents(inputs, seed + 1)
    ref = oracle_results(inputs, case.softplus, dout, dlast)
    got = run_with_grads(mvscan.selective_scan, views, case.softplus, dout, dlast)
    tol = REL_TOL[case.dtype]
    for name, (rel, mx) in all_errors(got, ref).items():
        assert rel <= tol and mx <= 10 * tol, f"{name}: rel {rel:.2e} max {mx:.2e}"
