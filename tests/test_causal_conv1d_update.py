"""mvscan.causal_conv1d_update (L decode steps of the causal depthwise conv) on every backend
(tests/backends.py: "cpu", "cuda", "emulated-cuda") against the float64 oracle
(oracle.conv_update): one step (2-d x) and several (L up to past state_len), K from 1 to 32,
states longer than K - 1, the circular state of cache_seqlens, rows picked by conv_state_indices
with padding rows, bias and activation, non-contiguous views, every dtype, the in-place update,
bad inputs, opcheck and torch.compile, and a prefill through mvscan.depthwise_conv1d followed by
steps equal to the whole causal conv. Tests that make sense on one backend only come last."""

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
FLOAT64_TOL = 1e-12  # a sum of at most 32 products: float64 rounding only


@dataclass
class ConvStep:
    """One call's arguments: `args` on the backend's device as the op receives them (views
    included), `dense` the same values as contiguous CPU tensors for the oracle."""
    args: dict
    dense: dict
    strided_state: bool  # conv_state is a view of every other element of a buffer of 7.0s


def every_other(t: torch.Tensor) -> torch.Tensor:
    """t's values as a view of every other element of a buffer whose other half holds 7.0 (so a
    stray write shows)."""
    buf = torch.full(t.shape[:-1] + (2 * t.shape[-1],), 7.0, dtype=t.dtype, device=t.device)
    buf[..., ::2] = t
    return buf[..., ::2]


def make_conv_step(backend: str, batch: int = 3, dim: int = 5, L: int | None = None, K: int = 4,
                   S: int | None = None, dtype: torch.dtype = torch.float64,
                   weight_dtype: torch.dtype | None = None, bias: bool = True,
                   activation: str | None = "silu", circular: bool = False,
                   state_rows: int | None = None, padding: bool = False, strided: bool = False,
                   seed: int = 0) -> ConvStep:
    """Random inputs drawn in float64 and rounded to their dtypes. L None: a 2-d x (one step).
    S defaults to K - 1. circular: cache_seqlens drawn in [-S, 3 S) (negative ones wrap as in
    Python). state_rows > batch picks rows through conv_state_indices (distinct; the first a
    padding row when `padding`). strided: x stored channels-fastest (in_proj's layout), the
    state a strided view, the weight transposed."""
    g = torch.Generator().manual_seed(seed)
    S = K - 1 if S is None else S
    weight_dtype = weight_dtype or dtype

    def rand(*shape, dt=dtype, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dt)

    rows = state_rows or batch
    dense = dict(
        x=rand(batch, dim) if L is None else rand(batch, dim, L),
        conv_state=rand(rows, dim, S),
        weight=rand(dim, K, dt=weight_dtype, scale=0.5),
        bias=rand(dim, dt=weight_dtype) if bias else None,
        cache_seqlens=(torch.randint(-S, 3 * S, (batch,), generator=g, dtype=torch.int32)
                       if circular else None),
        conv_state_indices=None,
    )
    if state_rows is not None:
        idx = torch.randperm(state_rows, generator=g)[:batch].to(torch.int32)
        if padding:
            idx[0] = -1
        dense["conv_state_indices"] = idx
    # Copies even on the CPU, where to_backend would hand the same tensors: the call mutates
    # args["conv_state"], and the oracle reads dense["conv_state"] afterwards.
    args = to_backend(backend, {k: (v.clone() if v is not None else None)
                                for k, v in dense.items()})
    if strided:
        args["x"] = args["x"].transpose(1, -1).contiguous().transpose(1, -1)
        args["conv_state"] = every_other(args["conv_state"])
        args["weight"] = args["weight"].t().contiguous().t()
    args["activation"] = activation
    return ConvStep(args, dense, strided)


def run_conv_step(backend: str, step: ConvStep, **extra):
    """(out, conv_state after, conv_state before) on the CPU. Checks that the state was updated
    in place, and nothing else in its buffer was written. extra: further keyword arguments of
    the backend's op (the emulation's max_blocks)."""
    state = step.args["conv_state"]
    before = state.cpu().clone()
    ptr = state.data_ptr()
    out = backends.causal_conv1d_update(backend)(**step.args, **extra)
    assert state.data_ptr() == ptr, "conv_state must be updated in place"
    if step.strided_state:
        assert torch.all(state._base[..., 1::2] == 7.0), "wrote outside the conv_state view"
    return out.cpu(), state.cpu(), before


