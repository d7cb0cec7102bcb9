"""mvscan.selective_state_update (one decode step of the scan) on every backend (tests/backends.py:
"cpu", "cuda", "emulated-cuda") against the float64 oracle (oracle.selective_state_update): every
option, the Mamba-1 (3-d) and Mamba-2 (4-d, heads and groups) layouts, Mamba-2's stride-0
broadcast views, non-contiguous views, rows picked by state_batch_indices with padding rows,
every dtype (state dtype included), the in-place update, bad inputs, opcheck and torch.compile,
and a prefill through mvscan.selective_scan followed by steps equal to the whole scan. Tests that
make sense on one backend only come last."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
import torch

import backends
import mvscan
import mvscan._extension
import mvscan.decode
import oracle
from backends import DEVICE_BACKENDS, to_backend, using, variants
from helpers import FULL_PRECISION, LOW_PRECISION, REL_TOL, dtype_id, rel_err

ERRORS = (ValueError, TypeError)
OPTIONS = ("D", "z", "dt_bias", "softplus")


@dataclass(frozen=True)
class Layout:
    heads: int | None  # None: Mamba-1's 3-d layout (state (batch, dim, N))
    B_groups: int = 1
    C_groups: int = 1
    broadcast: bool = False  # Mamba-2's stride-0 views: A from (heads,), dt from (batch, heads)
    strided: bool = False  # every tensor a non-contiguous view of another buffer


LAYOUTS = {
    "3d": Layout(None),
    "3d-strided": Layout(None, strided=True),
    "4d-groups": Layout(4, B_groups=2, C_groups=4),
    "4d-mamba2": Layout(4, broadcast=True),
    "4d-strided": Layout(2, B_groups=2, C_groups=1, broadcast=True, strided=True),
}


@dataclass
class Step:
    """One decode step's arguments: `args` on the backend's device as the op receives them
    (views included), `dense` the same values as contiguous CPU tensors for the oracle."""
    args: dict
    dense: dict
    softplus: bool
    indices: torch.Tensor | None  # CPU int32
    strided_state: bool  # state is every_other's view: its buffer's other half must stay 7.0


def every_other(t: torch.Tensor) -> torch.Tensor:
    """t's values as a view of every other element of a buffer whose other half holds 7.0 (so a
    stray write shows)."""
    buf = torch.full(t.shape[:-1] + (2 * t.shape[-1],), 7.0, dtype=t.dtype, device=t.device)
    buf[..., ::2] = t
    return buf[..., ::2]


def transposed(t: torch.Tensor) -> torch.Tensor:
    """t's values stored with the first dimension fastest."""
    return t.transpose(0, -1).contiguous().transpose(0, -1)


