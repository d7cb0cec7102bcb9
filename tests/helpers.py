"""Input generation, gradient collection and error measures shared by the tests."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

import mvscan  # also loads the operators behind torch.ops.mvscan
import oracle

ARGS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
GRAD_NAMES = tuple("d" + a for a in ARGS)  # the backward op's results, in order

# The input dtypes every operator takes on every device, as the extension reports them
# (csrc/common/dtypes.def), with their full- and low-precision subsets.
INPUT_DTYPES: tuple[torch.dtype, ...] = mvscan.INPUT_DTYPES
FULL_PRECISION = tuple(d for d in INPUT_DTYPES if d.itemsize >= 4)  # float32, float64
LOW_PRECISION = tuple(d for d in INPUT_DTYPES if d.itemsize == 2)  # float16, bfloat16


def dtype_id(dtype: torch.dtype) -> str:
    """A readable test id for a dtype: "fp32", "bf16"."""
    return ("bf" if dtype == torch.bfloat16 else "fp") + str(dtype.itemsize * 8)


# Relative-norm tolerances against the float64 oracle, by dtype.
REL_TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


def weight_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@dataclass(frozen=True)
class Case:
    batch: int = 2
    dim: int = 20
    L: int = 49
    N: int = 8
    B_kind: str = "variable"  # "constant", "variable" or "grouped"
    C_kind: str = "variable"
    D: bool = True
    z: bool = True
    delta_bias: bool = True
    softplus: bool = True
    dtype: torch.dtype = torch.float32
    B_groups: int = 2
    C_groups: int = 4
    initial_state: bool = False  # start from a random h_0 instead of zeros


def make_inputs(case: Case, seed: int = 0) -> dict[str, torch.Tensor | None]:
    """Random inputs for a case, drawn in float64 and rounded to the case's dtypes. Step sizes
    stay positive and A negative, as in trained Mamba models, so long scans stay bounded."""
    g = torch.Generator().manual_seed(seed)
    dt, wt = case.dtype, weight_dtype(case.dtype)
    b, d, L, N = case.batch, case.dim, case.L, case.N

    def rand(*shape, scale=1.0, shift=0.0, dtype=dt):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift).to(dtype)

    def bc(kind, groups):
        if kind == "constant":
            return rand(d, N, dtype=wt)
        if kind == "variable":
            return rand(b, N, L)
        return rand(b, groups, N, L)

    if case.softplus:
        delta = rand(b, d, L, scale=0.5, shift=-1.0)
    else:
        delta = (torch.rand(b, d, L, generator=g, dtype=torch.float64) * 0.4 + 0.02).to(dt)
    # Without softplus, delta + delta_bias is the step size itself: keep it positive.
    bias = rand(d, scale=0.3, dtype=wt) if case.softplus else (
        torch.rand(d, generator=g, dtype=torch.float64) * 0.05).to(wt)
    A = (-(torch.rand(d, N, generator=g, dtype=torch.float64) * 2.0 + 0.1)).to(wt)
    inputs = dict(
        u=rand(b, d, L),
        delta=delta,
        A=A,
        B=bc(case.B_kind, case.B_groups),
        C=bc(case.C_kind, case.C_groups),
        D=rand(d, dtype=wt) if case.D else None,
        z=rand(b, d, L) if case.z else None,
        delta_bias=bias if case.delta_bias else None,
    )
    if case.initial_state:  # drawn last, so the other inputs match the case without h_0
        inputs["initial_state"] = rand(b, d, N, dtype=wt)
    return inputs


def cotangents(inputs, seed: int = 1):
    """Random dout (u's dtype) and dlast (float32/64) for the loss <dout, out> + <dlast, h_L>."""
    g = torch.Generator().manual_seed(seed)
    u, A = inputs["u"], inputs["A"]
    dout = torch.randn(u.shape, generator=g, dtype=torch.float64).to(u.dtype)
    dlast = torch.randn(u.shape[0], u.shape[1], A.shape[1], generator=g, dtype=torch.float64)
    return dout, dlast.to(weight_dtype(u.dtype))


def run_with_grads(fn, inputs, softplus: bool, dout, dlast):
    """Runs fn (mvscan.selective_scan or the reference) with return_last_state and returns
    (out, last_state, {name: grad}) for the loss <dout, out> + <dlast, h_L>. inputs may hold an
    "initial_state"."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items() if v is not None}
    kwargs = {k: leaves.get(k) for k in ARGS}
    if "initial_state" in leaves:
        kwargs["initial_state"] = leaves["initial_state"]
    out, last = fn(**kwargs, delta_softplus=softplus, return_last_state=True)
    grads = torch.autograd.grad([out, last], list(leaves.values()), [dout, dlast])
    return out.detach(), last.detach(), dict(zip(leaves.keys(), grads))


def oracle_results(inputs, softplus: bool, dout, dlast):
    """The oracle's (out, last_state, grads) on exactly the same (already rounded) inputs."""
    np_in = {k: (v.double().numpy() if v is not None else None) for k, v in inputs.items()}
    fw = oracle.forward(**np_in, delta_softplus=softplus)
    bw = oracle.backward(dout.double().numpy(), dlast.double().numpy(), **np_in,
                         delta_softplus=softplus)
    to_t = lambda x: torch.from_numpy(x)  # noqa: E731
    grads = {k: to_t(v) for k, v in bw.items() if v is not None}
    return to_t(fw["out"]), to_t(fw["last_state"]), grads


# The grid every scan kernel (CPU, CUDA) is checked on against the oracle.
KINDS = ("constant", "variable", "grouped")
GRID_L = (1, 2, 7, 49, 196, 2049, 4100)
GRID_N = (1, 8, 16)


def grid_case(L: int, N: int, kind: str, dtype: torch.dtype) -> Case:
    return Case(batch=1 if L >= 2049 else 2, dim=20, L=L, N=N, B_kind=kind, C_kind=kind,
                dtype=dtype)


def check_against_oracle(case: Case, runs: dict, seed: int = 0) -> None:
    """Asserts each runs[label](inputs, softplus, dout, dlast) -> (out, last_state, grads) is
    within the case dtype's tolerance of the oracle (max error within 10x of it)."""
    inputs = make_inputs(case, seed)
    dout, dlast = cotangents(inputs)
    ref = oracle_results(inputs, case.softplus, dout, dlast)
    tol = REL_TOL[case.dtype]
    for label, run in runs.items():
        for name, (rel, mx) in all_errors(run(inputs, case.softplus, dout, dlast), ref).items():
            assert rel <= tol and mx <= 10 * tol, f"{label}: {name} rel {rel:.2e} max {mx:.2e}"


def check_low_precision(case: Case, runs: dict, seed: int = 0) -> None:
    """fp16/bf16: each runs[label] (as in check_against_oracle) must be within twice the error
    of the pure-PyTorch reference computed in the same dtype, both against the oracle."""
    inputs = make_inputs(case, seed)
    dout, dlast = cotangents(inputs)
    ref = oracle_results(inputs, case.softplus, dout, dlast)
    baseline = all_errors(run_with_grads(mvscan.selective_scan_ref, inputs,
                                         case.softplus, dout, dlast), ref)
    for label, run in runs.items():
        for name, (rel, _) in all_errors(run(inputs, case.softplus, dout, dlast), ref).items():
            allowed = 2 * baseline[name][0] + 1e-5
            assert rel <= allowed, f"{label}: {name} rel {rel:.2e} > {allowed:.2e}"


def compare_ops(got, ref, tol: float, what: str) -> None:
    """(out, states, grads) of one scan fwd/bwd operator pair (backends.run_scan_ops) against
    another's on the same inputs: relative norm errors within tol, same shapes and dtypes."""
    out, states, grads = got
    r_out, r_states, r_grads = ref
    assert rel_err(out, r_out) <= tol, f"{what}: out"
    assert rel_err(states, r_states) <= tol, f"{what}: states"
    for name, r in r_grads.items():
        assert grads[name].shape == r.shape and grads[name].dtype == r.dtype, f"{what}: {name}"
        if r.numel():
            assert rel_err(grads[name], r) <= tol, f"{what}: {name}"


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.double(), ref.double()
    assert x.shape == ref.shape, f"shape {tuple(x.shape)} != {tuple(ref.shape)}"
    assert torch.isfinite(x).all(), "non-finite values"
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def max_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Max absolute error, relative to the largest reference magnitude."""
    x, ref = x.double(), ref.double()
    return ((x - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def all_errors(got, ref) -> dict[str, tuple[float, float]]:
    out, last, grads = got
    r_out, r_last, r_grads = ref
    errs = {"out": (rel_err(out, r_out), max_err(out, r_out)),
            "last_state": (rel_err(last, r_last), max_err(last, r_last))}
    assert grads.keys() == r_grads.keys()
    for k in grads:
        assert grads[k].dtype == ref_grad_dtype(k, got[0].dtype, grads[k]), k
        errs["d" + k] = (rel_err(grads[k], r_grads[k]), max_err(grads[k], r_grads[k]))
    return errs


def ref_grad_dtype(name: str, out_dtype: torch.dtype, grad: torch.Tensor) -> torch.dtype:
    """The dtype each gradient must have: its input's."""
    if name in ("u", "delta", "z"):
        return out_dtype
    if name in ("B", "C") and grad.dim() > 2:
        return out_dtype
    return weight_dtype(out_dtype)


def supported_isas() -> list[str]:
    found = []
    for isa in ("baseline", "avx2", "avx512"):
        try:
            torch.ops.mvscan._set_cpu_isa(isa)
            found.append(isa)
        except (ValueError, RuntimeError):
            pass
    torch.ops.mvscan._set_cpu_isa("")
    return found


@contextlib.contextmanager
def cpu_isa(name: str):
    torch.ops.mvscan._set_cpu_isa(name)
    try:
        yield
    finally:
        torch.ops.mvscan._set_cpu_isa("")


# --- depthwise conv1d --------------------------------------------------------------------------

def conv_inputs(batch, channels, L, K, dtype, channels_last, bias, seed=0, weight_3d=True):
    """x (channels-contiguous storage if channels_last), weight ((channels, 1, K) or
    (channels, K)), bias or None, and dout, drawn in float64 and rounded to dtype."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, L, channels, generator=g, dtype=torch.float64).to(dtype)
    x = x.transpose(1, 2) if channels_last else x.transpose(1, 2).contiguous()
    wshape = (channels, 1, K) if weight_3d else (channels, K)
    w = (torch.randn(*wshape, generator=g, dtype=torch.float64) * 0.5).to(dtype)
    b = torch.randn(channels, generator=g, dtype=torch.float64).to(dtype) if bias else None
    dout = torch.randn(batch, channels, L, generator=g, dtype=torch.float64).to(dtype)
    return x, w, b, dout


def conv_run(fn, x, w, b, dout, padding, activation):
    """y and the gradients (dx, dweight[, dbias]) of <dout, fn(x, w, b, padding, activation)>."""
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in (x, w, b)]
    y = fn(leaves[0], leaves[1], leaves[2], padding, activation)
    wanted = [t for t in leaves if t is not None]
    grads = torch.autograd.grad(y, wanted, dout)
    return y.detach(), grads


def torch_conv(x, w, b, padding, activation):
    """The plain PyTorch statement of the op: F.conv1d, then F.silu."""
    K = w.shape[-1]
    w3 = w.reshape(w.shape[0], 1, K)
    if padding == "same":
        y = F.conv1d(x, w3, b, groups=x.shape[1], padding="same")
    else:
        y = F.conv1d(F.pad(x, (K - 1, 0)), w3, b, groups=x.shape[1])
    return F.silu(y) if activation == "silu" else y


def conv_oracle_results(x, w, b, dout, padding, activation):
    """The oracle's y and gradients (shaped like x, w[, b]) on the same (CPU) inputs."""
    K = w.shape[-1]
    pad_left = K - 1 if padding == "causal" else (K - 1) // 2
    args = (x.double().numpy(), w.reshape(w.shape[0], K).double().numpy(),
            None if b is None else b.double().numpy())
    y = oracle.conv_forward(*args, pad_left, activation == "silu")
    dx, dw, db = oracle.conv_backward(dout.double().numpy(), *args, pad_left, activation == "silu")
    grads = [dx, dw.reshape(tuple(w.shape))] + ([db] if b is not None else [])
    return torch.from_numpy(y), [torch.from_numpy(np.ascontiguousarray(t)) for t in grads]