def oracle_conv_step(step: ConvStep):
    d = step.dense
    np_or_none = lambda t: None if t is None else t.double().numpy()  # noqa: E731
    out, new = oracle.conv_update(
        np_or_none(d["x"]), np_or_none(d["conv_state"]), np_or_none(d["weight"]),
        np_or_none(d["bias"]), step.args["activation"] is not None,
        None if d["cache_seqlens"] is None else d["cache_seqlens"].numpy(),
        None if d["conv_state_indices"] is None else d["conv_state_indices"].numpy())
    return torch.from_numpy(out), torch.from_numpy(new)


def check_conv_step(backend: str, step: ConvStep, tol: float, what: str = "", **extra):
    out, state, before = run_conv_step(backend, step, **extra)
    ref_out, ref_state = oracle_conv_step(step)
    x = step.args["x"]
    assert out.shape == x.shape and out.dtype == x.dtype, what
    assert rel_err(out, ref_out) <= tol, f"{what}: out {rel_err(out, ref_out):.2e}"
    # The state only ever holds copies of inputs: exact.
    assert torch.equal(state, ref_state.to(state.dtype)), f"{what}: conv_state"
    idx = step.dense["conv_state_indices"]
    if idx is not None:
        kept = torch.ones(state.shape[0], dtype=torch.bool)
        kept[idx[idx >= 0].long()] = False
        assert torch.equal(state[kept], before[kept]), f"{what}: rows not picked changed"
        assert torch.all(out[idx < 0] == 0), f"{what}: padding rows give 0"
    return out, state


# --- against the oracle ------------------------------------------------------------------------

def grid(Ks, Ls, indices, extras=(0, 3)):
    """(K, S, L, circular, indices) with S = K - 1 + each of `extras` (K - 1 and K + 2 by
    default), and a circular state of at least one slot."""
    cases = []
    for K, extra, L, circular, idx in itertools.product(Ks, extras, Ls, (False, True), indices):
        S = K - 1 + extra
        if circular and S == 0:
            S = 1
        cases.append((K, S, L, circular, idx))
    return cases


def grid_id(K, S, L, circular, idx):
    steps = "x2d" if L is None else f"L{L}"
    return f"K{K}-S{S}-{steps}-{'circular' if circular else 'linear'}-{idx}"


@backends.parametrize("K,S,L,circular,indices", {
    "cpu": grid((1, 2, 4, 5, 32), (None, 1, 3, 40), ("none", "gather")),
    "cuda": grid((1, 2, 4, 5, 32), (None, 1, 3, 40), ("none", "gather"), extras=(0, 1, 3)),
    # K 1 and 4: the kernel's small register window (4 taps), partly and wholly used; 5 and
    # 32: the large one (32 taps). S = K: mamba_ssm's conv state, rewritten from registers.
    "emulated-cuda": grid((1, 4, 5, 32), (None, 3, 40), ("gather",), extras=(0, 1, 3))},
    id=grid_id)
def test_float64_against_oracle(backend, K, S, L, circular, indices):
    """Exact (to float64 rounding; the state bit-exact) with and without bias and SiLU, x
    contiguous or channels-fastest, the CPU cycling through its instruction-set builds; with
    indices, a state of more rows than the batch, one padding row and every other row left
    bit-identical. 70 channels: a full unit of the CPU kernel's channel tiles and a part one."""
    for i, ((bias, activation, strided), variant) in enumerate(zip(
            itertools.product((False, True), (None, "silu"), (False, True)),
            itertools.cycle(variants(backend)))):
        step = make_conv_step(backend, batch=3, dim=70, L=L, K=K, S=S, bias=bias,
                              activation=activation, circular=circular,
                              state_rows=6 if indices == "gather" else None,
                              padding=indices == "gather", strided=strided, seed=i + 7 * K)
        with using(backend, variant):
            check_conv_step(backend, step, FLOAT64_TOL,
                            f"{variant} bias={bias} act={activation} strided={strided}")


