"""The depthwise conv1d operators seen from Python: fake kernels, autograd, and the public
``depthwise_conv1d``."""

from __future__ import annotations

import torch
from torch import Tensor

from ._extension import (EXTENSION_ERROR, acc_dtype, check_same_device,
                         register_fake_and_autograd)
from .backend import ops_for
from .reference import conv_pad_left, depthwise_conv1d_ref

PADDINGS = ("same", "causal")
ACTIVATIONS = (None, "silu")


def empty_like_conv_input(x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Mirrors empty_like_conv_input in csrc/depthwise_conv1d_params.cpp, in `dtype` (x's by
    default): channels-last when x is channels-fast (stride 1 along channels: dense channels-last
    or a view of a wider projection), contiguous otherwise."""
    batch, channels, length = x.shape
    dtype = x.dtype if dtype is None else dtype
    if channels > 1 and x.stride(1) == 1:
        return x.new_empty((batch, length, channels), dtype=dtype).transpose(1, 2)
    return x.new_empty((batch, channels, length), dtype=dtype)


def _depthwise_conv1d_fwd_fake(x, weight, bias, pad_left, silu, seq_idx=None,
                               initial_states=None):
    return empty_like_conv_input(x)


def _depthwise_conv1d_bwd_fake(dout, x, weight, bias, pad_left, silu, seq_idx=None,
                               initial_states=None):
    dbias = (bias.new_empty(bias.shape) if bias is not None
             else x.new_empty((0,), dtype=acc_dtype(x.dtype)))
    dinit = (x.new_empty(initial_states.shape) if initial_states is not None
             else x.new_empty((0,)))
    return empty_like_conv_input(x), weight.new_empty(weight.shape), dbias, dinit


def _setup_context(ctx, inputs, output):
    x, weight, bias, pad_left, silu, seq_idx, initial_states = inputs
    ctx.save_for_backward(x, weight, bias, seq_idx, initial_states)
    ctx.pad_left, ctx.silu = pad_left, silu


def _backward_with(bwd_op):
    """The autograd backward of a depthwise_conv1d_fwd operator whose gradients bwd_op computes."""

    def backward(ctx, dout):
        x, weight, bias, seq_idx, initial_states = ctx.saved_tensors
        dx, dweight, dbias, dinit = bwd_op(
            dout, x, weight, bias, ctx.pad_left, ctx.silu, seq_idx, initial_states)
        return (dx, dweight, (dbias if bias is not None else None), None, None, None,
                (dinit if initial_states is not None else None))

    return backward


def register_python_parts(namespace: str) -> None:
    """The fakes and autograd of <namespace>::depthwise_conv1d_fwd / _bwd."""
    register_fake_and_autograd(namespace, "depthwise_conv1d", _depthwise_conv1d_fwd_fake,
                               _depthwise_conv1d_bwd_fake, _backward_with, _setup_context)


if EXTENSION_ERROR is None:
    register_python_parts("mvscan")


def depthwise_conv1d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    padding: str = "same",
    activation: str | None = None,
) -> Tensor:
    """Depthwise 1-d convolution, optionally followed by SiLU, in one pass.

    Equals ``F.conv1d(x, weight, bias, groups=channels, padding=...)`` (then ``F.silu``) in value
    and gradients, with float32 accumulation.

    Args:
        x: (batch, channels, L), float32 / float16 / bfloat16 (float64 too). A (batch, L, channels)
            tensor transposed to (batch, channels, L), or a slice of a wider one, is read in
            place, without a copy; the output is then channels-contiguous too (dense
            (batch, L, channels) storage, transposed), so that both sides coalesce on a GPU.
        weight: (channels, K) or nn.Conv1d's (channels, 1, K), in x's dtype or float32; K from 1
            to 32.
        bias: (channels,) in x's dtype or float32, or None.
        padding: "same" (as F.conv1d: (K - 1) // 2 zeros left, the rest right) or "causal"
            (K - 1 zeros left).
        activation: None or "silu".

    Returns:
        (batch, channels, L) in x's dtype. Differentiable w.r.t. x, weight and bias.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"mvscan.depthwise_conv1d: x must be a torch.Tensor, got {type(x).__name__}")
    if padding not in PADDINGS:
        raise ValueError(f"mvscan.depthwise_conv1d: padding must be one of {PADDINGS}, got {padding!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"mvscan.depthwise_conv1d: activation must be one of {ACTIVATIONS}, got {activation!r}")
    check_same_device("mvscan.depthwise_conv1d", "x", dict(x=x, weight=weight, bias=bias))
    if weight.dim() == 3:
        if weight.shape[1] != 1:
            raise ValueError("mvscan.depthwise_conv1d: a 3-d weight must be nn.Conv1d's depthwise "
                             f"(channels, 1, K), got shape {tuple(weight.shape)}")
        weight = weight.squeeze(1)
    ops = ops_for("depthwise_conv1d", x.device, "mvscan.depthwise_conv1d")
    if ops is None:
        return depthwise_conv1d_ref(x, weight, bias, padding, activation)
    return ops[0](
        x, weight, bias, conv_pad_left(weight.shape[-1], padding), activation == "silu")