def make_step(layout: Layout, backend: str, batch: int = 2, dim: int = 5, N: int = 8,
              dtype: torch.dtype = torch.float64, state_dtype: torch.dtype | None = None,
              param_dtype: torch.dtype | None = None, options=OPTIONS,
              state_rows: int | None = None, padding: bool = False, seed: int = 0) -> Step:
    """Random inputs drawn in float64 and rounded to their dtypes. state_rows > batch picks rows
    through state_batch_indices (a random distinct choice; the first one a padding row when
    `padding`). Step sizes stay positive and A negative, as in trained models."""
    g = torch.Generator().manual_seed(seed)
    state_dtype = state_dtype or (torch.float64 if dtype == torch.float64 else torch.float32)
    param_dtype = param_dtype or (torch.float64 if dtype == torch.float64 else torch.float32)
    heads = layout.heads or 1
    softplus = "softplus" in options

    def rand(*shape, scale=1.0, shift=0.0, dt=dtype):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift).to(dt)

    def uniform(*shape, lo, hi, dt=dtype):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * (hi - lo) + lo).to(dt)

    rows = state_rows or batch
    per_head = (heads, dim) if not layout.broadcast else (heads, 1)
    dense = dict(
        state=rand(rows, heads, dim, N, scale=0.5, dt=state_dtype),
        x=rand(batch, heads, dim),
        dt=(rand(batch, *per_head, scale=0.5, shift=-1.0) if softplus
            else uniform(batch, *per_head, lo=0.02, hi=0.4)),
        A=uniform(*per_head, N if not layout.broadcast else 1, lo=-2.1, hi=-0.1, dt=param_dtype),
        B=rand(batch, layout.B_groups, N),
        C=rand(batch, layout.C_groups, N),
        D=rand(*per_head, dt=param_dtype) if "D" in options else None,
        z=rand(batch, heads, dim) if "z" in options else None,
        dt_bias=((rand(*per_head, scale=0.3, dt=param_dtype) if softplus
                  else uniform(*per_head, lo=0.0, hi=0.05, dt=param_dtype))
                 if "dt_bias" in options else None),
    )
    # Copies even on the CPU, where to_backend would hand the same tensors: the step mutates
    # args["state"], and the oracle reads dense["state"] afterwards.
    args = to_backend(backend, {k: (v.clone() if v is not None else None)
                                for k, v in dense.items()})
    if layout.broadcast:  # Mamba-2 expands per-head values over dim (and N) with stride 0
        for k in ("dt", "A", "D", "dt_bias"):
            if args[k] is not None:
                shape = (batch, heads, dim) if k == "dt" else (heads, dim, N) if k == "A" else (
                    heads, dim)
                args[k] = args[k].expand(shape)
        dense = {k: (v.expand(args[k].shape).contiguous() if v is not None else None)
                 for k, v in dense.items()}
    if layout.strided:  # stride-0 broadcasts stay as they are
        for k, view in (("state", every_other), ("dt", every_other), ("D", every_other),
                        ("dt_bias", every_other), ("x", transposed), ("z", transposed),
                        ("A", transposed), ("B", transposed), ("C", transposed)):
            if args[k] is not None and 0 not in args[k].stride():
                args[k] = view(args[k])
    if layout.heads is None:  # the 3-d layout: drop the heads (and groups) axis
        for name, d in (("state", 1), ("x", 1), ("dt", 1), ("z", 1), ("B", 1), ("C", 1),
                        ("A", 0), ("D", 0), ("dt_bias", 0)):
            for t in (args, dense):
                if t[name] is not None:
                    t[name] = t[name].select(d, 0)
    indices = None
    if state_rows is not None:
        indices = torch.randperm(state_rows, generator=g)[:batch].to(torch.int32)
        if padding:
            indices[0] = -1
    return Step(args, dense, softplus, indices, layout.strided)


def run_step(backend: str, step: Step, **extra):
    """(out, the state after the step, the state before it) on the CPU. Checks that the state
    was updated in place, and nothing else in its buffer was written. extra: further keyword
    arguments of the backend's op (the emulation's max_blocks)."""
    state = step.args["state"]
    before = state.cpu().clone()
    ptr = state.data_ptr()
    idx = to_backend(backend, step.indices)
    out = backends.selective_state_update(backend)(
        **step.args, dt_softplus=step.softplus, state_batch_indices=idx, **extra)
    assert state.data_ptr() == ptr, "the state must be updated in place"
    if step.strided_state:
        assert torch.all(state._base[..., 1::2] == 7.0), "wrote outside the state view"
    return out.cpu(), state.cpu(), before


def oracle_step(step: Step):
    np_args = {k: (v.double().numpy() if v is not None else None) for k, v in step.dense.items()}
    out, new = oracle.selective_state_update(
        **np_args, dt_softplus=step.softplus,
        state_batch_indices=None if step.indices is None else step.indices.numpy())
    return torch.from_numpy(out), torch.from_numpy(new)


def check_step(backend: str, step: Step, tol_out: float, tol_state: float, what: str = "",
               **extra):
    out, state, before = run_step(backend, step, **extra)
    ref_out, ref_state = oracle_step(step)
    x = step.args["x"]
    assert out.shape == x.shape and out.dtype == x.dtype, what
    assert rel_err(out, ref_out) <= tol_out, f"{what}: out {rel_err(out, ref_out):.2e}"
    assert rel_err(state, ref_state) <= tol_state, f"{what}: state {rel_err(state, ref_state):.2e}"
    if step.indices is not None:
        picked = step.indices[step.indices >= 0].long()
        kept = torch.ones(state.shape[0], dtype=torch.bool)
        kept[picked] = False
        assert torch.equal(state[kept], before[kept]), f"{what}: rows not picked changed"
        assert torch.all(out[step.indices < 0] == 0), f"{what}: padding rows give 0"
    return out, state


# --- against the oracle ------------------------------------------------------------------------

