"""The pure-PyTorch reference (the fallback and the benchmarks' baseline) against the oracle,
and the fallback path itself."""

from __future__ import annotations

import pytest
import torch

import mvscan
import mvscan._extension
import mvscan.ops
from helpers import (REL_TOL, Case, all_errors, cotangents, make_inputs, oracle_results,
                     run_with_grads)


@pytest.mark.parametrize("B_kind,C_kind", [("constant", "variable"), ("grouped", "constant"),
                                           ("variable", "grouped")])
@pytest.mark.parametrize("L", [1, 49, 300])
def test_reference_matches_oracle(B_kind, C_kind, L):
    case = Case(batch=2, dim=12, L=L, N=6, B_kind=B_kind, C_kind=C_kind, dtype=torch.float64,
                B_groups=2, C_groups=3)
    inputs = make_inputs(case)
    dout, dlast = cotangents(inputs)
    ref = oracle_results(inputs, True, dout, dlast)
    got = run_with_grads(mvscan.selective_scan_ref, inputs, True, dout, dlast)
    for name, (rel, _) in all_errors(got, ref).items():
        assert rel <= REL_TOL[torch.float64], f"{name}: {rel:.2e}"


def test_fallback_runs_reference_with_a_warning(monkeypatch):
    """Where no compiled kernel exists for a device, the reference runs, and says so once."""
    inputs = make_inputs(Case(batch=2, dim=8, L=20, N=4))
    monkeypatch.setitem(mvscan.backend.COMPILED_DEVICES, "selective_scan", frozenset())
    monkeypatch.setattr(mvscan._extension, "_warned_fallback", set())
    with pytest.warns(RuntimeWarning, match="running the pure-PyTorch reference"):
        out = mvscan.selective_scan(**inputs, delta_softplus=True)
    torch.testing.assert_close(out, mvscan.selective_scan_ref(**inputs, delta_softplus=True))