@backends.parametrize("dtype,weight_dtype", {
    b: [(d, w) for d in FULL_PRECISION + LOW_PRECISION for w in dict.fromkeys((d, torch.float32))]
    for b in ("cpu", "cuda", "emulated-cuda")},
    id=lambda d, w: f"x_{dtype_id(d)}-weight_{dtype_id(w)}")
def test_dtypes(backend, dtype, weight_dtype):
    """Every input dtype, weight and bias in x's dtype or float32: out within twice the
    rounding of the exact result to x's dtype (float32 accumulation), the state exact."""
    for (circular, L), variant in itertools.product(((False, None), (True, 3)),
                                                    variants(backend)):
        step = make_conv_step(backend, batch=4, dim=16, L=L, K=4, S=5, dtype=dtype,
                              weight_dtype=weight_dtype, circular=circular, seed=3)
        ref_out = oracle_conv_step(step)[0]
        tol = REL_TOL.get(dtype, 2 * rel_err(ref_out.to(dtype), ref_out) + REL_TOL[torch.float32])
        with using(backend, variant):
            check_conv_step(backend, step, FLOAT64_TOL if dtype == torch.float64 else tol,
                            f"{variant} circular={circular}")


@backends.over()
def test_swish_is_silu(backend):
    outs = []
    for activation in ("silu", "swish"):
        step = make_conv_step(backend, L=2, activation=activation, seed=4)
        outs.append(run_conv_step(backend, step)[0])
    assert torch.equal(outs[0], outs[1])


# --- the whole sequence ------------------------------------------------------------------------

@backends.parametrize("dtype,K", {"cpu": [(torch.float64, 4), (torch.float32, 3),
                                          (torch.float64, 1)],
                                  "cuda": [(torch.float64, 4), (torch.float32, 3)],
                                  "emulated-cuda": [(torch.float64, 4)]},
                      id=lambda dt, K: f"{dtype_id(dt)}-K{K}")
@pytest.mark.parametrize("circular", [False, True])
def test_prefill_then_steps_equal_whole_causal_conv(backend, dtype, K, circular):
    """mvscan.depthwise_conv1d(padding="causal") over the first steps, a conv_state built from
    their last inputs, then causal_conv1d_update one step at a time (and one 3-step chunk),
    gives the causal conv of the whole sequence."""
    g = torch.Generator().manual_seed(K)
    batch, dim, T, T0 = 2, 6, 15, 2  # T0 < K - 1: the state starts with zeros of padding
    S = K + 1 if circular else K - 1
    x = torch.randn(batch, dim, T, generator=g, dtype=torch.float64).to(dtype)
    w = (torch.randn(dim, K, generator=g, dtype=torch.float64) * 0.5).to(dtype)
    b = torch.randn(dim, generator=g, dtype=torch.float64).to(dtype)
    xd, wd, bd = to_backend(backend, (x, w, b))
    conv = backends.depthwise_conv1d(backend)
    whole = conv(xd, wd, bd, "causal", "silu").cpu()
    outs = [conv(xd[..., :T0], wd, bd, "causal", "silu").cpu()]
    padded = torch.cat([torch.zeros(batch, dim, S, dtype=dtype), x[..., :T0]], dim=-1)
    state = padded[..., padded.shape[-1] - S:]  # the last S inputs, oldest first
    seqlens = None
    if circular:  # a ring buffer written from slot 0: step s sits in slot s mod S
        state = state[..., [(j - T0) % S for j in range(S)]]
        seqlens = torch.full((batch,), T0, dtype=torch.int32)
    state = to_backend(backend, state.contiguous())
    update = backends.causal_conv1d_update(backend)
    t = T0
    for L in (1, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1):
        chunk = xd[..., t] if L == 1 else xd[..., t:t + L]
        out = update(chunk, state, wd, bd, "silu", to_backend(backend, seqlens)).cpu()
        outs.append(out[..., None] if L == 1 else out)
        t += L
        if circular:
            seqlens = seqlens + L
    assert t == T
    tol = FLOAT64_TOL if dtype == torch.float64 else REL_TOL[torch.float32]
    assert rel_err(torch.cat(outs, dim=-1), whole) <= tol


