"""mvscan.depthwise_conv1d on every backend (tests/backends.py: "cpu", "cuda", "emulated-cuda",
"triton")
against the float64 oracle and F.conv1d (+ F.silu): values and gradients, every
size/width/padding/layout/dtype in the grid below (the CPU under every instruction-set build, the
emulated CUDA kernels on a smaller grid), and the CUDA kernels against the CPU kernel. Tests
that only make sense on one backend (the emulator's thread schedules) come last."""

from __future__ import annotations

import itertools

import pytest
import torch

import backends
import mvscan
from backends import DEVICE_BACKENDS, to_backend, to_cpu, using, variants
from helpers import (FULL_PRECISION, LOW_PRECISION, conv_inputs, conv_oracle_results, conv_run,
                     dtype_id, rel_err, torch_conv)

REL_TOL = {torch.float64: 1e-12, torch.float32: 1e-5}
# Relative error allowed between a CUDA backend and the CPU kernel on the same inputs (y and every
# gradient); pairs left out are compared with the oracle only.
CPU_KERNEL_TOL = {("cuda", torch.float64): 1e-12, ("emulated-cuda", torch.float64): 1e-12,
                  ("cuda", torch.float32): 1e-5, ("emulated-cuda", torch.float32): 1e-5,
                  ("emulated-cuda", torch.float16): 2e-3, ("emulated-cuda", torch.bfloat16): 1e-2,
                  ("triton", torch.float64): 1e-12, ("triton", torch.float32): 1e-5,
                  ("triton", torch.float16): 2e-3, ("triton", torch.bfloat16): 1e-2}
# The backends compared with the CPU kernel.
COMPARED = (*DEVICE_BACKENDS, "triton")


def check_matches_cpu_kernel(backend, got, x, w, b, dout, padding, activation, what=""):
    """got = (y, grads) of a CUDA backend (on the CPU): the CPU kernel's output layout, and its
    values within CPU_KERNEL_TOL."""
    y, grads = got
    want_y, want_grads = conv_run(mvscan.depthwise_conv1d, x, w, b, dout, padding, activation)
    # Every output's layout, as the CPU kernel (and the operators' fakes) give it.
    assert y.stride() == want_y.stride(), what
    for name, g, r in zip(("dx", "dweight", "dbias"), grads, want_grads):
        assert g.stride() == r.stride(), f"{what}: {name} strides"
    tol = CPU_KERNEL_TOL.get((backend, x.dtype))
    for name, g, r in zip(("y", "dx", "dweight", "dbias"), (y, *grads), (want_y, *want_grads)):
        assert g.shape == r.shape and g.dtype == r.dtype, f"{what}: {name}"
        if tol is not None and r.numel():
            assert rel_err(g, r) <= tol, f"{what}: {name}"


GRID = list(itertools.product([1, 2, 3, 49, 196, 1031], [1, 2, 3, 4, 7], ["same", "causal"]))
EMULATED_GRID = list(itertools.product([1, 3, 49, 300], [1, 3, 4, 7], ["same", "causal"]))
# float64 accumulates in float64 on every device (csrc/common/dtypes.def); emulated on fewer shapes.
EMULATED_FP64_GRID = list(itertools.product([3, 300], [3, 4], ["same", "causal"]))


@backends.parametrize("dtype,L,K,padding", {
    "cpu": [(dt, *g) for dt in FULL_PRECISION for g in GRID],
    "cuda": [(dt, *g) for dt in FULL_PRECISION for g in GRID],
    "emulated-cuda": [(torch.float32, *g) for g in EMULATED_GRID]
    + [(torch.float64, *g) for g in EMULATED_FP64_GRID],
    "triton": [(torch.float32, *g) for g in EMULATED_GRID]
    + [(torch.float64, *g) for g in EMULATED_FP64_GRID]},
    id=lambda dt, L, K, padding: f"{dtype_id(dt)}-L{L}-K{K}-{padding}")
def test_against_oracle(backend, dtype, L, K, padding):
    """Every bias / activation / layout combination, the CPU's cycling through its
    instruction-set builds."""
    fn = backends.depthwise_conv1d(backend)
    for (bias, activation, channels_last), variant in zip(
            itertools.product([False, True], [None, "silu"], [False, True]),
            itertools.cycle(variants(backend))):
        x, w, b, dout = conv_inputs(2, 19, L, K, dtype, channels_last, bias, seed=L * 7 + K)
        ref_y, ref_grads = conv_oracle_results(x, w, b, dout, padding, activation)
        with using(backend, variant):
            y, grads = conv_run(fn, *to_backend(backend, (x, w, b, dout)), padding, activation)
        assert y.device.type == backends.device(backend).type
        y, grads = to_cpu((y, grads))
        assert y.dtype == dtype and y.shape == x.shape
        tol = REL_TOL[dtype]
        what = f"{variant} bias={bias} act={activation} channels_last={channels_last}"
        assert rel_err(y, ref_y) <= tol, what
        for name, g, r in zip(("dx", "dweight", "dbias"), grads, ref_grads):
            assert g.shape == r.shape, name
            assert rel_err(g, r) <= tol, f"{name} {what}: {rel_err(g, r):.2e}"
        if backend in COMPARED:
            check_matches_cpu_kernel(backend, (y, grads), x, w, b, dout, padding, activation,
                                     what)


