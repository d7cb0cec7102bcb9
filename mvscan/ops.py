"""The selective-scan operators seen from Python: their fake (meta) implementations for
torch.compile, their autograd, and the public ``selective_scan``."""

from __future__ import annotations

import torch
from torch import Tensor

from ._extension import (EXTENSION_ERROR, STATE_CHUNK_LEN, acc_dtype, check_same_device,
                         kernel_devices, register_fake_and_autograd)
from .backend import ops_for
from .reference import selective_scan_ref

KERNEL_DEVICES: frozenset[str] = kernel_devices("mvscan::selective_scan_fwd")


def n_state_chunks(seqlen: int) -> int:
    return (seqlen + STATE_CHUNK_LEN - 1) // STATE_CHUNK_LEN


def _selective_scan_fwd_fake(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                             initial_state=None):
    batch, dim, seqlen = u.shape
    out = u.new_empty((batch, dim, seqlen))
    states = u.new_empty(
        (batch, dim, n_state_chunks(seqlen), A.shape[1]), dtype=acc_dtype(u.dtype)
    )
    return out, states


def _selective_scan_bwd_fake(
    dout, dstates, u, delta, A, B, C, D, z, delta_bias, states, delta_softplus,
    initial_state=None,
):
    acc = acc_dtype(u.dtype)

    def grad_bc(BC):
        return BC.new_empty(BC.shape, dtype=u.dtype if BC.dim() > 2 else acc)

    def grad_optional(t, dtype):
        return u.new_empty(t.shape if t is not None else (0,), dtype=dtype)

    return (
        torch.empty_like(u, memory_format=torch.contiguous_format),
        torch.empty_like(u, memory_format=torch.contiguous_format),
        A.new_empty(A.shape, dtype=acc),
        grad_bc(B),
        grad_bc(C),
        grad_optional(D, acc),
        grad_optional(z, u.dtype),
        grad_optional(delta_bias, acc),
        grad_optional(initial_state, acc),
    )


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, initial_state, output[1])
    ctx.delta_softplus = delta_softplus


def _backward_with(bwd_op):
    """The autograd backward of a selective_scan_fwd operator whose gradients bwd_op computes."""

    def backward(ctx, dout, dstates):
        u, delta, A, B, C, D, z, delta_bias, initial_state, states = ctx.saved_tensors
        if dout is None:
            dout = torch.zeros_like(u)
        du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dh0 = bwd_op(
            dout, dstates, u, delta, A, B, C, D, z, delta_bias, states, ctx.delta_softplus,
            initial_state,
        )
        return (
            du,
            ddelta,
            dA,
            dB,
            dC,
            dD if D is not None else None,
            dz if z is not None else None,
            ddelta_bias if delta_bias is not None else None,
            None,
            dh0 if initial_state is not None else None,
        )

    return backward


def register_python_parts(namespace: str) -> None:
    """The fakes and autograd of <namespace>::selective_scan_fwd / _bwd."""
    register_fake_and_autograd(namespace, "selective_scan", _selective_scan_fwd_fake,
                               _selective_scan_bwd_fake, _backward_with, _setup_context)


if EXTENSION_ERROR is None:
    register_python_parts("mvscan")


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """The selective scan of Mamba: the same arguments and results as mamba_ssm's
    ``selective_scan_fn``, on CPU (hand-written C++) and wherever a compiled kernel exists.

    Args:
        u: (batch, dim, L), float32 / float16 / bfloat16 (float64 too): the input sequence.
        delta: (batch, dim, L), u's dtype: step sizes before delta_bias and softplus.
        A: (dim, N), float32 (float64 for float64 u), real; N from 1 to 256.
        B, C: each (dim, N) constant in A's dtype, or (batch, N, L) variable, or
            (batch, G, N, L) grouped with G dividing dim, in u's dtype.
        D: (dim,) float32 skip connection, or None.
        z: (batch, dim, L) gate in u's dtype, or None: out = y * silu(z).
        delta_bias: (dim,) float32 added to delta, or None.
        delta_softplus: apply softplus to delta + delta_bias.
        return_last_state: also return the final state h_L, (batch, dim, N) float32
            (float64 for float64 u); gradients flow through it too.
        initial_state: h_0, the state before the first step, (batch, dim, N) float32 (float64
            for float64 u), or None for zeros; differentiable. Scanning a sequence in pieces,
            each from the previous piece's last state, equals scanning it whole.

    Returns:
        out (batch, dim, L) in u's dtype, or (out, last_state).

    Differentiable w.r.t. every tensor argument. State and accumulation are float32 (float64 for
    float64 inputs). Runs the kernels mvscan.active_backend(u.device) names: on CUDA without
    compiled CUDA kernels the Triton ones, and where neither exists ``selective_scan_ref``
    (with a warning), which computes the same function step by step.
    """
    if not isinstance(u, Tensor):
        raise TypeError(f"mvscan.selective_scan: u must be a torch.Tensor, got {type(u).__name__}")
    check_same_device("mvscan.selective_scan", "u", dict(u=u, delta=delta, A=A, B=B, C=C, D=D,
                                                           z=z, delta_bias=delta_bias,
                                                           initial_state=initial_state))
    ops = ops_for("selective_scan", u.device, "mvscan.selective_scan")
    if ops is None:
        return selective_scan_ref(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, initial_state
        )
    out, states = ops[0](
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state
    )
    if return_last_state:
        return out, states[:, :, -1]
    return out