def option_sets():
    """Every subset of OPTIONS."""
    return [tuple(o for o, on in zip(OPTIONS, bits) if on)
            for bits in itertools.product([False, True], repeat=len(OPTIONS))]


@backends.parametrize("layout,N,indices", {
    "cpu": [(lay, N, idx) for lay in LAYOUTS for N in (1, 5, 16, 40, 256)
            for idx in ("none", "gather")],
    "cuda": [(lay, N, idx) for lay in LAYOUTS for N in (1, 5, 16, 40, 256)
             for idx in ("none", "gather")],
    "emulated-cuda": [(lay, N, idx) for lay in LAYOUTS for N in (1, 16, 40, 256)
                      for idx in ("none", "gather")]},
    id=lambda lay, N, idx: f"{lay}-N{N}-{idx}")
def test_float64_against_oracle(backend, layout, N, indices):
    """Exact (to float64 rounding) for every option set, the CPU cycling through its
    instruction-set builds; with indices, a state of more rows than the batch, one padding row
    and every other row left bit-identical."""
    for i, (options, variant) in enumerate(zip(option_sets(),
                                               itertools.cycle(variants(backend)))):
        step = make_step(LAYOUTS[layout], backend, batch=3, dim=5, N=N, options=options,
                         state_rows=6 if indices == "gather" else None,
                         padding=indices == "gather", seed=i + 10 * N)
        with using(backend, variant):
            check_step(backend, step, REL_TOL[torch.float64], REL_TOL[torch.float64],
                       f"{variant} {layout} {options}")


@backends.parametrize("dtype", {"cpu": FULL_PRECISION, "cuda": FULL_PRECISION,
                                "emulated-cuda": FULL_PRECISION}, id=dtype_id)
def test_full_precision_and_param_dtypes(backend, dtype):
    """float32 (and float64) within its tolerance, the state in x's dtype; A, D, dt_bias given in
    x's dtype or in float32."""
    tol = REL_TOL[dtype]
    for layout, param_dtype in itertools.product(("3d", "4d-mamba2"), (dtype, torch.float32)):
        for variant in variants(backend):
            step = make_step(LAYOUTS[layout], backend, batch=2, dim=70, N=16, dtype=dtype,
                             state_dtype=dtype, param_dtype=param_dtype, seed=3)
            with using(backend, variant):
                check_step(backend, step, tol, tol, f"{variant} {layout} params {param_dtype}")


def rounding_error(ref: torch.Tensor, dtype: torch.dtype) -> float:
    return rel_err(ref.to(dtype), ref)


@backends.parametrize("dtype,state_dtype", {
    "cpu": [(d, s) for d in FULL_PRECISION + LOW_PRECISION for s in (torch.float32,) +
            LOW_PRECISION] + [(torch.float64, torch.float64)],
    "cuda": [(d, s) for d in FULL_PRECISION + LOW_PRECISION for s in (torch.float32,) +
             LOW_PRECISION] + [(torch.float64, torch.float64)],
    "emulated-cuda": [(d, s) for d in FULL_PRECISION + LOW_PRECISION
                      for s in (torch.float32,) + LOW_PRECISION]},
    id=lambda d, s: f"x_{dtype_id(d)}-state_{dtype_id(s)}")
def test_dtypes(backend, dtype, state_dtype):
    """Each (x dtype, state dtype) pair: out within twice the rounding of the exact result to x's
    dtype, the state within twice its rounding to the state's dtype. out is computed from the new
    state before that rounding: with float32 x and a float16/bfloat16 state it stays within
    float32's tolerance (mamba_ssm's reference, which rounds first, would not)."""
    for variant in variants(backend):
        step = make_step(LAYOUTS["4d-groups"], backend, batch=3, dim=8, N=16, dtype=dtype,
                         state_dtype=state_dtype, seed=7)
        ref_out, ref_state = oracle_step(step)
        with using(backend, variant):
            out, state, _ = run_step(backend, step)
        assert out.dtype == dtype and state.dtype == state_dtype
        fp32_tol = REL_TOL[torch.float32]
        out_tol = 2 * rounding_error(ref_out, dtype) + fp32_tol
        state_tol = 2 * rounding_error(ref_state, state_dtype) + fp32_tol
        if dtype == torch.float64 and state_dtype == torch.float64:
            out_tol = state_tol = REL_TOL[torch.float64]
        assert rel_err(out, ref_out) <= out_tol, f"{variant} out {rel_err(out, ref_out):.2e}"
        assert rel_err(state, ref_state) <= state_tol, \
            f"{variant} state {rel_err(state, ref_state):.2e}"


