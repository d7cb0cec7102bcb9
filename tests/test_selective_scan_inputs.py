"""Bad arguments to the scan raise a clear exception naming the argument, what was expected and
what came: through mvscan.selective_scan, and through each backend's operators directly (the
CUDA drivers run the same host-side checks as the CPU op)."""

from __future__ import annotations

import pytest
import torch

import backends
import mvscan
from backends import scan_ops, to_backend
from helpers import ARGS, Case, make_inputs

ERRORS = (ValueError, TypeError)


def base(**case_kw):
    return make_inputs(Case(batch=2, dim=8, L=10, N=4, **case_kw))


def call(inputs, **kw):
    return mvscan.selective_scan(**inputs, **kw)


def with_(name, value, **case_kw):
    inputs = base(**case_kw)
    inputs[name] = value
    return inputs


BAD = [
    ("u 2-d", lambda: with_("u", torch.randn(8, 10)), r"u must be a 3-d tensor .*\[8, 10\]"),
    ("u int", lambda: with_("u", torch.ones(2, 8, 10, dtype=torch.int64)),
     r"u must be float32, float16, bfloat16 or float64, got Long"),
    ("u complex", lambda: with_("u", torch.randn(2, 8, 10, dtype=torch.complex64)),
     r"u is complex"),
    ("L zero", lambda: {**base(), "u": torch.randn(2, 8, 0), "delta": torch.randn(2, 8, 0),
                        "B": torch.randn(2, 4, 0), "C": torch.randn(2, 4, 0), "z": None},
     r"L = u.shape\[2\] must be at least 1"),
    ("delta shape", lambda: with_("delta", torch.randn(2, 8, 11)), r"delta must have shape"),
    ("delta dtype", lambda: with_("delta", torch.randn(2, 8, 10, dtype=torch.float64)),
     r"delta must be Float .*got Double"),
    ("A complex", lambda: with_("A", torch.randn(8, 4, dtype=torch.complex64)), r"A is complex"),
    ("A dim mismatch", lambda: with_("A", -torch.rand(7, 4)), r"A must have shape \(dim, N\)"),
    ("A fp16", lambda: with_("A", -torch.rand(8, 4).half()), r"A must be Float"),
    ("N too large", lambda: {**base(B_kind="constant", C_kind="constant"), "A": -torch.rand(8, 300),
                             "B": torch.randn(8, 300), "C": torch.randn(8, 300)},
     r"N = 300 states .* 1 to 256"),
    ("B 5-d", lambda: with_("B", torch.randn(2, 1, 1, 4, 10)),
     r"B must be \(dim, N\) constant, \(batch, N, L\) variable or \(batch, groups, N, L\)"),
    ("B wrong N", lambda: with_("B", torch.randn(2, 5, 10)), r"B must have shape \(batch, N, L\)"),
    ("B wrong batch", lambda: with_("B", torch.randn(3, 4, 10)),
     r"B must have shape \(batch, N, L\)"),
    ("C wrong L", lambda: with_("C", torch.randn(2, 2, 4, 9)),
     r"C must have shape \(batch, groups, N, L\)"),
    ("groups do not divide", lambda: with_("B", torch.randn(2, 3, 4, 10)),
     r"B has 3 groups, which must divide dim = 8"),
    ("constant B dtype", lambda: with_("B", torch.randn(8, 4, dtype=torch.float64)),
     r"B must be Float \(a constant B/C has A's dtype\)"),
    ("variable C dtype", lambda: with_("C", torch.randn(2, 4, 10).half()),
     r"C must be Float \(a variable B/C has u's dtype\)"),
    ("D shape", lambda: with_("D", torch.randn(9)), r"D must have shape \(dim,\)"),
    ("z shape", lambda: with_("z", torch.randn(2, 8, 9)), r"z must have shape"),
    ("delta_bias dtype", lambda: with_("delta_bias", torch.randn(8).half()),
     r"delta_bias must be Float"),
    ("device mismatch", lambda: with_("A", -torch.rand(8, 4, device="meta")),
     r"A is on meta but u is on cpu"),
]


@pytest.mark.parametrize("make,pattern", [(m, p) for _, m, p in BAD], ids=[n for n, _, _ in BAD])
def test_bad_input_raises_clear_error(make, pattern):
    with pytest.raises(ERRORS, match=pattern):
        call(make(), delta_softplus=True)


def test_u_not_a_tensor():
    inputs = base()
    inputs["u"] = [[1.0]]
    with pytest.raises(TypeError, match="u must be a torch.Tensor"):
        call(inputs)


@backends.over()
def test_forward_op_checks_arguments(backend):
    """The operators validate by themselves, so torch.ops.mvscan callers get the same errors."""
    fwd, _ = scan_ops(backend)
    inp = to_backend(backend, base())
    args = [inp[k] for k in ARGS]
    big = to_backend(backend, [-torch.rand(8, 300), torch.randn(8, 300), torch.randn(8, 300)])
    with pytest.raises(ERRORS, match="N = 300 states"):
        fwd(inp["u"], inp["delta"], *big, None, None, None, False)
    with pytest.raises(ERRORS, match="delta must have shape"):
        fwd(args[0], args[1][:, :, :-1], *args[2:], True)


@backends.over()
def test_backward_op_checks_states(backend):
    fwd, bwd = scan_ops(backend)
    inp = to_backend(backend, base())
    args = [inp[k] for k in ARGS]
    out, states = fwd(*args, True)
    with pytest.raises(ERRORS, match=r"states must have shape"):
        bwd(torch.randn_like(out), None, *args, states[:, :, :, :2], True)
    with pytest.raises(ERRORS, match=r"dout must have shape"):
        bwd(to_backend(backend, torch.randn(2, 8, 3)), None, *args, states, True)


def test_unknown_cpu_isa():
    with pytest.raises(ERRORS, match="unknown CPU instruction set 'sse9'"):
        torch.ops.mvscan._set_cpu_isa("sse9")
