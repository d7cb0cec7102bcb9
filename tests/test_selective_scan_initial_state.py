"""mvscan.selective_scan(..., initial_state=h0) on every backend: outputs, last state and every
gradient (dh0 included) against the float64 oracle; a sequence scanned in pieces, each from the
previous piece's last state, equals one pass (values and gradients); argument checks, opcheck and
torch.compile with h0."""

from __future__ import annotations

import pytest
import torch

import backends
import mvscan
from backends import scan_runs, selective_scan, to_backend, to_cpu
from helpers import (FULL_PRECISION, LOW_PRECISION, Case, check_against_oracle,
                     check_low_precision, cotangents, dtype_id, make_inputs, rel_err,
                     run_with_grads)

# Lengths around the 64-step state chunk and the CUDA kernels' 32-step tile: h0 enters the first
# chunk only, and the backward's dh0 leaves the first tile of the first chunk.
CPU_GRID = [(L, N, kind) for L in (1, 7, 64, 130) for N in (1, 8, 16)
            for kind in ("constant", "variable", "grouped")]
# Emulated: a row of 8 lanes, a row of 2 warps (N = 40: several slices), one row per block
# (N = 100), each B/C kind.
EMULATED_GRID = [(1, 8, "variable"), (40, 16, "grouped"), (70, 8, "constant"),
                 (35, 40, "variable"), (20, 100, "grouped")]


def h0_case(L: int, N: int, kind: str, dtype: torch.dtype, **kw) -> Case:
    return Case(batch=2, dim=20, L=L, N=N, B_kind=kind, C_kind=kind, dtype=dtype,
                initial_state=True, **kw)


def grid_id(L, N, kind):
    return f"L{L}-N{N}-{kind}"


@backends.parametrize("L,N,kind,dtype", {
    "cpu": [(*g, d) for g in CPU_GRID for d in FULL_PRECISION],
    "cuda": [(*g, d) for g in CPU_GRID for d in FULL_PRECISION],
    "emulated-cuda": [(*g, torch.float64) for g in EMULATED_GRID]},
    id=lambda L, N, kind, dtype: f"{grid_id(L, N, kind)}-{dtype_id(dtype)}")
def test_matches_oracle(backend, L, N, kind, dtype):
    check_against_oracle(h0_case(L, N, kind, dtype), scan_runs(backend))


@backends.parametrize("dtype", {"cpu": LOW_PRECISION, "cuda": LOW_PRECISION})
def test_low_precision(backend, dtype):
    check_low_precision(h0_case(130, 8, "grouped", dtype), scan_runs(backend))


@backends.parametrize("D,z,bias,softplus", {
    b: [(True, False, False, False), (False, True, True, False), (False, False, True, True)]
    for b in ("cpu", "cuda", "emulated-cuda")})
def test_options(backend, D, z, bias, softplus):
    case = Case(batch=2, dim=12, L=33, N=4, B_kind="variable", C_kind="constant", D=D, z=z,
                delta_bias=bias, softplus=softplus, dtype=torch.float64, initial_state=True)
    check_against_oracle(case, scan_runs(backend))


@backends.over()
def test_initial_state_view_read_in_place(backend):
    """A transposed (batch, dim, N) view gives what its contiguous copy gives."""
    case = h0_case(20, 8, "variable", torch.float64)
    inputs = make_inputs(case)
    inputs["initial_state"] = inputs["initial_state"].transpose(1, 2).contiguous().transpose(1, 2)
    dout, dlast = cotangents(inputs)
    run = backends.scan_with_grads(backend)
    got = run(inputs, True, dout, dlast)
    dense = dict(inputs, initial_state=inputs["initial_state"].contiguous())
    want = run(dense, True, dout, dlast)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    for k in want[2]:
        assert torch.equal(got[2][k], want[2][k]), k


def split_and_carry(fn, inputs, cuts, softplus=True):
    """fn over the pieces [cuts[i], cuts[i+1]) of the sequence, each from the previous piece's
    last state: (out concatenated, last state)."""
    seq = ("u", "delta", "z")
    outs, h = [], inputs.get("initial_state")
    for t0, t1 in zip(cuts[:-1], cuts[1:]):
        piece = {k: (v[..., t0:t1] if v is not None and (k in seq or (k in "BC" and v.dim() > 2))
                     else v) for k, v in inputs.items() if k != "initial_state"}
        out, h = fn(**piece, delta_softplus=softplus, return_last_state=True, initial_state=h)
        outs.append(out)
    return torch.cat(outs, dim=-1), h


@backends.parametrize("initial,cuts", {
    "cpu": [(False, (0, 64, 130)), (True, (0, 1, 50, 51, 130)), (True, (0, 100, 130))],
    "cuda": [(False, (0, 64, 130)), (True, (0, 1, 50, 51, 130)), (True, (0, 100, 130))],
    "emulated-cuda": [(True, (0, 33, 70))]},
    id=lambda initial, cuts: f"{'h0' if initial else 'zeros'}-{'-'.join(map(str, cuts))}")