# --- the whole sequence ------------------------------------------------------------------------

@backends.parametrize("dtype,N", {"cpu": [(torch.float64, 8), (torch.float32, 16)],
                                  "cuda": [(torch.float64, 8), (torch.float32, 16)],
                                  "emulated-cuda": [(torch.float64, 8)]},
                      id=lambda dt, N: f"{dtype_id(dt)}-N{N}")
def test_prefill_then_steps_equal_whole_scan(backend, dtype, N):
    """mvscan.selective_scan over the first steps (return_last_state), then one
    selective_state_update per remaining step from that state, gives the whole sequence's scan
    output and last state."""
    g = torch.Generator().manual_seed(1)
    batch, dim, L, T0 = 2, 6, 12, 7
    wt = torch.float64 if dtype == torch.float64 else torch.float32

    def rand(*shape, scale=1.0, shift=0.0, dt=dtype):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift).to(dt)

    seq = dict(u=rand(batch, dim, L), delta=rand(batch, dim, L, scale=0.5, shift=-1.0),
               A=(-(torch.rand(dim, N, generator=g, dtype=torch.float64) * 2 + 0.1)).to(wt),
               B=rand(batch, N, L), C=rand(batch, N, L), D=rand(dim, dt=wt),
               z=rand(batch, dim, L), delta_bias=rand(dim, scale=0.3, dt=wt))
    dev = to_backend(backend, seq)
    scan = backends.selective_scan(backend)
    whole, whole_last = scan(**dev, delta_softplus=True, return_last_state=True)
    prefix = {k: (v[..., :T0] if k in ("u", "delta", "B", "C", "z") else v)
              for k, v in dev.items()}
    out_prefix, state = scan(**prefix, delta_softplus=True, return_last_state=True)
    outs, state = [out_prefix], state.clone()
    update = backends.selective_state_update(backend)
    for t in range(T0, L):
        outs.append(update(state, dev["u"][..., t], dev["delta"][..., t], dev["A"],
                           dev["B"][..., t], dev["C"][..., t], dev["D"], dev["z"][..., t],
                           dev["delta_bias"], dt_softplus=True)[..., None])
    tol = REL_TOL[dtype]
    assert rel_err(torch.cat(outs, dim=-1).cpu(), whole.cpu()) <= tol
    assert rel_err(state.cpu(), whole_last.cpu()) <= tol


# --- layouts, edge cases -----------------------------------------------------------------------

@backends.over()
def test_empty_batch(backend):
    step = make_step(LAYOUTS["4d-groups"], backend, batch=0, dim=4, N=8)
    out = backends.selective_state_update(backend)(**step.args, dt_softplus=True)
    assert out.shape == (0, 4, 4)


@backends.over()
def test_state_batch_stride_past_2_to_the_31(backend):
    """A state row 2^31 + 64 elements into a lazily allocated float16 buffer (only the touched
    pages are backed), picked by state_batch_indices: 64-bit offsets, same result as a copy."""
    step = make_step(LAYOUTS["3d"], backend, batch=1, dim=4, N=8, dtype=torch.float16,
                     state_dtype=torch.float16, state_rows=2, seed=2)
    stride = 2**31 + 64
    try:
        buf = torch.empty(stride + 32, dtype=torch.float16, device=backends.device(backend))
    except RuntimeError as exc:  # no room for the address space: nothing to test here
        pytest.skip(f"cannot reserve a 4.3 GB buffer: {exc}")
    far = buf.as_strided((2, 4, 8), (stride, 8, 1))
    far.copy_(step.args["state"])
    near = step.args["state"].clone()
    idx = to_backend(backend, torch.tensor([1], dtype=torch.int32))
    args = {k: v for k, v in step.args.items() if k != "state"}
    fn = backends.selective_state_update(backend)
    out_far = fn(far, **args, dt_softplus=True, state_batch_indices=idx)
    out_near = fn(near, **args, dt_softplus=True, state_batch_indices=idx)
    assert torch.equal(out_far.cpu(), out_near.cpu())
    assert torch.equal(far.cpu(), near.cpu())


