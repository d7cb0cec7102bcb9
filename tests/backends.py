"""The backends every operator test body runs on, so that each body is written once:

- "cpu": the CPU kernels (torch.ops.mvscan on CPU tensors), under every instruction-set build
  this CPU can run where a test asks for them (`variants`);
- "cuda": the CUDA kernels on a real GPU (skipped without one; run them all on a GPU machine
  with scripts/gpu_check.sh);
- "triton": the Triton kernels (mvscan/triton_backend; scan and conv only), on the GPU when there
  is one, else on CPU tensors through Triton's interpreter (conftest.py sets TRITON_INTERPRET=1
  on a machine without a GPU); skipped where Triton does not import. Tests name it explicitly:
  `over()` without arguments leaves it out (it has no decode steps);
- "emulated-cuda": the CUDA kernels' own device code run on CPU through a fiber emulation of
  CUDA threads (tests/cuda_emulation/, built on first use). It checks the kernels' indexing,
  chunking, shared-memory layout, shuffle reductions, barrier placement (a divergent
  __syncthreads or shuffle raises) and math, including the host driver's allocation and final
  reductions; it cannot see memory races or anything about real hardware. Slow: its tests use
  smaller shape grids.

Tensors go in and come out on the CPU: `to_backend` moves them to the backend's device, and
`to_cpu` brings results back.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Sequence

import pytest
import torch

import mvscan
from mvscan.backend import kernel_ops, triton_importable, use_backend
from mvscan.reference import with_final_states
from mvscan.reference import conv_pad_left
from emulation import build_emulation
from helpers import ARGS, GRAD_NAMES, cotangents, cpu_isa, run_with_grads, supported_isas

BACKENDS = ("cpu", "cuda", "emulated-cuda", "triton")
DEFAULT_BACKENDS = ("cpu", "cuda", "emulated-cuda")  # over()'s: the ones with every operator
WITH_TRITON = (*DEFAULT_BACKENDS, "triton")  # for the scan's and the conv's tests
DEVICE_BACKENDS = ("cuda", "emulated-cuda")  # the CUDA kernels, checked against the CPU kernel
HAS_CUDA = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
needs_triton = pytest.mark.skipif(not triton_importable(), reason="Triton is not installed")
ISAS = supported_isas()


def param(backend: str, *values, id: str | None = None):
    """One pytest.param with the backend first; "cuda" skips without a GPU, "triton" without
    Triton."""
    marks = {"cuda": [needs_gpu], "triton": [needs_triton]}.get(backend, [])
    ident = backend if id is None else f"{backend}-{id}"
    return pytest.param(backend, *values, marks=marks, id=ident)


def parametrize(argnames: str, grids: dict[str, Iterable], id: Callable | None = None):
    """pytest.mark.parametrize("backend," + argnames) over each backend's own list of values
    (a backend left out of `grids` does not run the test). `id(values)` names one entry."""
    names = [n.strip() for n in argnames.split(",") if n.strip()]
    params = []
    for backend, values in grids.items():
        assert backend in BACKENDS, backend
        for v in values:
            v = tuple(v) if len(names) > 1 else (v,)
            params.append(param(backend, *v, id=None if id is None else id(*v)))
    return pytest.mark.parametrize(",".join(["backend"] + names), params)


def over(*which: str):
    """pytest.mark.parametrize("backend", ...) over the named backends (default:
    DEFAULT_BACKENDS)."""
    return pytest.mark.parametrize("backend", [param(b) for b in (which or DEFAULT_BACKENDS)])


def device(backend: str) -> torch.device:
    on_gpu = backend == "cuda" or (backend == "triton" and HAS_CUDA)
    return torch.device("cuda" if on_gpu else "cpu")


def to_backend(backend: str, obj):
    """Tensors (alone or in a dict, list or tuple), or a module, moved to the backend's device."""
    dev = device(backend)
    if isinstance(obj, torch.nn.Module):
        return obj.to(dev)
    return _map(obj, lambda t: t.to(dev))


def to_cpu(obj):
    return _map(obj, lambda t: t.cpu())


def _map(obj, fn):
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map(v, fn) for v in obj)
    return obj


def variants(backend: str) -> Sequence[str]:
    """The labels a backend runs under: every CPU instruction-set build, else the backend."""
    return ISAS if backend == "cpu" else (backend,)


