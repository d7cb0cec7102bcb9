"""The selective scan's argument checks for the Triton kernels: the same conditions and messages
as the C++ operators' (csrc/selective_scan/selective_scan_params.cpp), since callers of either
backend must get the same errors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._extension import INPUT_DTYPES, STATE_CHUNK_LEN, acc_dtype
from .outputs import n_state_chunks

OP = "mvscan.selective_scan: "
MAX_DSTATE = 256


@dataclass(frozen=True)
class BCLayout:
    """B or C as the kernels read it: strides (batch, group, state, step) and channels per
    group; a constant (dim, N) matrix is one group per channel read with step stride 0."""
    const: bool
    strides: tuple[int, int, int, int]
    groups: int
    channels_per_group: int


def _check_real(t: Tensor, name: str) -> None:
    if t.is_complex():
        raise TypeError(f"{OP}{name} is complex ({t.dtype}); the selective scan supports real "
                        "tensors only")


def check_dtype(t: Tensor, name: str, expected: torch.dtype, rule: str) -> None:
    _check_real(t, name)
    if t.dtype != expected:
        raise TypeError(f"{OP}{name} must be {expected} ({rule}), got {t.dtype}")


def check_device(t: Tensor, name: str, u: Tensor) -> None:
    if t.device != u.device:
        raise ValueError(f"{OP}{name} is on {t.device} but u is on {u.device}; all tensors must "
                         "be on one device")


def check_shape(t: Tensor, name: str, expected: tuple[int, ...], layout: str) -> None:
    if tuple(t.shape) != tuple(expected):
        raise ValueError(f"{OP}{name} must have shape {layout} = {list(expected)}, got "
                         f"{list(t.shape)}")


def describe_bc(t: Tensor, name: str, u: Tensor, N: int, wtype: torch.dtype) -> BCLayout:
    batch, dim, L = u.shape
    check_device(t, name, u)
    if t.dim() == 2:
        check_shape(t, name, (dim, N), "(dim, N) for a constant matrix")
        check_dtype(t, name, wtype, "a constant B/C has A's dtype")
        return BCLayout(True, (0, t.stride(0), t.stride(1), 0), dim, 1)
    if t.dim() not in (3, 4):
        raise ValueError(f"{OP}{name} must be (dim, N) constant, (batch, N, L) variable or "
                         f"(batch, groups, N, L) grouped, got a {t.dim()}-d tensor of shape "
                         f"{list(t.shape)}")
    check_dtype(t, name, u.dtype, "a variable B/C has u's dtype")
    if t.dim() == 3:
        check_shape(t, name, (batch, N, L), "(batch, N, L)")
        return BCLayout(False, (t.stride(0), 0, t.stride(1), t.stride(2)), 1, dim)
    G = t.shape[1]
    if G < 1 or dim % G != 0:
        raise ValueError(f"{OP}{name} has {G} groups, which must divide dim = {dim}")
    check_shape(t, name, (batch, G, N, L), "(batch, groups, N, L)")
    return BCLayout(False, tuple(t.stride()), G, dim // G)


def _check_channel_vector(t: Tensor | None, name: str, u: Tensor, wtype: torch.dtype) -> None:
    if t is None:
        return
    check_device(t, name, u)
    check_shape(t, name, (u.shape[1],), "(dim,)")
    check_dtype(t, name, wtype, "the accumulation dtype of u's dtype")


def check_scan_args(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
                    z: Tensor | None, delta_bias: Tensor | None,
                    initial_state: Tensor | None) -> tuple[BCLayout, BCLayout]:
    """Raises on any argument the scan cannot take; returns how B and C are read."""
    if u.dim() != 3:
        raise ValueError(f"{OP}u must be a 3-d tensor (batch, dim, L), got shape {list(u.shape)}")
    _check_real(u, "u")
    if u.dtype not in INPUT_DTYPES:
        names = ", ".join(str(t).removeprefix("torch.") for t in INPUT_DTYPES)
        raise TypeError(f"{OP}u must be one of {names}, got {u.dtype}")
    batch, dim, L = u.shape
    if L < 1:
        raise ValueError(f"{OP}the sequence length L = u.shape[2] must be at least 1, got "
                         f"{list(u.shape)}")
    check_device(delta, "delta", u)
    check_shape(delta, "delta", tuple(u.shape), "(batch, dim, L) like u")
    check_dtype(delta, "delta", u.dtype, "delta must have u's dtype")
    wtype = acc_dtype(u.dtype)
    check_device(A, "A", u)
    _check_real(A, "A")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"{OP}A must have shape (dim, N) with dim = u.shape[1] = {dim}, got "
                         f"{list(A.shape)}")
    check_dtype(A, "A", wtype, "the accumulation dtype of u's dtype")
    N = A.shape[1]
    if not 1 <= N <= MAX_DSTATE:
        raise ValueError(f"{OP}A has N = {N} states (A.shape[1]); supported: 1 to {MAX_DSTATE}")
    layouts = (describe_bc(B, "B", u, N, wtype), describe_bc(C, "C", u, N, wtype))
    _check_channel_vector(D, "D", u, wtype)
    _check_channel_vector(delta_bias, "delta_bias", u, wtype)
    if z is not None:
        check_device(z, "z", u)
        check_shape(z, "z", tuple(u.shape), "(batch, dim, L) like u")
        check_dtype(z, "z", u.dtype, "z must have u's dtype")
    if initial_state is not None:
        check_device(initial_state, "initial_state", u)
        check_shape(initial_state, "initial_state", (batch, dim, N), "(batch, dim, N)")
        check_dtype(initial_state, "initial_state", wtype, "the accumulation dtype of u's dtype")
    return layouts


def check_scan_bwd_args(u: Tensor, N: int, dout: Tensor, dstates: Tensor | None,
                        states: Tensor) -> None:
    batch, dim, L = u.shape
    wtype = acc_dtype(u.dtype)
    shape = (batch, dim, n_state_chunks(L), N)
    check_device(dout, "dout", u)
    check_shape(dout, "dout", tuple(u.shape), "(batch, dim, L) like u")
    check_dtype(dout, "dout", u.dtype, "the output's dtype")
    check_device(states, "states", u)
    layout = f"(batch, dim, ceil(L / {STATE_CHUNK_LEN}), N)"
    check_shape(states, "states", shape, layout)
    check_dtype(states, "states", wtype, "the accumulation dtype")
    if not states.is_contiguous():
        raise ValueError(f"{OP}states must be contiguous: pass the tensor the forward returned")
    if dstates is not None:
        check_device(dstates, "dstates", u)
        check_shape(dstates, "dstates", shape, layout + " like states")
        check_dtype(dstates, "dstates", wtype, "the accumulation dtype")