@backends.over(*DEVICE_BACKENDS)
def test_device_index_past_the_state_gives_nan_and_touches_nothing(backend):
    """The CUDA kernel cannot raise on an index >= state.shape[0] without a host sync: that row's
    out is NaN and no state row changes; the other rows are computed as usual."""
    step = make_step(LAYOUTS["4d-groups"], backend, batch=3, dim=4, N=16, state_rows=4)
    state = step.args["state"]
    before = state.cpu().clone()
    idx = torch.tensor([2, 9, -1], dtype=torch.int32)
    out = backends.selective_state_update(backend)(
        **step.args, dt_softplus=True, state_batch_indices=to_backend(backend, idx)).cpu()
    assert torch.isnan(out[1]).all() and torch.all(out[2] == 0) and torch.isfinite(out[0]).all()
    after = state.cpu()
    assert torch.equal(after[[0, 1, 3]], before[[0, 1, 3]]) and not torch.equal(after[2], before[2])


def test_cpu_rejects_an_index_past_the_state():
    step = make_step(LAYOUTS["3d"], "cpu", batch=2, dim=4, N=8, state_rows=4)
    before = step.args["state"].clone()
    with pytest.raises(ValueError, match=r"state_batch_indices\[1\] = 4 is out of range for "
                                         r"state.shape\[0\] = 4"):
        mvscan.selective_state_update(**step.args, state_batch_indices=torch.tensor(
            [0, 4], dtype=torch.int32))
    assert torch.equal(step.args["state"], before)


@pytest.mark.parametrize("indices,pattern", [
    ([2, -1, 2], r"state_batch_indices\[0\] = state_batch_indices\[2\] = 2: two batch elements "
                 r"would update the same state row"),
    ([3, 0, 0], r"state_batch_indices\[1\] = state_batch_indices\[2\] = 0"),
], ids=["apart", "adjacent"])
def test_cpu_rejects_duplicate_indices(indices, pattern):
    """Two batch elements picking one state row would race (parallel_for units, CUDA rows):
    the CPU op, which reads the indices on the host anyway, refuses them before touching the
    state."""
    step = make_step(LAYOUTS["4d-groups"], "cpu", batch=3, dim=4, N=8, state_rows=4)
    before = step.args["state"].clone()
    idx = torch.tensor(indices, dtype=torch.int32)
    with pytest.raises(ValueError, match=pattern):
        mvscan.selective_state_update(**step.args, state_batch_indices=idx)
    with pytest.raises(ValueError, match=pattern):  # the operator itself, no Python wrapper
        a = step.args
        torch.ops.mvscan.selective_state_update(a["state"], a["x"], a["dt"], a["A"], a["B"],
                                                a["C"], a["D"], a["z"], a["dt_bias"], True, idx)
    assert torch.equal(step.args["state"], before)
    with pytest.raises(ValueError, match="must not repeat a non-negative index"):
        mvscan.selective_state_update_ref(**step.args, state_batch_indices=idx)
    assert torch.equal(step.args["state"], before)


@backends.over()
def test_repeated_padding_indices_are_fine(backend):
    """Only real rows must be distinct: several padding rows (-1) give 0 and touch nothing."""
    step = make_step(LAYOUTS["4d-groups"], backend, batch=4, dim=5, N=16, state_rows=6)
    step.indices = torch.tensor([-1, 4, -1, 1], dtype=torch.int32)
    check_step(backend, step, REL_TOL[torch.float64], REL_TOL[torch.float64])


def overlapping_state_cases(backend: str):
    """(name, args of a valid step with `state` or an input replaced, error pattern): a state
    whose rows share memory, and a state sharing memory with an input (both dense, so PyTorch
    can tell)."""
    step = make_step(LAYOUTS["4d-groups"], backend, batch=3, dim=4, N=8, dtype=torch.float32)
    a = step.args
    state, x = a["state"], a["x"]
    flat = state.view(-1)
    return [
        ("expanded state", dict(a, state=state[:1].expand(state.shape)),
         r"state has elements that share memory"),
        ("x inside state", dict(a, x=flat[5:5 + x.numel()].view(x.shape)),
         r"state and x overlap in memory"),
        ("B inside state", dict(a, B=flat[:a["B"].numel()].view(a["B"].shape)),
         r"state and B overlap in memory"),
        ("dt_bias inside state", dict(a, dt_bias=flat[-a["dt_bias"].numel():].view(4, 4)),
         r"state and dt_bias overlap in memory"),
    ]


