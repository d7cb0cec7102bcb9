"""Bad arguments to the depthwise conv raise a clear exception naming the argument, what was
expected and what came."""

from __future__ import annotations

import pytest
import torch

import mvscan

ERRORS = (ValueError, TypeError)
BAD = [
    ("K too large", lambda: (torch.randn(2, 4, 10), torch.randn(4, 33), None, "same", None),
     r"kernel width K = 33 .* 1 to 32"),
    ("channel mismatch", lambda: (torch.randn(2, 4, 10), torch.randn(5, 3), None, "same", None),
     r"weight must have shape \(channels, K\) with channels = x.shape\[1\] = 4"),
    ("x 2-d", lambda: (torch.randn(4, 10), torch.randn(4, 3), None, "same", None),
     r"x must be a 3-d tensor"),
    ("weight (C, 2, K)", lambda: (torch.randn(2, 4, 10), torch.randn(4, 2, 3), None, "same", None),
     r"3-d weight must be nn.Conv1d's depthwise \(channels, 1, K\)"),
    ("bias shape", lambda: (torch.randn(2, 4, 10), torch.randn(4, 3), torch.randn(3), "same", None),
     r"bias must have shape \(channels,\)"),
    ("unknown padding", lambda: (torch.randn(2, 4, 10), torch.randn(4, 3), None, "valid", None),
     r"padding must be one of \('same', 'causal'\), got 'valid'"),
    ("unknown activation", lambda: (torch.randn(2, 4, 10), torch.randn(4, 3), None, "same", "gelu"),
     r"activation must be one of \(None, 'silu'\), got 'gelu'"),
    ("int x", lambda: (torch.ones(2, 4, 10, dtype=torch.int32), torch.randn(4, 3), None, "same",
                       None), r"x must be float32, float16, bfloat16 or float64, got Int"),
    ("weight dtype", lambda: (torch.randn(2, 4, 10).half(), torch.randn(4, 3).double(), None,
                              "same", None), r"weight must have x's dtype \(Half\) or float32"),
    ("device mismatch", lambda: (torch.randn(2, 4, 10), torch.randn(4, 3, device="meta"), None,
                                 "same", None), r"weight is on meta but x is on cpu"),
]


@pytest.mark.parametrize("make_args,pattern", [(m, p) for _, m, p in BAD],
                         ids=[n for n, _, _ in BAD])
def test_bad_input(make_args, pattern):
    with pytest.raises(ERRORS, match=pattern):
        mvscan.depthwise_conv1d(*make_args())


def test_backward_op_checks_dout():
    x, w = torch.randn(2, 4, 10), torch.randn(4, 3)
    with pytest.raises(ERRORS, match=r"dout must have x's shape \[2, 4, 10\]"):
        torch.ops.mvscan.depthwise_conv1d_bwd(torch.randn(2, 4, 9), x, w, None, 1, False)
    with pytest.raises(ERRORS, match=r"dout must have x's dtype Float, got Double"):
        torch.ops.mvscan.depthwise_conv1d_bwd(torch.randn(2, 4, 10).double(), x, w, None, 1, False)