# --- edge cases --------------------------------------------------------------------------------

@backends.over()
def test_empty_batch_and_empty_state(backend):
    fn = backends.causal_conv1d_update(backend)
    step = make_conv_step(backend, batch=0, L=3)
    assert fn(**step.args).shape == (0, 5, 3)
    step = make_conv_step(backend, batch=2, L=3, K=1, S=0, seed=1)  # K = 1 needs no state
    check_conv_step(backend, step, FLOAT64_TOL)


@backends.over()
def test_state_batch_stride_past_2_to_the_31(backend):
    """A conv_state row 2^31 + 64 elements into a lazily allocated float16 buffer (only the
    touched pages are backed), picked by conv_state_indices: 64-bit offsets, same result as a
    copy."""
    step = make_conv_step(backend, batch=1, dim=4, L=2, K=4, S=3, dtype=torch.float16,
                          state_rows=2)
    stride = 2**31 + 64
    try:
        buf = torch.empty(stride + 16, dtype=torch.float16, device=backends.device(backend))
    except RuntimeError as exc:  # no room for the address space: nothing to test here
        pytest.skip(f"cannot reserve a 4.3 GB buffer: {exc}")
    far = buf.as_strided((2, 4, 3), (stride, 3, 1))
    far.copy_(step.args["conv_state"])
    near = step.args["conv_state"].clone()
    idx = to_backend(backend, torch.tensor([1], dtype=torch.int32))
    args = dict(step.args, conv_state_indices=idx)
    fn = backends.causal_conv1d_update(backend)
    out_far = fn(**dict(args, conv_state=far))
    out_near = fn(**dict(args, conv_state=near))
    assert torch.equal(out_far.cpu(), out_near.cpu())
    assert torch.equal(far.cpu(), near.cpu())


@backends.over(*DEVICE_BACKENDS)
def test_device_index_past_the_state_gives_nan_and_touches_nothing(backend):
    """The CUDA kernel cannot raise on an index >= conv_state.shape[0] without a host sync: that
    row's out is NaN and no state row changes; the other rows are computed as usual."""
    step = make_conv_step(backend, batch=3, L=2, K=4, S=3, state_rows=4)
    state = step.args["conv_state"]
    before = state.cpu().clone()
    idx = to_backend(backend, torch.tensor([2, 9, -1], dtype=torch.int32))
    out = backends.causal_conv1d_update(backend)(**dict(step.args, conv_state_indices=idx)).cpu()
    assert torch.isnan(out[1]).all() and torch.all(out[2] == 0) and torch.isfinite(out[0]).all()
    after = state.cpu()
    assert torch.equal(after[[0, 1, 3]], before[[0, 1, 3]]) and not torch.equal(after[2], before[2])


def test_cpu_rejects_an_index_past_the_state():
    step = make_conv_step("cpu", batch=2, L=None, state_rows=4)
    before = step.args["conv_state"].clone()
    with pytest.raises(ValueError, match=r"conv_state_indices\[1\] = 4 is out of range for "
                                         r"conv_state.shape\[0\] = 4"):
        mvscan.causal_conv1d_update(**dict(step.args, conv_state_indices=torch.tensor(
            [0, 4], dtype=torch.int32)))
    assert torch.equal(step.args["conv_state"], before)


@pytest.mark.parametrize("indices,pattern", [
    ([2, -1, 2], r"conv_state_indices\[0\] = conv_state_indices\[2\] = 2: two batch elements "
                 r"would update the same state row"),
    ([3, 0, 0], r"conv_state_indices\[1\] = conv_state_indices\[2\] = 0"),
], ids=["apart", "adjacent"])
def test_cpu_rejects_duplicate_indices(indices, pattern):
    """Two batch elements picking one conv_state row would race (parallel_for units, CUDA
    threads): the CPU op, which reads the indices on the host anyway, refuses them before
    touching the state."""
    step = make_conv_step("cpu", batch=3, L=2, state_rows=4)
    before = step.args["conv_state"].clone()
    args = dict(step.args, conv_state_indices=torch.tensor(indices, dtype=torch.int32))
    with pytest.raises(ValueError, match=pattern):
        mvscan.causal_conv1d_update(**args)
    with pytest.raises(ValueError, match=pattern):  # the operator itself, no Python wrapper
        torch.ops.mvscan.causal_conv1d_update(args["x"], args["conv_state"], args["weight"],
                                              args["bias"], True, None,
                                              args["conv_state_indices"])
    assert torch.equal(step.args["conv_state"], before)
    with pytest.raises(ValueError, match="must not repeat a non-negative index"):
        mvscan.causal_conv1d_update_ref(**args)
    assert torch.equal(step.args["conv_state"], before)


