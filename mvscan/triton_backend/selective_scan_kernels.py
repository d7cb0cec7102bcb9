"""Triton kernels of the selective scan (forward and backward); the launchers that check the
arguments and size the grid are in selective_scan.py.

Layout: one program per (block of BLOCK_D channels, batch row) walks the sequence in tiles of
BLOCK_T steps. A tile holds the state as a [BLOCK_D, BLOCK_N, BLOCK_T] block and solves the
recurrence h_t = a_t * h_{t-1} + b_t inside it with tl.associative_scan along time (log-depth on
a GPU, where the C++ kernels walk steps one by one per thread); the state at the tile's last step
carries into the next tile. Time is the fastest axis of the tile, as it is of u, delta, z and of
the variable B and C in memory, so the tile loads coalesce. BLOCK_T divides STATE_CHUNK_LEN, so
the states the forward saves (every STATE_CHUNK_LEN steps, the operator's contract) fall on tile
ends.

The backward goes over the saved-state chunks from last to first. Inside a chunk it recomputes
the forward of each tile from the chunk's saved start state (tiles before it again when a chunk
has several: BLOCK_T < STATE_CHUNK_LEN only for large N, where a tile of 64 steps would not fit
in registers), then runs the reverse scan of the state gradient
    dh_t = C_t dy_t + a_{t+1} dh_{t+1}
with a_{t+1} from a second load of delta shifted by one step (registers cannot be shifted), and
carries a_{t0} dh_{t0} into the previous tile. h_{t-1} a_t = h_t - b_t gives every gradient from
h_t alone (../shared/spec/selective_scan.md).

Every accumulation is in A's dtype (float32; float64 for float64 inputs). Per-channel sums over
time (dA, dD, ddelta_bias, the constant B/C gradients) go to per-batch-row partial buffers that
the launcher sums: deterministic. Variable B/C gradients are shared by every channel of a group,
so the programs of one batch row add theirs with atomics into an accumulation-dtype buffer.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _linear_combine(m1, v1, m2, v2):
    # (m1, v1) is the earlier step, (m2, v2) the later: x -> m2 * (m1 * x + v1) + v2.
    return m1 * m2, m2 * v1 + v2


@triton.jit
def _softplus(x):
    # log1p(exp(x)), and x itself for x > 20 (mamba_ssm's threshold); max(x, 0) + log1p(exp(-|x|))
    # so that exp never overflows, with log1p(w) = log(1 + w) * w / ((1 + w) - 1) exact for tiny w.
    w = tl.exp(-tl.abs(x))
    v = 1.0 + w
    d = v - 1.0
    l1p = tl.where(d == 0.0, w, tl.log(v) * (w / tl.where(d == 0.0, 1.0, d)))
    return tl.where(x > 20.0, x, tl.maximum(x, 0.0) + l1p)


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _load_delta(delta_ptr, bias_ptr, off_dt, dmask, t, L, d, sbias,
                HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, ACC: tl.constexpr):
    """(raw, dt): delta (+ delta_bias) at steps t < L of a [BLOCK_D, BLOCK_T] tile (d, dmask:
    [BLOCK_D, 1]), and after the softplus when SOFTPLUS (raw is what its derivative needs)."""
    raw = tl.load(delta_ptr + off_dt, mask=dmask & (t < L), other=0.0).to(ACC)
    if HAS_BIAS:
        raw += tl.load(bias_ptr + d * sbias, mask=dmask, other=0.0).to(ACC)
    if SOFTPLUS:
        return raw, _softplus(raw)
    return raw, raw


@triton.jit
def _load_bc(ptr, b, g, d3, n3, t3, dmask3, nmask3, L, s_b, s_g, s_n, s_t,
             CONST: tl.constexpr, ACC: tl.constexpr):
    """B or C on a tile: [BLOCK_D, BLOCK_N, 1] rows of a constant (dim, N) matrix, or the
    [1, BLOCK_N, BLOCK_T] slice of group g (every channel of the block is in group g)."""
    # One return: Triton type-checks every return of a function, constexpr branches included.
    if CONST:
        values = tl.load(ptr + d3 * s_g + n3 * s_n, mask=dmask3 & nmask3, other=0.0).to(ACC)
    else:
        values = tl.load(ptr + b * s_b + g * s_g + n3 * s_n + t3 * s_t,
                         mask=nmask3 & (t3 < L), other=0.0).to(ACC)
    return values


@triton.jit
def _last_step(x, t3, BLOCK_T: tl.constexpr):
    """x at the tile's last step: [BLOCK_D, BLOCK_N]."""
    return tl.sum(tl.where(t3 == BLOCK_T - 1, x, 0.0), axis=2)