@contextlib.contextmanager
def using(backend: str, variant: str | None):
    """Runs the block under one of `variants(backend)` (a CPU instruction-set build); None: the
    build the CPU kernel picks by itself. "triton" forces the Triton backend for the public
    functions."""
    if backend == "cpu" and variant is not None:
        with cpu_isa(variant):
            yield
    elif backend == "triton":
        with use_backend("triton"):
            yield
    else:
        yield


@functools.cache
def emulation(op: str):
    """The emulated CUDA kernels of op ("selective_scan", "depthwise_conv1d",
    "selective_state_update" or "causal_conv1d_update") as an extension, built once per
    session."""
    name = {"selective_scan": "mvscan_scan_emulation",
            "depthwise_conv1d": "mvscan_conv_emulation",
            "selective_state_update": "mvscan_state_update_emulation",
            "causal_conv1d_update": "mvscan_conv_update_emulation"}[op]
    return build_emulation(name, f"{op}_emulated.cpp")


def op_pair(backend: str, op: str):
    """(fwd, bwd): the backend's <op>_fwd / <op>_bwd operators, with torch.ops.mvscan's
    signatures (tensors on the backend's device)."""
    if backend == "emulated-cuda":
        source = emulation(op)
        return getattr(source, f"{op}_fwd"), getattr(source, f"{op}_bwd")
    return kernel_ops("triton" if backend == "triton" else "cpu", op)


# --- selective scan ----------------------------------------------------------------------------

def scan_ops(backend: str):
    """(fwd, bwd) of the selective scan on the backend (see op_pair)."""
    return op_pair(backend, "selective_scan")


class _EmulatedScan(torch.autograd.Function):
    """The emulated kernels behind autograd, as mvscan.ops registers the real ones."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, initial_state):
        fwd, _ = scan_ops("emulated-cuda")
        out, states = fwd(u, delta, A, B, C, D, z, delta_bias, softplus, initial_state)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, initial_state, states)
        ctx.softplus = softplus
        return out, states

    @staticmethod
    def backward(ctx, dout, dstates):
        u, delta, A, B, C, D, z, delta_bias, initial_state, states = ctx.saved_tensors
        _, bwd = scan_ops("emulated-cuda")
        grads = bwd(dout, dstates, u, delta, A, B, C, D, z, delta_bias, states, ctx.softplus,
                    initial_state)
        g = [g if t is not None else None
             for g, t in zip(grads, (u, delta, A, B, C, D, z, delta_bias, initial_state))]
        return (*g[:8], None, g[8])


def _emulated_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                             delta_softplus=False, return_last_state=False, initial_state=None):
    out, states = _EmulatedScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                      initial_state)
    return (out, states[:, :, -1]) if return_last_state else out


def _forcing_triton(fn: Callable) -> Callable:
    """fn (a public mvscan function) with the Triton backend forced for the call."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with use_backend("triton"):
            return fn(*args, **kwargs)
    return call


def selective_scan(backend: str) -> Callable:
    """The backend's scan with mvscan.selective_scan's signature and autograd."""
    if backend == "triton":
        return _forcing_triton(mvscan.selective_scan)
    return _emulated_selective_scan if backend == "emulated-cuda" else mvscan.selective_scan


def scan_with_grads(backend: str, variant: str | None = None):
    """run(inputs, softplus, dout, dlast) -> (out, last_state, grads) on the CPU, computed on the
    backend (under `variant`, see `using`): for helpers.check_against_oracle."""

    def run(inputs, softplus, dout, dlast):
        with using(backend, variant):
            return to_cpu(run_with_grads(selective_scan(backend), to_backend(backend, inputs),
                                         softplus, *to_backend(backend, (dout, dlast))))
    return run


def scan_runs(backend: str) -> dict[str, Callable]:
    """{label: run} over every variant of the backend, for helpers.check_against_oracle."""
    return {v: scan_with_grads(backend, v) for v in variants(backend)}


def run_scan_ops(backend: str, args: Sequence, softplus: bool, seed: int = 1):
    """out, states and every gradient ({"du": ...}) of the backend's fwd and bwd operators on
    args (ARGS order, CPU tensors), with a cotangent for every saved state (so each chunk
    boundary's gradient path is exercised); results on the CPU."""
    fwd, bwd = scan_ops(backend)
    dargs = to_backend(backend, list(args))
    out, states = fwd(*dargs, softplus)
    dout, _ = cotangents(dict(zip(ARGS, args)), seed)
    g = torch.Generator().manual_seed(seed + 1)
    dstates = torch.randn(states.shape, generator=g, dtype=torch.float64).to(states.dtype)
    grads = bwd(*to_backend(backend, (dout, dstates)), *dargs, states, softplus)
    return to_cpu((out, states, dict(zip(GRAD_NAMES, grads))))


