"""mvscan.mamba_inner_fn: values and every gradient against the pure-PyTorch composition
(mamba_inner_ref, autograd; its pieces are checked against the float64 oracle elsewhere) for
every option (B/C projected or given, projection biases, RMS norms, D, delta_bias, out_proj bias,
checkpoint levels, xz layouts), the saved memory against the unfused composition, argument
checks and torch.compile."""

from __future__ import annotations

import itertools

import pytest
import torch

import backends
import mvscan
from backends import to_backend, to_cpu
from helpers import rel_err
from mvscan.mamba_inner import mamba_inner_unfused
from mvscan.memory import saved_tensor_bytes

D_MODEL, D_INNER, N, RANK, K = 12, 24, 8, 3, 4


def make_inputs(batch=2, L=70, dtype=torch.float64, seed=0, B_given=False, C_given=False,
                proj_bias=False, rms=False, D=True, delta_bias=True, out_bias=True,
                channels_last=True):
    g = torch.Generator().manual_seed(seed)
    wt = torch.float64 if dtype == torch.float64 else torch.float32

    def rand(*shape, scale=1.0, dtype=dtype):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    # in_proj's (batch, L, 2 d_inner) output seen as (batch, 2 d_inner, L), or a contiguous copy.
    xz = rand(batch, L, 2 * D_INNER).transpose(1, 2)
    return dict(
        xz=xz if channels_last else xz.contiguous(),
        conv1d_weight=rand(D_INNER, 1, K, scale=0.5),
        conv1d_bias=rand(D_INNER, scale=0.2),
        x_proj_weight=rand(RANK + 2 * N, D_INNER, scale=D_INNER ** -0.5),
        delta_proj_weight=rand(D_INNER, RANK, scale=RANK ** -0.5),
        out_proj_weight=rand(D_MODEL, D_INNER, scale=D_INNER ** -0.5),
        out_proj_bias=rand(D_MODEL) if out_bias else None,
        A=(-(torch.rand(D_INNER, N, generator=g, dtype=torch.float64) * 2 + 0.1)).to(wt),
        B=rand(D_INNER, N, dtype=wt) if B_given else None,
        C=rand(D_INNER, N, dtype=wt) if C_given else None,
        D=rand(D_INNER, dtype=wt) if D else None,
        delta_bias=rand(D_INNER, scale=0.3, dtype=wt) if delta_bias else None,
        B_proj_bias=rand(N, scale=0.2) if proj_bias else None,
        C_proj_bias=rand(N, scale=0.2) if proj_bias else None,
        b_rms_weight=rand(N, scale=0.2) + 1 if rms else None,
        c_rms_weight=rand(N, scale=0.2) + 1 if rms else None,
        dt_rms_weight=rand(D_INNER, scale=0.2) + 1 if rms else None,
    )


def run(fn, inputs, dout, **kwargs):
    """fn's output and its gradients w.r.t. every tensor input present, by name."""
    leaves = {k: (v.detach().clone().requires_grad_(True) if v is not None else None)
              for k, v in inputs.items()}
    out = fn(**leaves, **kwargs)
    present = [k for k, v in leaves.items() if v is not None]
    grads = torch.autograd.grad(out, [leaves[k] for k in present], dout)
    return out.detach(), dict(zip(present, grads))


OPTIONS = {
    "mamba": dict(),
    "given-BC": dict(B_given=True, C_given=True),
    "given-B": dict(B_given=True),
    "falcon-rms": dict(rms=True, proj_bias=True),
    "bare": dict(D=False, delta_bias=False, out_bias=False, channels_last=False),
}


@backends.parametrize("option,checkpoint_lvl", {
    **{b: list(itertools.product(OPTIONS, (0, 1))) for b in ("cpu", "cuda")},
    "triton": [("mamba", 1), ("given-B", 0), ("falcon-rms", 1), ("bare", 0)]},
    id=lambda o, c: f"{o}-lvl{c}")
def test_matches_reference(backend, option, checkpoint_lvl):
    inputs = make_inputs(**OPTIONS[option])
    dout = torch.randn(2, 70, D_MODEL, generator=torch.Generator().manual_seed(1),
                       dtype=torch.float64)
    with backends.using(backend, None):
        got = to_cpu(run(mvscan.mamba_inner_fn, to_backend(backend, inputs),
                         to_backend(backend, dout), checkpoint_lvl=checkpoint_lvl))
    want = run(mvscan.mamba_inner_ref, inputs, dout)
    assert rel_err(got[0], want[0]) <= 1e-10
    assert got[1].keys() == want[1].keys()
    for name, g in got[1].items():
        assert g.shape == want[1][name].shape and g.dtype == want[1][name].dtype, name
        assert rel_err(g, want[1][name]) <= 1e-10, name


