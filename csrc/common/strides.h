// Strides of the (batch, channels, L) sequence tensors every operator reads and writes.
#pragma once

#include <cstdint>

namespace mvscan {

// Element strides of a (batch, dim, L) tensor: u, delta, z, x, out and their gradients. 64-bit:
// buffers past 2^31 elements must index correctly.
struct SeqStrides {
  int64_t batch = 0, dim = 0, len = 0;
};

// The strides of a 3-d tensor (a template, so device code can include this header without ATen).
template <typename Tensor>
SeqStrides seq_strides_of(const Tensor& t) {
  return SeqStrides{t.stride(0), t.stride(1), t.stride(2)};
}

}  // namespace mvscan