@triton.jit
def _tile_states(u_ptr, delta_ptr, bias_ptr, B_ptr, h_in, A3, b, g_B, d, d3, n3, t_tile, t3,
                 dmask, dmask3, nmask3, L, su_b, su_d, su_t, sdt_b, sdt_d, sdt_t, sbias,
                 sB_b, sB_g, sB_n, sB_t,
                 HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, B_CONST: tl.constexpr,
                 ACC: tl.constexpr):
    """The states h_t of one tile from the state h_in before it: (h [BLOCK_D, BLOCK_N, BLOCK_T],
    bu = dt * B * u (so that a_t h_{t-1} = h - bu), u, raw delta, dt, a, B), steps past L
    leaving the state unchanged."""
    t2 = t_tile[None, :]
    u = tl.load(u_ptr + b * su_b + d[:, None] * su_d + t2 * su_t,
                mask=dmask[:, None] & (t2 < L), other=0.0).to(ACC)
    raw, dt = _load_delta(delta_ptr, bias_ptr, b * sdt_b + d[:, None] * sdt_d + t2 * sdt_t,
                          dmask[:, None], t2, L, d[:, None], sbias, HAS_BIAS, SOFTPLUS, ACC)
    Bt = _load_bc(B_ptr, b, g_B, d3, n3, t3, dmask3, nmask3, L, sB_b, sB_g, sB_n, sB_t,
                  B_CONST, ACC)
    live = t3 < L
    a = tl.where(live, tl.exp(dt[:, None, :] * A3), 1.0)
    bu = tl.where(live, (dt * u)[:, None, :] * Bt, 0.0)
    P, H = tl.associative_scan((a, bu), 2, _linear_combine)
    h = H + P * h_in[:, :, None]
    return h, bu, u, raw, dt, a, Bt