@backends.over("cpu", "cuda")
def test_float32(backend):
    inputs = make_inputs(dtype=torch.float32, rms=True, proj_bias=True)
    dout = torch.randn(2, 70, D_MODEL, generator=torch.Generator().manual_seed(1))
    got = to_cpu(run(mvscan.mamba_inner_fn, to_backend(backend, inputs),
                     to_backend(backend, dout)))
    ref_inputs = {k: (v.double() if v is not None else None) for k, v in inputs.items()}
    want = run(mvscan.mamba_inner_ref, ref_inputs, dout.double())
    assert rel_err(got[0], want[0]) <= 1e-5
    for name, g in got[1].items():
        assert g.dtype == inputs[name].dtype, name
        assert rel_err(g, want[1][name]) <= 1e-4, name


def test_saves_less_than_unfused():
    """Level 1 keeps x_dbl, the scan's chunk states and the gated output; the unfused graph also
    keeps the conv output, delta and copies of B and C."""
    inputs = make_inputs(batch=2, L=512, dtype=torch.float32)
    fused = saved_tensor_bytes(mvscan.mamba_inner_fn, inputs)
    level0 = saved_tensor_bytes(lambda **kw: mvscan.mamba_inner_fn(**kw, checkpoint_lvl=0),
                                inputs)
    separate = saved_tensor_bytes(mamba_inner_unfused, inputs)
    assert fused < level0 < separate * 1.05, (fused, level0, separate)
    assert fused <= 0.6 * separate, (fused, separate)


@pytest.mark.parametrize("option", list(OPTIONS))
def test_unfused_composition_agrees(option):
    """The composition of mvscan's separate functions (the memory baseline) gives the same."""
    inputs = make_inputs(**OPTIONS[option])
    dout = torch.randn(2, 70, D_MODEL, generator=torch.Generator().manual_seed(2),
                       dtype=torch.float64)
    got = run(mvscan.mamba_inner_fn, inputs, dout)
    want = run(mamba_inner_unfused, inputs, dout)
    assert rel_err(got[0], want[0]) <= 1e-12
    for name, g in want[1].items():
        assert rel_err(got[1][name], g) <= 1e-10, name


def test_autocast_casts_weights():
    inputs = make_inputs(dtype=torch.float32)
    inputs["xz"] = inputs["xz"].to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mvscan.mamba_inner_fn(**inputs)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    want = mvscan.mamba_inner_ref(**{k: (v.double() if v is not None else None)
                                     for k, v in inputs.items()})
    assert rel_err(out, want) <= 3e-2


@pytest.mark.parametrize("change,error,match", [
    (dict(checkpoint_lvl=2), ValueError, "checkpoint_lvl must be 0 or 1"),
    (dict(xz=torch.zeros(2, 5, 10, dtype=torch.float64)), ValueError,
     r"xz must be a \(batch, 2 \* d_inner, L\)"),
    (dict(x_proj_weight=torch.zeros(RANK + N, D_INNER, dtype=torch.float64)), ValueError,
     r"x_proj_weight must have shape \(R \+ 2N, d_inner\)"),
    (dict(A=torch.zeros(D_INNER, N, device="meta")), ValueError, "A is on meta"),
], ids=["checkpoint", "xz-odd", "x-proj", "device"])
def test_bad_input(change, error, match):
    inputs = make_inputs(L=10)
    checkpoint_lvl = change.pop("checkpoint_lvl", 1)
    inputs.update(change)
    with pytest.raises(error, match=match):
        mvscan.mamba_inner_fn(**inputs, checkpoint_lvl=checkpoint_lvl)


@backends.over("cpu", "cuda")
def test_compile_fullgraph(backend):
    inputs = to_backend(backend, make_inputs(dtype=torch.float32, rms=True))
    names = [k for k, v in inputs.items() if v is not None]

    def loss(*tensors):
        return mvscan.mamba_inner_fn(**dict(zip(names, tensors))).square().sum()

    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True)
    leaves = [[inputs[k].detach().clone().requires_grad_(True) for k in names] for _ in range(2)]
    got = torch.autograd.grad(compiled(*leaves[0]), leaves[0])
    want = torch.autograd.grad(loss(*leaves[1]), leaves[1])
    for name, g, w in zip(names, got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5, msg=name)