@backends.over()
def test_overlapping_state_is_rejected(backend):
    """The state is updated in place: rows writing one memory location, or a state that writes
    into an input being read, are refused (ValueError naming the argument) on every backend,
    from strides and storage ranges alone (no sync), and nothing is written."""
    for name, args, pattern in overlapping_state_cases(backend):
        before = args["state"].cpu().clone()
        with pytest.raises(ValueError, match=pattern):
            backends.selective_state_update(backend)(**args, dt_softplus=True)
        assert torch.equal(args["state"].cpu(), before), name


def test_reference_matches_oracle():
    """The pure-PyTorch reference (the fallback) on the oracle's grid, in float64."""
    for (name, layout), gather in itertools.product(LAYOUTS.items(), (False, True)):
        step = make_step(layout, "cpu", batch=3, dim=5, N=8, state_rows=5 if gather else None,
                         padding=gather)
        ref_out, ref_state = oracle_step(step)
        out = mvscan.selective_state_update_ref(**step.args, dt_softplus=step.softplus,
                                                state_batch_indices=step.indices)
        tol = REL_TOL[torch.float64]
        assert rel_err(out, ref_out) <= tol and rel_err(step.args["state"], ref_state) <= tol, name


def test_reference_with_low_precision_state_uses_unrounded_state():
    """The reference follows the kernels (out from the float32 state), not mamba_ssm's reference
    (out from the state rounded to bfloat16)."""
    step = make_step(LAYOUTS["3d"], "cpu", batch=2, dim=8, N=16, dtype=torch.float32,
                     state_dtype=torch.bfloat16, seed=4)
    ref_out, _ = oracle_step(step)
    args = {k: (v.clone() if v is not None else None) for k, v in step.args.items()}
    out_ref = mvscan.selective_state_update_ref(**args, dt_softplus=True)
    out_kernel = mvscan.selective_state_update(**step.args, dt_softplus=True)
    assert rel_err(out_ref, ref_out) <= REL_TOL[torch.float32]
    assert rel_err(out_kernel, out_ref) <= REL_TOL[torch.float32]
    assert torch.equal(args["state"], step.args["state"])


def test_fallback_runs_reference_with_a_warning(monkeypatch):
    step = make_step(LAYOUTS["4d-mamba2"], "cpu", batch=2, dim=4, N=8, dtype=torch.float32)
    state_ref = step.args["state"].clone()
    monkeypatch.setattr(mvscan.decode, "STATE_UPDATE_DEVICES", frozenset())
    monkeypatch.setattr(mvscan._extension, "_warned_fallback", set())
    with pytest.warns(RuntimeWarning, match="running the pure-PyTorch reference"):
        out = mvscan.selective_state_update(**step.args, dt_softplus=True)
    args = dict(step.args, state=state_ref)
    monkeypatch.undo()
    torch.testing.assert_close(out, mvscan.selective_state_update(**args, dt_softplus=True))
    torch.testing.assert_close(step.args["state"], state_ref)


# --- bad input ---------------------------------------------------------------------------------

def bad_args(**change):
    """Valid 4-d arguments (batch 2, heads 4, dim 3, N 8, B in 2 groups) with `change` applied."""
    args = dict(state=torch.randn(2, 4, 3, 8), x=torch.randn(2, 4, 3), dt=torch.rand(2, 4, 3),
                A=-torch.rand(4, 3, 8), B=torch.randn(2, 2, 8), C=torch.randn(2, 1, 8),
                D=torch.randn(4, 3), z=torch.randn(2, 4, 3), dt_bias=torch.randn(4, 3))
    args.update(change)
    return args


