// The CPU selective-scan kernels, forward and backward, for one instruction set.
//
// No include guard on purpose: for_each_isa.h compiles this file once per instruction set, each
// time inside its own namespace (MVSCAN_ISA) and target options, so the AVX2 and the baseline
// builds of the same template never meet at link time. Code here calls nothing but inline math,
// intrinsics and its own helpers (no std:: functions) for the same reason.
//
// Layout: per block, kLanes channels of one batch element. Buffers are [t][lane] for per-step
// values and [n][lane] for per-state values, so every inner loop runs over lanes, contiguous.

namespace mvscan {
namespace cpu {
namespace MVSCAN_ISA {

constexpr int kLanes = MVSCAN_ISA_LANES;

#include "common/panel_io.h"

// Per-lane parameter vector: dst[lane] = src[(d0 + lane) * stride], zero for dead lanes.
template <typename acc_t>
inline void load_lanes(const void* src, int64_t stride, int64_t d0, int lanes, acc_t* dst) {
  zero(dst, kLanes);
  if (src == nullptr) return;
  const acc_t* s = static_cast<const acc_t*>(src);
  for (int l = 0; l < lanes; ++l) dst[l] = s[(d0 + l) * stride];
}

// The (channel, state) matrix of A or of a constant B/C as dst[n][lane].
template <typename acc_t>
inline void load_state_matrix(const acc_t* src, int64_t dim_stride, int64_t state_stride,
                              int64_t d0, int lanes, int64_t N, acc_t* dst) {
  zero(dst, N * kLanes);
  for (int64_t n = 0; n < N; ++n)
    for (int l = 0; l < lanes; ++l) dst[n * kLanes + l] = src[(d0 + l) * dim_stride + n * state_stride];
}

// A variable B or C of group g, steps t0..t0+T, as dst[n][t] (row stride kStateChunkLen) in the
// accumulation type.
template <typename input_t, typename acc_t>
inline void load_bc_chunk(const void* base, const BCStrides& s, int64_t b, int64_t g, int64_t t0,
                          int64_t T, int64_t N, acc_t* dst) {
  const input_t* x = static_cast<const input_t*>(base) + b * s.batch + g * s.group + t0 * s.len;
  for (int64_t n = 0; n < N; ++n) {
    const input_t* row = x + n * s.state;
    acc_t* out = dst + n * kStateChunkLen;
    if (s.len == 1) {
      for (int64_t t = 0; t < T; ++t) out[t] = static_cast<acc_t>(row[t]);
    } else {
      for (int64_t t = 0; t < T; ++t) out[t] = static_cast<acc_t>(row[t * s.len]);
    }
  }
}

// B_t or C_t as [n][lane]: the block's constant matrix, or step t of a variable chunk broadcast
// over the lanes (every lane of a block is in the same group).
template <typename acc_t>
inline const acc_t* bc_at(bool variable, const acc_t* constant, const acc_t* chunk, int64_t t,
                          int64_t N, acc_t* scratch) {
  if (!variable) return constant;
  for (int64_t n = 0; n < N; ++n) {
    const acc_t v = chunk[n * kStateChunkLen + t];
    MVSCAN_LANES scratch[n * kLanes + l] = v;
  }
  return scratch;
}

// How the inner loops read B_t[n] / C_t[n] for lane l: from a [n][lane] matrix (a constant B/C,
// or a variable step broadcast by bc_at), or, when kScalar, straight from a variable chunk
// ([n][t] layout, pointer at step t) as one value per state that the compiler broadcasts.
template <bool kScalar, typename acc_t>
struct StepBC {
  const acc_t* p;
  acc_t operator()(int64_t n, int l) const {
    return kScalar ? p[n * kStateChunkLen] : p[n * kLanes + l];
  }
};

template <bool kScalar, typename acc_t>
inline StepBC<kScalar, acc_t> step_bc(bool variable, const acc_t* constant, const acc_t* chunk,
                                      int64_t t, int64_t N, acc_t* scratch) {
  if constexpr (kScalar) {
    return {chunk + t};
  } else {
    return {bc_at(variable, constant, chunk, t, N, scratch)};
  }
}

// delta + delta_bias, through softplus if asked: raw keeps the pre-activation (for the
// backward's sigmoid), dt the step size.
template <typename acc_t>
inline void step_sizes(bool softplus, const acc_t* bias, int64_t T, acc_t* raw, acc_t* dt) {
  for (int64_t t = 0; t < T; ++t) {
    acc_t* r = raw + t * kLanes;
    acc_t* d = dt + t * kLanes;
    MVSCAN_LANES r[l] += bias[l];
    if (softplus) {
      MVSCAN_LANES d[l] = softplus_acc(r[l]);
    } else {
      MVSCAN_LANES d[l] = r[l];
    }
  }
}

struct BlockRef {
  int64_t b, d0, gB, gC;
  int lanes;
};

// h_0 of the block's channels as [n][lane]: the initial state, or zeros without one.
template <typename acc_t>
inline void load_initial_state(const SelectiveScanParams& p, const BlockRef& r, acc_t* h) {
  if (p.h0 == nullptr) {
    zero(h, p.dstate * kLanes);
    return;
  }
  load_state_matrix(static_cast<const acc_t*>(p.h0) + r.b * p.h0_batch_stride, p.h0_dim_stride,
                    p.h0_state_stride, r.d0, r.lanes, p.dstate, h);
}

inline BlockRef block_ref(const SelectiveScanParams& p, const BlockGeometry& geo, int64_t b,
                          int64_t k) {
  BlockRef r;
  r.b = b;
  block_channels(geo, k, &r.d0, &r.lanes);
  // Constant B/C are described as one group per channel (see BCStrides).
  r.gB = p.B_is_variable ? r.d0 / (p.dim / p.B_groups) : r.d0;
  r.gC = p.C_is_variable ? r.d0 / (p.dim / p.C_groups) : r.d0;
  return r;
}

// Per-block constants shared by forward and backward.
template <typename acc_t>
struct BlockConsts {
  acc_t *A, *Bconst, *Cconst, *D, *bias;
};

template <typename acc_t>
inline BlockConsts<acc_t> load_block_consts(const SelectiveScanParams& p, const BlockRef& r,
                                            Bump<acc_t>& ws) {
  const int64_t N = p.dstate, NW = N * kLanes;
  BlockConsts<acc_t> k;
  k.A = ws.take(NW);
  k.Bconst = ws.take(NW);
  k.Cconst = ws.take(NW);
  k.D = ws.take(kLanes);
  k.bias = ws.take(kLanes);
  load_state_matrix(static_cast<const acc_t*>(p.A), p.A_dim_stride, p.A_state_stride, r.d0,
                    r.lanes, N, k.A);
  if (!p.B_is_variable)
    load_state_matrix(static_cast<const acc_t*>(p.B), p.B_strides.group, p.B_strides.state, r.d0,
                      r.lanes, N, k.Bconst);
  if (!p.C_is_variable)
    load_state_matrix(static_cast<const acc_t*>(p.C), p.C_strides.group, p.C_strides.state, r.d0,
                      r.lanes, N, k.Cconst);
  load_lanes(p.D, p.D_stride, r.d0, r.lanes, k.D);
  load_lanes(p.delta_bias, p.delta_bias_stride, r.d0, r.lanes, k.bias);
  return k;
}

// A block's inputs for one chunk: [t][lane] panels of u, delta + delta_bias (raw), the step
// sizes dt and z, and [n][t] rows of a variable B and C.
template <typename acc_t>
struct ChunkInputs {
  acc_t *u, *raw, *dt, *z, *B, *C;

