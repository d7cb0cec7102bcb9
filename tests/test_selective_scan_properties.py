"""Property-based, on every backend: random shapes, kinds, group counts, options and memory
layouts. The CPU kernel is checked against the oracle; the CUDA kernels (real or emulated)
against the CPU kernel in float64, with a cotangent on every saved state and now and then
N > 32 (unstaged B/C, several warps per row, one row per block). The emulated kernels are slow:
they get fewer examples."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backends
from backends import run_scan_ops, scan_with_grads, to_backend
from helpers import (ARGS, FULL_PRECISION, REL_TOL, Case, all_errors, compare_ops, cotangents,
                     make_inputs, oracle_results)

EXAMPLES = {"cpu": 60, "cuda": 60, "emulated-cuda": 25}
# Relative error allowed against the CPU kernel (float64).
CPU_KERNEL_TOL = {"cuda": 1e-10, "emulated-cuda": 1e-11}


def relayout(t: torch.Tensor | None, how: int) -> torch.Tensor | None:
    """The same values in another memory layout: 0 contiguous, 1 last-two-dims transposed
    storage, 2 a strided slice of a larger buffer, 3 a flipped-stride (expanded copy) view."""
    if t is None or how == 0:
        return t
    if how == 1 and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if how == 2:
        big = t.new_zeros(t.shape[:-1] + (t.shape[-1] * 3,))
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
        softplus=draw(st.booleans()),
        dtype=draw(st.sampled_from(sorted(FULL_PRECISION, key=lambda d: d.itemsize))),
        B_groups=draw(st.sampled_from(divisors)), C_groups=draw(st.sampled_from(divisors)))


def with_big_N(case: Case, big_N: int | None) -> Case:
    """The device backends' case: float64, and with big_N (N > 32), L at most 70."""
    return Case(**{**case.__dict__, "dtype": torch.float64,
                   "N": big_N if big_N is not None else case.N,
                   "L": min(case.L, 70) if big_N is not None else case.L})


def check_cpu(case, layouts, seed):
    inputs = make_inputs(case, seed)
    views = {k: relayout(v, how) for (k, v), how in zip(inputs.items(), layouts)}
    for k in inputs:
        if inputs[k] is not None:
            assert torch.equal(views[k], inputs[k])
    dout, dlast = cotangents(inputs, seed + 1)
    ref = oracle_results(inputs, case.softplus, dout, dlast)
    got = scan_with_grads("cpu")(views, case.softplus, dout, dlast)
    tol = REL_TOL[case.dtype]
    for name, (rel, mx) in all_errors(got, ref).items():
        assert rel <= tol and mx <= 10 * tol, f"{name}: rel {rel:.2e} max {mx:.2e}"


def check_device(backend, case, layouts, seed):
    inputs = make_inputs(case, seed)
    args = [inputs[k] for k in ARGS]
    views = [relayout(a, how) for a, how in zip(to_backend(backend, args), layouts)]
    got = run_scan_ops(backend, views, case.softplus, seed + 1)
    ref = run_scan_ops("cpu", args, case.softplus, seed + 1)
    compare_ops(got, ref, CPU_KERNEL_TOL[backend], f"{backend} {case}")


@backends.over()
def test_random_shapes_and_layouts(backend):
    settings_ = settings(max_examples=EXAMPLES[backend], deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])
    layouts = st.lists(st.integers(0, 3), min_size=8, max_size=8)
    seeds = st.integers(0, 2**16)
    if backend == "cpu":
        @settings_
        @given(case=cases(), layouts=layouts, seed=seeds)
        def check(case, layouts, seed):
            check_cpu(case, layouts, seed)
    else:
        @settings_
        @given(case=cases(), big_N=st.sampled_from([None, 33, 64, 100]), layouts=layouts,
               seed=seeds)
        def check(case, big_N, layouts, seed):
            check_device(backend, with_big_N(case, big_N), layouts, seed)

    check()
