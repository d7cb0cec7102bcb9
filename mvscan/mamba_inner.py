"""mamba_ssm's ``mamba_inner_fn``: the whole Mamba mixer after in_proj (causal conv + SiLU,
x_proj, dt_proj, optional RMS norms on B / C / dt, the gated scan, out_proj) as one autograd node
on mvscan's kernels, saving only what its backward cannot cheaply recompute."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._extension import check_same_device
from .backend import ops_for
from .causal_conv1d import causal_conv1d_fn
from .ops import selective_scan
from .reference import compose_mamba_inner, mamba_inner_ref, rms_norm_rows

_OP = "mvscan.mamba_inner_fn"


def _rows(t: Tensor) -> Tensor:
    """(batch, dim, L) -> (batch * L, dim): a view when dim is the fast axis, else a copy."""
    return t.transpose(1, 2).reshape(-1, t.shape[1])


def _seq(rows: Tensor, batch: int) -> Tensor:
    """(batch * L, dim) rows as a (batch, dim, L) view (channels-fast strides; the kernels read
    them in place)."""
    return rows.view(batch, -1, rows.shape[1]).transpose(1, 2)


def _rms_norm_backward(dy: Tensor, x: Tensor, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Gradients (dx, dweight) of y = x * rsqrt(mean(x^2, -1) + eps) * weight over rows of x,
    in float32 (float64 for float64 x)."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf, dyf, wf = x.to(acc), dy.to(acc), weight.to(acc)
    r = torch.rsqrt(xf.square().mean(-1, keepdim=True) + eps)
    n = xf * r
    dn = dyf * wf
    dx = r * (dn - n * (dn * n).mean(-1, keepdim=True))
    return dx.to(x.dtype), (dyf * n).sum(0).to(weight.dtype)


class _Projections:
    """What the scan reads, built from the conv output's rows and x_dbl: delta, B and C as
    (batch, *, L) views, with the pre-norm values the RMS-norm backward needs."""

    def __init__(self, x_dbl: Tensor, batch: int, rank: int, N: int, dt_proj_weight: Tensor,
                 B: Tensor | None, C: Tensor | None, B_proj_bias: Tensor | None,
                 C_proj_bias: Tensor | None, b_rms: Tensor | None, c_rms: Tensor | None,
                 dt_rms: Tensor | None, eps: float):
        self.delta_pre = x_dbl[:, :rank] @ dt_proj_weight.t()  # (batch * L, dim)
        delta = rms_norm_rows(self.delta_pre, dt_rms, eps) if dt_rms is not None else self.delta_pre
        self.delta = _seq(delta, batch)
        self.B_pre = self.C_pre = None
        if B is None:
            self.B_pre = x_dbl[:, rank:rank + N]
            if B_proj_bias is not None:
                self.B_pre = self.B_pre + B_proj_bias.to(self.B_pre.dtype)
            B = _seq(rms_norm_rows(self.B_pre, b_rms, eps) if b_rms is not None else self.B_pre,
                     batch)
        if C is None:
            self.C_pre = x_dbl[:, x_dbl.shape[1] - N:]
            if C_proj_bias is not None:
                self.C_pre = self.C_pre + C_proj_bias.to(self.C_pre.dtype)
            C = _seq(rms_norm_rows(self.C_pre, c_rms, eps) if c_rms is not None else self.C_pre,
                     batch)
        self.B, self.C = B, C


class _MambaInner(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kernels, xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight,
                out_proj_weight, out_proj_bias, A, B, C, D, delta_bias, B_proj_bias, C_proj_bias,
                delta_softplus, checkpoint_lvl, b_rms_weight, c_rms_weight, dt_rms_weight,
                b_c_dt_rms_eps):
        batch, _, L = xz.shape
        K = conv1d_weight.shape[-1]
        w_conv = conv1d_weight.reshape(conv1d_weight.shape[0], K)
        x, z = xz.chunk(2, dim=1)
        conv_fwd, _, scan_fwd, _ = kernels
        conv_out = conv_fwd(x, w_conv, conv1d_bias, K - 1, True)
        x_dbl = _rows(conv_out) @ x_proj_weight.t()  # (batch * L, rank + 2N)
        pr = _Projections(x_dbl, batch, delta_proj_weight.shape[1], A.shape[1],
                          delta_proj_weight, B, C, B_proj_bias, C_proj_bias, b_rms_weight,
                          c_rms_weight, dt_rms_weight, b_c_dt_rms_eps)
        out_z, states = scan_fwd(
            conv_out, pr.delta, A, pr.B, pr.C, D, z, delta_bias, delta_softplus)
        out = F.linear(out_z.transpose(1, 2), out_proj_weight, out_proj_bias)
        # Level 1 recomputes the conv output (one conv) and delta (one thin matmul) backwards.
        kept = (conv_out, pr.delta) if checkpoint_lvl == 0 else (None, None)
        ctx.save_for_backward(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight,
                              out_proj_weight, A, B, C, D, delta_bias, B_proj_bias, C_proj_bias,
                              b_rms_weight, c_rms_weight, dt_rms_weight, x_dbl, states, out_z,
                              *kept)
        ctx.kernels = kernels
        ctx.delta_softplus = delta_softplus
        ctx.eps = b_c_dt_rms_eps
        ctx.has_out_bias = out_proj_bias is not None
        return out

    @staticmethod
    def backward(ctx, dout):
        (xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight, A,
         B, C, D, delta_bias, B_proj_bias, C_proj_bias, b_rms, c_rms, dt_rms, x_dbl, states,
         out_z, conv_out, delta_kept) = ctx.saved_tensors
        batch, _, L = xz.shape
        K = conv1d_weight.shape[-1]
        rank, N = delta_proj_weight.shape[1], A.shape[1]
        w_conv = conv1d_weight.reshape(conv1d_weight.shape[0], K)
        x, z = xz.chunk(2, dim=1)
        conv_fwd, conv_bwd, _, scan_bwd = ctx.kernels
        if conv_out is None:
            conv_out = conv_fwd(x, w_conv, conv1d_bias, K - 1, True)
        pr = _Projections(x_dbl, batch, rank, N, delta_proj_weight, B, C, B_proj_bias,
                          C_proj_bias, b_rms, c_rms, dt_rms, ctx.eps)
        delta = delta_kept if delta_kept is not None else pr.delta

        dout_rows = dout.reshape(-1, dout.shape[-1])
        dout_proj_weight = dout_rows.t() @ _rows(out_z)
        dout_proj_bias = dout_rows.sum(0) if ctx.has_out_bias else None
        dy = _seq(dout_rows @ out_proj_weight, batch)
        du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, _ = scan_bwd(
            dy, None, conv_out, delta, A, pr.B, pr.C, D, z, delta_bias, states,
            ctx.delta_softplus)

        dx_dbl = torch.zeros_like(x_dbl)  # the columns of a given B or C get no gradient
        ddelta_rows = _rows(ddelta)
        d_dt_rms = None
        if dt_rms is not None:
            ddelta_rows, d_dt_rms = _rms_norm_backward(ddelta_rows, pr.delta_pre, dt_rms, ctx.eps)
        ddelta_proj_weight = ddelta_rows.t() @ x_dbl[:, :rank]
        dx_dbl[:, :rank] = ddelta_rows @ delta_proj_weight

        def bc_grad(dBC, pre, rms, cols):
            """The gradient of a B/C computed from x_dbl: into dx_dbl's columns; returns
            (d proj bias, d rms weight)."""
            rows = _rows(dBC)
            d_rms = None
            if rms is not None:
                rows, d_rms = _rms_norm_backward(rows, pre, rms, ctx.eps)
            dx_dbl[:, cols] = rows
            return rows.sum(0), d_rms

        dB_bias = dC_bias = d_b_rms = d_c_rms = None
        if B is None:
            dB_bias, d_b_rms = bc_grad(dB, pr.B_pre, b_rms, slice(rank, rank + N))
            dB = None
        if C is None:
            dC_bias, d_c_rms = bc_grad(dC, pr.C_pre, c_rms, slice(x_dbl.shape[1] - N, None))
            dC = None
        conv_rows = _rows(conv_out)
        dx_proj_weight = dx_dbl.t() @ conv_rows
        dconv_out = du + _seq(dx_dbl @ x_proj_weight, batch)
        dx, dconv_w, dconv_b, _ = conv_bwd(
            dconv_out, x, w_conv, conv1d_bias, K - 1, True)
        dxz = torch.cat([dx, dz], dim=1)
        return (None, dxz, dconv_w.reshape(conv1d_weight.shape),
                dconv_b if conv1d_bias is not None else None, dx_proj_weight, ddelta_proj_weight,
                dout_proj_weight, dout_proj_bias, dA, dB, dC,
                dD if D is not None else None, ddelta_bias if delta_bias is not None else None,
                dB_bias if B_proj_bias is not None else None,
                dC_bias if C_proj_bias is not None else None,
                None, None, d_b_rms, d_c_rms, d_dt_rms, None)


def mamba_inner_fn(
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
    checkpoint_lvl: int = 1,
    b_rms_weight: Tensor | None = None,
    c_rms_weight: Tensor | None = None,
    dt_rms_weight: Tensor | None = None,
    b_c_dt_rms_eps: float = 1e-6,
) -> Tensor:
    """The Mamba mixer after in_proj, as mamba_ssm's ``mamba_inner_fn`` (same parameters):

        x, z = xz.chunk(2, dim=1); x = silu(causal_conv1d(x)); x_dbl = x @ x_proj_weight.T
        delta = dt_rms(x_dbl[:, :R] @ delta_proj_weight.T); B, C = rms(x_dbl[:, R:R+N] + bias), ...
        y = selective_scan(x, delta, A, B, C, D, z, delta_bias, delta_softplus)
        out = y.T @ out_proj_weight.T + out_proj_bias

    Args:
        xz: (batch, 2 * d_inner, L): in_proj's output, in any layout (its (batch, L, 2 d_inner)
            result transposed is read in place).
        conv1d_weight: (d_inner, 1, K) or (d_inner, K); conv1d_bias: (d_inner,) or None.
        x_proj_weight: (R + 2N, d_inner); delta_proj_weight: (d_inner, R);
            out_proj_weight: (d_model, d_inner); out_proj_bias: (d_model,) or None. In xz's dtype
            (under autocast they are cast to it, as mamba_ssm does).
        A: (d_inner, N) float32. B, C: None (taken from x_dproj, the Mamba case) or given as for
            selective_scan_fn. D, delta_bias: (d_inner,) float32 or None.
        B_proj_bias, C_proj_bias: (N,) added to the projected B / C, or None.
        checkpoint_lvl: 1 recomputes the conv output and delta in the backward (saving two
            (batch, d_inner, L) tensors), 0 keeps them.
        b_rms_weight, c_rms_weight, dt_rms_weight: RMS-norm weights applied to B, C (over N)
            and delta (over d_inner) before the scan (FalconMamba), eps b_c_dt_rms_eps.

    Returns:
        (batch, L, d_model) in xz's dtype. Differentiable w.r.t. every tensor argument, the
        RMS-norm weights included (mamba_ssm returns no gradient for them and differentiates B,
        C and delta as if they were not normalised; here the norms' Jacobians are applied).
    """
    if not isinstance(xz, Tensor) or xz.dim() != 3 or xz.shape[1] % 2:
        got = tuple(xz.shape) if isinstance(xz, Tensor) else type(xz).__name__
        raise ValueError(f"{_OP}: xz must be a (batch, 2 * d_inner, L) tensor, got {got}")
    if checkpoint_lvl not in (0, 1):
        raise ValueError(f"{_OP}: checkpoint_lvl must be 0 or 1, got {checkpoint_lvl!r}")
    tensors = dict(xz=xz, conv1d_weight=conv1d_weight, conv1d_bias=conv1d_bias,
                   x_proj_weight=x_proj_weight, delta_proj_weight=delta_proj_weight,
                   out_proj_weight=out_proj_weight, out_proj_bias=out_proj_bias, A=A, B=B, C=C,
                   D=D, delta_bias=delta_bias, B_proj_bias=B_proj_bias, C_proj_bias=C_proj_bias,
                   b_rms_weight=b_rms_weight, c_rms_weight=c_rms_weight,
                   dt_rms_weight=dt_rms_weight)
    check_same_device(_OP, "xz", tensors)
    d_inner = xz.shape[1] // 2
    rows = delta_proj_weight.shape[-1] + 2 * A.shape[-1]
    if x_proj_weight.dim() != 2 or tuple(x_proj_weight.shape) != (rows, d_inner):
        raise ValueError(f"{_OP}: x_proj_weight must have shape (R + 2N, d_inner) = ({rows}, "
                         f"{d_inner}), got {tuple(x_proj_weight.shape)}")
    if torch.is_autocast_enabled(xz.device.type):
        dtype = torch.get_autocast_dtype(xz.device.type)
        x_proj_weight, delta_proj_weight, out_proj_weight = (
            w.to(dtype) for w in (x_proj_weight, delta_proj_weight, out_proj_weight))
        if out_proj_bias is not None:
            out_proj_bias = out_proj_bias.to(dtype)
    args = (xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight,
            out_proj_bias, A, B, C, D, delta_bias, B_proj_bias, C_proj_bias, delta_softplus)
    rms = (b_rms_weight, c_rms_weight, dt_rms_weight, b_c_dt_rms_eps)
    scan_ops = ops_for("selective_scan", xz.device, _OP)
    conv_ops = ops_for("depthwise_conv1d", xz.device, _OP)
    if scan_ops is None or conv_ops is None:
        return mamba_inner_ref(*args, *rms)
    return _MambaInner.apply((*conv_ops, *scan_ops), *args, checkpoint_lvl, *rms)


def mamba_inner_unfused(*args, **kwargs) -> Tensor:
    """The same mixer as mamba_inner_fn (its parameters but checkpoint_lvl) as separate mvscan
    functions under autograd, as a model would write it without mamba_inner_fn: the baseline its
    memory and time are measured against."""
    return compose_mamba_inner(causal_conv1d_fn, selective_scan, *args, **kwargs)
