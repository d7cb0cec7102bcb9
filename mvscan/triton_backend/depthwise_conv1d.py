"""Triton kernels of the depthwise conv1d operators, forward and backward.

The GPU path when the CUDA extension was built without nvcc, and a second opinion on the CUDA
kernels. The launchers ``depthwise_conv1d_fwd`` / ``depthwise_conv1d_bwd`` keep the contract of
``torch.ops.mvscan.depthwise_conv1d_fwd`` / ``_bwd`` (csrc/registration.cpp): the same checks and
messages, output dtypes, shapes and layouts (csrc/depthwise_conv1d/depthwise_conv1d_params.cpp).

    out[b, c, t] = act(bias[c] + sum_k weight[c, k] * x[b, c, t + k - pad_left])

x is zero outside [0, L), or the initial states before step 0; with sequence ids a tap never
crosses a change of id and an output with a negative id is 0 (mvscan/reference.py,
causal_conv1d_ref).

Design. Every kernel works on 2-d tiles of BLOCK_C channels x BLOCK_T steps of one batch element,
addressed through x's three strides: Triton specializes an integer argument equal to 1, so the
tile's unit-stride axis is known at compile time and its loads and stores coalesce along
channels (channels-fast x, e.g. MambaVision's in_proj(x).transpose(1, 2)) or along steps
(contiguous x) without a copy. The tile shape follows x's layout (_tile_shape). Tap k re-reads
the tile shifted by k steps, a hit in L1 after the first. The taps are a loop over the constexpr
K that is not unrolled: unrolled (tl.static_range), the K = 32 kernels spilled tens of KB a
thread when compiled for sm_90, and K = 4 ones took up to 255 registers, while one tap already
has a tile's worth (16 a thread) of independent loads in flight. Offsets are formed in int64
(program ids and indices cast before any stride multiplies), so views past 2^31 elements stay
right.

- Forward: one program per tile; bias and SiLU fused; one kernel (_conv_pointwise_kernel).
- Backward, two kernels:
  1. with SiLU only, _conv_pointwise_kernel again (GRAD) writes g = dout * silu'(pre) in the
     accumulation dtype, laid out like x (pre recomputed, never stored); without SiLU g is dout
     itself, read in place.
  2. _conv_bwd_kernel: dx[s] = sum_k w[k] g[s - k + pad_left] over the taps the forward used
     (range, same sequence id, output id >= 0). Its steps start at -(K - 1) when there are
     initial states, so the states' gradient is just dx before step 0. From the same g taps and
     one x load per element it sums dweight[k] = sum_s x[s] g[s - k + pad_left] and dbias (the
     k = pad_left tap is g[s]) per program into float32 (float64) partials, which the host sums
     over programs with torch: a fixed order, so the result is deterministic (no atomics).
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from .._extension import INPUT_DTYPES, acc_dtype
from ..depthwise_conv import empty_like_conv_input
from .outputs import on_device, strides_or_zeros

_OP = "mvscan.depthwise_conv1d: "  # kOp in csrc/depthwise_conv1d/depthwise_conv1d_params.cpp
MAX_CONV_WIDTH = 32  # kMaxConvWidth in csrc/depthwise_conv1d/depthwise_conv1d.h

# Elements of a forward tile: 16 a thread at 4 warps, enough independent loads per tap to cover
# DRAM latency on an H100. The other launches take fewer (_tile_elems), sized by compiling the
# kernels for sm_90 offline (ptxas -v; C = 641, L = 197, K = 4 and 32): the backward's second
# kernel holds x, g and dx tiles and the partial sums (150-250 registers at 2048 elements), so it
# takes half; sequence ids or initial states (id tiles, second loads, masks: up to 255 registers
# and spills) halve the tile again; float64 (a testing dtype) halves it too, for the same bytes.
# That gives the forward 42-64 registers (up to 141 with ids and states), the backward 72-155,
# and no spills (but 16 bytes in one variant).
_TILE_ELEMS = 2048
# 4 warps: with 2048-element tiles that is 16 elements a thread; more warps would halve the
# per-thread work and the K-tap loads' reuse, fewer would leave too few warps per SM to hide
# latency on small grids (B x C x L of MambaVision's later stages is only a few thousand tiles).
_NUM_WARPS = 4
# The backward's second kernel sums dweight/dbias per program: past this many programs (about
# 30 per SM on 132 SMs, several waves) a program takes several consecutive tiles, so that the
# partials (programs x (K + 1) x BLOCK_C values) stay a few MB however long the sequence.
_TARGET_PROGRAMS = 4096


# --------------------------------------------------------------------------------------------
# Kernels


@triton.jit
def _seq_id(SEQ_ROW, sst, s, L):
    """The sequence id of steps s (any shape, int64) of one batch row. Clamped into [0, L): before
    step 0 that is step 0's id, which the initial states continue; where x reads zero (before 0
    without states, from L on) the id does not matter."""
    return tl.load(SEQ_ROW + tl.minimum(tl.maximum(s, 0), L - 1) * sst)


@triton.jit
def _x_at(X_ROW, sxc, sxt, INIT_ROW, sic, sit, c2, c_ok2, s2, L,
          K: tl.constexpr, HAS_INIT: tl.constexpr, ACC: tl.constexpr):
    """x at channels c2 ([BLOCK_C, 1]) and steps s2 ([1, BLOCK_T]) in the accumulation dtype:
    zero outside [0, L), the initial states (x at step s < 0 is init[..., s + K - 1]) when given."""
    v = tl.load(X_ROW + c2 * sxc + s2 * sxt, mask=c_ok2 & (s2 >= 0) & (s2 < L), other=0.0)
    v = v.to(ACC)
    if HAS_INIT:
        h = tl.load(INIT_ROW + c2 * sic + (s2 + (K - 1)) * sit,
                    mask=c_ok2 & (s2 < 0) & (s2 > -K), other=0.0)
        v += h.to(ACC)
    return v


# The grid-shape arguments and pad_left gain nothing from Triton's value specialization (== 1,
# % 16); leaving them out keeps one compiled kernel per constexpr combination.
@triton.jit(do_not_specialize=["pad_left", "n_c_blocks", "n_t_blocks"])
def _conv_pointwise_kernel(
        X, sxb, sxc, sxt, W, swc, swk, BIAS, sbc, INIT, sib, sic, sit, SEQ, ssb, sst,
        DOUT, sdb, sdc, sdt, OUT, sob, soc, sot,
        C, L, pad_left, n_c_blocks, n_t_blocks,
        K: tl.constexpr, SILU: tl.constexpr, GRAD: tl.constexpr, HAS_BIAS: tl.constexpr,
        HAS_SEQ: tl.constexpr, HAS_INIT: tl.constexpr,
        BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """One (batch, channel block, step block) tile of pre = bias + sum_k w[k] x[t + k - pad_left]
    (masked as the module docstring says). Writes out = act(pre) in x's dtype, or with GRAD the
    gradient w.r.t. pre, dout * act'(pre), in the accumulation dtype. Either is 0 where the
    output's sequence id is negative."""
    ACC: tl.constexpr = tl.float64 if X.dtype.element_ty == tl.float64 else tl.float32
    pid = tl.program_id(0).to(tl.int64)
    tb = pid % n_t_blocks  # step blocks fastest: neighbouring programs share their halos in L2
    rest = pid // n_t_blocks
    cb = rest % n_c_blocks
    b = rest // n_c_blocks
    c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    t = tb * BLOCK_T + tl.arange(0, BLOCK_T)
    c2 = c[:, None]
    t2 = t[None, :]
    c_ok = c < C
    c_ok2 = c2 < C
    X_ROW = X + b * sxb
    INIT_ROW = INIT + b * sib
    SEQ_ROW = SEQ + b * ssb

    if HAS_SEQ:
        own = _seq_id(SEQ_ROW, sst, t2, L)
    # Without SiLU the gradient does not need pre: dout passes through (the backward does not
    # launch this kernel then, but the branch keeps the kernel's meaning whole).
    NEED_PRE: tl.constexpr = SILU or not GRAD
    pre = tl.zeros([BLOCK_C, BLOCK_T], dtype=ACC)
    if NEED_PRE:
        for k in range(K):  # a loop, not unrolled (module docstring)
            s2 = t2 + (k - pad_left)
            xv = _x_at(X_ROW, sxc, sxt, INIT_ROW, sic, sit, c2, c_ok2, s2, L, K, HAS_INIT, ACC)
            if HAS_SEQ:
                xv = tl.where(_seq_id(SEQ_ROW, sst, s2, L) == own, xv, 0.0)
            w = tl.load(W + c * swc + k * swk, mask=c_ok, other=0.0).to(ACC)
            pre += w[:, None] * xv
        if HAS_BIAS:
            pre += tl.load(BIAS + c * sbc, mask=c_ok, other=0.0).to(ACC)[:, None]

    ok2 = c_ok2 & (t2 < L)
    if GRAD:
        y = tl.load(DOUT + b * sdb + c2 * sdc + t2 * sdt, mask=ok2, other=0.0).to(ACC)
        if SILU:
            sig = 1.0 / (1.0 + tl.exp(-pre))
            y = y * sig * (1.0 + pre * (1.0 - sig))
    else:
        y = pre
        if SILU:
            y = y / (1.0 + tl.exp(-y))
    if HAS_SEQ:
        y = tl.where(own >= 0, y, 0.0)
    tl.store(OUT + b * sob + c2 * soc + t2 * sot, y.to(OUT.dtype.element_ty), mask=ok2)


