"""The Triton kernels as PyTorch operators, torch.ops.mvscan_triton.*: the compiled operators'
schemas (csrc/registration.cpp; tests/test_triton_backend.py checks they stay equal), one Python
implementation for every device (CUDA, and CPU tensors under TRITON_INTERPRET=1), and the same
fake kernels and autograd as torch.ops.mvscan (mvscan/ops.py, mvscan/depthwise_conv.py), so that
opcheck and torch.compile hold for them too. Imported on first use (mvscan.backend.kernel_ops):
Triton reads TRITON_INTERPRET when the kernels are defined."""

from __future__ import annotations

import torch

from .. import depthwise_conv, ops as scan_ops
from . import depthwise_conv1d, selective_scan

NAMESPACE = "mvscan_triton"

SCHEMAS = {
    "selective_scan_fwd": (
        "selective_scan_fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, "
        "Tensor? z, Tensor? delta_bias, bool delta_softplus, Tensor? initial_state=None) "
        "-> (Tensor, Tensor)"),
    "selective_scan_bwd": (
        "selective_scan_bwd(Tensor dout, Tensor? dstates, Tensor u, Tensor delta, Tensor A, "
        "Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? delta_bias, Tensor states, "
        "bool delta_softplus, Tensor? initial_state=None) -> (Tensor, Tensor, Tensor, Tensor, "
        "Tensor, Tensor, Tensor, Tensor, Tensor)"),
    "depthwise_conv1d_fwd": (
        "depthwise_conv1d_fwd(Tensor x, Tensor weight, Tensor? bias, int pad_left, bool silu, "
        "Tensor? seq_idx=None, Tensor? initial_states=None) -> Tensor"),
    "depthwise_conv1d_bwd": (
        "depthwise_conv1d_bwd(Tensor dout, Tensor x, Tensor weight, Tensor? bias, int pad_left, "
        "bool silu, Tensor? seq_idx=None, Tensor? initial_states=None) "
        "-> (Tensor, Tensor, Tensor, Tensor)"),
}
IMPLEMENTATIONS = {
    "selective_scan_fwd": selective_scan.selective_scan_fwd,
    "selective_scan_bwd": selective_scan.selective_scan_bwd,
    "depthwise_conv1d_fwd": depthwise_conv1d.depthwise_conv1d_fwd,
    "depthwise_conv1d_bwd": depthwise_conv1d.depthwise_conv1d_bwd,
}
# The conv operators' output layout follows x's strides (as the compiled ones': see
# csrc/registration.cpp), so torch.compile must keep the strides it traced them with.
_EXACT_STRIDES = getattr(torch.Tag, "needs_exact_strides", torch.Tag.needs_fixed_stride_order)
_TAGS = {"depthwise_conv1d_fwd": (_EXACT_STRIDES,), "depthwise_conv1d_bwd": (_EXACT_STRIDES,)}

_library = torch.library.Library(NAMESPACE, "DEF")
for _name, _schema in SCHEMAS.items():
    _library.define(_schema, tags=_TAGS.get(_name, ()))
    _library.impl(_name, IMPLEMENTATIONS[_name], "CompositeExplicitAutograd")
scan_ops.register_python_parts(NAMESPACE)
depthwise_conv.register_python_parts(NAMESPACE)


def namespace():
    """torch.ops.mvscan_triton."""
    return getattr(torch.ops, NAMESPACE)