BAD = [
    ("state 2-d", dict(state=torch.randn(2, 8)),
     r"state must have shape \(batch, dim, N\) or \(batch, heads, dim, N\), got \[2, 8\]"),
    ("x shape", dict(x=torch.randn(2, 4, 5)),
     r"x must have shape \(batch, heads, dim\) with \(heads, dim\) = state.shape\[1:3\] = "
     r"\[4, 3\], got \[2, 4, 5\]"),
    ("x 2-d with a 4-d state", dict(x=torch.randn(2, 12)), r"x must have shape \(batch, heads"),
    ("state rows", dict(state=torch.randn(3, 4, 3, 8)),
     r"state.shape\[0\] = 3 must equal x.shape\[0\] = batch = 2"),
    ("dt dtype", dict(dt=torch.rand(2, 4, 3).double()),
     r"dt must have x's dtype Float, got Double"),
    ("dt shape", dict(dt=torch.rand(2, 4, 1)), r"dt must have shape \(batch, heads, dim\) like x"),
    ("z shape", dict(z=torch.rand(2, 4)), r"z must have shape \(batch, heads, dim\) like x"),
    ("A shape", dict(A=-torch.rand(3, 8)), r"A must have shape \(heads, dim, N\) = \[4, 3, 8\]"),
    ("A dtype", dict(A=-torch.rand(4, 3, 8).double()),
     r"A must have x's dtype \(Float\) or float32, got Double"),
    ("B groups", dict(B=torch.randn(2, 3, 8)), r"B has 3 groups .*must divide heads = 4"),
    ("C shape", dict(C=torch.randn(2, 1, 7)), r"C must have shape \(batch, groups, N\)"),
    ("B dtype", dict(B=torch.randn(2, 2, 8).half()), r"B must have x's dtype Float, got Half"),
    ("D shape", dict(D=torch.randn(3)), r"D must have shape \(heads, dim\) = \[4, 3\]"),
    ("dt_bias dtype", dict(dt_bias=torch.randn(4, 3).half()),
     r"dt_bias must have x's dtype \(Float\) or float32, got Half"),
    ("N too large", dict(state=torch.randn(2, 4, 3, 257), A=-torch.rand(4, 3, 257),
                         B=torch.randn(2, 2, 257), C=torch.randn(2, 1, 257)),
     r"state has N = 257 states .*supported: 1 to 256"),
    ("int x", dict(x=torch.ones(2, 4, 3, dtype=torch.int32)),
     r"x must be float32, float16, bfloat16 or float64, got Int"),
    ("int state", dict(state=torch.ones(2, 4, 3, 8, dtype=torch.int64)),
     r"state must be float32, float16, bfloat16 or float64, got Long"),
    ("float64 state", dict(state=torch.randn(2, 4, 3, 8, dtype=torch.float64)),
     r"state may be float64 only with float64 x"),
    ("device", dict(state=torch.randn(2, 4, 3, 8, device="meta")),
     r"state is on meta but x is on cpu"),
    ("indices dtype", dict(state_batch_indices=torch.tensor([0, 1])),
     r"state_batch_indices must be int32, got Long"),
    ("indices shape", dict(state_batch_indices=torch.tensor([0, 1, 2], dtype=torch.int32)),
     r"state_batch_indices must have shape \(batch,\) = \(2,\), got \[3\]"),
]


@pytest.mark.parametrize("change,pattern", [(c, p) for _, c, p in BAD],
                         ids=[n for n, _, _ in BAD])
def test_bad_input(change, pattern):
    args = bad_args(**change)
    state = args["state"]
    before = state.clone() if state.device.type != "meta" else None
    with pytest.raises(ERRORS, match=pattern):
        mvscan.selective_state_update(**args, dt_softplus=True)
    if before is not None:
        assert torch.equal(state, before), "a rejected call must not touch the state"


def test_bad_input_through_the_operator_itself():
    """The C++ checks answer direct torch.ops calls too (no Python wrapper in between)."""
    a = bad_args(dt=torch.rand(2, 4, 3).double())
    with pytest.raises(ERRORS, match=r"dt must have x's dtype Float, got Double"):
        torch.ops.mvscan.selective_state_update(*a.values(), True, None)
    with pytest.raises(ERRORS, match=r"x must be a torch.Tensor, got list"):
        mvscan.selective_state_update(torch.randn(2, 3, 8), [1.0], None, None, None, None)


# --- as PyTorch sees the operator --------------------------------------------------------------

@pytest.mark.parametrize("layout,gather", [("3d", False), ("4d-groups", True),
                                           ("4d-mamba2", False)])
