"""The oracle's backward against central finite differences of its own forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import oracle
from helpers import Case, make_inputs


@pytest.mark.parametrize("B_kind,C_kind", [("constant", "variable"), ("variable", "grouped"),
                                           ("grouped", "constant")])
@pytest.mark.parametrize("softplus", [False, True])
@pytest.mark.parametrize("optional", [False, True])
def test_oracle_backward_matches_finite_differences(B_kind, C_kind, softplus, optional):
    case = Case(batch=2, dim=4, L=6, N=3, B_kind=B_kind, C_kind=C_kind, D=optional, z=optional,
                delta_bias=optional, softplus=softplus, dtype=torch.float64, B_groups=2,
                C_groups=4)
    inputs = {k: (v.numpy().copy() if v is not None else None)
              for k, v in make_inputs(case, seed=11).items()}
    rng = np.random.default_rng(0)
    dout = rng.standard_normal(inputs["u"].shape)
    dlast = rng.standard_normal((2, 4, 3))

    def loss(x):
        fw = oracle.forward(**x, delta_softplus=softplus)
        return (fw["out"] * dout).sum() + (fw["last_state"] * dlast).sum()

    grads = oracle.backward(dout, dlast, **inputs, delta_softplus=softplus)
    eps = 1e-6
    for name, value in inputs.items():
        if value is None:
            assert grads[name] is None
            continue
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus = {k: (v.copy() if v is not None else None) for k, v in inputs.items()}
            minus = {k: (v.copy() if v is not None else None) for k, v in inputs.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            numeric[idx] = (loss(plus) - loss(minus)) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-7, err_msg=name)