  static ChunkInputs take(Bump<acc_t>& ws, int64_t N) {
    ChunkInputs c;
    c.u = ws.take(kStateChunkLen * kLanes);
    c.raw = ws.take(kStateChunkLen * kLanes);
    c.dt = ws.take(kStateChunkLen * kLanes);
    c.z = ws.take(kStateChunkLen * kLanes);
    c.B = ws.take(kStateChunkLen * N);
    c.C = ws.take(kStateChunkLen * N);
    return c;
  }

  template <typename input_t>
  void load(const SelectiveScanParams& p, const BlockRef& r, const acc_t* bias, int64_t b,
            int64_t t0, int64_t T) {
    load_panel<input_t>(p.u, p.u_strides, b, r.d0, r.lanes, t0, T, u);
    load_panel<input_t>(p.delta, p.delta_strides, b, r.d0, r.lanes, t0, T, raw);
    load_panel<input_t>(p.z, p.z_strides, b, r.d0, r.lanes, t0, T, z);
    if (p.B_is_variable) load_bc_chunk<input_t>(p.B, p.B_strides, b, r.gB, t0, T, p.dstate, B);
    if (p.C_is_variable) load_bc_chunk<input_t>(p.C, p.C_strides, b, r.gC, t0, T, p.dstate, C);
    step_sizes(p.delta_softplus, bias, T, raw, dt);
  }
};

// Forward of one block over the whole sequence. kScalarBC: B and C are both variable (see
// StepBC).
template <typename input_t, bool kScalarBC>
void fwd_block(const SelectiveScanParams& p, const BlockGeometry& geo, int64_t b, int64_t k,
               typename AccType<input_t>::type* workspace) {
  using acc_t = typename AccType<input_t>::type;
  const int64_t N = p.dstate, NW = N * kLanes, TC = kStateChunkLen;
  const BlockRef r = block_ref(p, geo, b, k);
  const bool has_z = p.z != nullptr;
  const SeqStrides dense{p.dim * p.seqlen, p.seqlen, 1};  // the outputs are contiguous
  Bump<acc_t> ws{workspace};
  const BlockConsts<acc_t> kc = load_block_consts(p, r, ws);
  acc_t* h = ws.take(NW);
  acc_t* Bt_buf = ws.take(NW);
  acc_t* Ct_buf = ws.take(NW);
  ChunkInputs<acc_t> in = ChunkInputs<acc_t>::take(ws, N);
  // Plain local pointers in the loops: through a struct, the vectoriser reloads them.
  acc_t *const u_c = in.u, *const dt_c = in.dt, *const z_c = in.z;
  acc_t *const B_c = in.B, *const C_c = in.C;
  acc_t* y_c = u_c;  // y_t overwrites u_t once step t is done
  load_initial_state(p, r, h);
  // Plain locals, not struct fields, so the vectoriser sees them as loop invariants.
  const acc_t* Av = kc.A;
  const acc_t* Dv = kc.D;

  acc_t* states = static_cast<acc_t*>(p.states);
  for (int64_t c = 0; c < p.n_chunks; ++c) {
    const int64_t t0 = c * TC;
    const int64_t T = (p.seqlen - t0) < TC ? (p.seqlen - t0) : TC;
    in.template load<input_t>(p, r, kc.bias, b, t0, T);

    for (int64_t t = 0; t < T; ++t) {
      const auto Bt = step_bc<kScalarBC>(p.B_is_variable, kc.Bconst, B_c, t, N, Bt_buf);
      const auto Ct = step_bc<kScalarBC>(p.C_is_variable, kc.Cconst, C_c, t, N, Ct_buf);
      const acc_t* dt = dt_c + t * kLanes;
      acc_t* ut = u_c + t * kLanes;
      acc_t du[kLanes], y0[kLanes], y1[kLanes];
      MVSCAN_LANES {
        du[l] = dt[l] * ut[l];
        y0[l] = Dv[l] * ut[l];
        y1[l] = acc_t(0);
      }
      // Two partial sums of y halve the length of its dependency chain.
      int64_t n = 0;
      for (; n + 1 < N; n += 2) {
        const int64_t i0 = n * kLanes, i1 = i0 + kLanes;
        MVSCAN_LANES {
          const acc_t h0 = exp_acc(dt[l] * Av[i0 + l]) * h[i0 + l] + du[l] * Bt(n, l);
          const acc_t h1 = exp_acc(dt[l] * Av[i1 + l]) * h[i1 + l] + du[l] * Bt(n + 1, l);
          h[i0 + l] = h0;
          h[i1 + l] = h1;
          y0[l] += Ct(n, l) * h0;
          y1[l] += Ct(n + 1, l) * h1;
        }
      }
      if (n < N) {
        const int64_t i0 = n * kLanes;
        MVSCAN_LANES {
          const acc_t h0 = exp_acc(dt[l] * Av[i0 + l]) * h[i0 + l] + du[l] * Bt(n, l);
          h[i0 + l] = h0;
          y0[l] += Ct(n, l) * h0;
        }
      }
      const acc_t* zt = z_c + t * kLanes;
      acc_t* yt = y_c + t * kLanes;
      if (has_z) {
        MVSCAN_LANES yt[l] = (y0[l] + y1[l]) * zt[l] * sigmoid_acc(zt[l]);
      } else {
        MVSCAN_LANES yt[l] = y0[l] + y1[l];
      }
    }
    store_panel<input_t>(p.out, dense, b, r.d0, r.lanes, t0, T, y_c);
    for (int l = 0; l < r.lanes; ++l) {
      acc_t* s = states + ((b * p.dim + r.d0 + l) * p.n_chunks + c) * N;
      for (int64_t n2 = 0; n2 < N; ++n2) s[n2] = h[n2 * kLanes + l];
    }
  }
}

// Adds the lane sums of acc[t][n][lane] (t < T) to dst[(t0 + t) * N + n] and zeroes acc.
template <typename acc_t>
inline void flush_lane_sums(acc_t* acc, int64_t T, int64_t N, acc_t* dst) {
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t n = 0; n < N; ++n) {
      acc_t* v = acc + (t * N + n) * kLanes;
      // A pairwise tree: independent adds instead of one kLanes-long dependency chain.
      acc_t tree[kLanes];
      MVSCAN_LANES {
        tree[l] = v[l];
        v[l] = acc_t(0);
      }
      for (int w = kLanes / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; ++l) tree[l] += tree[l + w];
      dst[t * N + n] += tree[0];
    }
  }
}

// What the backward keeps for each block of a unit from one chunk to the next.
template <typename acc_t>
struct BlockGrads {
  acc_t *carry, *dA, *dB, *dC, *dD, *dbias;  // dB / dC: constant B / C only
};

// Backward of part s of batch element b: the chunks in reverse, and in each chunk every block of
// the part: the forward recomputed from the saved state (keeping exp(dt A) and h for the
// chunk), then the reverse scan over its steps. Walking blocks inside chunks lets the lane sums
// of a variable B/C gradient be taken once per chunk and group rather than once per step.
template <typename input_t, bool kScalarBC>
void bwd_part(const SelectiveScanBwdParams& bp, const BlockGeometry& geo, int64_t b, int64_t s,
               typename AccType<input_t>::type* workspace) {
  using acc_t = typename AccType<input_t>::type;
  const SelectiveScanParams& p = bp.fwd;
  const int64_t N = p.dstate, NW = N * kLanes, TC = kStateChunkLen, L = p.seqlen;
  const int64_t k_begin = s * geo.n_blocks / bp.n_parts;
  const int64_t k_end = (s + 1) * geo.n_blocks / bp.n_parts;
  // Loop invariants as locals: read through p, the vectoriser must assume stores change them.
  const bool has_z = p.z != nullptr;
  const bool softplus = p.delta_softplus;
  const acc_t* states = static_cast<const acc_t*>(p.states);
  const acc_t* dstates = static_cast<const acc_t*>(bp.dstates);
  const SeqStrides dense{p.dim * L, L, 1};  // the gradients are contiguous

  Bump<acc_t> ws{workspace};
  acc_t* h = ws.take(NW);
  acc_t* h_start = ws.take(NW);
  acc_t* Bt_buf = ws.take(NW);
  acc_t* Ct_buf = ws.take(NW);
  ChunkInputs<acc_t> in = ChunkInputs<acc_t>::take(ws, N);
  // Plain local pointers in the loops: through a struct, the vectoriser reloads them.
  acc_t *const u_c = in.u, *const raw_c = in.raw, *const dt_c = in.dt, *const z_c = in.z;
  acc_t *const B_c = in.B, *const C_c = in.C;
  acc_t* y_c = ws.take(TC * kLanes);
  acc_t* g_c = ws.take(TC * kLanes);  // dout, then the gradient w.r.t. y
  acc_t* du_c = ws.take(TC * kLanes);
  acc_t* dd_c = ws.take(TC * kLanes);
  acc_t* dz_c = ws.take(TC * kLanes);
  acc_t* a_c = ws.take(TC * NW);   // exp(dt_t A) for the chunk, [t][n][lane]
  acc_t* h_c = ws.take(TC * NW);   // h_t for the chunk, [t][n][lane]
  acc_t* dBv = ws.take(TC * NW);   // variable B: lane-wise gradient of the chunk's group
  acc_t* dCv = ws.take(TC * NW);
  zero(dBv, TC * NW);
  zero(dCv, TC * NW);
  const int64_t nb = k_end - k_begin;
  acc_t* per_block = ws.take(nb * (4 * NW + 2 * kLanes));
  zero(per_block, nb * (4 * NW + 2 * kLanes));
  auto grads_of = [&](int64_t j) {
    acc_t* base = per_block + j * (4 * NW + 2 * kLanes);
    return BlockGrads<acc_t>{base, base + NW, base + 2 * NW, base + 3 * NW, base + 4 * NW,
                             base + 4 * NW + kLanes};
  };
  acc_t* const consts_mark = ws.next;  // per-block constants are carved from here each time

  for (int64_t c = p.n_chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * TC;
    const int64_t T = (L - t0) < TC ? (L - t0) : TC;
    int64_t dBv_group = -1, dCv_group = -1;  // the group dBv / dCv hold, -1 when empty
    // Adds the lane sums of a variable B/C gradient chunk to its group's partial; empties it.
    auto flush = [&](acc_t* lane_grads, int64_t* group, void* part, int64_t n_groups) {
      if (*group < 0) return;
      acc_t* dst = static_cast<acc_t*>(part) + (((s * p.batch + b) * n_groups + *group) * L + t0) * N;
      flush_lane_sums(lane_grads, T, N, dst);
      *group = -1;
    };

    for (int64_t k = k_begin; k < k_end; ++k) {
      const BlockRef r = block_ref(p, geo, b, k);
      const BlockGrads<acc_t> gr = grads_of(k - k_begin);
      ws.next = consts_mark;
      const BlockConsts<acc_t> kc = load_block_consts(p, r, ws);
      if (p.B_is_variable && dBv_group != r.gB) {
        flush(dBv, &dBv_group, bp.dB_part, p.B_groups);
        dBv_group = r.gB;
      }
      if (p.C_is_variable && dCv_group != r.gC) {
        flush(dCv, &dCv_group, bp.dC_part, p.C_groups);
        dCv_group = r.gC;
      }
      acc_t* dB_acc = p.B_is_variable ? nullptr : gr.dB;
      acc_t* dC_acc = p.C_is_variable ? nullptr : gr.dC;
      // Plain locals, not struct fields, so the vectoriser sees them as loop invariants.
      const acc_t* Av = kc.A;
      const acc_t* Dv = kc.D;
      acc_t* carry = gr.carry;
      acc_t* dA_acc = gr.dA;
      acc_t* dD_acc = gr.dD;
      acc_t* dbias_acc = gr.dbias;

      in.template load<input_t>(p, r, kc.bias, b, t0, T);
      load_panel<input_t>(bp.dout, bp.dout_strides, b, r.d0, r.lanes, t0, T, g_c);

      // Dead lanes must hold zeros too: the variable B/C lane sums add every lane.
      if (c == 0) {
        load_initial_state(p, r, h_start);
      } else {
        zero(h_start, NW);
      }
      for (int l = 0; l < r.lanes; ++l) {
        const int64_t row = (b * p.dim + r.d0 + l) * p.n_chunks;
        if (c > 0) {
          const acc_t* src = states + (row + c - 1) * N;
          for (int64_t n = 0; n < N; ++n) h_start[n * kLanes + l] = src[n];
        }
        if (dstates != nullptr) {
          const acc_t* src = dstates + (row + c) * N;
          for (int64_t n = 0; n < N; ++n) carry[n * kLanes + l] += src[n];
        }
      }

      // Forward recomputation over the chunk.
      for (int64_t i = 0; i < NW; ++i) h[i] = h_start[i];
      for (int64_t t = 0; t < T; ++t) {
        const auto Bt = step_bc<kScalarBC>(p.B_is_variable, kc.Bconst, B_c, t, N, Bt_buf);
        const acc_t* dt = dt_c + t * kLanes;
        const acc_t* ut = u_c + t * kLanes;
        acc_t* at = a_c + t * NW;
        acc_t* ht = h_c + t * NW;
        acc_t du[kLanes];
        MVSCAN_LANES du[l] = dt[l] * ut[l];
        for (int64_t n = 0; n < N; ++n) {
          const int64_t i = n * kLanes;
          MVSCAN_LANES {
            const acc_t a = exp_acc(dt[l] * Av[i + l]);
            const acc_t hn = a * h[i + l] + du[l] * Bt(n, l);
            at[i + l] = a;
            ht[i + l] = hn;
            h[i + l] = hn;
          }
        }
        if (has_z) {
          const auto Ct = step_bc<kScalarBC>(p.C_is_variable, kc.Cconst, C_c, t, N, Ct_buf);
          acc_t y[kLanes];
          MVSCAN_LANES y[l] = Dv[l] * ut[l];
          for (int64_t n = 0; n < N; ++n) {
            const int64_t i = n * kLanes;
            MVSCAN_LANES y[l] += Ct(n, l) * ht[i + l];
          }
          MVSCAN_LANES y_c[t * kLanes + l] = y[l];
        }
      }

      // Reverse scan.
      for (int64_t t = T - 1; t >= 0; --t) {
        const auto Bt = step_bc<kScalarBC>(p.B_is_variable, kc.Bconst, B_c, t, N, Bt_buf);
        const auto Ct = step_bc<kScalarBC>(p.C_is_variable, kc.Cconst, C_c, t, N, Ct_buf);
        const acc_t* dt = dt_c + t * kLanes;
        const acc_t* ut = u_c + t * kLanes;
        const acc_t* at = a_c + t * NW;
        const acc_t* ht = h_c + t * NW;
        const acc_t* hp = t > 0 ? h_c + (t - 1) * NW : h_start;
        acc_t* dBt = dB_acc != nullptr ? dB_acc : dBv + t * NW;
        acc_t* dCt = dC_acc != nullptr ? dC_acc : dCv + t * NW;
        acc_t* g = g_c + t * kLanes;
        if (has_z) {
          const acc_t* zt = z_c + t * kLanes;
          const acc_t* yt = y_c + t * kLanes;
          MVSCAN_LANES {
            const acc_t sg = sigmoid_acc(zt[l]);
            const acc_t silu = zt[l] * sg;
            dz_c[t * kLanes + l] = g[l] * yt[l] * sg * (acc_t(1) + zt[l] * (acc_t(1) - sg));
            g[l] = g[l] * silu;
          }
        }
        acc_t du[kLanes], du_sum[kLanes], dd_sum[kLanes];
        MVSCAN_LANES {
          du[l] = dt[l] * ut[l];
          du_sum[l] = acc_t(0);
          dd_sum[l] = acc_t(0);
          dD_acc[l] += g[l] * ut[l];
        }
        for (int64_t n = 0; n < N; ++n) {
          const int64_t i = n * kLanes;
          MVSCAN_LANES {
            const acc_t lam = g[l] * Ct(n, l) + carry[i + l];
            // lam * exp(dt_t A) h_{t-1} feeds both dA and ddelta (with the B u term below).
            const acc_t r2 = lam * (at[i + l] * hp[i + l]);
            du_sum[l] += lam * Bt(n, l);
            dd_sum[l] += Av[i + l] * r2;
            dA_acc[i + l] += dt[l] * r2;
            dBt[i + l] += lam * du[l];
            dCt[i + l] += g[l] * ht[i + l];
            carry[i + l] = at[i + l] * lam;
          }
        }
        MVSCAN_LANES {
          du_c[t * kLanes + l] = du_sum[l];
          dd_c[t * kLanes + l] = dd_sum[l];
        }
      }
      // Per-step epilogue, chunk-wide so it vectorises: du_c and dd_c hold sum_n lam B and
      // sum_n A lam q. sum_n lam (A q + B u) = sum_n A lam q + u sum_n lam B.
      // (No branches inside lane loops: once unrolled, the vectoriser cannot if-convert them.)
      for (int64_t t = 0; t < T; ++t) {
        const int64_t o = t * kLanes;
        MVSCAN_LANES {
          const acc_t lam_b = du_c[o + l];
          dd_c[o + l] += u_c[o + l] * lam_b;
          du_c[o + l] = dt_c[o + l] * lam_b + g_c[o + l] * Dv[l];
        }
        if (softplus) {
          MVSCAN_LANES dd_c[o + l] *= sigmoid_acc(raw_c[o + l]);
        }
        MVSCAN_LANES dbias_acc[l] += dd_c[o + l];
      }
      store_panel<input_t>(bp.du, dense, b, r.d0, r.lanes, t0, T, du_c);
      store_panel<input_t>(bp.ddelta, dense, b, r.d0, r.lanes, t0, T, dd_c);
      if (has_z) store_panel<input_t>(bp.dz, dense, b, r.d0, r.lanes, t0, T, dz_c);
      if (c == 0 && bp.dh0 != nullptr) {
        // carry is now exp(dt_0 A) lambda_0 = dL/dh_0.
        for (int l = 0; l < r.lanes; ++l) {
          acc_t* dst = static_cast<acc_t*>(bp.dh0) + (b * p.dim + r.d0 + l) * N;
          for (int64_t n = 0; n < N; ++n) dst[n] = carry[n * kLanes + l];
        }
      }
    }
    flush(dBv, &dBv_group, bp.dB_part, p.B_groups);
    flush(dCv, &dCv_group, bp.dC_part, p.C_groups);
  }

  // Per-(batch, channel) partials; the caller sums them over batch.
  for (int64_t k = k_begin; k < k_end; ++k) {
    const BlockRef r = block_ref(p, geo, b, k);
    const BlockGrads<acc_t> gr = grads_of(k - k_begin);
    for (int l = 0; l < r.lanes; ++l) {
      const int64_t row = b * p.dim + r.d0 + l;
      acc_t* dA = static_cast<acc_t*>(bp.dA_part) + row * N;
      for (int64_t n = 0; n < N; ++n) dA[n] = gr.dA[n * kLanes + l];
      if (!p.B_is_variable) {
        acc_t* dB = static_cast<acc_t*>(bp.dB_part) + row * N;
        for (int64_t n = 0; n < N; ++n) dB[n] = gr.dB[n * kLanes + l];
      }
      if (!p.C_is_variable) {
        acc_t* dC = static_cast<acc_t*>(bp.dC_part) + row * N;
        for (int64_t n = 0; n < N; ++n) dC[n] = gr.dC[n * kLanes + l];
      }
      static_cast<acc_t*>(bp.dD_part)[row] = gr.dD[l];
      static_cast<acc_t*>(bp.ddelta_bias_part)[row] = gr.dbias[l];
    }
  }
}

#undef MVSCAN_LANES

}  // namespace MVSCAN_ISA
}  // namespace cpu
}  // namespace mvscan