@backends.over()
def test_repeated_padding_indices_are_fine(backend):
    """Only real rows must be distinct: several padding rows (-1) give 0 and touch nothing."""
    step = make_conv_step(backend, batch=4, L=3, K=4, S=5, state_rows=6, circular=True)
    idx = torch.tensor([-1, 4, -1, 1], dtype=torch.int32)
    step.dense["conv_state_indices"] = idx
    step.args["conv_state_indices"] = to_backend(backend, idx)
    check_conv_step(backend, step, FLOAT64_TOL)


def overlapping_state_cases(backend: str):
    """(name, args of a valid step with conv_state or an input replaced, error pattern): a
    conv_state whose rows share memory, and one sharing memory with an input (both dense, so
    PyTorch can tell)."""
    a = make_conv_step(backend, batch=3, dim=4, L=2, K=4, S=5, dtype=torch.float32).args
    state = a["conv_state"]
    flat = state.view(-1)
    return [
        ("expanded conv_state", dict(a, conv_state=state[:, :1].expand(state.shape)),
         r"conv_state has elements that share memory"),
        ("x inside conv_state", dict(a, x=flat[3:3 + a["x"].numel()].view(a["x"].shape)),
         r"conv_state and x overlap in memory"),
        ("weight inside conv_state", dict(a, weight=flat[-16:].view(4, 4)),
         r"conv_state and weight overlap in memory"),
    ]


@backends.over()
def test_overlapping_state_is_rejected(backend):
    """conv_state is updated in place: rows writing one memory location, or a state that writes
    into an input being read, are refused (ValueError naming the argument) on every backend,
    from strides and storage ranges alone (no sync), and nothing is written."""
    for name, args, pattern in overlapping_state_cases(backend):
        before = args["conv_state"].cpu().clone()
        with pytest.raises(ValueError, match=pattern):
            backends.causal_conv1d_update(backend)(**args)
        assert torch.equal(args["conv_state"].cpu(), before), name


@pytest.mark.parametrize("circular,gather", [(False, False), (True, True), (False, True)])
def test_reference_matches_oracle(circular, gather):
    """The pure-PyTorch reference (the fallback) against the oracle, L = 1 and past state_len."""
    for L, K in ((None, 4), (7, 4), (3, 1)):
        step = make_conv_step("cpu", L=L, K=K, S=K + 1, circular=circular,
                              state_rows=5 if gather else None, padding=gather)
        ref_out, ref_state = oracle_conv_step(step)
        out = mvscan.causal_conv1d_update_ref(**step.args)
        assert rel_err(out, ref_out) <= FLOAT64_TOL
        assert torch.equal(step.args["conv_state"], ref_state)


def test_fallback_runs_reference_with_a_warning(monkeypatch):
    step = make_conv_step("cpu", L=3, circular=True, dtype=torch.float32)
    state_ref = step.args["conv_state"].clone()
    monkeypatch.setattr(mvscan.decode, "CONV_UPDATE_DEVICES", frozenset())
    monkeypatch.setattr(mvscan._extension, "_warned_fallback", set())
    with pytest.warns(RuntimeWarning, match="running the pure-PyTorch reference"):
        out = mvscan.causal_conv1d_update(**step.args)
    monkeypatch.undo()
    expected = mvscan.causal_conv1d_update(**dict(step.args, conv_state=state_ref))
    torch.testing.assert_close(out, expected)
    assert torch.equal(step.args["conv_state"], state_ref)


# --- bad input ---------------------------------------------------------------------------------