@backends.over("cpu", "cuda")
def test_opcheck(backend, layout, gather):
    step = make_step(LAYOUTS[layout], backend, batch=2, dim=4, N=8, dtype=torch.float32,
                     state_rows=4 if gather else None, padding=gather)
    a = step.args
    torch.library.opcheck(
        torch.ops.mvscan.selective_state_update.default,
        (a["state"], a["x"], a["dt"], a["A"], a["B"], a["C"], a["D"], a["z"], a["dt_bias"], True,
         to_backend(backend, step.indices)))


def test_compile_fullgraph_cpu():
    """Three decode steps under torch.compile(fullgraph=True), the state mutated in place each
    time, as in eager mode."""
    torch._dynamo.reset()
    step = make_step(LAYOUTS["4d-mamba2"], "cpu", batch=2, dim=4, N=8, dtype=torch.float32)
    a = step.args

    def decode(state, xs):
        outs = [mvscan.selective_state_update(state, x, a["dt"], a["A"], a["B"], a["C"], a["D"],
                                              a["z"], a["dt_bias"], dt_softplus=True)
                for x in xs]
        return torch.stack(outs) * 2

    xs = torch.randn(3, *a["x"].shape)
    state_c, state_e = a["state"].clone(), a["state"].clone()
    out_c = torch.compile(decode, fullgraph=True)(state_c, xs)
    out_e = decode(state_e, xs)
    torch.testing.assert_close(out_c, out_e)
    torch.testing.assert_close(state_c, state_e)
    assert not torch.equal(state_c, a["state"])


# --- CUDA only ---------------------------------------------------------------------------------

@backends.needs_gpu
def test_cuda_graph_capture():
    """No host synchronisation and no allocation but out: the step can be captured in a CUDA
    graph and replayed, updating the state each replay."""
    step = make_step(LAYOUTS["4d-mamba2"], "cuda", batch=4, dim=8, N=64, dtype=torch.float32,
                     state_rows=6, padding=True)
    a, idx = step.args, step.indices.cuda()
    expected_state = a["state"].clone()
    expected = mvscan.selective_state_update(**dict(a, state=expected_state), dt_softplus=True,
                                             state_batch_indices=idx)
    stream = torch.cuda.Stream()
    warm = a["state"].clone()
    with torch.cuda.stream(stream):
        mvscan.selective_state_update(**dict(a, state=warm), dt_softplus=True,
                                      state_batch_indices=idx)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = mvscan.selective_state_update(**a, dt_softplus=True, state_batch_indices=idx)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(a["state"], expected_state)


# --- emulated CUDA only ------------------------------------------------------------------------

@pytest.mark.parametrize("N", [5, 16, 40, 256])
def test_emulated_grid_stride_over_several_groups(N):
    """A grid of 1 or 2 blocks (the driver's cap, made small) strides over every group of rows:
    several iterations per block, shuffles in each, a partial last group (84 rows, 128 / lanes
    rows a group), rows picked by indices with padding. Exact against the oracle, and
    bit-identical to the full grid."""
    for max_blocks, seed in ((1, 0), (2, 1)):
        step = make_step(LAYOUTS["4d-groups"], "emulated-cuda", batch=3, dim=7, N=N,
                         state_rows=5, padding=True, seed=seed + N)
        full = run_step("emulated-cuda", Step({k: (v.clone() if v is not None else None)
                                               for k, v in step.args.items()}, step.dense,
                                              step.softplus, step.indices, False))
        out, state = check_step("emulated-cuda", step, REL_TOL[torch.float64],
                                REL_TOL[torch.float64], f"max_blocks {max_blocks}",
                                max_blocks=max_blocks)
        assert torch.equal(out, full[0]) and torch.equal(state, full[1])
    with pytest.raises(ValueError, match=r"max_blocks must be in \[1, "):
        run_step("emulated-cuda", step, max_blocks=0)


def test_emulated_results_do_not_depend_on_thread_order():
    """The row sums are shuffle butterflies: bit-identical whatever order the fibers run in."""
    emulated = backends.emulation("selective_state_update")
    results = []
    try:
        for mode in (0, 1, 2):
            emulated.set_schedule(mode)
            step = make_step(LAYOUTS["4d-groups"], "emulated-cuda", batch=2, dim=3, N=40,
                             dtype=torch.float32, seed=5)
            results.append(run_step("emulated-cuda", step)[:2])
    finally:
        emulated.set_schedule(0)
    for out, state in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(state, results[0][1])

