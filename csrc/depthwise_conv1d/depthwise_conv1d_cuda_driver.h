// The host side of the CUDA depthwise conv1d, independent of how kernels are launched: checks,
// outputs, launch sizes and the fixed-order sum of the dweight/dbias partials. The CUDA op
// (depthwise_conv1d_cuda_op.cu) passes launchers that run the kernels on the current stream; the
// tests' CPU emulation (tests/cuda_emulation/) passes launchers that run them on CPU fibers.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <tuple>
#include <type_traits>

#include "depthwise_conv1d/depthwise_conv1d_params.h"
#include "common/outputs.h"
#include "depthwise_conv1d/depthwise_conv1d_cuda_kernels.cuh"

namespace mvscan {
namespace cuda {

// Blocks of kConvThreads for a grid-stride loop over `total` elements.
inline int64_t elementwise_blocks(int64_t total) {
  return std::max<int64_t>(
      1, std::min<int64_t>((total + kConvThreads - 1) / kConvThreads, int64_t(1) << 20));
}

inline bool channels_fast(const at::Tensor& x) { return x.size(1) > 1 && x.stride(1) == 1; }

// launch(tag, p, channels_fast, total, blocks) runs conv_fwd_kernel.
template <typename Launch>
at::Tensor depthwise_conv1d_fwd_driver(const at::Tensor& x, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias, int64_t pad_left,
                                       bool silu, const std::optional<at::Tensor>& seq_idx,
                                       const std::optional<at::Tensor>& initial_states,
                                       Launch&& launch) {
  DepthwiseConv1dParams p =
      make_depthwise_conv1d_params(x, weight, bias, pad_left, silu, seq_idx, initial_states);
  at::Tensor out = poisoned(empty_like_conv_input(x));
  p.out = out.data_ptr();
  p.out_strides = seq_strides_of(out);
  const int64_t total = x.numel();
  if (total == 0) return out;
  dispatch_input_type(x.scalar_type(), "mvscan.depthwise_conv1d", [&](auto tag) {
    launch(tag, p, channels_fast(x), total, elementwise_blocks(total));
  });
  return out;
}

// launch_dx(tag, bp, channels_fast, total, blocks) runs conv_bwd_dx_kernel (total counts the
// initial states' elements too);
// launch_dweight(tag, width_cap, bp, rows_per_part, partial, channel_blocks, parts, smem_bytes,
// channels_fast) runs conv_bwd_dweight_kernel<input_t, width_cap> (width_cap an
// std::integral_constant: kDweightSmallWidthCap or kMaxConvWidth) on a (channel_blocks, parts)
// grid of kConvThreads-thread blocks with smem_bytes of dynamic shared memory.
template <typename LaunchDx, typename LaunchDweight>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> depthwise_conv1d_bwd_driver(
    const at::Tensor& dout, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, int64_t pad_left, bool silu,
    const std::optional<at::Tensor>& seq_idx, const std::optional<at::Tensor>& initial_states,
    LaunchDx&& launch_dx, LaunchDweight&& launch_dweight) {
  at::Tensor dx, dinit;
  const DepthwiseConv1dBwdParams bp = make_depthwise_conv1d_bwd_params(
      dout, x, weight, bias, pad_left, silu, seq_idx, initial_states, &dx, &dinit);
  const DepthwiseConv1dParams& p = bp.fwd;
  const auto acc = x.options().dtype(acc_dtype(x.scalar_type()));

  const int64_t rows = p.batch * p.seqlen;
  const bool fast_c = channels_fast(x);
  const int64_t channel_blocks =
      fast_c ? (p.channels + kDweightChannels - 1) / kDweightChannels : p.channels;
  auto ceil_div = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  // Channels-fast blocks have kConvThreads / kDweightChannels = 8 row lanes: parts of at least
  // 64 rows (8 a thread), and of more once the grid passes kDweightTargetBlocks, so that the
  // partial sums stay small for long sequences. (With 256-row parts MambaVision-T's stage 4 at
  // batch 64 made 130 blocks, one per SM: 12% occupancy in ncu on an H200.)
  const int64_t rows_per_part =
      fast_c ? std::max({int64_t(64), ceil_div(rows * channel_blocks, kDweightTargetBlocks),
                         ceil_div(rows, 65535)})
             : std::max<int64_t>(kRowsPerPart, ceil_div(rows, 65535));
  const int64_t parts = std::max<int64_t>(1, ceil_div(rows, rows_per_part));
  // Every (part, channel, k) entry is written when the kernel runs; zeros when it does not.
  at::Tensor partial = x.numel() > 0 ? poisoned(at::empty({parts, p.channels, p.width + 1}, acc))
                                     : at::zeros({parts, p.channels, p.width + 1}, acc);
  // The initial states' gradient elements follow x's; none without steps (dinit is zeros then).
  const int64_t total = x.numel() + (bp.dinit != nullptr && p.seqlen > 0 ? dinit.numel() : 0);
  if (total > 0) {
    dispatch_input_type(x.scalar_type(), "mvscan.depthwise_conv1d", [&](auto tag) {
      launch_dx(tag, bp, fast_c, total, elementwise_blocks(total));
      auto launch_capped = [&](auto width_cap) {
        launch_dweight(tag, width_cap, bp, rows_per_part, partial.data_ptr(), channel_blocks,
                       parts, dweight_smem_bytes<decltype(tag)>(), fast_c);
      };
      if (p.width <= kDweightSmallWidthCap) {
        launch_capped(std::integral_constant<int, kDweightSmallWidthCap>{});
      } else {
        launch_capped(std::integral_constant<int, kMaxConvWidth>{});
      }
    });
  }
  const at::Tensor sums = partial.sum(0);  // (channels, K + 1), summed in a fixed order
  at::Tensor dweight = sums.narrow(1, 0, p.width).to(weight.scalar_type()).contiguous();
  // contiguous(): a column of sums is a strided view (and .to() of the same dtype returns it),
  // while the operator's fake (and the CPU kernel) give a dense (channels,) tensor.
  at::Tensor dbias = bias.has_value()
                         ? sums.select(1, p.width).to(bias->scalar_type()).contiguous()
                         : at::empty({0}, acc);
  return {dx, dweight, dbias, dinit};
}

}  // namespace cuda
}  // namespace mvscan
