// CPU depthwise conv1d: spans, workspace sizes and the per-dtype entry points.
#pragma once

#include <cstdint>

#include "depthwise_conv1d/depthwise_conv1d.h"
#include "common/cpu_isa.h"

namespace mvscan {
namespace cpu {

// Steps per span: the K - 1 halo steps are loaded twice, so longer spans waste less.
constexpr int64_t kConvSpanLen = 128;
// Steps whose sequence ids a span needs: the backward's x panel, the longest.
constexpr int64_t kConvSpanIds = kConvSpanLen + 2 * (kMaxConvWidth - 1);

inline int64_t conv_fwd_workspace_elems(int64_t K, int lanes) {
  return (K + 1 + (kConvSpanLen + K - 1) + kConvSpanLen) * lanes;
}
inline int64_t conv_bwd_workspace_elems(int64_t K, int lanes) {
  return (2 * K + 2 + (kConvSpanLen + 2 * (K - 1)) + 2 * (kConvSpanLen + K - 1) +
          kConvSpanLen) * lanes;
}

// Instantiated per input dtype by depthwise_conv1d_cpu_instances.inl.
template <typename input_t>
void depthwise_conv1d_fwd_cpu(const DepthwiseConv1dParams& params, CpuIsa isa);
template <typename input_t>
void depthwise_conv1d_bwd_cpu(const DepthwiseConv1dBwdParams& params, CpuIsa isa);

}  // namespace cpu
}  // namespace mvscan
