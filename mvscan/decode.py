"""The decode-step operators seen from Python: their fake kernels for torch.compile, and the
public ``selective_state_update`` (mamba_ssm's) and ``causal_conv1d_update`` (causal-conv1d's),
with those libraries' names and parameters so that Mamba decode code swaps one import.

Both update a state tensor in place (declared in the schemas, csrc/registration.cpp, so
torch.compile and opcheck see the mutation) and have no autograd: they are inference steps."""

from __future__ import annotations

import torch
from torch import Tensor

from ._extension import EXTENSION_ERROR, check_same_device, kernel_devices, warn_fallback
from .reference import causal_conv1d_update_ref, selective_state_update_ref

STATE_UPDATE_DEVICES: frozenset[str] = kernel_devices("mvscan::selective_state_update")
CONV_UPDATE_DEVICES: frozenset[str] = kernel_devices("mvscan::causal_conv1d_update")
# causal-conv1d's names for SiLU; anything else (True included) is refused, as there.
CONV_ACTIVATIONS = (None, "silu", "swish")


if EXTENSION_ERROR is None:

    @torch.library.register_fake("mvscan::selective_state_update")
    def _selective_state_update_fake(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus,
                                     state_batch_indices):
        return x.new_empty(x.shape)  # contiguous, as the kernels allocate it

    @torch.library.register_fake("mvscan::causal_conv1d_update")
    def _causal_conv1d_update_fake(x, conv_state, weight, bias, silu, cache_seqlens,
                                   conv_state_indices):
        return x.new_empty(x.shape)


def selective_state_update(
    state: Tensor,
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    dt_bias: Tensor | None = None,
    dt_softplus: bool = False,
    state_batch_indices: Tensor | None = None,
) -> Tensor:
    """One decode step of the selective scan, updating ``state`` in place: mamba_ssm's
    ``selective_state_update`` (same arguments, Mamba-1 and Mamba-2 layouts), on CPU and CUDA.

    Per row (batch, head, channel) with states h (N of them)::

        dt' = softplus(dt + dt_bias) if dt_softplus else dt + dt_bias
        h   = exp(dt' * A) * h + dt' * x * B
        out = (sum_n C[n] * h[n] + D * x) * silu(z)

    Args:
        state: (batch, dim, N) or (batch, heads, dim, N); float32, float16 or bfloat16 (float64
            with float64 x). Updated in place, so its elements must not share memory with each
            other (an expanded view) or with another argument: the CPU and CUDA kernels raise
            a ValueError otherwise (a check of strides and storage ranges, no sync). With
            state_batch_indices its first dimension may be larger than batch (a cache of rows).
        x: (batch, dim) or (batch, heads, dim); float32 / float16 / bfloat16 (float64 too).
        dt: like x, in x's dtype: step sizes before dt_bias and softplus.
        A: (dim, N) or (heads, dim, N), float32 or x's dtype; N from 1 to 256.
        B, C: (batch, N) or (batch, groups, N) in x's dtype, groups dividing heads (head h uses
            group h // (heads / groups)); B and C may have different group counts.
        D, dt_bias: (dim,) or (heads, dim), float32 or x's dtype, or None.
        z: like x, or None: the gate, out *= silu(z).
        dt_softplus: apply softplus to dt + dt_bias.
        state_batch_indices: (batch,) int32, or None: the state row each batch element updates;
            a negative index marks a padding row (out 0, no state touched; padding may repeat).
            The non-negative indices must be distinct and below state.shape[0]. On CPU, where
            the indices are read on the host, the op raises a ValueError otherwise. On CUDA,
            which cannot read them without a host sync, nothing is checked before the launch:
            an index >= state.shape[0] leaves the state alone and writes NaN to that row's out,
            and duplicate indices are undefined behaviour (two rows update one state at once).

    Returns:
        out shaped like x, in x's dtype.

    Every tensor is read through its own strides, so views are taken as they are: broadcasts
    with stride 0 (Mamba-2 passes A, dt, D and dt_bias expanded over dim and N), slices,
    transposes. The math is float32 (float64 for float64 x) whatever the state's dtype, and out
    is computed from the new state before it is rounded into the state's dtype. So with a
    float16/bfloat16 state this differs from mamba_ssm's ``selective_state_update_ref``, which
    rounds the state first and computes out from the rounded state (its Triton kernel, like
    this function, uses the unrounded one); with a float32 state they agree. On CUDA the op
    makes one launch, allocates only out and never synchronises: it can be captured in a CUDA
    graph. No autograd (an inference step). Devices without a compiled kernel run
    ``selective_state_update_ref`` with a one-time warning.
    """
    op = "mvscan.selective_state_update"
    if not isinstance(state, Tensor) or not isinstance(x, Tensor):
        bad, value = ("state", state) if not isinstance(state, Tensor) else ("x", x)
        raise TypeError(f"{op}: {bad} must be a torch.Tensor, got {type(value).__name__}")
    check_same_device(op, "x", dict(x=x, state=state, dt=dt, A=A, B=B, C=C, D=D, z=z,
                                    dt_bias=dt_bias, state_batch_indices=state_batch_indices))
    if x.device.type not in STATE_UPDATE_DEVICES:
        warn_fallback(op, x.device.type)
        return selective_state_update_ref(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus,
                                          state_batch_indices)
    return torch.ops.mvscan.selective_state_update(state, x, dt, A, B, C, D, z, dt_bias,
                                                   bool(dt_softplus), state_batch_indices)


