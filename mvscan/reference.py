"""Pure-PyTorch versions of the mvscan operators: the fallback where no compiled kernel exists,
and the baselines that benchmarks compare against. They run on any device autograd supports.
The scan walks the sequence step by step, like mamba_ssm's ``selective_scan_ref``."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

# Steps whose exp(delta * A) and delta * u * B are precomputed at once: bounds the memory to
# batch * dim * _STEP_BLOCK * N values, whatever L is.
_STEP_BLOCK = 256


def _per_channel(BC: Tensor, dim: int) -> Tensor:
    """B or C as (batch, dim, N, L) for variable/grouped, or (dim, N) for constant."""
    if BC.dim() == 3:  # (batch, N, L)
        return BC.unsqueeze(1)
    if BC.dim() == 4:  # (batch, G, N, L): channel d uses group d // (dim / G)
        return BC.repeat_interleave(dim // BC.shape[1], dim=1)
    return BC


def _steps(BC: Tensor, t0: int, t1: int) -> Tensor:
    """Steps t0..t1 of B or C as (batch or 1, dim or 1, T, N)."""
    if BC.dim() == 2:
        return BC[None, :, None, :]
    return BC[..., t0:t1].transpose(-1, -2)


def selective_scan_ref(
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
    """The selective scan of ``mvscan.selective_scan``, in plain PyTorch ops (same arguments).

    u, delta, z: (batch, dim, L); A: (dim, N); B, C: (dim, N), (batch, N, L) or
    (batch, G, N, L); D, delta_bias: (dim,); initial_state: (batch, dim, N). Computes in float32 (float64 for float64 inputs)
    and returns out in u's dtype, plus the last state (batch, dim, N) if asked.
    """
    in_dtype = u.dtype
    acc = torch.float64 if in_dtype == torch.float64 else torch.float32
    batch, dim, L = u.shape
    u = u.to(acc)
    delta = delta.to(acc)
    if delta_bias is not None:
        delta = delta + delta_bias.to(acc)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)  # log1p(exp(x)), and x for x > 20
    A = A.to(acc)
    B = _per_channel(B.to(acc), dim)
    C = _per_channel(C.to(acc), dim)

    h = (initial_state.to(acc) if initial_state is not None
         else u.new_zeros((batch, dim, A.shape[1])))
    ys = []
    for t0 in range(0, L, _STEP_BLOCK):
        t1 = min(L, t0 + _STEP_BLOCK)
        dt = delta[:, :, t0:t1, None]  # (batch, dim, T, 1)
        decay = torch.exp(dt * A[:, None, :])
        inject = dt * u[:, :, t0:t1, None] * _steps(B, t0, t1)
        Ct = _steps(C, t0, t1)
        for i in range(t1 - t0):
            h = decay[:, :, i] * h + inject[:, :, i]
            ys.append((h * Ct[:, :, min(i, Ct.shape[2] - 1)]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.to(acc)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(acc))
    out = y.to(in_dtype)
    return (out, h) if return_last_state else out


def conv_pad_left(width: int, padding: str) -> int:
    """Zeros on the left for a kernel of this width: 'same' pads as F.conv1d(padding='same')
    does ((K - 1) // 2 left, the rest right), 'causal' pads K - 1 on the left only."""
    return width - 1 if padding == "causal" else (width - 1) // 2


def depthwise_conv1d_ref(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    padding: str = "same",
    activation: str | None = None,
) -> Tensor:
    """``mvscan.depthwise_conv1d`` as F.conv1d(groups=channels) + optional SiLU.

    x: (batch, channels, L); weight: (channels, K) or (channels, 1, K); bias: (channels,)."""
    channels = x.shape[1]
    w = weight.reshape(channels, 1, -1).to(x.dtype)
    left = conv_pad_left(w.shape[-1], padding)
    y = F.conv1d(F.pad(x, (left, w.shape[-1] - 1 - left)), w,
                 bias.to(x.dtype) if bias is not None else None, groups=channels)
    return F.silu(y) if activation == "silu" else y


def conv_final_states(x: Tensor, initial_states: Tensor | None, width: int) -> Tensor:
    """The last K - 1 steps of the sequence x continues (initial_states, or zeros, then x):
    (batch, dim, K - 1) in x's dtype, the conv state a decode step starts from."""
    keep = width - 1
    L = x.shape[-1]
    if L >= keep:
        return x[..., L - keep:].clone()
    before = (initial_states if initial_states is not None
              else x.new_zeros((x.shape[0], x.shape[1], keep)))
    return torch.cat([before[..., L:], x], dim=-1)


def _check_final_states_out(out: Tensor, x: Tensor, width: int) -> None:
    want = (x.shape[0], x.shape[1], width - 1)
    if not isinstance(out, Tensor) or tuple(out.shape) != want:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError("mvscan.causal_conv1d_fn: final_states_out must be a tensor of shape "
                         f"(batch, dim, K - 1) = {want}, got {got}")
    if out.dtype != x.dtype or out.device != x.device:
        raise TypeError("mvscan.causal_conv1d_fn: final_states_out must have x's dtype and device "
                        f"({x.dtype} on {x.device}), got {out.dtype} on {out.device}")


def with_final_states(out: Tensor, x: Tensor, initial_states: Tensor | None, width: int,
                      return_final_states: bool,
                      final_states_out: Tensor | None) -> Tensor | tuple[Tensor, Tensor]:
    """out, or (out, final states) written into final_states_out when given: what
    causal_conv1d_fn returns around the conv's output."""
    if not return_final_states:
        return out
    final = conv_final_states(x, initial_states, width)
    if final_states_out is not None:
        _check_final_states_out(final_states_out, x, width)
        final_states_out.copy_(final)
        final = final_states_out
    return out, final


def causal_conv1d_ref(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    seq_idx: Tensor | None = None,
    initial_states: Tensor | None = None,
    return_final_states: bool = False,
    final_states_out: Tensor | None = None,
    activation: str | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """``mvscan.causal_conv1d_fn`` in plain PyTorch ops (same arguments), float32 accumulation
    (float64 for float64 x). x: (batch, dim, L); weight: (dim, K); seq_idx: (batch, L) int32;
    initial_states: (batch, dim, K - 1)."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    batch, dim, L = x.shape
    K = weight.shape[-1]
    before = (initial_states.to(acc) if initial_states is not None
              else x.new_zeros((batch, dim, K - 1), dtype=acc))
    windows = torch.cat([before, x.to(acc)], dim=-1).unfold(-1, K, 1)  # (batch, dim, L, K)
    if seq_idx is not None:
        first = (seq_idx[:, :1] if initial_states is not None
                 else torch.full_like(seq_idx[:, :1], -1))
        ids = torch.cat([first.expand(batch, K - 1), seq_idx], dim=-1).unfold(-1, K, 1)
        windows = windows * (ids == seq_idx[..., None])[:, None].to(acc)
    y = (windows * weight.reshape(dim, K).to(acc)[None, :, None, :]).sum(-1)
    if bias is not None:
        y = y + bias.to(acc)[:, None]
    if seq_idx is not None:
        y = y.masked_fill((seq_idx < 0)[:, None], 0.0)
    if activation in ("silu", "swish"):
        y = F.silu(y)
    out = y.to(x.dtype)
    return with_final_states(out, x, initial_states, K, return_final_states, final_states_out)


def rms_norm_rows(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """x * rsqrt(mean(x^2, -1) + eps) * weight over the last axis, computed in float32 (float64
    for float64 x), in x's dtype."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf = x.to(acc)
    return (xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + eps) * weight.to(acc)).to(x.dtype)


def compose_mamba_inner(
    causal_conv: Callable,
    scan: Callable,
    xz: Tensor,
    conv1d_weight: Tensor,
    conv1d_bias: Tensor | None,
    x_proj_weight: Tensor,
    delta_proj_weight: Tensor,
    out_proj_weight: Tensor,
    out_proj_bias: Tensor | None,
    A: Tensor,
    B: Tensor | None = None,
    C: Tensor | None = None,
    D: Tensor | None = None,
    delta_bias: Tensor | None = None,
    B_proj_bias: Tensor | None = None,
    C_proj_bias: Tensor | None = None,
    delta_softplus: bool = True,
    b_rms_weight: Tensor | None = None,
    c_rms_weight: Tensor | None = None,
    dt_rms_weight: Tensor | None = None,
    b_c_dt_rms_eps: float = 1e-6,
) -> Tensor:
    """The Mamba mixer of ``mvscan.mamba_inner_fn`` (same parameters but checkpoint_lvl) written
    as separate steps, differentiated by autograd: causal_conv (causal_conv1d_fn's signature) and
    scan (selective_scan_fn's) do the two kernels' work. xz (batch, 2 d_inner, L) ->
    (batch, L, d_model)."""
    batch, _, L = xz.shape
    rank, N = delta_proj_weight.shape[1], A.shape[1]
    x, z = xz.chunk(2, dim=1)
    w = conv1d_weight.reshape(conv1d_weight.shape[0], -1)
    x = causal_conv(x, w, conv1d_bias, activation="silu")
    x_dbl = x.transpose(1, 2).reshape(batch * L, -1) @ x_proj_weight.t()

    def seq(rows):  # (batch * L, n) -> (batch, n, L)
        return rows.reshape(batch, L, -1).transpose(1, 2)

    delta = x_dbl[:, :rank] @ delta_proj_weight.t()
    if dt_rms_weight is not None:
        delta = rms_norm_rows(delta, dt_rms_weight, b_c_dt_rms_eps)
    if B is None:
        B = x_dbl[:, rank:rank + N]
        if B_proj_bias is not None:
            B = B + B_proj_bias.to(B.dtype)
        if b_rms_weight is not None:
            B = rms_norm_rows(B, b_rms_weight, b_c_dt_rms_eps)
        B = seq(B)
    if C is None:
        C = x_dbl[:, x_dbl.shape[1] - N:]
        if C_proj_bias is not None:
            C = C + C_proj_bias.to(C.dtype)
        if c_rms_weight is not None:
            C = rms_norm_rows(C, c_rms_weight, b_c_dt_rms_eps)
        C = seq(C)
    y = scan(x, seq(delta), A, B, C, D, z, delta_bias, delta_softplus)
    return F.linear(y.transpose(1, 2), out_proj_weight, out_proj_bias)


def mamba_inner_ref(*args, **kwargs) -> Tensor:
    """``mvscan.mamba_inner_fn`` on the pure-PyTorch references (compose_mamba_inner's
    parameters after its first two)."""
    return compose_mamba_inner(causal_conv1d_ref, selective_scan_ref, *args, **kwargs)


def _check_state_rows(op: str, name: str, idx: Tensor, rows_name: str, rows: int) -> None:
    """The decode steps' row indices (negative: padding) must be below `rows` and, where not
    negative, distinct (two batch elements would write one state row): ValueError otherwise,
    as the CPU kernels raise. Reads the values (a host sync on a device)."""
    if bool((idx >= rows).any()):
        raise ValueError(f"{op}: {name} must be below {rows_name} = {rows}, got {idx.tolist()}")
    real = idx[idx >= 0]
    if torch.unique(real).numel() != real.numel():
        raise ValueError(f"{op}: {name} must not repeat a non-negative index (two batch elements "
                         f"would update the same state row), got {idx.tolist()}")


def selective_state_update_ref(
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
    """``mvscan.selective_state_update`` in plain PyTorch ops (same arguments and results):
    one decode step, state updated in place, out computed from the new state before it is
    rounded into the state's dtype. Math in float32 (float64 for float64 x)."""
    has_heads = state.dim() == 4
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32

    def heads_view(t: Tensor | None, axis: int) -> Tensor | None:
        """t in the 4-d layout: a 3-d state's tensors gain a heads axis of size 1."""
        return t if t is None or has_heads else t.unsqueeze(axis)

    st = heads_view(state, 1)  # (rows, heads, dim, N), a view: writes reach state
    heads = st.shape[1]
    xs = heads_view(x, 1).to(acc)  # (batch, heads, dim)
    step = heads_view(dt, 1).to(acc)
    if dt_bias is not None:
        step = step + heads_view(dt_bias, 0).to(acc)
    if dt_softplus:
        step = F.softplus(step)  # log1p(exp(x)), and x for x > 20

    def per_head(BC: Tensor) -> Tensor:
        """(batch, groups, N) -> (batch, heads, 1, N): head h reads group h // (heads / groups)."""
        BC = heads_view(BC, 1).to(acc)
        return BC.repeat_interleave(heads // BC.shape[1], dim=1).unsqueeze(2)

    if state_batch_indices is None:
        old = st
    else:
        idx = state_batch_indices.long()
        _check_state_rows("mvscan.selective_state_update", "state_batch_indices", idx,
                         "state.shape[0]", st.shape[0])
        valid = idx >= 0
        old = st[idx.clamp(min=0)]
    new = (old.to(acc) * torch.exp(step[..., None] * heads_view(A, 0).to(acc))
           + (step * xs)[..., None] * per_head(B))
    y = (new * per_head(C)).sum(-1)
    if D is not None:
        y = y + heads_view(D, 0).to(acc) * xs
    if z is not None:
        y = y * F.silu(heads_view(z, 1).to(acc))
    if state_batch_indices is None:
        st.copy_(new)
    else:
        st[idx[valid]] = new[valid].to(st.dtype)
        y = torch.where(valid[:, None, None], y, torch.zeros((), dtype=acc, device=y.device))
    out = y.to(x.dtype)
    return out if has_heads else out.squeeze(1)


def causal_conv1d_update_ref(
    x: Tensor,
    conv_state: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    activation: str | None = None,
    cache_seqlens: Tensor | None = None,
    conv_state_indices: Tensor | None = None,
) -> Tensor:
    """``mvscan.causal_conv1d_update`` in plain PyTorch ops (same arguments and results): L
    steps of the causal depthwise conv continuing from conv_state, which is updated in place
    (circular when cache_seqlens is given). Math in float32 (float64 for float64 x)."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    xs = x.unsqueeze(-1) if x.dim() == 2 else x
    batch, dim, L = xs.shape
    w = weight.reshape(dim, -1)
    K, S = w.shape[-1], conv_state.shape[-1]
    if conv_state_indices is None:
        rows = conv_state
    else:
        idx = conv_state_indices.long()
        _check_state_rows("mvscan.causal_conv1d_update", "conv_state_indices", idx,
                         "conv_state.shape[0]", conv_state.shape[0])
        valid = idx >= 0
        rows = conv_state[idx.clamp(min=0)]
    if cache_seqlens is None:
        history = rows[..., S - (K - 1):]
        new_rows = torch.cat([rows, xs], dim=-1)[..., L:]  # the last S steps of (state, x)
    else:
        pos = cache_seqlens.long().remainder(S)[:, None]  # (batch, 1)
        steps = torch.arange(-(K - 1), 0, device=x.device)
        history = rows.gather(2, (pos + steps).remainder(S)[:, None].expand(-1, dim, -1))
        first = max(0, L - S)  # only the last S steps survive the writes
        where = (pos + torch.arange(first, L, device=x.device)).remainder(S)
        new_rows = rows.clone().scatter_(2, where[:, None].expand(-1, dim, -1), xs[..., first:])
    window = torch.cat([history, xs], dim=-1).to(acc)
    y = F.conv1d(window, w.to(acc)[:, None], bias.to(acc) if bias is not None else None,
                 groups=dim)
    if activation in ("silu", "swish"):
        y = F.silu(y)
    if conv_state_indices is None:
        conv_state.copy_(new_rows)
    else:
        conv_state[idx[valid]] = new_rows[valid]
        y = torch.where(valid[:, None, None], y, torch.zeros((), dtype=acc, device=y.device))
    out = y.to(x.dtype)
    return out.squeeze(-1) if x.dim() == 2 else out
