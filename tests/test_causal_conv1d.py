"""mvscan.causal_conv1d_fn (causal-conv1d's contract) on every backend: values and gradients
(x, weight, bias, initial_states, through the final states) against the float64 oracle for
widths 1-32, both layouts, packed sequences (seq_idx) with padding, initial and final states;
chunked prefill through the states equals one pass; the reference fallback; argument checks,
opcheck and torch.compile."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import backends
import mvscan
import oracle
from backends import to_backend, to_cpu, using, variants
from helpers import FULL_PRECISION, LOW_PRECISION, dtype_id, rel_err

REL_TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}


def make_seq_idx(batch: int, L: int, gen: torch.Generator) -> torch.Tensor:
    """Packed sequences: non-decreasing ids with random boundaries, some rows ending in padding
    (-1), as a (batch, L) int32 tensor."""
    rows = []
    for b in range(batch):
        cuts = (torch.rand(L, generator=gen) < 0.15).to(torch.int64)
        cuts[0] = 0
        ids = torch.cumsum(cuts, 0)
        if b % 2 == 1 and L > 2:
            ids[L - max(1, L // 5):] = -1
        rows.append(ids)
    return torch.stack(rows).to(torch.int32)


def make_inputs(batch, dim, L, K, dtype, channels_last, bias, init, seq, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    x = rand(batch, L, dim).transpose(1, 2)
    x = x if channels_last else x.contiguous()
    return dict(
        x=x,
        weight=rand(dim, K, scale=0.5),
        bias=rand(dim) if bias else None,
        seq_idx=make_seq_idx(batch, L, g) if seq else None,
        # A transposed view: the kernels read the states with their strides.
        initial_states=rand(batch, K - 1, dim).transpose(1, 2) if init else None,
        dout=rand(batch, dim, L),
        dfinal=rand(batch, dim, K - 1),
    )


def run(fn, inp, activation, final):
    """out, final states (or None) and the gradients of <dout, out> (+ <dfinal, final>) w.r.t.
    every tensor input present, by name."""
    names = [n for n in ("x", "weight", "bias", "initial_states") if inp[n] is not None]
    leaves = {n: inp[n].detach().clone().requires_grad_(True) for n in names}
    args = {n: leaves.get(n, inp[n]) for n in ("x", "weight", "bias", "seq_idx",
                                                "initial_states")}
    res = fn(**args, activation=activation, return_final_states=final)
    out, fs = res if final else (res, None)
    outputs, cots = [out], [inp["dout"]]
    if final:
        outputs.append(fs)
        cots.append(inp["dfinal"])
    grads = torch.autograd.grad(outputs, list(leaves.values()), cots, allow_unused=True)
    grads = {n: (g if g is not None else torch.zeros_like(leaves[n]))
             for n, g in zip(names, grads)}
    return out.detach(), (fs.detach() if final else None), grads


def oracle_run(inp, activation, final):
    np_in = {k: (v.double().numpy() if v is not None and k != "seq_idx" else v)
             for k, v in inp.items()}
    seq = inp["seq_idx"].numpy() if inp["seq_idx"] is not None else None
    silu = activation is not None
    out, _, fs = oracle.causal_conv_forward(np_in["x"], np_in["weight"], np_in["bias"], seq,
                                            np_in["initial_states"], silu)
    grads = oracle.causal_conv_backward(np_in["dout"], np_in["x"], np_in["weight"],
                                        np_in["bias"], seq, np_in["initial_states"], silu,
                                        np_in["dfinal"] if final else None)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return t(out), (t(fs) if final else None), {k: t(v) for k, v in grads.items() if v is not None}


def check(backend, variant, inp, activation, final, what):
    fn = backends.causal_conv1d_fn(backend)
    with using(backend, variant):
        got = to_cpu(run(fn, to_backend(backend, inp), activation, final))
    want = oracle_run(inp, activation, final)
    dtype = inp["x"].dtype
    tol = REL_TOL[dtype]
    out, fs, grads = got
    assert out.dtype == dtype and out.shape == inp["x"].shape, what
    assert rel_err(out, want[0]) <= tol, f"{what}: out {rel_err(out, want[0]):.2e}"
    if final:
        assert fs.dtype == dtype and torch.equal(fs.double(), want[1]), f"{what}: final states"
    assert grads.keys() == want[2].keys(), what
    for name, g in grads.items():
        assert g.shape == want[2][name].shape, f"{what}: d{name} shape"
        if want[2][name].abs().sum() == 0:
            assert g.abs().sum() == 0, f"{what}: d{name} should be 0"
        else:
            err = rel_err(g, want[2][name])
            assert err <= tol, f"{what}: d{name} {err:.2e}"


# (L, K): one step, fewer steps than the states, across the CPU's 128-step spans, K 1..32.
SHAPES = [(1, 4), (3, 4), (3, 5), (40, 1), (40, 2), (300, 4), (130, 32), (7, 32)]
EMULATED_SHAPES = [(1, 4), (3, 5), (40, 4), (20, 32)]
OPTIONS = list(itertools.product([False, True], [False, True], [None, "silu"]))  # init, seq, act


def shape_id(dtype, L, K):
    return f"{dtype_id(dtype)}-L{L}-K{K}"


@backends.parametrize("dtype,L,K", {
    "cpu": [(d, *s) for d in FULL_PRECISION for s in SHAPES],
    "cuda": [(d, *s) for d in FULL_PRECISION for s in SHAPES],
    "emulated-cuda": [(torch.float64, *s) for s in EMULATED_SHAPES],
    "triton": [(torch.float64, *s) for s in EMULATED_SHAPES] + [(torch.float32, 300, 4)]},
    id=shape_id)
def test_against_oracle(backend, dtype, L, K):
    """Every option combination, both layouts, the CPU cycling through its ISA builds."""
    for (init, seq, act), channels_last, variant in zip(
            OPTIONS * 2, [False] * len(OPTIONS) + [True] * len(OPTIONS),
            itertools.cycle(variants(backend))):
        inp = make_inputs(2, 19, L, K, dtype, channels_last, bias=not seq, init=init, seq=seq,
                          seed=L * 31 + K)
        final = not seq
        what = f"{variant} init={init} seq={seq} act={act} channels_last={channels_last}"
        check(backend, variant, inp, act, final, what)


@backends.parametrize("dtype", {"cpu": LOW_PRECISION, "cuda": LOW_PRECISION,
                                "emulated-cuda": [torch.bfloat16], "triton": LOW_PRECISION})
def test_low_precision(backend, dtype):
    for init, seq in ((True, False), (False, True)):
        inp = make_inputs(2, 16, 70, 4, dtype, True, bias=True, init=init, seq=seq, seed=3)
        check(backend, None, inp, "silu", not seq, f"init={init} seq={seq}")


@backends.parametrize("cuts", {
    "cpu": [(0, 2, 130), (0, 1, 2, 3, 50), (0, 129, 300)],
    "cuda": [(0, 2, 130), (0, 1, 2, 3, 50), (0, 129, 300)],
    "emulated-cuda": [(0, 2, 9, 30)], "triton": [(0, 2, 9, 30), (0, 1, 2, 3, 50)]},
    id=lambda cuts: "-".join(map(str, cuts)))
def test_chunked_prefill_equals_one_pass(backend, cuts):
    """Pieces of a sequence, each from the previous piece's final states, give the one-pass
    output and gradients (the states carry gradient between pieces)."""
    fn = backends.causal_conv1d_fn(backend)
    inp = make_inputs(2, 12, cuts[-1], 4, torch.float64, True, bias=True, init=True, seq=False)
    x, w, b, h0 = (to_backend(backend, inp[k]) for k in ("x", "weight", "bias",
                                                           "initial_states"))

    def whole(x, w, b, h0):
        return fn(x, w, b, initial_states=h0, return_final_states=True, activation="silu")

    def pieces(x, w, b, h0):
        outs, state = [], h0
        for t0, t1 in zip(cuts[:-1], cuts[1:]):
            out, state = fn(x[..., t0:t1], w, b, initial_states=state, return_final_states=True,
                            activation="silu")
            outs.append(out)
        return torch.cat(outs, dim=-1), state

    results = []
    for f in (whole, pieces):
        leaves = [t.detach().clone().requires_grad_(True) for t in (x, w, b, h0)]
        out, final = f(*leaves)
        cots = to_backend(backend, (inp["dout"], inp["dfinal"]))
        grads = torch.autograd.grad([out, final], leaves, cots)
        results.append(to_cpu((out.detach(), final.detach(), grads)))
    (o1, f1, g1), (o2, f2, g2) = results
    assert rel_err(o2, o1) <= 1e-12 and torch.equal(f1, f2)
    for a, c in zip(g1, g2):
        assert rel_err(c, a) <= 1e-12


@backends.over(*backends.WITH_TRITON)
def test_final_states_out_written(backend):
    fn = backends.causal_conv1d_fn(backend)
    inp = to_backend(backend, make_inputs(2, 8, 10, 4, torch.float32, False, True, True, False))
    buf = torch.full((2, 8, 3), float("nan"), device=inp["x"].device)
    out, fs = fn(inp["x"], inp["weight"], inp["bias"], initial_states=inp["initial_states"],
                 return_final_states=True, final_states_out=buf)
    assert fs is buf
    torch.testing.assert_close(buf, inp["x"][..., -3:])


def test_seq_idx_isolates_sequences():
    """Two sequences packed in one row give what each gives alone."""
    inp = make_inputs(1, 6, 20, 4, torch.float64, False, True, False, False, seed=5)
    x, w, b = inp["x"], inp["weight"], inp["bias"]
    seq = torch.tensor([[0] * 9 + [1] * 11], dtype=torch.int32)
    packed = mvscan.causal_conv1d_fn(x, w, b, seq_idx=seq, activation="silu")
    first = mvscan.causal_conv1d_fn(x[..., :9], w, b, activation="silu")
    second = mvscan.causal_conv1d_fn(x[..., 9:], w, b, activation="silu")
    torch.testing.assert_close(packed, torch.cat([first, second], -1), rtol=0, atol=1e-14)


@pytest.mark.parametrize("init,seq", [(True, False), (False, True), (True, True)])
def test_reference_matches_oracle(init, seq):
    inp = make_inputs(2, 5, 30, 4, torch.float64, False, True, init, seq, seed=9)
    got = run(mvscan.causal_conv1d_ref, inp, "silu", not seq)
    want = oracle_run(inp, "silu", not seq)
    assert rel_err(got[0], want[0]) <= 1e-12
    for name, g in got[2].items():
        assert rel_err(g, want[2][name]) <= 1e-12, name


def test_swish_is_silu():
    inp = make_inputs(2, 8, 10, 4, torch.float32, False, True, False, False)
    a = mvscan.causal_conv1d_fn(inp["x"], inp["weight"], inp["bias"], activation="swish")
    b = mvscan.causal_conv1d_fn(inp["x"], inp["weight"], inp["bias"], activation="silu")
    assert torch.equal(a, b)


BAD = {
    "activation": (dict(activation="relu"), ValueError, "activation must be one of"),
    "seq-with-final": (dict(seq_idx=torch.zeros(2, 10, dtype=torch.int32),
                            return_final_states=True), ValueError, "return_final_states"),
    "seq-int64": (dict(seq_idx=torch.zeros(2, 10, dtype=torch.int64)), TypeError,
                  "seq_idx must be int32"),
    "seq-shape": (dict(seq_idx=torch.zeros(2, 9, dtype=torch.int32)), ValueError,
                  r"seq_idx must have shape \(batch, L\)"),
    "init-shape": (dict(initial_states=torch.zeros(2, 8, 2)), ValueError,
                   r"initial_states must have shape \(batch, channels, K - 1\)"),
    "init-dtype": (dict(initial_states=torch.zeros(2, 8, 3, dtype=torch.float64)), TypeError,
                   "initial_states must have x's dtype"),
    "final-out-shape": (dict(return_final_states=True, final_states_out=torch.zeros(2, 8, 4)),
                        ValueError, "final_states_out must be a tensor of shape"),
    "final-out-dtype": (dict(return_final_states=True,
                             final_states_out=torch.zeros(2, 8, 3, dtype=torch.float64)),
                        TypeError, "final_states_out must have x's dtype"),
    "width": (dict(weight=torch.zeros(8, 33)), ValueError, "kernel width K = 33"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input(name):
    kwargs, error, match = BAD[name]
    args = dict(x=torch.randn(2, 8, 10), weight=torch.randn(8, 4))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        mvscan.causal_conv1d_fn(**args)


@backends.over("cpu", "cuda", "triton")
def test_opcheck(backend):
    inp = to_backend(backend, make_inputs(2, 8, 40, 4, torch.float32, True, True, True, True))
    args = [inp["x"], inp["weight"], inp["bias"], 3, True, inp["seq_idx"], inp["initial_states"]]
    fwd, bwd = backends.conv_ops(backend)
    torch.library.opcheck(fwd.default, args)
    out = fwd(*args)
    torch.library.opcheck(bwd.default, [torch.randn_like(out)] + args)


@backends.over("cpu", "cuda")
def test_compile_fullgraph(backend):
    inp = to_backend(backend, make_inputs(2, 8, 40, 4, torch.float32, True, True, True, False))

    def f(x, w, b, h0):
        out, fs = mvscan.causal_conv1d_fn(x, w, b, initial_states=h0, return_final_states=True,
                                          activation="silu")
        return out.square().sum() + fs.sum()

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True)
    tensors = [inp[k] for k in ("x", "weight", "bias", "initial_states")]
    leaves = [[t.detach().clone().requires_grad_(True) for t in tensors] for _ in range(2)]
    got = torch.autograd.grad(compiled(*leaves[0]), leaves[0])
    want = torch.autograd.grad(f(*leaves[1]), leaves[1])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("K", [1, 4, 5])
@backends.over("emulated-cuda", "triton")
def test_every_pad_left_matches_cpu(backend, K):
    """The operators take any pad_left (causal_conv1d_fn uses K - 1): with sequence ids and
    initial states, the emulated CUDA kernels (or the Triton ones) and the CPU kernel agree at
    every one of them."""
    cpu_fwd, cpu_bwd = backends.conv_ops("cpu")
    dev_fwd, dev_bwd = backends.conv_ops(backend)
    inp = make_inputs(2, 9, 37, K, torch.float64, True, True, True, True, seed=K)
    for pad_left in range(K):
        for silu in (False, True):
            args = (inp["x"], inp["weight"], inp["bias"], pad_left, silu, inp["seq_idx"],
                    inp["initial_states"])
            got = to_cpu([dev_fwd(*to_backend(backend, args)),
                          *dev_bwd(*to_backend(backend, (inp["dout"], *args)))])
            want = [cpu_fwd(*args), *cpu_bwd(inp["dout"], *args)]
            for name, g, w in zip(("out", "dx", "dweight", "dbias", "dinit"), got, want):
                assert g.shape == w.shape, name
                if w.numel():
                    assert rel_err(g, w) <= 1e-12, f"pad_left={pad_left} silu={silu}: {name}"


@backends.over(*backends.WITH_TRITON)
def test_empty_sequence(backend):
    """L = 0 (an empty chunk of a chunked prefill): an empty output, the initial states passed
    through as the final states, and gradients that are exactly those of the final states."""
    fn = backends.causal_conv1d_fn(backend)
    inp = make_inputs(2, 6, 0, 4, torch.float64, False, True, True, False)
    out, fs, grads = to_cpu(run(fn, to_backend(backend, inp), "silu", True))
    assert out.shape == (2, 6, 0)
    assert torch.equal(fs, inp["initial_states"])
    assert torch.equal(grads["initial_states"], inp["dfinal"])
    assert torch.equal(grads["weight"], torch.zeros_like(inp["weight"]))


def layout_view(x: torch.Tensor, layout: str) -> torch.Tensor:
    """x's values in a layout: "contiguous" (steps-fast), "channels_last" (dense, channels-fast),
    or "in_proj_view": the second channel chunk of a wider (batch, L, *) projection, transposed,
    as MambaVision's in_proj(x).transpose(1, 2).chunk(2, dim=1)[1] (channels-fast, strided)."""
    if layout == "contiguous":
        return x.contiguous()
    if layout == "channels_last":
        return x.transpose(1, 2).contiguous().transpose(1, 2)
    batch, dim, L = x.shape
    wide = torch.randn(batch, L, 2 * dim + 3, dtype=x.dtype)
    view = wide.transpose(1, 2)[:, dim:2 * dim]
    view.copy_(x)
    return view


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "in_proj_view"])
@pytest.mark.parametrize("K", [1, 2, 3, 4, 6])
def test_run_kernels_emulated_cuda_match_cpu_under_every_schedule(K, layout):
    """The CUDA kernels' runs of 8 steps (K <= 4; K = 6 takes the wide kernels): L = 21 ends in a
    partial run, 37 channels fill one 32-lane block and part of another, sequence boundaries fall
    inside and at the edges of runs, and initial states add the states' run ahead of step 0.
    Every option combination matches the CPU kernel at fp64 and is bit-identical under the
    emulator's three thread orders."""
    emulated = backends.emulation("depthwise_conv1d")
    cpu_fwd, cpu_bwd = backends.conv_ops("cpu")
    emu_fwd, emu_bwd = backends.conv_ops("emulated-cuda")
    inp = make_inputs(2, 37, 21, K, torch.float64, False, True, True, True, seed=K)
    inp["seq_idx"][0] = torch.tensor([0] * 5 + [1] * 3 + [2] * 8 + [3] * 5, dtype=torch.int32)
    x = layout_view(inp["x"], layout)
    assert torch.equal(x, inp["x"]) and (layout == "contiguous") == (x.stride(2) == 1)
    for init, seq, silu in itertools.product([False, True], [False, True], [False, True]):
        args = (x, inp["weight"], inp["bias"], K // 2, silu,
                inp["seq_idx"] if seq else None, inp["initial_states"] if init else None)
        want = [cpu_fwd(*args), *cpu_bwd(inp["dout"], *args)]
        results = []
        try:
            for mode in (0, 1, 2):
                emulated.set_schedule(mode)
                results.append([emu_fwd(*args), *emu_bwd(inp["dout"], *args)])
        finally:
            emulated.set_schedule(0)
        what = f"init={init} seq={seq} silu={silu}"
        for name, g, w in zip(("out", "dx", "dweight", "dbias", "dinit"), results[0], want):
            assert g.shape == w.shape and g.stride() == w.stride(), f"{what}: {name}"
            if w.numel():
                assert rel_err(g, w) <= 1e-12, f"{what}: {name} {rel_err(g, w):.2e}"
        for other in results[1:]:
            for name, g, r in zip(("out", "dx", "dweight", "dbias", "dinit"), other, results[0]):
                assert torch.equal(g, r), f"{what}: {name} depends on the thread order"
