"""The CPU kernels against the float64 oracle: outputs, the last state and every gradient, over
the grid of the issue, for every instruction-set build this CPU can run."""

from __future__ import annotations

import itertools

import pytest
import torch

import mvscan
import helpers
from helpers import (GRID_L, GRID_N, KINDS, LOW_PRECISION, Case, cotangents, cpu_isa,
                     grid_case, make_inputs, run_with_grads, supported_isas)

ISAS = supported_isas()


def run_on(isa: str):
    def run(inputs, softplus, dout, dlast):
        with cpu_isa(isa):
            return run_with_grads(mvscan.selective_scan, inputs, softplus, dout, dlast)
    return run


def check_against_oracle(case: Case, isas=ISAS, seed: int = 0):
    helpers.check_against_oracle(case, {isa: run_on(isa) for isa in isas}, seed)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("N", GRID_N)
@pytest.mark.parametrize("L", GRID_L)
def test_grid(L, N, kind, dtype):
    check_against_oracle(grid_case(L, N, kind, dtype))


OPTION_SETS = list(itertools.product([False, True], repeat=4))


@pytest.mark.parametrize("D,z,delta_bias,softplus", OPTION_SETS)
@pytest.mark.parametrize("B_kind,C_kind", [("constant", "variable"), ("variable", "grouped"),
                                           ("grouped", "constant")])
def test_options(D, z, delta_bias, softplus, B_kind, C_kind):
    check_against_oracle(Case(batch=3, dim=36, L=130, N=5, B_kind=B_kind, C_kind=C_kind, D=D,
                              z=z, delta_bias=delta_bias, softplus=softplus))


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=["fp16", "bf16"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("L,N", [(1, 8), (7, 8), (49, 8), (196, 8), (49, 1), (49, 16),
                                 (2049, 8)])
def test_low_precision(L, N, kind, dtype):
    helpers.check_low_precision(Case(batch=2, dim=20, L=L, N=N, B_kind=kind, C_kind=kind,
                                     dtype=dtype), {isa: run_on(isa) for isa in ISAS})


def test_return_last_state_matches_output_and_reference():
    case = Case(batch=2, dim=24, L=100, N=16)
    inputs = make_inputs(case)
    out, last = mvscan.selective_scan(**inputs, delta_softplus=True, return_last_state=True)
    out_only = mvscan.selective_scan(**inputs, delta_softplus=True)
    torch.testing.assert_close(out, out_only, rtol=0, atol=0)
    assert last.shape == (2, 24, 16) and last.dtype == torch.float32
    ref_out, ref_last = mvscan.selective_scan_ref(**inputs, delta_softplus=True,
                                                  return_last_state=True)
    torch.testing.assert_close(last, ref_last, rtol=1e-5, atol=1e-5)


def test_selective_scan_fn_is_the_same_function():
    assert mvscan.selective_scan_fn is mvscan.selective_scan


def test_empty_batch():
    inputs = make_inputs(Case(batch=0, dim=8, L=10, N=4))
    leaves = {k: v.requires_grad_(True) for k, v in inputs.items() if v is not None}
    out, last = mvscan.selective_scan(**inputs, delta_softplus=True, return_last_state=True)
    assert out.shape == (0, 8, 10) and last.shape == (0, 8, 4)
    (out.sum() + last.sum()).backward()
    for name, t in leaves.items():
        assert t.grad is not None and t.grad.shape == t.shape, name
        assert torch.all(t.grad == 0), name


@pytest.mark.parametrize("kind", KINDS)
def test_non_contiguous_equals_contiguous(kind):
    """Transposed and sliced views give bit-identical results to their contiguous copies."""
    case = Case(batch=3, dim=20, L=70, N=8, B_kind=kind, C_kind=kind)
    base = make_inputs(case, seed=3)
    views = {}
    for name, t in base.items():
        if t is None:
            views[name] = None
        elif t.dim() == 3 and name in ("u", "delta", "z"):
            # (batch, L, dim) storage seen as (batch, dim, L), as in_proj produces it
            views[name] = t.transpose(1, 2).contiguous().transpose(1, 2)
        else:
            # every other element of a twice-as-long last dimension
            wide = torch.stack([t, torch.full_like(t, float("nan"))], dim=-1).flatten(-2)
            views[name] = wide[..., ::2]
        if views[name] is not None:
            assert torch.equal(views[name], t)
    assert not views["u"].is_contiguous()
    dout, dlast = cotangents(base)
    got = run_with_grads(mvscan.selective_scan, views, True, dout, dlast)
    want = run_with_grads(mvscan.selective_scan, base, True, dout, dlast)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    for k in want[2]:
        assert torch.equal(got[2][k], want[2][k]), k


def test_isas_agree_closely():
    """Every instruction-set build computes the same function (to float32 rounding)."""
    inputs = make_inputs(Case(batch=2, dim=40, L=150, N=16, B_kind="grouped"))
    dout, dlast = cotangents(inputs)
    results = {}
    for isa in ISAS:
        with cpu_isa(isa):
            results[isa] = run_with_grads(mvscan.selective_scan, inputs, True, dout, dlast)
    first = results[ISAS[0]]
    for isa in ISAS[1:]:
        torch.testing.assert_close(results[isa][0], first[0], rtol=1e-5, atol=1e-5)
        for k in first[2]:
            torch.testing.assert_close(results[isa][2][k], first[2][k], rtol=1e-4, atol=1e-4)


def test_backward_is_deterministic():
    inputs = make_inputs(Case(batch=3, dim=40, L=200, N=8, B_kind="grouped", C_kind="variable"))
    dout, dlast = cotangents(inputs)
    first = run_with_grads(mvscan.selective_scan, inputs, True, dout, dlast)
    for _ in range(3):
        again = run_with_grads(mvscan.selective_scan, inputs, True, dout, dlast)
        for k in first[2]:
            assert torch.equal(again[2][k], first[2][k]), k


def test_large_dstate():
    check_against_oracle(Case(batch=1, dim=9, L=70, N=256), seed=5)


def test_thread_count_changes_only_rounding():
    """The backward's work split follows the thread count; results agree to float rounding."""
    inputs = make_inputs(Case(batch=2, dim=64, L=150, N=8, B_kind="variable", C_kind="grouped"))
    dout, dlast = cotangents(inputs)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 3):
            torch.set_num_threads(n)
            results.append(run_with_grads(mvscan.selective_scan, inputs, True, dout, dlast))
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    for k in results[0][2]:
        torch.testing.assert_close(results[0][2][k], results[1][2][k], rtol=1e-5, atol=1e-6)
