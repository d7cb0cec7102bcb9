"""The selective scan's Triton launchers, with the C++ operators' contract
(csrc/registration.cpp): ``selective_scan_fwd`` returns (out, states) and ``selective_scan_bwd``
the nine gradients, with the same shapes, dtypes and layouts."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._extension import STATE_CHUNK_LEN, acc_dtype
from .outputs import (alert_not_deterministic, n_state_chunks, new_output, next_power_of_2,
                      on_device, strides_or_zeros)
from .selective_scan_checks import BCLayout, check_scan_args, check_scan_bwd_args
from .selective_scan_kernels import selective_scan_bwd_kernel, selective_scan_fwd_kernel

NUM_WARPS = 8
# Tile sizes, chosen so that no kernel spills registers on sm_90 (compiled for it without a GPU
# and read back with cuobjdump: tests/test_triton_backend.py::test_kernels_do_not_spill). The
# forward keeps 2048 elements of [BLOCK_D, BLOCK_N, BLOCK_T] (8 a thread for each tile it holds);
# the backward holds about three times as many, and the element count that fits (with a margin:
# its registers are near the 255 cap) depends on N: (BLOCK_T, largest BLOCK_D) by BLOCK_N.
# float64 halves either.
FWD_TILE_ELEMENTS = 2048
BWD_TILES = {1: (64, 4), 2: (64, 2), 4: (64, 1), 8: (64, 2), 16: (64, 1), 32: (32, 1),
             64: (32, 1), 128: (16, 1), 256: (8, 1)}


@dataclass(frozen=True)
class Tiles:
    block_d: int
    block_n: int
    block_t: int


def choose_tiles(dim: int, N: int, B: BCLayout, C: BCLayout, *, backward: bool,
                 wide_acc: bool = False, block_t: int | None = None) -> Tiles:
    """Tile sizes: the whole state (N padded to a power of 2), steps up to one state chunk
    (BLOCK_T divides STATE_CHUNK_LEN, so saved states fall on tile ends), then channels; a block
    of channels never straddles two groups of a grouped B or C. wide_acc: float64 accumulation.
    block_t overrides the steps (tests use it to run several tiles per chunk)."""
    block_n = next_power_of_2(N)
    if backward:
        steps, block_d = BWD_TILES[block_n]
    else:
        steps = min(STATE_CHUNK_LEN, FWD_TILE_ELEMENTS // block_n)
        block_d = FWD_TILE_ELEMENTS // (block_n * steps)
    if wide_acc:
        if block_d > 1:
            block_d //= 2
        else:
            steps //= 2
    if block_t is None:
        block_t = steps
    if STATE_CHUNK_LEN % block_t != 0 or block_t != next_power_of_2(block_t):
        raise ValueError(f"block_t = {block_t} must be a power of 2 dividing {STATE_CHUNK_LEN}")
    block_d = max(1, min(next_power_of_2(dim), block_d))
    for layout in (B, C):
        if not layout.const and layout.groups > 1:
            while layout.channels_per_group % block_d:
                block_d //= 2
    return Tiles(block_d, block_n, block_t)


def _vector_stride(t: Tensor | None) -> int:
    return t.stride(0) if t is not None else 0


def selective_scan_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                       D: Tensor | None, z: Tensor | None, delta_bias: Tensor | None,
                       delta_softplus: bool, initial_state: Tensor | None = None,
                       *, block_t: int | None = None) -> tuple[Tensor, Tensor]:
    """(out (batch, dim, L) in u's dtype, states (batch, dim, ceil(L / STATE_CHUNK_LEN), N) in
    the accumulation dtype: the state after the last step of every chunk)."""
    B_layout, C_layout = check_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state)
    batch, dim, L = u.shape
    N = A.shape[1]
    tiles = choose_tiles(dim, N, B_layout, C_layout, backward=False,
                         wide_acc=u.dtype == torch.float64, block_t=block_t)
    out = new_output((batch, dim, L), u.dtype, u.device)
    states = new_output((batch, dim, n_state_chunks(L), N), acc_dtype(u.dtype), u.device)
    grid = (triton_cdiv(dim, tiles.block_d) * batch,)
    if batch * dim == 0:
        return out, states
    with on_device(u.device):
        selective_scan_fwd_kernel[grid](
            u, delta, A, B, C, _or(D, A), _or(z, u), _or(delta_bias, A), _or(initial_state, A),
            out, states,
            batch, dim, L, N, n_state_chunks(L), B_layout.channels_per_group,
            C_layout.channels_per_group,
            *u.stride(), *delta.stride(), *A.stride(), *B_layout.strides, *C_layout.strides,
            _vector_stride(D), _vector_stride(delta_bias), *strides_or_zeros(z, 3), *out.stride(),
            *strides_or_zeros(initial_state, 3),
            SOFTPLUS=bool(delta_softplus), HAS_D=D is not None, HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None, HAS_H0=initial_state is not None,
            B_CONST=B_layout.const, C_CONST=C_layout.const, CHUNK=STATE_CHUNK_LEN,
            BLOCK_D=tiles.block_d, BLOCK_N=tiles.block_n, BLOCK_T=tiles.block_t,
            num_warps=NUM_WARPS)
    return out, states


def selective_scan_bwd(dout: Tensor, dstates: Tensor | None, u: Tensor, delta: Tensor, A: Tensor,
                       B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
                       delta_bias: Tensor | None, states: Tensor, delta_softplus: bool,
                       initial_state: Tensor | None = None, *, block_t: int | None = None,
                       ) -> tuple[Tensor, ...]:
    """(du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dinitial_state), each shaped like its input
    (an absent optional input's is an empty (0,) tensor); dstates: the gradient w.r.t. the
    forward's states, or None."""
    B_layout, C_layout = check_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state)
    batch, dim, L = u.shape
    N = A.shape[1]
    check_scan_bwd_args(u, N, dout, dstates, states)
    if dstates is not None:
        dstates = dstates.contiguous()
    if u.is_cuda and not (B_layout.const and C_layout.const):
        alert_not_deterministic(
            "mvscan's Triton selective_scan backward with a variable B or C (their gradients are "
            "sums over channel blocks added with atomics)")
    tiles = choose_tiles(dim, N, B_layout, C_layout, backward=True,
                         wide_acc=u.dtype == torch.float64, block_t=block_t)
    acc = acc_dtype(u.dtype)
    dev = u.device
    du = new_output((batch, dim, L), u.dtype, dev)
    ddelta = new_output((batch, dim, L), u.dtype, dev)
    dz = new_output((batch, dim, L), u.dtype, dev) if z is not None else u.new_empty((0,))
    # Variable B / C gradients are sums over channels, added by atomics: zeros to start from.
    dB = B.new_zeros(B.shape, dtype=acc) if not B_layout.const else None
    dC = C.new_zeros(C.shape, dtype=acc) if not C_layout.const else None
    dA_part = new_output((batch, dim, N), acc, dev)
    dB_part = new_output((batch, dim, N), acc, dev) if B_layout.const else None
    dC_part = new_output((batch, dim, N), acc, dev) if C_layout.const else None
    dD_part = new_output((batch, dim), acc, dev) if D is not None else None
    dbias_part = new_output((batch, dim), acc, dev) if delta_bias is not None else None
    dh0 = (new_output((batch, dim, N), acc, dev) if initial_state is not None
           else u.new_empty((0,), dtype=acc))
    pointers = (
        dout, _or(dstates, states), u, delta, A, B, C, _or(D, A), _or(z, u), _or(delta_bias, A),
        _or(initial_state, A), states, du, ddelta, dz if z is not None else du,
        _or(dB, dA_part), _or(dC, dA_part), dA_part, _or(dB_part, dA_part),
        _or(dC_part, dA_part), _or(dD_part, dA_part), _or(dbias_part, dA_part),
        dh0 if initial_state is not None else dA_part)
    sizes = (batch, dim, L, N, n_state_chunks(L), B_layout.channels_per_group,
             C_layout.channels_per_group)
    strides = (*dout.stride(), *u.stride(), *delta.stride(), *A.stride(), *B_layout.strides,
               *C_layout.strides, _vector_stride(D), _vector_stride(delta_bias),
               *strides_or_zeros(z, 3), *strides_or_zeros(initial_state, 3),
               *_bc_grad_strides(dB, B_layout), *_bc_grad_strides(dC, C_layout))
    grid = (triton_cdiv(dim, tiles.block_d) * batch,)
    if batch * dim > 0:  # else every output is empty, and a sum over no rows is 0
        with on_device(dev):
            selective_scan_bwd_kernel[grid](
                *pointers, *sizes, *strides,
                SOFTPLUS=bool(delta_softplus), HAS_D=D is not None, HAS_Z=z is not None,
                HAS_BIAS=delta_bias is not None, HAS_H0=initial_state is not None,
                HAS_DSTATES=dstates is not None, B_CONST=B_layout.const, C_CONST=C_layout.const,
                CHUNK=STATE_CHUNK_LEN, BLOCK_D=tiles.block_d, BLOCK_N=tiles.block_n,
                BLOCK_T=tiles.block_t, num_warps=NUM_WARPS)
    dB = dB_part.sum(0) if B_layout.const else dB.to(u.dtype)
    dC = dC_part.sum(0) if C_layout.const else dC.to(u.dtype)
    dD = dD_part.sum(0) if D is not None else u.new_empty((0,), dtype=acc)
    ddelta_bias = dbias_part.sum(0) if delta_bias is not None else u.new_empty((0,), dtype=acc)
    return du, ddelta, dA_part.sum(0), dB, dC, dD, dz, ddelta_bias, dh0


def _bc_grad_strides(grad: Tensor | None, layout: BCLayout) -> tuple[int, int, int, int]:
    """The (batch, group, state, step) strides of a variable B/C gradient buffer (unused for a
    constant one)."""
    if grad is None:
        return (0, 0, 0, 0)
    if grad.dim() == 3:
        return (grad.stride(0), 0, grad.stride(1), grad.stride(2))
    return tuple(grad.stride())


def _or(t: Tensor | None, stand_in: Tensor) -> Tensor:
    """A pointer argument: t, or when it is absent a (non-empty) stand-in the kernel never
    dereferences (its HAS_* / *_CONST flag says so)."""
    return t if t is not None else stand_in


def triton_cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b