def bad_args(**change):
    """Valid arguments (batch 2, dim 4, L 3, K 4, state_len 5) with `change` applied."""
    args = dict(x=torch.randn(2, 4, 3), conv_state=torch.randn(2, 4, 5), weight=torch.randn(4, 4),
                bias=torch.randn(4), activation="silu")
    args.update(change)
    return args


BAD = [
    ("x 4-d", dict(x=torch.randn(2, 4, 3, 1)),
     r"x must have shape \(batch, dim\) or \(batch, dim, L\), got \[2, 4, 3, 1\]"),
    ("int x", dict(x=torch.ones(2, 4, 3, dtype=torch.int32)),
     r"x must be float32, float16, bfloat16 or float64, got Int"),
    ("state shape", dict(conv_state=torch.randn(2, 3, 5)),
     r"conv_state must have shape \(batch, dim, state_len\) with dim = x.shape\[1\] = 4"),
    ("state dtype", dict(conv_state=torch.randn(2, 4, 5).half()),
     r"conv_state must have x's dtype Float, got Half"),
    ("state rows", dict(conv_state=torch.randn(3, 4, 5)),
     r"conv_state.shape\[0\] = 3 must equal x.shape\[0\] = batch = 2"),
    ("state too short", dict(conv_state=torch.randn(2, 4, 2)),
     r"conv_state holds state_len = 2 steps \(conv_state.shape\[2\]\), fewer than K - 1 = 3"),
    ("K too large", dict(weight=torch.randn(4, 33), conv_state=torch.randn(2, 4, 40)),
     r"kernel width K = 33 .*supported: 1 to 32"),
    ("weight shape", dict(weight=torch.randn(5, 4)),
     r"weight must have shape \(dim, K\) with dim = x.shape\[1\] = 4, got \[5, 4\]"),
    ("weight (dim, 2, K)", dict(weight=torch.randn(4, 2, 4)),
     r"a 3-d weight must be nn.Conv1d's depthwise \(dim, 1, K\)"),
    ("weight dtype", dict(weight=torch.randn(4, 4).double()),
     r"weight must have x's dtype \(Float\) or float32, got Double"),
    ("bias shape", dict(bias=torch.randn(3)), r"bias must have shape \(dim,\) = \(4,\), got \[3\]"),
    ("bias dtype", dict(bias=torch.randn(4).half()),
     r"bias must have x's dtype \(Float\) or float32, got Half"),
    ("activation gelu", dict(activation="gelu"),
     r"activation must be one of \(None, 'silu', 'swish'\), got 'gelu'"),
    ("activation True", dict(activation=True),
     r"activation must be one of \(None, 'silu', 'swish'\), got True"),
    ("cache_seqlens dtype", dict(cache_seqlens=torch.tensor([1, 2])),
     r"cache_seqlens must be int32, got Long"),
    ("cache_seqlens shape", dict(cache_seqlens=torch.tensor([1], dtype=torch.int32)),
     r"cache_seqlens must have shape \(batch,\) = \(2,\), got \[1\]"),
    ("circular without slots", dict(weight=torch.randn(4, 1), conv_state=torch.randn(2, 4, 0),
                                    cache_seqlens=torch.tensor([1, 2], dtype=torch.int32)),
     r"a circular conv_state \(cache_seqlens given\) needs state_len >= 1"),
    ("indices dtype", dict(conv_state_indices=torch.tensor([0, 1], dtype=torch.int16)),
     r"conv_state_indices must be int32, got Short"),
    ("device", dict(conv_state=torch.randn(2, 4, 5, device="meta")),
     r"conv_state is on meta but x is on cpu"),
]


@pytest.mark.parametrize("change,pattern", [(c, p) for _, c, p in BAD],
                         ids=[n for n, _, _ in BAD])
def test_bad_input(change, pattern):
    args = bad_args(**change)
    state = args["conv_state"]
    before = state.clone() if state.device.type != "meta" else None
    with pytest.raises(ERRORS, match=pattern):
        mvscan.causal_conv1d_update(**args)
    if before is not None:
        assert torch.equal(state, before), "a rejected call must not touch conv_state"