def test_split_and_carry_equals_one_pass(backend, initial, cuts):
    """Chunked prefill: values and the gradients of every input through the chain of pieces."""
    case = Case(batch=2, dim=12, L=cuts[-1], N=8, B_kind="grouped", C_kind="variable",
                dtype=torch.float64, initial_state=initial)
    inputs = to_backend(backend, make_inputs(case))
    dout, dlast = to_backend(backend, cotangents(inputs))
    fn = selective_scan(backend)

    def with_grads(run):
        leaves = {k: v.detach().clone().requires_grad_(True)
                  for k, v in inputs.items() if v is not None}
        out, last = run(leaves)
        grads = torch.autograd.grad([out, last], list(leaves.values()), [dout, dlast])
        return to_cpu((out.detach(), last.detach(), dict(zip(leaves, grads))))

    whole = with_grads(lambda lv: fn(**lv, delta_softplus=True, return_last_state=True))
    pieces = with_grads(lambda lv: split_and_carry(fn, lv, cuts))
    assert rel_err(pieces[0], whole[0]) <= 1e-12
    assert rel_err(pieces[1], whole[1]) <= 1e-12
    for k in whole[2]:
        assert rel_err(pieces[2][k], whole[2][k]) <= 1e-12, k


@backends.over("cpu", "cuda")
def test_zero_initial_state_equals_none(backend):
    """h0 = 0 gives the results of no h0, bit for bit, and a gradient for it."""
    case = h0_case(70, 8, "variable", torch.float32)
    inputs = make_inputs(case)
    inputs["initial_state"] = torch.zeros_like(inputs["initial_state"])
    dout, dlast = cotangents(inputs)
    run = backends.scan_with_grads(backend)
    got = run(inputs, True, dout, dlast)
    want = run({k: v for k, v in inputs.items() if k != "initial_state"}, True, dout, dlast)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    for k in want[2]:
        assert torch.equal(got[2][k], want[2][k]), k
    assert got[2]["initial_state"].abs().sum() > 0


@backends.over("cpu", "cuda")
@pytest.mark.parametrize("bad,match", [
    (lambda h: h[:, :, :4], r"initial_state must have shape \(batch, dim, N\)"),
    (lambda h: h[0], r"initial_state must have shape"),
    (lambda h: h.double(), r"initial_state must be Float"),
    (lambda h: h.half(), r"initial_state must be Float"),
], ids=["wrong-N", "2d", "float64", "float16"])
def test_bad_initial_state(backend, bad, match):
    inputs = to_backend(backend, make_inputs(h0_case(10, 8, "variable", torch.float32)))
    h0 = inputs.pop("initial_state")
    error = TypeError if "must be Float" in match else ValueError
    with pytest.raises(error, match=match):
        mvscan.selective_scan(**inputs, initial_state=bad(h0))


def test_initial_state_on_other_device_is_named():
    inputs = make_inputs(h0_case(10, 8, "variable", torch.float32))
    h0 = inputs.pop("initial_state").to("meta")
    with pytest.raises(ValueError, match="initial_state"):
        mvscan.selective_scan(**inputs, initial_state=h0)


@backends.over("cpu", "cuda")
def test_opcheck(backend):
    inputs = to_backend(backend, make_inputs(h0_case(70, 4, "grouped", torch.float32)))
    args = [inputs[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
    h0 = inputs["initial_state"]
    torch.library.opcheck(torch.ops.mvscan.selective_scan_fwd.default, args + [True, h0])
    out, states = torch.ops.mvscan.selective_scan_fwd(*args, True, h0)
    torch.library.opcheck(torch.ops.mvscan.selective_scan_bwd.default,
                          [torch.randn_like(out), torch.randn_like(states)] + args
                          + [states, True, h0])


@backends.over("cpu", "cuda")
def test_compile_fullgraph(backend):
    inputs = to_backend(backend, make_inputs(h0_case(100, 8, "variable", torch.float32)))
    dout, dlast = to_backend(backend, cotangents(inputs))

    def loss_fn(**kw):
        out, last = mvscan.selective_scan(**kw, delta_softplus=True, return_last_state=True)
        return (out * dout).sum() + (last * dlast).sum()

    torch._dynamo.reset()
    compiled = torch.compile(loss_fn, fullgraph=True)
    leaves = [{k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
              for _ in range(2)]
    got = torch.autograd.grad(compiled(**leaves[0]), list(leaves[0].values()))
    want = torch.autograd.grad(loss_fn(**leaves[1]), list(leaves[1].values()))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_reference_matches_oracle():
    """The pure-PyTorch fallback takes h0 too."""
    case = h0_case(30, 4, "grouped", torch.float64)
    check_against_oracle(case, {"reference": lambda i, s, do, dl: run_with_grads(
        mvscan.selective_scan_ref, i, s, do, dl)})