@triton.jit
def _program_rows(batch, B_cpg, C_cpg, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                  BLOCK_T: tl.constexpr):
    """This program's batch row b, its channels d, the states n, a tile's steps tt (int64, so
    that every offset is 64-bit), and the groups of B and of C its channels read. The grid is
    1-d (a second axis would cap the batch at 65535), batch rows fastest: the programs running
    together work on different rows, so the backward's atomic adds into a row's dB / dC do not
    pile up on the same addresses."""
    pid = tl.program_id(0).to(tl.int64)
    b = pid % batch
    d0 = (pid // batch) * BLOCK_D
    d = d0 + tl.arange(0, BLOCK_D).to(tl.int64)
    n = tl.arange(0, BLOCK_N).to(tl.int64)
    tt = tl.arange(0, BLOCK_T).to(tl.int64)
    return b, d, n, tt, d0 // B_cpg, d0 // C_cpg


@triton.jit
def selective_scan_fwd_kernel(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr, out_ptr,
        states_ptr,
        batch, dim, L, N, n_chunks, B_cpg, C_cpg,
        su_b, su_d, su_t, sdt_b, sdt_d, sdt_t, sA_d, sA_n,
        sB_b, sB_g, sB_n, sB_t, sC_b, sC_g, sC_n, sC_t,
        sD, sbias, sz_b, sz_d, sz_t, so_b, so_d, so_t, sh0_b, sh0_d, sh0_n,
        SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
        HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr, B_CONST: tl.constexpr,
        C_CONST: tl.constexpr, CHUNK: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    ACC: tl.constexpr = A_ptr.dtype.element_ty
    b, d, n, tt, g_B, g_C = _program_rows(batch, B_cpg, C_cpg, BLOCK_D, BLOCK_N, BLOCK_T)
    d3, n3, t3_rel = d[:, None, None], n[None, :, None], tt[None, None, :]
    dmask, nmask = d < dim, n < N
    dmask3, nmask3 = dmask[:, None, None], nmask[None, :, None]
    mask_dn = dmask[:, None] & nmask[None, :]

    A3 = tl.load(A_ptr + d[:, None] * sA_d + n[None, :] * sA_n, mask=mask_dn, other=0.0)[:, :, None]
    if HAS_D:
        Dv = tl.load(D_ptr + d * sD, mask=dmask, other=0.0).to(ACC)
    if HAS_H0:
        h = tl.load(h0_ptr + b * sh0_b + d[:, None] * sh0_d + n[None, :] * sh0_n, mask=mask_dn,
                    other=0.0).to(ACC)
    else:
        h = tl.zeros([BLOCK_D, BLOCK_N], dtype=ACC)
    states_row = states_ptr + ((b * dim + d[:, None]) * n_chunks) * N + n[None, :]

    for t0 in range(0, L, BLOCK_T):
        t_tile = t0 + tt
        t3 = t0 + t3_rel
        hs, bu, u, raw, dt, a, Bt = _tile_states(
            u_ptr, delta_ptr, bias_ptr, B_ptr, h, A3, b, g_B, d, d3, n3, t_tile, t3, dmask,
            dmask3, nmask3, L, su_b, su_d, su_t, sdt_b, sdt_d, sdt_t, sbias, sB_b, sB_g, sB_n,
            sB_t, HAS_BIAS, SOFTPLUS, B_CONST, ACC)
        Ct = _load_bc(C_ptr, b, g_C, d3, n3, t3, dmask3, nmask3, L, sC_b, sC_g, sC_n, sC_t,
                      C_CONST, ACC)
        y = tl.sum(hs * Ct, axis=1)
        if HAS_D:
            y += Dv[:, None] * u
        t2 = t_tile[None, :]
        tmask = dmask[:, None] & (t2 < L)
        if HAS_Z:
            z = tl.load(z_ptr + b * sz_b + d[:, None] * sz_d + t2 * sz_t, mask=tmask,
                        other=0.0).to(ACC)
            y = y * z * _sigmoid(z)
        tl.store(out_ptr + b * so_b + d[:, None] * so_d + t2 * so_t,
                 y.to(out_ptr.dtype.element_ty), mask=tmask)
        h = _last_step(hs, t3_rel, BLOCK_T)
        if ((t0 + BLOCK_T) % CHUNK == 0) | (t0 + BLOCK_T >= L):
            tl.store(states_row + (t0 // CHUNK) * N, h, mask=mask_dn)


@triton.jit
def selective_scan_bwd_kernel(
        dout_ptr, dstates_ptr, u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
        h0_ptr, states_ptr,
        du_ptr, ddelta_ptr, dz_ptr, dB_ptr, dC_ptr, dA_part_ptr, dB_part_ptr, dC_part_ptr,
        dD_part_ptr, dbias_part_ptr, dh0_ptr,
        batch, dim, L, N, n_chunks, B_cpg, C_cpg,
        sdo_b, sdo_d, sdo_t, su_b, su_d, su_t, sdt_b, sdt_d, sdt_t, sA_d, sA_n,
        sB_b, sB_g, sB_n, sB_t, sC_b, sC_g, sC_n, sC_t,
        sD, sbias, sz_b, sz_d, sz_t, sh0_b, sh0_d, sh0_n,
        sdB_b, sdB_g, sdB_n, sdB_t, sdC_b, sdC_g, sdC_n, sdC_t,
        SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
        HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr, HAS_DSTATES: tl.constexpr,
        B_CONST: tl.constexpr, C_CONST: tl.constexpr, CHUNK: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    """du, ddelta (and dz) in their (batch, dim, L) layouts (contiguous); variable dB / dC added
    atomically into accumulation-dtype buffers; per batch row partials (batch, dim, N) of dA and
    of a constant dB / dC, (batch, dim) of dD and ddelta_bias; dh0 (batch, dim, N) when HAS_H0."""
    ACC: tl.constexpr = A_ptr.dtype.element_ty
    b, d, n, tt, g_B, g_C = _program_rows(batch, B_cpg, C_cpg, BLOCK_D, BLOCK_N, BLOCK_T)
    d3, n3, t3_rel = d[:, None, None], n[None, :, None], tt[None, None, :]
    dmask, nmask = d < dim, n < N
    dmask3, nmask3 = dmask[:, None, None], nmask[None, :, None]
    mask_dn = dmask[:, None] & nmask[None, :]

    A2 = tl.load(A_ptr + d[:, None] * sA_d + n[None, :] * sA_n, mask=mask_dn, other=0.0)
    A3 = A2[:, :, None]
    if HAS_D:
        Dv = tl.load(D_ptr + d * sD, mask=dmask, other=0.0).to(ACC)
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=ACC)
    dB_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=ACC)
    dC_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=ACC)
    dD_acc = tl.zeros([BLOCK_D], dtype=ACC)
    dbias_acc = tl.zeros([BLOCK_D], dtype=ACC)
    # The gradient w.r.t. the state before the tile just done (a_{t0} dh_{t0}).
    g = tl.zeros([BLOCK_D, BLOCK_N], dtype=ACC)
    states_row = states_ptr + ((b * dim + d[:, None]) * n_chunks) * N + n[None, :]
    dstates_row = dstates_ptr + ((b * dim + d[:, None]) * n_chunks) * N + n[None, :]

    for c_rev in range(0, n_chunks):
        c = n_chunks - 1 - c_rev
        chunk_start = c * CHUNK
        chunk_last = tl.minimum(chunk_start + CHUNK, L) - 1
        n_tiles = (chunk_last - chunk_start) // BLOCK_T + 1
        if c > 0:
            h_start = tl.load(states_row + (c - 1) * N, mask=mask_dn, other=0.0)
        elif HAS_H0:
            h_start = tl.load(h0_ptr + b * sh0_b + d[:, None] * sh0_d + n[None, :] * sh0_n,
                              mask=mask_dn, other=0.0).to(ACC)
        else:
            h_start = tl.zeros([BLOCK_D, BLOCK_N], dtype=ACC)
        if HAS_DSTATES:
            dstate = tl.load(dstates_row + c * N, mask=mask_dn, other=0.0)
        else:
            dstate = tl.zeros([BLOCK_D, BLOCK_N], dtype=ACC)

        for j_rev in range(0, n_tiles):
            j = n_tiles - 1 - j_rev
            # The state before tile j: the chunk's start state through tiles 0 .. j-1.
            h = h_start
            for i in range(0, j):
                t_i = chunk_start + i * BLOCK_T
                hs_i, _bu, _u, _raw, _dt, _a, _B = _tile_states(
                    u_ptr, delta_ptr, bias_ptr, B_ptr, h, A3, b, g_B, d, d3, n3, t_i + tt,
                    t_i + t3_rel, dmask, dmask3, nmask3, L, su_b, su_d, su_t, sdt_b, sdt_d,
                    sdt_t, sbias, sB_b, sB_g, sB_n, sB_t, HAS_BIAS, SOFTPLUS, B_CONST, ACC)
                h = _last_step(hs_i, t3_rel, BLOCK_T)

            t0 = chunk_start + j * BLOCK_T
            t_tile = t0 + tt
            t3 = t0 + t3_rel
            t2 = t_tile[None, :]
            tmask = dmask[:, None] & (t2 < L)
            hs, bu, u, raw, dt, a, Bt = _tile_states(
                u_ptr, delta_ptr, bias_ptr, B_ptr, h, A3, b, g_B, d, d3, n3, t_tile, t3, dmask,
                dmask3, nmask3, L, su_b, su_d, su_t, sdt_b, sdt_d, sdt_t, sbias, sB_b, sB_g,
                sB_n, sB_t, HAS_BIAS, SOFTPLUS, B_CONST, ACC)
            Ct = _load_bc(C_ptr, b, g_C, d3, n3, t3, dmask3, nmask3, L, sC_b, sC_g, sC_n, sC_t,
                          C_CONST, ACC)
            dy = tl.load(dout_ptr + b * sdo_b + d[:, None] * sdo_d + t2 * sdo_t, mask=tmask,
                         other=0.0).to(ACC)
            if HAS_Z:
                z = tl.load(z_ptr + b * sz_b + d[:, None] * sz_d + t2 * sz_t, mask=tmask,
                            other=0.0).to(ACC)
                y = tl.sum(hs * Ct, axis=1)
                if HAS_D:
                    y += Dv[:, None] * u
                sz = _sigmoid(z)
                dz = dy * y * sz * (1.0 + z * (1.0 - sz))
                tl.store(dz_ptr + (b * dim + d[:, None]) * L + t2,
                         dz.to(dz_ptr.dtype.element_ty), mask=tmask)
                dy = dy * z * sz
            if HAS_D:
                dD_acc += tl.sum(dy * u, axis=1)

            # a_{t+1}: delta one step later (the tile's last step takes the carry g instead).
            _raw_next, dt_next = _load_delta(
                delta_ptr, bias_ptr, b * sdt_b + d[:, None] * sdt_d + (t2 + 1) * sdt_t,
                dmask[:, None], t2 + 1, tl.minimum(L, t0 + BLOCK_T), d[:, None], sbias,
                HAS_BIAS, SOFTPLUS, ACC)
            a_next = tl.exp(dt_next[:, None, :] * A3)
            v = Ct * dy[:, None, :]
            v += tl.where(t3 == t0 + BLOCK_T - 1, g[:, :, None], 0.0)
            v += tl.where(t3 == chunk_last, dstate[:, :, None], 0.0)
            _m, dh = tl.associative_scan((a_next, v), 2, _linear_combine, reverse=True)

            hb = hs - bu  # a_t * h_{t-1}
            du = dt * tl.sum(dh * Bt, axis=1)
            if HAS_D:
                du += Dv[:, None] * dy
            ddt = tl.sum(dh * (A3 * hb + Bt * u[:, None, :]), axis=1)
            dA_acc += tl.sum(dh * dt[:, None, :] * hb, axis=2)
            if SOFTPLUS:
                ddt = ddt * _sigmoid(raw)
            ddt = tl.where(tmask, ddt, 0.0)
            dbias_acc += tl.sum(ddt, axis=1)
            tl.store(du_ptr + (b * dim + d[:, None]) * L + t2, du.to(du_ptr.dtype.element_ty),
                     mask=tmask)
            tl.store(ddelta_ptr + (b * dim + d[:, None]) * L + t2,
                     ddt.to(ddelta_ptr.dtype.element_ty), mask=tmask)

            dBt = dh * (dt * u)[:, None, :]
            dCt = hs * dy[:, None, :]
            if B_CONST:
                dB_acc += tl.sum(dBt, axis=2)
            else:
                tl.atomic_add(dB_ptr + b * sdB_b + g_B * sdB_g + n3 * sdB_n + t3 * sdB_t,
                              tl.sum(dBt, axis=0)[None, :, :], mask=nmask3 & (t3 < L),
                              sem="relaxed")
            if C_CONST:
                dC_acc += tl.sum(dCt, axis=2)
            else:
                tl.atomic_add(dC_ptr + b * sdC_b + g_C * sdC_g + n3 * sdC_n + t3 * sdC_t,
                              tl.sum(dCt, axis=0)[None, :, :], mask=nmask3 & (t3 < L),
                              sem="relaxed")
            g = tl.sum(tl.where(t3_rel == 0, a * dh, 0.0), axis=2)

    row_dn = (b * dim + d[:, None]) * N + n[None, :]
    tl.store(dA_part_ptr + row_dn, dA_acc, mask=mask_dn)
    if B_CONST:
        tl.store(dB_part_ptr + row_dn, dB_acc, mask=mask_dn)
    if C_CONST:
        tl.store(dC_part_ptr + row_dn, dC_acc, mask=mask_dn)
    if HAS_D:
        tl.store(dD_part_ptr + b * dim + d, dD_acc, mask=dmask)
    if HAS_BIAS:
        tl.store(dbias_part_ptr + b * dim + d, dbias_acc, mask=dmask)
    if HAS_H0:
        tl.store(dh0_ptr + row_dn, g, mask=mask_dn)


@triton.jit
def reverse_scan_probe_kernel(m_ptr, v_ptr, out_ptr, BLOCK_D: tl.constexpr,
                              BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    """out[t] = m[t] * out[t + 1] + v[t] along the last axis of one contiguous tile, as the
    backward's reverse scan computes it (tests/test_triton_backend.py checks it on the GPU)."""
    offs = (tl.arange(0, BLOCK_D)[:, None, None] * BLOCK_N * BLOCK_T
            + tl.arange(0, BLOCK_N)[None, :, None] * BLOCK_T + tl.arange(0, BLOCK_T)[None, None, :])
    _m, out = tl.associative_scan((tl.load(m_ptr + offs), tl.load(v_ptr + offs)), 2,
                                  _linear_combine, reverse=True)
    tl.store(out_ptr + offs, out)
