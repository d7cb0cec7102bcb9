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

// Blocks of kConvThreads for a grid-stride loop over `total` threads' work.
inline int64_t elementwise_blocks(int64_t total) {
  return std::max<int64_t>(
      1, std::min<int64_t>((total + kConvThreads - 1) / kConvThreads, int64_t(1) << 20));
}

inline bool channels_fast(const at::Tensor& x) { return x.size(1) > 1 && x.stride(1) == 1; }

inline bool runs_in_registers(const DepthwiseConv1dParams& p) {
  return p.width <= kSmallWidthCap;
}

// A launch: a (x, y) grid of kConvThreads-thread blocks with `smem` bytes of dynamic shared
// memory. Launchers are called as launch(kernel, grid, kernel arguments...).
struct ConvGrid {
  int64_t x = 1, y = 1;
  size_t smem = 0;
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The (channel blocks, parts) grid of the dweight/dbias kernels and the work of a part: runs
// (run kernel) or rows (wide kernel) of the flattened (batch, step) range. Channels-fast blocks
// have kDweightChannels channel lanes and kConvThreads / kDweightChannels = 8 lanes over the
// runs or rows; steps-fast blocks one channel and kConvThreads lanes.
struct DweightGrid {
  ConvGrid grid;
  int64_t per_part = 0;
};

// Run kernel: parts of at least one run a lane, longer once the grid passes
// kDweightTargetBlocks so that the partial sums stay small for long sequences. (MambaVision-T
// stage 3 at batch 64, channels-fast: 10 x 200 blocks of 8 runs a part.)
inline DweightGrid dweight_grid_of_runs(const DepthwiseConv1dParams& p, bool fast_c,
                                        size_t smem) {
  const int64_t channel_lanes = fast_c ? kDweightChannels : 1;
  const int64_t run_lanes = kConvThreads / channel_lanes;
  const int64_t channel_blocks = ceil_div(p.channels, channel_lanes);
  const int64_t runs = p.batch * runs_per_row(p.seqlen);
  const int64_t per_part = std::max({run_lanes, ceil_div(runs * channel_blocks,
                                                         kDweightTargetBlocks),
                                     ceil_div(runs, 65535)});
  return {{channel_blocks, std::max<int64_t>(1, ceil_div(runs, per_part)), smem}, per_part};
}

// Wide kernel: channels-fast parts of at least 64 rows (8 a thread), longer once the grid passes
// kDweightTargetBlocks; steps-fast parts of kRowsPerPart rows.
inline DweightGrid dweight_grid_of_rows(const DepthwiseConv1dParams& p, bool fast_c,
                                        size_t smem) {
  const int64_t rows = p.batch * p.seqlen;
  const int64_t channel_blocks = fast_c ? ceil_div(p.channels, kDweightChannels) : p.channels;
  const int64_t per_part =
      fast_c ? std::max({int64_t(64), ceil_div(rows * channel_blocks, kDweightTargetBlocks),
                         ceil_div(rows, 65535)})
             : std::max<int64_t>(kRowsPerPart, ceil_div(rows, 65535));
  return {{channel_blocks, std::max<int64_t>(1, ceil_div(rows, per_part)), smem}, per_part};
}

// launch(kernel, grid, args...) runs conv_fwd_kernel (K <= kSmallWidthCap: a thread per run) or
// conv_fwd_wide_kernel (a thread per element).
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
  if (x.numel() == 0) return out;
  const bool fast_c = channels_fast(x);
  dispatch_input_type(x.scalar_type(), "mvscan.depthwise_conv1d", [&](auto tag) {
    using input_t = decltype(tag);
    if (runs_in_registers(p)) {
      const int64_t total = p.batch * p.channels * runs_per_row(p.seqlen);
      launch(&conv_fwd_kernel<input_t>, ConvGrid{elementwise_blocks(total)}, p, fast_c, total);
    } else {
      const int64_t total = x.numel();
      launch(&conv_fwd_wide_kernel<input_t>, ConvGrid{elementwise_blocks(total)}, p, fast_c,
             total);
    }
  });
  return out;
}

// launch(kernel, grid, args...) runs the dx kernel (its total counts the initial states' runs or
// elements too) and the dweight/dbias kernel, run or wide as in the forward.
template <typename Launch>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> depthwise_conv1d_bwd_driver(
    const at::Tensor& dout, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, int64_t pad_left, bool silu,
    const std::optional<at::Tensor>& seq_idx, const std::optional<at::Tensor>& initial_states,
    Launch&& launch) {
  at::Tensor dx, dinit;
  const DepthwiseConv1dBwdParams bp = make_depthwise_conv1d_bwd_params(
      dout, x, weight, bias, pad_left, silu, seq_idx, initial_states, &dx, &dinit);
  const DepthwiseConv1dParams& p = bp.fwd;
  const auto acc = x.options().dtype(acc_dtype(x.scalar_type()));
  const bool fast_c = channels_fast(x), in_registers = runs_in_registers(p);
  // The initial states' gradient follows x's; none without steps (dinit is zeros then).
  const bool states = bp.dinit != nullptr && p.seqlen > 0 && p.width > 1;
  const int64_t dx_total =
      in_registers ? p.batch * p.channels * (runs_per_row(p.seqlen) + (states ? 1 : 0))
                   : x.numel() + (states ? dinit.numel() : 0);
  DweightGrid dweight;
  dispatch_input_type(x.scalar_type(), "mvscan.depthwise_conv1d", [&](auto tag) {
    using input_t = decltype(tag);
    dweight = in_registers ? dweight_grid_of_runs(p, fast_c, dweight_smem_bytes<input_t>())
                           : dweight_grid_of_rows(p, fast_c, dweight_wide_smem_bytes<input_t>());
  });
  // Every (part, channel, k) entry is written when the kernel runs; zeros when it does not.
  const int64_t parts = dweight.grid.y;
  at::Tensor partial = x.numel() > 0 ? poisoned(at::empty({parts, p.channels, p.width + 1}, acc))
                                     : at::zeros({parts, p.channels, p.width + 1}, acc);
  if (x.numel() > 0) {
    dispatch_input_type(x.scalar_type(), "mvscan.depthwise_conv1d", [&](auto tag) {
      using input_t = decltype(tag);
      const ConvGrid dx_grid{elementwise_blocks(dx_total)};
      if (in_registers) {
        launch(&conv_bwd_dx_kernel<input_t>, dx_grid, bp, fast_c, dx_total);
        launch(&conv_bwd_dweight_kernel<input_t>, dweight.grid, bp, dweight.per_part,
               partial.data_ptr(), fast_c);
      } else {
        launch(&conv_bwd_dx_wide_kernel<input_t>, dx_grid, bp, fast_c, dx_total);
        launch(&conv_bwd_dweight_wide_kernel<input_t>, dweight.grid, bp, dweight.per_part,
               partial.data_ptr(), fast_c);
      }
    });
  }
  const at::Tensor sums = partial.sum(0);  // (channels, K + 1), summed in a fixed order
  at::Tensor dweight_out = sums.narrow(1, 0, p.width).to(weight.scalar_type()).contiguous();
  // contiguous(): a column of sums is a strided view (and .to() of the same dtype returns it),
  // while the operator's fake (and the CPU kernel) give a dense (channels,) tensor.
  at::Tensor dbias = bias.has_value()
                         ? sums.select(1, p.width).to(bias->scalar_type()).contiguous()
                         : at::empty({0}, acc);
  return {dx, dweight_out, dbias, dinit};
}

}  // namespace cuda
}  // namespace mvscan
