"""causal-conv1d's ``causal_conv1d_fn`` on mvscan's depthwise conv kernels: initial states,
final states and packed sequences (seq_idx), differentiable, on CPU and CUDA."""

from __future__ import annotations

from torch import Tensor

from ._extension import check_same_device
from .backend import ops_for
from .reference import causal_conv1d_ref, with_final_states

ACTIVATIONS = (None, "silu", "swish")
_OP = "mvscan.causal_conv1d_fn"


def causal_conv1d_fn(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    seq_idx: Tensor | None = None,
    initial_states: Tensor | None = None,
    return_final_states: bool = False,
    final_states_out: Tensor | None = None,
    activation: str | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Causal depthwise conv1d with optional SiLU: causal-conv1d 1.7's ``causal_conv1d_fn``
    (same parameters, same results), any width K from 1 to 32, on CPU and CUDA.

    Args:
        x: (batch, dim, L), float32 / float16 / bfloat16 (float64 too), any strides: the
            contiguous layout and the channels-last view (in_proj's output transposed) are both
            read in place; a channels-contiguous x gives a channels-contiguous output (dense
            (batch, L, dim) storage, transposed).
        weight: (dim, K) (nn.Conv1d's (dim, 1, K) too), x's dtype or float32.
        bias: (dim,), x's dtype or float32, or None.
        seq_idx: (batch, L) int32 ids of sequences packed along L, or None: a tap never reads
            across a change of id, and steps with a negative id (padding) output 0.
        initial_states: (batch, dim, K - 1) in x's dtype: the K - 1 steps before x (a previous
            chunk's final states), instead of zeros. Differentiable. With seq_idx they belong
            to the sequence of step 0.
        return_final_states: also return the last K - 1 steps of (initial_states, x): the conv
            state to continue from (causal_conv1d_update's conv_state). Not with seq_idx.
        final_states_out: (batch, dim, K - 1) tensor to write the final states into (returned).
        activation: None, "silu" or "swish" (the same).

    Returns:
        out (batch, dim, L) in x's dtype, or (out, final_states). Differentiable w.r.t. x,
        weight, bias, initial_states (and through final_states).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{_OP}: x must be a torch.Tensor, got {type(x).__name__}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{_OP}: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if seq_idx is not None and return_final_states:
        raise ValueError(f"{_OP}: return_final_states is not supported with seq_idx (packed "
                         "sequences have no single final state); pass seq_idx=None")
    check_same_device(_OP, "x", dict(x=x, weight=weight, bias=bias, seq_idx=seq_idx,
                                     initial_states=initial_states))
    if isinstance(weight, Tensor) and weight.dim() == 3:
        if weight.shape[1] != 1:
            raise ValueError(f"{_OP}: a 3-d weight must be nn.Conv1d's depthwise (dim, 1, K), "
                             f"got shape {tuple(weight.shape)}")
        weight = weight.squeeze(1)
    ops = ops_for("depthwise_conv1d", x.device, _OP)
    if ops is None:
        return causal_conv1d_ref(x, weight, bias, seq_idx, initial_states, return_final_states,
                                 final_states_out, activation)
    K = weight.shape[-1]
    out = ops[0](x, weight, bias, K - 1, activation is not None, seq_idx, initial_states)
    return with_final_states(out, x, initial_states, K, return_final_states, final_states_out)