def low_precision_shapes(*shapes):
    """(dtype, (batch, channels, L, K, padding, channels_last, seed)) for each low dtype."""
    return [(dt, s) for s in shapes for dt in LOW_PRECISION]


def shape_id(dtype, s):
    batch, channels, L, K, padding, channels_last, _ = s
    layout = "channels_last" if channels_last else "contiguous"
    return f"{dtype_id(dtype)}-{batch}x{channels}x{L}-K{K}-{padding}-{layout}"


@backends.parametrize("dtype,shape", {
    "cpu": low_precision_shapes(*[(3, 40, 197, K, padding, cl, K) for K, padding in
                                  [(3, "same"), (4, "causal"), (2, "same")]
                                  for cl in (False, True)]),
    "cuda": low_precision_shapes(*[(4, 64, 197, 3, "same", cl, 0) for cl in (False, True)]),
    "emulated-cuda": low_precision_shapes((2, 24, 70, 3, "same", True, 0)),
    "triton": low_precision_shapes((2, 24, 70, 3, "same", True, 0),
                                   (2, 24, 70, 4, "causal", False, 0))}, id=shape_id)
def test_low_precision(backend, dtype, shape):
    """fp16/bf16: within twice the error of F.conv1d + F.silu run in that dtype (on the
    backend's device); the emulated kernels also match the CPU kernel."""
    batch, channels, L, K, padding, channels_last, seed = shape
    x, w, b, dout = conv_inputs(batch, channels, L, K, dtype, channels_last, bias=True, seed=seed)
    ref_y, ref_grads = conv_oracle_results(x, w, b, dout, padding, "silu")
    base_y, base_grads = to_cpu(conv_run(torch_conv, *to_backend(backend, (x, w, b, dout)),
                                         padding, "silu"))
    fn = backends.depthwise_conv1d(backend)
    for variant in variants(backend):
        with using(backend, variant):
            y, grads = to_cpu(conv_run(fn, *to_backend(backend, (x, w, b, dout)), padding,
                                       "silu"))
        assert rel_err(y, ref_y) <= 2 * rel_err(base_y, ref_y) + 1e-6, variant
        for g, base, r in zip(grads, base_grads, ref_grads):
            assert rel_err(g, r) <= 2 * rel_err(base, r) + 1e-5, variant
    if backend in COMPARED:
        check_matches_cpu_kernel(backend, (y, grads), x, w, b, dout, padding, "silu")


@backends.over(*backends.WITH_TRITON)
def test_float32_weights_with_half_input(backend):
    """Under autocast the model's float32 weights meet half inputs: accepted, math in float32."""
    x, w, b, dout = conv_inputs(2, 16, 50, 3, torch.float16, False, bias=True)
    y, grads = to_cpu(conv_run(backends.depthwise_conv1d(backend),
                               *to_backend(backend, (x, w.float(), b.float(), dout)),
                               "same", "silu"))
    ref_y, ref_grads = conv_oracle_results(x, w.float(), b.float(), dout, "same", "silu")
    assert y.dtype == torch.float16 and grads[1].dtype == torch.float32
    assert rel_err(y, ref_y) < 2e-3 and rel_err(grads[1], ref_grads[1]) < 2e-3


@backends.over(*backends.WITH_TRITON)
def test_channels_last_input_is_not_copied_and_layout_kept(backend):
    x, w, b, _ = conv_inputs(2, 32, 64, 3, torch.float32, True, bias=True)
    dx, dw, db = to_backend(backend, (x, w, b))
    assert dx.stride(1) == 1
    y = backends.depthwise_conv1d(backend)(dx, dw, db, "same", "silu")
    assert y.stride() == dx.stride()
    torch.testing.assert_close(y.cpu(), torch_conv(x, w, b, "same", "silu"), rtol=1e-5, atol=1e-6)


@backends.over(*backends.WITH_TRITON)
def test_strided_input(backend):
    """Neither L nor channels contiguous (a slice): still exact."""
    base = torch.randn(2, 20, 3 * 41)
    x = base[:, :, ::3]
    w = torch.randn(20, 3)
    got = backends.depthwise_conv1d(backend)(to_backend(backend, base)[:, :, ::3],
                                             to_backend(backend, w), None, "causal")
    torch.testing.assert_close(got.cpu(), torch_conv(x, w, None, "causal", None),
                               rtol=1e-5, atol=1e-6)


