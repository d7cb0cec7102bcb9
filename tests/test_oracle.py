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
@pytest.mark.parametrize("h0", [False, True], ids=["zero_h0", "initial_state"])
def test_oracle_backward_matches_finite_differences(B_kind, C_kind, softplus, optional,
                                                    h0):
    case = Case(batch=2, dim=4, L=6, N=3, B_kind=B_kind, C_kind=C_kind, D=optional, z=optional,
                delta_bias=optional, softplus=softplus, dtype=torch.float64, B_groups=2,
                C_groups=4)
    inputs = {k: (v.numpy().copy() if v is not None else None)
              for k, v in make_inputs(case, seed=11).items()}
    rng = np.random.default_rng(0)
    if h0:
        inputs["initial_state"] = rng.standard_normal((2, 4, 3))
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


@pytest.mark.parametrize("optional", [False, True])
def test_oracle_split_and_steps_equal_one_pass(optional):
    """A prefill carried into a second prefill (initial_state), then token-by-token state_update
    steps from its last state, equal forward() over the whole sequence."""
    case = Case(batch=2, dim=4, L=9, N=3, B_kind="variable", C_kind="variable", D=optional,
                z=optional, delta_bias=optional, softplus=optional, dtype=torch.float64)
    x = {k: (v.numpy().copy() if v is not None else None)
         for k, v in make_inputs(case, seed=5).items()}
    whole = oracle.forward(**x, delta_softplus=optional)

    def part(t0, t1, h0):
        seq = {k: (v[..., t0:t1] if k in ("u", "delta", "z", "B", "C") and v is not None else v)
               for k, v in x.items()}
        return oracle.forward(**seq, delta_softplus=optional, initial_state=h0)

    first = part(0, 4, None)
    second = part(4, 6, first["last_state"])
    outs, state = [first["out"], second["out"]], second["last_state"]
    for t in range(6, 9):
        z_t = x["z"][:, :, t] if x["z"] is not None else None
        out_t, state = oracle.state_update(state, x["u"][:, :, t], x["delta"][:, :, t], x["A"],
                                           x["B"][:, :, t], x["C"][:, :, t], x["D"], z_t,
                                           x["delta_bias"], dt_softplus=optional)
        outs.append(out_t[..., None])
    np.testing.assert_allclose(np.concatenate(outs, axis=-1), whole["out"], rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(state, whole["last_state"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("K,S,circular", [(1, 0, False), (4, 3, False), (4, 6, False),
                                           (5, 8, False), (1, 1, True), (4, 3, True),
                                           (4, 6, True), (5, 8, True)])
def test_oracle_conv_update_steps_equal_causal_conv(K, S, circular):
    """conv_update, from a state of the prefill's last inputs, chunk after chunk (L = 1, 3 and
    more than S), equals conv_forward's causal conv over the whole sequence; the final state
    holds the last S inputs (in circular order when circular)."""
    rng = np.random.default_rng(K * 10 + S)
    batch, dim, T0 = 2, 3, 5
    x = rng.standard_normal((batch, dim, 30))
    w, bias = rng.standard_normal((dim, K)), rng.standard_normal(dim)
    whole = oracle.conv_forward(x, w, bias, pad_left=K - 1, silu=True)
    padded = np.concatenate([np.zeros((batch, dim, S)), x[:, :, :T0]], axis=2)
    state = padded[:, :, padded.shape[2] - S:]  # the last S inputs, oldest first
    seqlens = np.full(batch, T0) if circular else None
    if circular:  # slot (T0 + j) mod S holds step T0 + j - S, as a ring buffer written from 0
        state = state[:, :, [(j - T0) % S for j in range(S)]]
    outs, t = [whole[:, :, :T0]], T0
    for L in (1, 3, 1, S + 2, 1):
        out, state = oracle.conv_update(x[:, :, t] if L == 1 else x[:, :, t:t + L], state, w,
                                        bias, True, seqlens)
        outs.append(out[:, :, None] if L == 1 else out)
        t += L
        if circular:
            seqlens = seqlens + L
    np.testing.assert_allclose(np.concatenate(outs, axis=2), whole[:, :, :t], rtol=1e-12,
                               atol=1e-12)
    last = x[:, :, t - S:t]
    if circular:
        last = last[:, :, [(j - t) % S for j in range(S)]]
    np.testing.assert_allclose(state, last, rtol=0, atol=0)