# --- depthwise conv1d --------------------------------------------------------------------------

def conv_ops(backend: str):
    """(fwd, bwd) of the depthwise conv1d on the backend (see op_pair)."""
    return op_pair(backend, "depthwise_conv1d")


class _EmulatedConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, pad_left, silu, seq_idx=None, initial_states=None):
        fwd, _ = conv_ops("emulated-cuda")
        ctx.save_for_backward(x, weight, bias, seq_idx, initial_states)
        ctx.pad_left, ctx.silu = pad_left, silu
        return fwd(x, weight, bias, pad_left, silu, seq_idx, initial_states)

    @staticmethod
    def backward(ctx, dout):
        x, weight, bias, seq_idx, initial_states = ctx.saved_tensors
        _, bwd = conv_ops("emulated-cuda")
        dx, dweight, dbias, dinit = bwd(dout, x, weight, bias, ctx.pad_left, ctx.silu, seq_idx,
                                        initial_states)
        return (dx, dweight, (dbias if bias is not None else None), None, None, None,
                (dinit if initial_states is not None else None))


def _emulated_depthwise_conv1d(x, weight, bias=None, padding="same", activation=None):
    w2 = weight.reshape(weight.shape[0], weight.shape[-1])
    return _EmulatedConv.apply(x, w2, bias, conv_pad_left(weight.shape[-1], padding),
                               activation == "silu")


def _emulated_causal_conv1d_fn(x, weight, bias=None, seq_idx=None, initial_states=None,
                               return_final_states=False, final_states_out=None, activation=None):
    K = weight.shape[-1]
    out = _EmulatedConv.apply(x, weight, bias, K - 1, activation is not None, seq_idx,
                              initial_states)
    return with_final_states(out, x, initial_states, K, return_final_states, final_states_out)


def causal_conv1d_fn(backend: str) -> Callable:
    """The backend's causal conv with mvscan.causal_conv1d_fn's signature and autograd."""
    if backend == "triton":
        return _forcing_triton(mvscan.causal_conv1d_fn)
    if backend == "emulated-cuda":
        return _emulated_causal_conv1d_fn
    return mvscan.causal_conv1d_fn


def depthwise_conv1d(backend: str) -> Callable:
    """The backend's conv with mvscan.depthwise_conv1d's signature and autograd."""
    if backend == "triton":
        return _forcing_triton(mvscan.depthwise_conv1d)
    if backend == "emulated-cuda":
        return _emulated_depthwise_conv1d
    return mvscan.depthwise_conv1d


# --- decode steps ------------------------------------------------------------------------------

def _emulated_selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None,
                                     dt_softplus=False, state_batch_indices=None,
                                     max_blocks=None):
    """max_blocks: a cap on the emulated grid (None: the CUDA op's), so that each block strides
    over several groups of rows."""
    return emulation("selective_state_update").selective_state_update(
        state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices, max_blocks)


def selective_state_update(backend: str) -> Callable:
    """The backend's decode step with mvscan.selective_state_update's signature."""
    if backend == "emulated-cuda":
        return _emulated_selective_state_update
    return mvscan.selective_state_update


def _emulated_causal_conv1d_update(x, conv_state, weight, bias=None, activation=None,
                                   cache_seqlens=None, conv_state_indices=None, max_blocks=None):
    """max_blocks: as for _emulated_selective_state_update."""
    assert activation in mvscan.decode.CONV_ACTIVATIONS, activation
    return emulation("causal_conv1d_update").causal_conv1d_update(
        x, conv_state, weight.reshape(weight.shape[0], weight.shape[-1]), bias,
        activation is not None, cache_seqlens, conv_state_indices, max_blocks)


def causal_conv1d_update(backend: str) -> Callable:
    """The backend's conv decode step with mvscan.causal_conv1d_update's signature."""
    if backend == "emulated-cuda":
        return _emulated_causal_conv1d_update
    return mvscan.causal_conv1d_update