def causal_conv1d_update(
    x: Tensor,
    conv_state: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    activation: str | None = None,
    cache_seqlens: Tensor | None = None,
    conv_state_indices: Tensor | None = None,
) -> Tensor:
    """L decode steps of the causal depthwise conv1d, continuing from ``conv_state`` and updating
    it in place: causal-conv1d's ``causal_conv1d_update`` (same arguments), on CPU and CUDA.

    Per row (batch, channel), with the window = the K - 1 steps before x (from the state)
    followed by x::

        out[t] = act(bias + sum_k weight[k] * window[t + k]),   t = 0 .. L - 1

    Args:
        x: (batch, dim) for one step or (batch, dim, L); float32 / float16 / bfloat16 (float64
            too).
        conv_state: (batch, dim, state_len) in x's dtype, state_len >= K - 1; updated in place,
            so its elements must not share memory with each other (an expanded view) or with
            another argument: the CPU and CUDA kernels raise a ValueError otherwise (a check of
            strides and storage ranges, no sync). Without cache_seqlens it holds the last
            state_len inputs, oldest first, and becomes the last state_len steps of
            (conv_state, x). With conv_state_indices its first dimension may be larger than
            batch (a cache of rows).
        weight: (dim, K) (or nn.Conv1d's (dim, 1, K)), float32 or x's dtype; K from 1 to 32.
        bias: (dim,), float32 or x's dtype, or None.
        activation: None, or "silu" / "swish" (the same). causal-conv1d refuses anything else,
            ``True`` included, and so does this (ValueError).
        cache_seqlens: (batch,) int32, or None: conv_state is then a circular buffer. With
            p = cache_seqlens[b] mod state_len, the steps before x are
            conv_state[..., (p - K + 1 + j) mod state_len] for j = 0 .. K - 2, and x[t] is
            written at (p + t) mod state_len (the last state_len steps of x when L is longer).
        conv_state_indices: (batch,) int32, or None: the conv_state row each batch element
            uses; a negative index marks a padding row (out 0, no state touched; padding may
            repeat). The non-negative indices must be distinct and below conv_state.shape[0].
            On CPU, where the indices are read on the host, the op raises a ValueError
            otherwise. On CUDA, which cannot read them without a host sync, nothing is checked
            before the launch: an index >= conv_state.shape[0] leaves the state alone and writes
            NaN to that row's out, and duplicate indices are undefined behaviour (two rows
            update one state at once).

    Returns:
        out shaped like x, in x's dtype.

    Accumulates in float32 (float64 for float64 x). Views are read through their strides. On
    CUDA: one launch, no allocation but out, no host sync (CUDA-graph capturable). No autograd
    (an inference step). Devices without a compiled kernel run ``causal_conv1d_update_ref``
    with a one-time warning.
    """
    op = "mvscan.causal_conv1d_update"
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: x must be a torch.Tensor, got {type(x).__name__}")
    if not isinstance(activation, (str, type(None))) or activation not in CONV_ACTIVATIONS:
        raise ValueError(f"{op}: activation must be one of {CONV_ACTIVATIONS}, got {activation!r}")
    check_same_device(op, "x", dict(x=x, conv_state=conv_state, weight=weight, bias=bias,
                                    cache_seqlens=cache_seqlens,
                                    conv_state_indices=conv_state_indices))
    if weight.dim() == 3:
        if weight.shape[1] != 1:
            raise ValueError(f"{op}: a 3-d weight must be nn.Conv1d's depthwise (dim, 1, K), "
                             f"got shape {tuple(weight.shape)}")
        weight = weight.squeeze(1)
    if x.device.type not in CONV_UPDATE_DEVICES:
        warn_fallback(op, x.device.type)
        return causal_conv1d_update_ref(x, conv_state, weight, bias, activation, cache_seqlens,
                                        conv_state_indices)
    return torch.ops.mvscan.causal_conv1d_update(x, conv_state, weight, bias,
                                                 activation is not None, cache_seqlens,
                                                 conv_state_indices)