def test_bad_input_through_the_operator_itself():
    """The C++ checks answer direct torch.ops calls too (no Python wrapper in between)."""
    with pytest.raises(ERRORS, match=r"conv_state must have x's dtype Float, got Double"):
        torch.ops.mvscan.causal_conv1d_update(torch.randn(2, 4), torch.randn(2, 4, 3).double(),
                                              torch.randn(4, 4), None, False, None, None)


# --- as PyTorch sees the operator --------------------------------------------------------------

@pytest.mark.parametrize("L,circular,gather", [(None, False, False), (3, True, True),
                                               (2, False, True)])
@backends.over("cpu", "cuda")
def test_opcheck(backend, L, circular, gather):
    step = make_conv_step(backend, L=L, K=4, S=5, dtype=torch.float32, circular=circular,
                          state_rows=5 if gather else None, padding=gather)
    a = step.args
    torch.library.opcheck(
        torch.ops.mvscan.causal_conv1d_update.default,
        (a["x"], a["conv_state"], a["weight"], a["bias"], True, a["cache_seqlens"],
         a["conv_state_indices"]))


def test_compile_fullgraph_cpu():
    """Four decode steps under torch.compile(fullgraph=True), conv_state mutated in place each
    time, as in eager mode."""
    torch._dynamo.reset()
    step = make_conv_step("cpu", L=None, K=4, S=3, dtype=torch.float32)
    a = step.args

    def decode(state, xs):
        outs = [mvscan.causal_conv1d_update(x, state, a["weight"], a["bias"], "silu") for x in xs]
        return torch.stack(outs) + 1

    xs = torch.randn(4, *a["x"].shape)
    state_c, state_e = a["conv_state"].clone(), a["conv_state"].clone()
    out_c = torch.compile(decode, fullgraph=True)(state_c, xs)
    out_e = decode(state_e, xs)
    torch.testing.assert_close(out_c, out_e)
    assert torch.equal(state_c, state_e) and torch.equal(state_c, xs[1:].permute(1, 2, 0))


# --- CUDA only ---------------------------------------------------------------------------------

@backends.needs_gpu
def test_cuda_graph_capture():
    """No host synchronisation and no allocation but out: the step can be captured in a CUDA
    graph and replayed, updating conv_state each replay."""
    step = make_conv_step("cuda", batch=4, dim=64, L=None, K=4, S=6, dtype=torch.float32,
                          circular=True, state_rows=6, padding=True)
    a = step.args
    expected_state = a["conv_state"].clone()
    expected = mvscan.causal_conv1d_update(**dict(a, conv_state=expected_state))
    warm = a["conv_state"].clone()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        mvscan.causal_conv1d_update(**dict(a, conv_state=warm))
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = mvscan.causal_conv1d_update(**a)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(a["conv_state"], expected_state)


# --- emulated CUDA only ------------------------------------------------------------------------

@pytest.mark.parametrize("K,L,circular", [(4, None, False), (4, 3, True), (5, 3, False),
                                          (5, None, True)])
def test_emulated_grid_stride_over_several_groups(K, L, circular):
    """A grid of 1 or 2 blocks (the driver's cap, made small) strides over every group of 128
    rows: several iterations per block and a partial last group (450 rows), rows picked by
    indices with padding, both register windows (K 4 and 5). Exact against the oracle, and
    bit-identical to the full grid."""
    for max_blocks, seed in ((1, 0), (2, 1)):
        step = make_conv_step("emulated-cuda", batch=3, dim=150, L=L, K=K, S=K + 1,
                              circular=circular, state_rows=5, padding=True, seed=seed + K)
        copy = dict(step.args, conv_state=step.args["conv_state"].clone())
        full = run_conv_step("emulated-cuda", ConvStep(copy, step.dense, False))
        out, state = check_conv_step("emulated-cuda", step, FLOAT64_TOL,
                                     f"max_blocks {max_blocks}", max_blocks=max_blocks)
        assert torch.equal(out, full[0]) and torch.equal(state, full[1])
    with pytest.raises(ValueError, match=r"max_blocks must be in \[1, "):
        run_conv_step("emulated-cuda", step, max_blocks=0)