@triton.jit(do_not_specialize=["pad_left", "s_begin", "n_c_blocks", "n_chunks",
                               "tiles_per_prog"])
def _conv_bwd_kernel(
        X, sxb, sxc, sxt, W, swc, swk, INIT, sib, sic, sit, SEQ, ssb, sst,
        G, sgb, sgc, sgt, DX, sdxb, sdxc, sdxt, DINIT, sdib, sdic, sdit, DW_PART, DB_PART,
        C, L, pad_left, s_begin, n_c_blocks, n_chunks, tiles_per_prog,
        K: tl.constexpr, K_POW2: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SEQ: tl.constexpr,
        HAS_INIT: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """tiles_per_prog consecutive step tiles of one (batch, channel block), steps from s_begin
    (-(K - 1) with initial states, else 0) to L: dx (or, before step 0, the states' gradient)
    from the gradient g w.r.t. the pre-activation, and this program's partial sums of dweight
    (DW_PART[part, k, c]) and dbias (DB_PART[part, c]), part = b * n_chunks + chunk."""
    ACC: tl.constexpr = tl.float64 if X.dtype.element_ty == tl.float64 else tl.float32
    pid = tl.program_id(0).to(tl.int64)
    chunk = pid % n_chunks
    rest = pid // n_chunks
    cb = rest % n_c_blocks
    b = rest // n_c_blocks
    c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    c2 = c[:, None]
    c_ok = c < C
    c_ok2 = c2 < C
    X_ROW = X + b * sxb
    INIT_ROW = INIT + b * sib
    SEQ_ROW = SEQ + b * ssb
    G_ROW = G + b * sgb
    taps = tl.arange(0, K_POW2)[:, None]

    # dweight as [tap, channel]: a loop-carried value cannot be a list of K vectors, so tap k's
    # tile sum goes into row k by a select, K_POW2 x BLOCK_C work per tap beside the tile's
    # BLOCK_C x BLOCK_T. (Taps outside, tiles inside would re-read each tile K times.)
    dw = tl.zeros([K_POW2, BLOCK_C], dtype=ACC)
    db = tl.zeros([BLOCK_C], dtype=ACC)
    first = chunk * tiles_per_prog
    for i in range(tiles_per_prog):
        # Tiles past the last are all masked (s >= L): they store nothing and add zeros.
        s = s_begin + (first + i) * BLOCK_T + tl.arange(0, BLOCK_T)
        s2 = s[None, :]
        xs = _x_at(X_ROW, sxc, sxt, INIT_ROW, sic, sit, c2, c_ok2, s2, L, K, HAS_INIT, ACC)
        if HAS_SEQ:
            sid = _seq_id(SEQ_ROW, sst, s2, L)
        dx = tl.zeros([BLOCK_C, BLOCK_T], dtype=ACC)
        for k in range(K):  # a loop, not unrolled (module docstring)
            u2 = s2 + (pad_left - k)  # the output step whose tap k reads step s
            ok = c_ok2 & (u2 >= 0) & (u2 < L)
            if HAS_SEQ:
                # The tap counted only inside the output's sequence; outputs of padding steps
                # (negative ids) were forced to 0, so no gradient flows back from them.
                uid = _seq_id(SEQ_ROW, sst, u2, L)
                ok = ok & (uid == sid) & (uid >= 0)
            g = tl.load(G_ROW + c2 * sgc + u2 * sgt, mask=ok, other=0.0).to(ACC)
            w = tl.load(W + c * swc + k * swk, mask=c_ok, other=0.0).to(ACC)
            dx += w[:, None] * g
            dw += tl.where(taps == k, tl.sum(g * xs, axis=1)[None, :], 0.0)
            if HAS_BIAS:
                if k == pad_left:  # this tap reads g[s] itself: every output step, once
                    db += tl.sum(g, axis=1)
        tl.store(DX + b * sdxb + c2 * sdxc + s2 * sdxt, dx.to(DX.dtype.element_ty),
                 mask=c_ok2 & (s2 >= 0) & (s2 < L))
        if HAS_INIT:
            tl.store(DINIT + b * sdib + c2 * sdic + (s2 + (K - 1)) * sdit,
                     dx.to(DINIT.dtype.element_ty), mask=c_ok2 & (s2 < 0))

    part = b * n_chunks + chunk
    tl.store(DW_PART + (part * K + taps) * C + c[None, :], dw, mask=(taps < K) & c_ok[None, :])
    if HAS_BIAS:
        tl.store(DB_PART + part * C + c, db, mask=c_ok)


# --------------------------------------------------------------------------------------------
# Checks (the conditions and messages of make_depthwise_conv1d_params and
# make_depthwise_conv1d_bwd_params)


def _dtype_names(dtypes) -> str:
    names = [str(d) for d in dtypes]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _check_tensor(t, name: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{_OP}{name} must be a torch.Tensor, got {type(t).__name__}")


def _check_same_device(t: Tensor, name: str, x: Tensor) -> None:
    if t.device != x.device:
        raise ValueError(f"{_OP}{name} is on {t.device} but x is on {x.device}; all tensors must "
                         "be on one device")


def _check_x(x: Tensor) -> None:
    _check_tensor(x, "x")
    if x.dim() != 3:
        raise ValueError(f"{_OP}x must be a 3-d tensor (batch, channels, L), got shape "
                         f"{list(x.shape)}")
    if x.dtype not in INPUT_DTYPES:
        raise TypeError(f"{_OP}x must be {_dtype_names(INPUT_DTYPES)}, got {x.dtype}")


def _check_param_dtype(t: Tensor, name: str, x: Tensor) -> None:
    """weight and bias: x's dtype, or float32 (float32 parameters under autocast)."""
    if t.dtype not in (x.dtype, torch.float32):
        raise TypeError(f"{_OP}{name} must have x's dtype ({x.dtype}) or torch.float32, got "
                        f"{t.dtype}")


def _check_weight(weight: Tensor, x: Tensor) -> int:
    """Checks weight and returns K."""
    _check_tensor(weight, "weight")
    _check_same_device(weight, "weight", x)
    channels = x.shape[1]
    if weight.dim() != 2 or weight.shape[0] != channels:
        raise ValueError(f"{_OP}weight must have shape (channels, K) with channels = "
                         f"x.shape[1] = {channels}, got {list(weight.shape)}")
    _check_param_dtype(weight, "weight", x)
    K = weight.shape[1]
    if not 1 <= K <= MAX_CONV_WIDTH:
        raise ValueError(f"{_OP}kernel width K = {K} (weight.shape[-1]) is not supported; "
                         f"supported: 1 to {MAX_CONV_WIDTH}")
    return K


def _check_pad_left(pad_left, K: int) -> int:
    try:
        pad_left = operator.index(pad_left)
    except TypeError:
        raise TypeError(f"{_OP}pad_left must be an int, got {type(pad_left).__name__}") from None
    if not 0 <= pad_left <= K - 1:
        raise ValueError(f"{_OP}pad_left = {pad_left} must be in [0, K - 1] = [0, {K - 1}]")
    return pad_left


def _check_bias(bias: Tensor | None, x: Tensor) -> None:
    if bias is None:
        return
    _check_tensor(bias, "bias")
    _check_same_device(bias, "bias", x)
    channels = x.shape[1]
    if bias.dim() != 1 or bias.shape[0] != channels:
        raise ValueError(f"{_OP}bias must have shape (channels,) = ({channels},), got "
                         f"{list(bias.shape)}")
    _check_param_dtype(bias, "bias", x)


def _check_seq_idx(seq_idx: Tensor | None, x: Tensor) -> None:
    if seq_idx is None:
        return
    _check_tensor(seq_idx, "seq_idx")
    _check_same_device(seq_idx, "seq_idx", x)
    if seq_idx.dtype != torch.int32:
        raise TypeError(f"{_OP}seq_idx must be int32 (torch.int32), got {seq_idx.dtype}")
    batch, _, L = x.shape
    if seq_idx.dim() != 2 or tuple(seq_idx.shape) != (batch, L):
        raise ValueError(f"{_OP}seq_idx must have shape (batch, L) = ({batch}, {L}), got "
                         f"{list(seq_idx.shape)}")


def _check_initial_states(initial_states: Tensor | None, x: Tensor, K: int) -> None:
    if initial_states is None:
        return
    _check_tensor(initial_states, "initial_states")
    _check_same_device(initial_states, "initial_states", x)
    if initial_states.dtype != x.dtype:
        raise TypeError(f"{_OP}initial_states must have x's dtype ({x.dtype}), got "
                        f"{initial_states.dtype}")
    batch, channels, _ = x.shape
    if initial_states.dim() != 3 or tuple(initial_states.shape) != (batch, channels, K - 1):
        raise ValueError(f"{_OP}initial_states must have shape (batch, channels, K - 1) = "
                         f"({batch}, {channels}, {K - 1}), got {list(initial_states.shape)}")


def _check_dout(dout: Tensor, x: Tensor) -> None:
    _check_tensor(dout, "dout")
    if dout.device != x.device or dout.shape != x.shape:
        raise ValueError(f"{_OP}dout must have x's shape {list(x.shape)} and device {x.device}, "
                         f"got {list(dout.shape)} on {dout.device}")
    if dout.dtype != x.dtype:
        raise TypeError(f"{_OP}dout must have x's dtype {x.dtype}, got {dout.dtype}")


def kernels_interpreted() -> bool:
    """Whether this module's kernels run in Triton's interpreter: TRITON_INTERPRET=1 was set when
    the module was imported (triton.jit decides then)."""
    return not isinstance(_conv_pointwise_kernel, triton.runtime.JITFunction)


def _check_runnable(x: Tensor) -> None:
    """Compiled Triton kernels need GPU tensors; the interpreter runs CPU tensors too."""
    if x.device.type == "cpu" and not kernels_interpreted():
        raise ValueError(f"{_OP}the Triton kernels need x on a GPU, got x on cpu (or set "
                         "TRITON_INTERPRET=1 before importing them, to interpret them)")


def _check_inputs(x, weight, bias, pad_left, seq_idx, initial_states) -> tuple[int, int]:
    """The forward's checks, in the C++ order; returns (K, pad_left)."""
    _check_x(x)
    K = _check_weight(weight, x)
    pad_left = _check_pad_left(pad_left, K)
    _check_bias(bias, x)
    _check_seq_idx(seq_idx, x)
    _check_initial_states(initial_states, x, K)
    return K, pad_left


# --------------------------------------------------------------------------------------------
# Launchers


def _channels_fast(x: Tensor) -> bool:
    return x.shape[1] > 1 and x.stride(1) == 1


def _tile_shape(channels: int, steps: int, channels_fast: bool, elems: int) -> tuple[int, int]:
    """(BLOCK_C, BLOCK_T) of `elems` elements (_tile_elems), the unit-stride axis long:
    64 channels (128 to 256 bytes a step in 16-bit or 32-bit types: whole cache lines, 16-byte
    vector loads) by elems / 64 steps when channels are contiguous, 128 steps (a warp's 32 lanes
    on consecutive steps, several times over) by elems / 128 channels otherwise. A short axis is
    cut to its power of two and the other one lengthened, so that small channel counts or
    sequences do not idle most lanes."""
    c_pow2 = triton.next_power_of_2(max(channels, 1))
    t_pow2 = triton.next_power_of_2(max(steps, 1))
    if channels_fast:
        block_c = min(64, c_pow2, elems)
        block_t = min(elems // block_c, t_pow2)
    else:
        block_t = min(128, t_pow2, elems)
        block_c = min(elems // block_t, c_pow2)
    return block_c, block_t


def _tile_elems(x: Tensor, backward: bool, heavy: bool) -> int:
    """_TILE_ELEMS, halved for the backward's second kernel, for `heavy` launches (with sequence
    ids or initial states) and for float64 (see _TILE_ELEMS). None of this adds a compiled
    variant: kernel, flags and dtype are in the kernels' signatures already."""
    return _TILE_ELEMS >> (int(backward) + int(heavy) + int(x.dtype == torch.float64))


def _launch_pointwise(x, weight, bias, pad_left, silu, seq_idx, initial_states, dout, out):
    """out = act(pre) (dout None) or dout * act'(pre) (GRAD) over x's tiles."""
    batch, channels, L = x.shape
    K = weight.shape[1]
    heavy = initial_states is not None or seq_idx is not None
    block_c, block_t = _tile_shape(channels, L, _channels_fast(x), _tile_elems(x, False, heavy))
    n_c, n_t = triton.cdiv(channels, block_c), triton.cdiv(L, block_t)
    # An absent optional tensor is passed as x (never read: its constexpr flag is off), so that
    # the kernel's signature, hence its compiled variants, does not depend on it.
    _conv_pointwise_kernel[(batch * n_c * n_t,)](
        x, *x.stride(), weight, *weight.stride(),
        bias if bias is not None else x, *strides_or_zeros(bias, 1),
        initial_states if initial_states is not None else x, *strides_or_zeros(initial_states, 3),
        seq_idx if seq_idx is not None else x, *strides_or_zeros(seq_idx, 2),
        dout if dout is not None else x, *strides_or_zeros(dout, 3),
        out, *out.stride(),
        channels, L, pad_left, n_c, n_t,
        K=K, SILU=silu, GRAD=dout is not None, HAS_BIAS=bias is not None,
        HAS_SEQ=seq_idx is not None, HAS_INIT=initial_states is not None,
        BLOCK_C=block_c, BLOCK_T=block_t, num_warps=_NUM_WARPS)


class _BwdGeometry(NamedTuple):
    """How _conv_bwd_kernel's launch splits the work: tiles of block_c x block_t over steps
    [s_begin, L), n_c channel blocks and n_t step tiles a batch row; each program takes
    tiles_per_prog consecutive tiles of one (batch, channel block), n_chunks programs a row."""
    s_begin: int
    block_c: int
    block_t: int
    n_c: int
    n_t: int
    tiles_per_prog: int
    n_chunks: int


def _bwd_geometry(x: Tensor, K: int, has_seq: bool, has_init: bool) -> _BwdGeometry:
    batch, channels, L = x.shape
    s_begin = -(K - 1) if has_init else 0
    steps = L - s_begin
    block_c, block_t = _tile_shape(channels, steps, _channels_fast(x),
                                   _tile_elems(x, True, has_seq or has_init))
    n_c, n_t = triton.cdiv(channels, block_c), triton.cdiv(steps, block_t)
    # Only steps are split among a row's programs (channel blocks always have their own), so at
    # most n_t tiles a program; then spread evenly, so that the last chunk runs few empty tiles.
    wanted = min(n_t, max(1, triton.cdiv(batch * n_c * n_t, _TARGET_PROGRAMS)))
    n_chunks = triton.cdiv(n_t, wanted)
    return _BwdGeometry(s_begin, block_c, block_t, n_c, n_t, triton.cdiv(n_t, n_chunks), n_chunks)


def _launch_bwd(x, weight, bias, pad_left, seq_idx, initial_states, g, dx, dinit):
    """dx, dinit, and the dweight/dbias partials of g (the gradient w.r.t. the pre-activation),
    returned as (dw_part (parts, K, C), db_part (parts, C) or None)."""
    batch, channels, L = x.shape
    K = weight.shape[1]
    has_init = initial_states is not None
    geo = _bwd_geometry(x, K, seq_idx is not None, has_init)
    n_chunks = geo.n_chunks
    acc = acc_dtype(x.dtype)
    dw_part = x.new_empty((batch * n_chunks, K, channels), dtype=acc)
    db_part = x.new_empty((batch * n_chunks, channels), dtype=acc) if bias is not None else None
    _conv_bwd_kernel[(batch * geo.n_c * n_chunks,)](
        x, *x.stride(), weight, *weight.stride(),
        initial_states if has_init else x, *strides_or_zeros(initial_states, 3),
        seq_idx if seq_idx is not None else x, *strides_or_zeros(seq_idx, 2),
        g, *g.stride(), dx, *dx.stride(),
        dinit if has_init else x, *strides_or_zeros(dinit if has_init else None, 3),
        dw_part, db_part if db_part is not None else dw_part,
        channels, L, pad_left, geo.s_begin, geo.n_c, n_chunks, geo.tiles_per_prog,
        K=K, K_POW2=triton.next_power_of_2(K), HAS_BIAS=bias is not None,
        HAS_SEQ=seq_idx is not None, HAS_INIT=has_init,
        BLOCK_C=geo.block_c, BLOCK_T=geo.block_t, num_warps=_NUM_WARPS)
    return dw_part, db_part


def depthwise_conv1d_fwd(x: Tensor, weight: Tensor, bias: Tensor | None, pad_left: int,
                         silu: bool, seq_idx: Tensor | None = None,
                         initial_states: Tensor | None = None) -> Tensor:
    """torch.ops.mvscan.depthwise_conv1d_fwd on Triton kernels: out (batch, channels, L) in x's
    dtype, channels-contiguous when x is (stride 1 along channels), else contiguous."""
    _, pad_left = _check_inputs(x, weight, bias, pad_left, seq_idx, initial_states)
    _check_runnable(x)
    out = empty_like_conv_input(x)
    if out.numel() == 0:
        return out
    with on_device(x.device):
        _launch_pointwise(x, weight, bias, pad_left, bool(silu), seq_idx, initial_states,
                          None, out)
    return out


def depthwise_conv1d_bwd(dout: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None,
                         pad_left: int, silu: bool, seq_idx: Tensor | None = None,
                         initial_states: Tensor | None = None
                         ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """torch.ops.mvscan.depthwise_conv1d_bwd on Triton kernels: (dx, dweight, dbias,
    dinitial_states). dx is laid out like the forward's output, dweight has weight's dtype,
    dbias bias's, dinitial_states x's (contiguous); the gradient of an absent bias is an empty
    (0,) tensor in the accumulation dtype, of absent initial states one in x's dtype."""
    K, pad_left = _check_inputs(x, weight, bias, pad_left, seq_idx, initial_states)
    _check_dout(dout, x)
    _check_runnable(x)
    batch, channels, L = x.shape
    acc = acc_dtype(x.dtype)
    dx = empty_like_conv_input(x)
    has_init = initial_states is not None
    dinit = (x.new_empty(initial_states.shape) if has_init else x.new_empty((0,)))
    if x.numel() == 0:  # no step reads a weight, a bias or a state: their gradients are 0
        dweight = torch.zeros(weight.shape, dtype=weight.dtype, device=x.device)
        dbias = (torch.zeros(bias.shape, dtype=bias.dtype, device=x.device)
                 if bias is not None else x.new_empty((0,), dtype=acc))
        return dx, dweight, dbias, dinit.zero_()
    with on_device(x.device):
        if silu:
            g = empty_like_conv_input(x, acc)
            _launch_pointwise(x, weight, bias, pad_left, True, seq_idx, initial_states, dout, g)
        else:
            g = dout
        dw_part, db_part = _launch_bwd(x, weight, bias, pad_left, seq_idx, initial_states, g,
                                       dx, dinit)
    # (parts, K, C) -> (C, K): summed over parts in a fixed order, into a fresh tensor with the
    # C++ op's (default) strides (.contiguous() would keep a transposed view's when K or C is 1).
    dweight = torch.empty((channels, K), dtype=weight.dtype, device=x.device)
    dweight.copy_(dw_part.sum(0).t())
    dbias = db_part.sum(0).to(bias.dtype) if bias is not None else x.new_empty((0,), dtype=acc)
    return dx, dweight, dbias, dinit