@backends.parametrize("shape", {"cpu": [(4, 48, 300, 4)], "cuda": [(8, 320, 196, 3)],
                                "triton": [(4, 48, 300, 4)]},
                      id=lambda s: "x".join(map(str, s[:3])) + f"-K{s[3]}")
def test_deterministic_backward(backend, shape):
    batch, channels, L, K = shape
    x, w, b, dout = to_backend(backend, conv_inputs(batch, channels, L, K, torch.float32, True,
                                                    bias=True))
    fn = backends.depthwise_conv1d(backend)
    first = conv_run(fn, x, w, b, dout, "same", "silu")[1]
    for _ in range(3):
        again = conv_run(fn, x, w, b, dout, "same", "silu")[1]
        for g1, g2 in zip(first, again):
            assert torch.equal(g1, g2)


@backends.over(*backends.WITH_TRITON)
def test_empty_batch(backend):
    x = to_backend(backend, torch.randn(0, 8, 10)).requires_grad_(True)
    w = to_backend(backend, torch.randn(8, 3)).requires_grad_(True)
    y = backends.depthwise_conv1d(backend)(x, w, None, "same", "silu")
    assert y.shape == (0, 8, 10)
    y.sum().backward()
    assert torch.all(w.grad == 0)


@pytest.mark.parametrize("dtype", FULL_PRECISION, ids=dtype_id)
@backends.over(*COMPARED)
def test_several_dweight_parts(backend, dtype):
    """More than 8192 (batch, step) rows per channel: the dweight partials span several blocks
    of the grid's second dimension before torch.sum adds them (float64: in a float64 buffer)."""
    x, w, b, dout = conv_inputs(3, 4, 3000, 4, dtype, False, bias=True, seed=7)
    got = to_cpu(conv_run(backends.depthwise_conv1d(backend), *to_backend(backend, (x, w, b, dout)),
                          "same", "silu"))
    check_matches_cpu_kernel(backend, got, x, w, b, dout, "same", "silu")


@pytest.mark.parametrize("dtype", FULL_PRECISION, ids=dtype_id)
@backends.over(*COMPARED)
def test_several_dweight_parts_channels_fast(backend, dtype):
    """Channels-fast x: dweight blocks of 32 channel lanes (the second block partly empty at 40
    channels) over parts of 64 rows (600 rows: ten parts, the last partial)."""
    x, w, b, dout = conv_inputs(2, 40, 300, 4, dtype, True, bias=True, seed=11)
    assert x.stride(1) == 1
    got = to_cpu(conv_run(backends.depthwise_conv1d(backend), *to_backend(backend, (x, w, b, dout)),
                          "same", "silu"))
    check_matches_cpu_kernel(backend, got, x, w, b, dout, "same", "silu")


def test_reference_matches_f_conv1d():
    x, w, b, dout = conv_inputs(2, 8, 33, 4, torch.float64, False, bias=True)
    for padding in ("same", "causal"):
        torch.testing.assert_close(mvscan.depthwise_conv1d_ref(x, w, b, padding, "silu"),
                                   torch_conv(x, w, b, padding, "silu"))


# --- CUDA only ---------------------------------------------------------------------------------

@backends.needs_gpu
def test_cuda_graph_capture():
    """No host synchronisation inside the op: it can be captured in a CUDA graph."""
    x, w, b, _ = to_backend("cuda", conv_inputs(4, 64, 100, 3, torch.float32, True, bias=True))
    expected = mvscan.depthwise_conv1d(x, w, b, "same", "silu")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        mvscan.depthwise_conv1d(x, w, b, "same", "silu")  # warm-up on the side stream
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = mvscan.depthwise_conv1d(x, w, b, "same", "silu")
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, expected)


# --- emulated CUDA only ------------------------------------------------------------------------

def test_emulated_results_do_not_depend_on_thread_order():
    """See the scan's test of the same name: the dweight tree must not race."""
    emulated = backends.emulation("depthwise_conv1d")
    x, w, b, dout = conv_inputs(2, 6, 3000, 3, torch.float32, True, bias=True, seed=3)
    fn = backends.depthwise_conv1d("emulated-cuda")
    results = []
    try:
        for mode in (0, 1, 2):
            emulated.set_schedule(mode)
            y, grads = conv_run(fn, x, w, b, dout, "same", "silu")
            results.append((y, *grads))
    finally:
        emulated.set_schedule(0)
    for other in results[1:]:
        for g, r in zip(other, results[0]):
            assert torch.equal(g, r)
