"""A numpy float64 oracle of the selective scan, forward and backward, written straight from the
recurrence (h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t, y_t = C_t h_t + D u_t, gated by
silu(z)). Slow and simple on purpose: every kernel is compared with it,
and its own backward is checked by finite differences (test_oracle.py)."""

from __future__ import annotations

import numpy as np


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0))))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def expand_bc(BC: np.ndarray, batch: int, dim: int, L: int) -> np.ndarray:
    """B or C as (batch, dim, N, L), whatever its kind."""
    if BC.ndim == 2:  # constant (dim, N)
        return np.broadcast_to(BC[None, :, :, None], (batch, dim, BC.shape[1], L))
    if BC.ndim == 3:  # variable (batch, N, L)
        return np.broadcast_to(BC[:, None], (batch, dim) + BC.shape[1:])
    groups = BC.shape[1]  # grouped (batch, G, N, L): channel d uses group d // (dim / G)
    return np.repeat(BC, dim // groups, axis=1)


def reduce_bc_grad(d_full: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Sums a (batch, dim, N, L) gradient back to the shape of B or C."""
    batch, dim, N, L = d_full.shape
    if like.ndim == 2:
        return d_full.sum(axis=(0, 3))
    if like.ndim == 3:
        return d_full.sum(axis=1)
    groups = like.shape[1]
    return d_full.reshape(batch, groups, dim // groups, N, L).sum(axis=2)


def forward(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
            initial_state=None):
    """Returns a dict with out (batch, dim, L), last_state (batch, dim, N) and the intermediates
    the backward needs. All inputs are numpy arrays (converted to float64). initial_state: h_0,
    (batch, dim, N), or None for zeros."""
    f = lambda x: None if x is None else np.asarray(x, dtype=np.float64)  # noqa: E731
    u, delta, A, B, C, D, z, delta_bias = map(f, (u, delta, A, B, C, D, z, delta_bias))
    h0 = f(initial_state)
    batch, dim, L = u.shape
    pre = delta + (delta_bias[:, None] if delta_bias is not None else 0.0)
    dt = _softplus(pre) if delta_softplus else pre
    Bx, Cx = expand_bc(B, batch, dim, L), expand_bc(C, batch, dim, L)
    N = A.shape[1]
    h = h0.copy() if h0 is not None else np.zeros((batch, dim, N))
    hs = np.zeros((batch, dim, L, N))
    y = np.zeros((batch, dim, L))
    for t in range(L):
        h = np.exp(dt[:, :, t, None] * A) * h + (dt[:, :, t] * u[:, :, t])[..., None] * Bx[..., t]
        hs[:, :, t] = h
        y[:, :, t] = (Cx[..., t] * h).sum(-1)
    if D is not None:
        y = y + D[:, None] * u
    out = y * z * _sigmoid(z) if z is not None else y
    return dict(out=out, last_state=h, y=y, hs=hs, dt=dt, pre=pre, h0=h0)


def backward(dout, dlast, u, delta, A, B, C, D=None, z=None, delta_bias=None,
             delta_softplus=False, initial_state=None):
    """Gradients of <dout, out> + <dlast, last_state> w.r.t. every input, in float64, shaped like
    the inputs (None for absent optional inputs, initial_state included). dlast may be None."""
    fw = forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    f = lambda x: None if x is None else np.asarray(x, dtype=np.float64)  # noqa: E731
    u, A, B, C, D, z, dout, dlast = map(f, (u, A, B, C, D, z, dout, dlast))
    batch, dim, L = u.shape
    N = A.shape[1]
    dt, hs, y = fw["dt"], fw["hs"], fw["y"]
    Bx, Cx = expand_bc(B, batch, dim, L), expand_bc(C, batch, dim, L)

    g = dout.copy()
    dz = None
    if z is not None:
        sz = _sigmoid(z)
        dz = g * y * sz * (1.0 + z * (1.0 - sz))
        g = g * z * sz
    dD = (g * u).sum(axis=(0, 2)) if D is not None else None

    du = g * D[:, None] if D is not None else np.zeros_like(u)
    ddt = np.zeros_like(u)
    dA = np.zeros_like(A)
    dBx = np.zeros((batch, dim, N, L))
    dCx = np.zeros((batch, dim, N, L))
    carry = dlast.copy() if dlast is not None else np.zeros((batch, dim, N))
    for t in reversed(range(L)):
        a_t = np.exp(dt[:, :, t, None] * A)
        h_prev = hs[:, :, t - 1] if t > 0 else (
            fw["h0"] if fw["h0"] is not None else np.zeros((batch, dim, N)))
        lam = g[:, :, t, None] * Cx[..., t] + carry
        q = a_t * h_prev  # = h_t - dt_t B_t u_t
        du[:, :, t] += (lam * Bx[..., t]).sum(-1) * dt[:, :, t]
        ddt[:, :, t] = (lam * (A * q + Bx[..., t] * u[:, :, t, None])).sum(-1)
        dA += (lam * dt[:, :, t, None] * q).sum(0)
        dBx[..., t] = lam * (dt[:, :, t] * u[:, :, t])[..., None]
        dCx[..., t] = g[:, :, t, None] * hs[:, :, t]
        carry = a_t * lam
    ddelta = ddt * _sigmoid(fw["pre"]) if delta_softplus else ddt
    ddelta_bias = ddelta.sum(axis=(0, 2)) if delta_bias is not None else None
    return dict(u=du, delta=ddelta, A=dA, B=reduce_bc_grad(dBx, B), C=reduce_bc_grad(dCx, C),
                D=dD, z=dz, delta_bias=ddelta_bias,
                initial_state=carry if fw["h0"] is not None else None)


def state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """One decode step of the scan, float64: returns (out (batch, dim), new state (batch, dim, N)).
    state (batch, dim, N); x, dt, z (batch, dim); A (dim, N); B, C (batch, N); D, dt_bias (dim,).
    The same step as forward() at one time step, so a prefill's last_state followed by steps must
    equal forward() over the whole sequence."""
    f = lambda v: None if v is None else np.asarray(v, dtype=np.float64)  # noqa: E731
    state, x, dt, A, B, C, D, z, dt_bias = map(f, (state, x, dt, A, B, C, D, z, dt_bias))
    pre = dt + (dt_bias[None] if dt_bias is not None else 0.0)
    step = _softplus(pre) if dt_softplus else pre
    new = np.exp(step[..., None] * A) * state + (step * x)[..., None] * B[:, None, :]
    y = (new * C[:, None, :]).sum(-1)
    if D is not None:
        y = y + D[None] * x
    out = y * z * _sigmoid(z) if z is not None else y
    return out, new


def conv_forward(x, weight, bias=None, pad_left=0, silu=False):
    """Depthwise conv1d, float64: out[b,c,t] = act(bias[c] + sum_k w[c,k] x[b,c,t+k-pad_left]),
    x zero outside [0, L). weight: (channels, K)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    batch, channels, L = x.shape
    K = w.shape[1]
    xp = np.zeros((batch, channels, L + K - 1))
    xp[:, :, pad_left:pad_left + L] = x
    pre = sum(w[None, :, k, None] * xp[:, :, k:k + L] for k in range(K))
    if bias is not None:
        pre = pre + np.asarray(bias, dtype=np.float64)[None, :, None]
    return pre * _sigmoid(pre) if silu else pre


def conv_backward(dout, x, weight, bias=None, pad_left=0, silu=False):
    """Gradients (dx, dweight (channels, K), dbias or None) of <dout, conv_forward(...)>."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    g = np.asarray(dout, dtype=np.float64)
    batch, channels, L = x.shape
    K = w.shape[1]
    if silu:
        pre = conv_forward(x, w, bias, pad_left, silu=False)
        s = _sigmoid(pre)
        g = g * s * (1.0 + pre * (1.0 - s))
    xp = np.zeros((batch, channels, L + K - 1))
    xp[:, :, pad_left:pad_left + L] = x
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for k in range(K):
        dxp[:, :, k:k + L] += w[None, :, k, None] * g
        dw[:, k] = (g * xp[:, :, k:k + L]).sum(axis=(0, 2))
    dx = dxp[:, :, pad_left:pad_left + L]
    db = g.sum(axis=(0, 2)) if bias is not None else None
    return dx, dw, db


def _causal_taps(x, weight, seq_idx, initial_states):
    """(xs, mask): x after its K - 1 initial states (zeros without them), (batch, dim, L + K - 1),
    and mask[b, t, k]: whether output t reads xs[b, :, t + k] (always, without seq_idx)."""
    x = np.asarray(x, dtype=np.float64)
    batch, dim, L = x.shape
    K = np.asarray(weight).shape[1]
    before = (np.asarray(initial_states, dtype=np.float64) if initial_states is not None
              else np.zeros((batch, dim, K - 1)))
    xs = np.concatenate([before, x], axis=-1)
    mask = np.ones((batch, L, K), dtype=bool)
    if seq_idx is not None:
        seq = np.asarray(seq_idx, dtype=np.int64)
        first = seq[:, :1] if initial_states is not None else np.full((batch, 1), -1)
        ids = np.concatenate([np.repeat(first, K - 1, axis=1), seq], axis=1)
        for k in range(K):
            mask[:, :, k] = ids[:, k:k + L] == seq
    return xs, mask


def causal_conv_forward(x, weight, bias=None, seq_idx=None, initial_states=None, silu=False):
    """causal_conv1d_fn in float64: (out, pre, final_states). out[b, d, t] = act(pre), pre =
    bias[d] + sum_k [same sequence] w[d, k] xs[b, d, t + k] (xs: initial states, then x), 0 where
    seq_idx < 0; final_states = the last K - 1 steps of xs."""
    w = np.asarray(weight, dtype=np.float64)
    xs, mask = _causal_taps(x, w, seq_idx, initial_states)
    batch, dim, _ = xs.shape
    K = w.shape[1]
    L = xs.shape[-1] - (K - 1)
    pre = np.zeros((batch, dim, L))
    for k in range(K):
        pre += mask[:, None, :, k] * w[None, :, k, None] * xs[:, :, k:k + L]
    if bias is not None:
        pre += np.asarray(bias, dtype=np.float64)[None, :, None]
    if seq_idx is not None:
        pre = np.where((np.asarray(seq_idx) < 0)[:, None, :], 0.0, pre)
    out = pre * _sigmoid(pre) if silu else pre
    return out, pre, xs[:, :, L:]


def causal_conv_backward(dout, x, weight, bias=None, seq_idx=None, initial_states=None,
                         silu=False, dfinal=None):
    """Gradients of <dout, out> + <dfinal, final_states> (dfinal may be None): dict of dx,
    dweight (dim, K), dbias and dinitial_states (None when absent)."""
    w = np.asarray(weight, dtype=np.float64)
    xs, mask = _causal_taps(x, w, seq_idx, initial_states)
    _, pre, _ = causal_conv_forward(x, w, bias, seq_idx, initial_states, silu)
    K = w.shape[1]
    L = pre.shape[-1]
    g = np.asarray(dout, dtype=np.float64)
    if silu:
        s = _sigmoid(pre)
        g = g * s * (1.0 + pre * (1.0 - s))
    if seq_idx is not None:
        g = np.where((np.asarray(seq_idx) < 0)[:, None, :], 0.0, g)
    dxs = np.zeros_like(xs)
    dw = np.zeros_like(w)
    for k in range(K):
        gk = g * mask[:, None, :, k]
        dxs[:, :, k:k + L] += w[None, :, k, None] * gk
        dw[:, k] = (gk * xs[:, :, k:k + L]).sum(axis=(0, 2))
    if dfinal is not None and K > 1:
        dxs[:, :, L:] += np.asarray(dfinal, dtype=np.float64)
    return dict(x=dxs[:, :, K - 1:], weight=dw,
                bias=g.sum(axis=(0, 2)) if bias is not None else None,
                initial_states=dxs[:, :, :K - 1] if initial_states is not None else None)


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None,
                           dt_softplus=False, state_batch_indices=None):
    """The whole decode-step operator, float64, built on state_update one head at a time:
    returns (out shaped like x, the whole new state buffer). Takes the 3-d layout (state
    (rows, dim, N)) or the 4-d one (state (rows, heads, dim, N), x (batch, heads, dim), A
    (heads, dim, N), B/C (batch, groups, N) with head h on group h // (heads / groups), D and
    dt_bias (heads, dim)); state_batch_indices (batch,) picks state rows, negative = padding."""
    f = lambda v: None if v is None else np.asarray(v, dtype=np.float64)  # noqa: E731
    state, x, dt, A, B, C, D, z, dt_bias = map(f, (state, x, dt, A, B, C, D, z, dt_bias))
    if state.ndim == 3:  # one head
        out, new = selective_state_update(
            state[:, None], x[:, None], dt[:, None], A[None], B[:, None], C[:, None],
            None if D is None else D[None], None if z is None else z[:, None],
            None if dt_bias is None else dt_bias[None], dt_softplus, state_batch_indices)
        return out[:, 0], new[:, 0]
    batch, heads = x.shape[:2]
    rows = (np.arange(batch) if state_batch_indices is None
            else np.asarray(state_batch_indices, dtype=np.int64))
    real = rows >= 0
    new = state.copy()
    out = np.zeros(x.shape)
    pick = lambda v, h: None if v is None else v[real, h]  # noqa: E731
    for h in range(heads):
        gB, gC = h // (heads // B.shape[1]), h // (heads // C.shape[1])
        out[real, h], new[rows[real], h] = state_update(
            state[rows[real], h], x[real, h], dt[real, h], A[h], B[real, gB], C[real, gC],
            None if D is None else D[h], pick(z, h), None if dt_bias is None else dt_bias[h],
            dt_softplus)
    return out, new


def conv_update(x, conv_state, weight, bias=None, silu=False, cache_seqlens=None,
                conv_state_indices=None):
    """causal-conv1d's causal_conv1d_update, float64: returns (out shaped like x, the whole new
    conv_state). x (batch, dim) or (batch, dim, L); conv_state (rows, dim, S >= K - 1); weight
    (dim, K). The window of each row is the K - 1 steps before x then x; without cache_seqlens
    the state holds the last S inputs and becomes the last S steps of (state, x); with it, the
    state is circular: p = cache_seqlens[b] mod S, the steps before x are at (p - K + 1 + j) mod S
    and x[t] goes to (p + t) mod S, in order. conv_state_indices picks state rows (negative:
    padding, out 0)."""
    x = np.asarray(x, dtype=np.float64)
    one_step = x.ndim == 2
    x = x[:, :, None] if one_step else x
    state = np.asarray(conv_state, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    batch, dim, L = x.shape
    S, K = state.shape[2], w.shape[1]
    new = state.copy()
    out = np.zeros(x.shape)
    for b in range(batch):
        r = b if conv_state_indices is None else int(conv_state_indices[b])
        if r < 0:
            continue
        if cache_seqlens is None:
            history = state[r][:, S - (K - 1):]
            new[r] = np.concatenate([state[r], x[b]], axis=1)[:, L:]
        else:
            p = int(cache_seqlens[b]) % S  # Python's %: in [0, S) for any sign
            history = state[r][:, [(p - (K - 1) + j) % S for j in range(K - 1)]]
            for t in range(L):
                new[r][:, (p + t) % S] = x[b][:, t]
        window = np.concatenate([history, x[b]], axis=1)  # (dim, K - 1 + L)
        for t in range(L):
            y = (w * window[:, t:t + K]).sum(axis=1)
            if bias is not None:
                y = y + np.asarray(bias, dtype=np.float64)
            out[b, :, t] = y * _sigmoid(y) if silu else y
    return (out[:, :, 0] if one_step else out), new
