// Scalar math shared by the CPU and CUDA kernels of every operator.
//
// The float versions are branch-free (selects only) so that a loop over lanes of them
// vectorises; double versions call the C library, since float64 exists for testing, not speed.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MVSCAN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MVSCAN_HOST_DEVICE inline
#endif

namespace mvscan {

MVSCAN_HOST_DEVICE float bits_to_float(int32_t i) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(i);
#else
  float f;
  std::memcpy(&f, &i, sizeof(f));
  return f;
#endif
}

MVSCAN_HOST_DEVICE int32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_int(f);
#else
  int32_t i;
  std::memcpy(&i, &f, sizeof(i));
  return i;
#endif
}

// exp(x) for float within 2 ulp (Cephes' polynomial with Cody-Waite range reduction). Results
// below FLT_MIN flush to zero; NaN propagates; overflow gives +inf.
MVSCAN_HOST_DEVICE float exp_f32(float x) {
  constexpr float kHi = 88.3762626647949f;
  constexpr float kLo = -87.3365447504f;  // below this exp(x) < FLT_MIN
  constexpr float kRound = 12582912.0f;    // 1.5 * 2^23: adding it rounds to an integer
  const float xc = x > kHi ? kHi : (x < kLo ? kLo : x);
  const float t = xc * 1.44269504088896341f + kRound;
  const float n = t - kRound;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t e = float_to_bits(t) - float_to_bits(kRound);  // == n, as an integer
  float y = p * bits_to_float((e + 127) << 23);
  y = x < kLo ? 0.0f : y;
  y = x > kHi ? INFINITY : y;
  return y;
}

// log(x) for float x in (0, inf), within 2 ulp (Cephes' logf).
MVSCAN_HOST_DEVICE float log_f32(float x) {
  const int32_t bits = float_to_bits(x);
  int32_t e = ((bits >> 23) & 0xff) - 126;                  // x = m * 2^e, m in [0.5, 1)
  float m = bits_to_float((bits & 0x007fffff) | 0x3f000000);
  const bool small = m < 0.707106781186547524f;
  e = small ? e - 1 : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  const float fe = static_cast<float>(e);
  const float z = m * m;
  float p = 7.0376836292e-2f;
  p = p * m - 1.1514610310e-1f;
  p = p * m + 1.1676998740e-1f;
  p = p * m - 1.2420140846e-1f;
  p = p * m + 1.4249322787e-1f;
  p = p * m - 1.6668057665e-1f;
  p = p * m + 2.0000714765e-1f;
  p = p * m - 2.4999993993e-1f;
  p = p * m + 3.3333331174e-1f;
  float y = p * m * z;
  y = y + fe * -2.12194440e-4f;
  y = y - 0.5f * z;
  return m + y + fe * 0.693359375f;
}

MVSCAN_HOST_DEVICE float exp_acc(float x) { return exp_f32(x); }
MVSCAN_HOST_DEVICE double exp_acc(double x) { return std::exp(x); }

// softplus(x) = log1p(exp(x)), and x itself for x > 20 (mamba_ssm's threshold). Written as
// max(x, 0) + log1p(exp(-|x|)) so that exp never overflows; log1p(w) = log(1 + w) * w / ((1 + w) - 1)
// keeps full precision when w is tiny.
MVSCAN_HOST_DEVICE float softplus_acc(float x) {
  const float w = exp_f32(-std::fabs(x));
  const float v = 1.0f + w;
  const float d = v - 1.0f;
  const float l1p = d == 0.0f ? w : log_f32(v) * (w / d);
  const float s = (x > 0.0f ? x : 0.0f) + l1p;
  return x > 20.0f ? x : s;
}
MVSCAN_HOST_DEVICE double softplus_acc(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }

MVSCAN_HOST_DEVICE float sigmoid_acc(float x) { return 1.0f / (1.0f + exp_f32(-x)); }
MVSCAN_HOST_DEVICE double sigmoid_acc(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace mvscan
