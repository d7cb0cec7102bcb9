// Buffers and panel I/O shared by the CPU kernels of one instruction set.
//
// No include guard: a kernel header includes it inside its ISA namespace (see for_each_isa.h),
// and no file includes two kernel headers. A panel is kLanes channels x T steps of a
// (batch, channels, L) tensor, held as buf[t][lane] in the accumulation type.

#define MVSCAN_LANES _Pragma("omp simd") for (int l = 0; l < kLanes; ++l)

template <typename acc_t>
struct Bump {
  acc_t* next;
  acc_t* take(int64_t n) {
    acc_t* p = next;
    next += n;
    return p;
  }
};

template <typename acc_t>
inline void zero(acc_t* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = acc_t(0);
}

#if defined(MVSCAN_TRANSPOSE_HEADER)
#include MVSCAN_TRANSPOSE_HEADER
static_assert(SimdTranspose::kWidth == kLanes, "transposes must match the lane count");

// Whether the transposes load and store rows of input_t (float, c10::Half and c10::BFloat16
// today). Other input types (float64, or a dtype newly added to the list) take the
// element-by-element paths. C++17 detection, not a requires-expression: older torch builds
// extensions as C++17.
template <typename input_t, typename = void>
struct HasSimdRows : std::false_type {};
template <typename input_t>
struct HasSimdRows<
    input_t,
    std::void_t<decltype(SimdTranspose::load_row(std::declval<const input_t*>())),
                decltype(SimdTranspose::store_row(std::declval<input_t*>(),
                                                  std::declval<typename SimdTranspose::vec>()))>>
    : std::true_type {};

// Panel loads and stores through in-register transposes, for sequences contiguous along L:
// kLanes rows of kLanes steps at a time; a shorter tail goes element by element.
template <typename input_t>
inline void load_panel_simd(const input_t* x, int64_t dim_stride, int lanes, int64_t T,
                           float* buf) {
  int64_t t = 0;
  for (; t + kLanes <= T; t += kLanes) {
    typename SimdTranspose::vec r[kLanes];
    for (int l = 0; l < kLanes; ++l)
      r[l] = l < lanes ? SimdTranspose::load_row(x + l * dim_stride + t) : SimdTranspose::zero();
    SimdTranspose::transpose(r);
    for (int i = 0; i < kLanes; ++i) SimdTranspose::store(buf + (t + i) * kLanes, r[i]);
  }
  for (; t < T; ++t)
    for (int l = 0; l < kLanes; ++l)
      buf[t * kLanes + l] = l < lanes ? static_cast<float>(x[l * dim_stride + t]) : 0.0f;
}

template <typename input_t>
inline void store_panel_simd(input_t* x, int64_t dim_stride, int lanes, int64_t T,
                            const float* buf) {
  int64_t t = 0;
  for (; t + kLanes <= T; t += kLanes) {
    typename SimdTranspose::vec r[kLanes];
    for (int i = 0; i < kLanes; ++i) r[i] = SimdTranspose::load(buf + (t + i) * kLanes);
    SimdTranspose::transpose(r);
    for (int l = 0; l < lanes; ++l) SimdTranspose::store_row(x + l * dim_stride + t, r[l]);
  }
  for (; t < T; ++t)
    for (int l = 0; l < lanes; ++l)
      x[l * dim_stride + t] = static_cast<input_t>(buf[t * kLanes + l]);
}
#endif

// Loads the panel (batch b, channels d0..d0+lanes, steps t0..t0+T) into buf[t][lane]; dead lanes
// and absent tensors read as zero.
template <typename input_t, typename acc_t>
inline void load_panel(const void* base, const SeqStrides& s, int64_t b, int64_t d0, int lanes,
                      int64_t t0, int64_t T, acc_t* buf) {
  if (base == nullptr) {
    zero(buf, T * kLanes);
    return;
  }
  const input_t* x = static_cast<const input_t*>(base) + b * s.batch + d0 * s.dim + t0 * s.len;
  if (s.dim == 1 && lanes == kLanes) {  // channels contiguous: one vector per step
    for (int64_t t = 0; t < T; ++t) {
      const input_t* row = x + t * s.len;
      MVSCAN_LANES buf[t * kLanes + l] = static_cast<acc_t>(row[l]);
    }
    return;
  }
#if defined(MVSCAN_TRANSPOSE_HEADER)
  if constexpr (std::is_same<acc_t, float>::value && HasSimdRows<input_t>::value) {
    if (s.len == 1) {
      load_panel_simd(x, s.dim, lanes, T, buf);
      return;
    }
  }
#endif
  zero(buf, T * kLanes);
  for (int l = 0; l < lanes; ++l) {
    const input_t* row = x + l * s.dim;
    for (int64_t t = 0; t < T; ++t) buf[t * kLanes + l] = static_cast<acc_t>(row[t * s.len]);
  }
}

// Stores buf[t][lane] (live lanes only) into the panel of a (batch, channels, L) tensor.
template <typename input_t, typename acc_t>
inline void store_panel(void* base, const SeqStrides& s, int64_t b, int64_t d0, int lanes,
                       int64_t t0, int64_t T, const acc_t* buf) {
  input_t* x = static_cast<input_t*>(base) + b * s.batch + d0 * s.dim + t0 * s.len;
  if (s.dim == 1 && lanes == kLanes) {
    for (int64_t t = 0; t < T; ++t) {
      input_t* row = x + t * s.len;
      MVSCAN_LANES row[l] = static_cast<input_t>(buf[t * kLanes + l]);
    }
    return;
  }
#if defined(MVSCAN_TRANSPOSE_HEADER)
  if constexpr (std::is_same<acc_t, float>::value && HasSimdRows<input_t>::value) {
    if (s.len == 1) {
      store_panel_simd(x, s.dim, lanes, T, buf);
      return;
    }
  }
#endif
  for (int l = 0; l < lanes; ++l) {
    input_t* row = x + l * s.dim;
    for (int64_t t = 0; t < T; ++t) row[t * s.len] = static_cast<input_t>(buf[t * kLanes + l]);
  }
}
