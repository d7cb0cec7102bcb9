"""The CUDA selective-scan kernels on a real GPU: against the float64 oracle and the CPU kernel
over the CPU tests' grid, low precision, non-contiguous inputs, determinism, streams and CUDA
graphs, torch.compile, and 64-bit offsets. Skipped without a GPU; on a GPU machine run them all
(scripts/gpu_check.sh). tests/test_selective_scan_cuda_emulated.py runs the same device code on
CPU everywhere."""

from __future__ import annotations

import itertools

import pytest
import torch

import mvscan
import helpers
from helpers import (GRID_L, GRID_N, KINDS, LOW_PRECISION, Case, cotangents, grid_case,
                     make_inputs, rel_err, run_with_grads)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")



def to_cuda(inputs: dict) -> dict:
    return {k: (v.cuda() if v is not None else None) for k, v in inputs.items()}


def to_cpu(result):
    out, last, grads = result
    return out.cpu(), last.cpu(), {k: g.cpu() for k, g in grads.items()}


def run_cuda(inputs, softplus, dout, dlast):
    return to_cpu(run_with_grads(mvscan.selective_scan, to_cuda(inputs), softplus, dout.cuda(),
                                 dlast.cuda()))


def check_against_oracle(case: Case, seed: int = 0):
    helpers.check_against_oracle(case, {"cuda": run_cuda}, seed)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("N", GRID_N)
@pytest.mark.parametrize("L", GRID_L)
def test_grid(L, N, kind, dtype):
    """Against the oracle, and against the CPU kernel on the same inputs."""
    case = grid_case(L, N, kind, dtype)
    check_against_oracle(case)
    inputs = make_inputs(case)
    dout, dlast = cotangents(inputs)
    gpu = run_cuda(inputs, case.softplus, dout, dlast)
    cpu = run_with_grads(mvscan.selective_scan, inputs, case.softplus, dout, dlast)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert rel_err(gpu[0], cpu[0]) <= tol and rel_err(gpu[1], cpu[1]) <= tol
    for k in cpu[2]:
        assert rel_err(gpu[2][k], cpu[2][k]) <= tol, k


@pytest.mark.parametrize("D,z,delta_bias,softplus", list(itertools.product([False, True],
                                                                           repeat=4)))
@pytest.mark.parametrize("B_kind,C_kind", [("constant", "variable"), ("variable", "grouped"),
                                           ("grouped", "constant")])
def test_options(D, z, delta_bias, softplus, B_kind, C_kind):
    check_against_oracle(Case(batch=3, dim=36, L=130, N=5, B_kind=B_kind, C_kind=C_kind, D=D,
                              z=z, delta_bias=delta_bias, softplus=softplus))


@pytest.mark.parametrize("N", [32, 40, 64, 100, 256])
def test_large_dstate(N):
    check_against_oracle(Case(batch=1, dim=9, L=70, N=N, B_kind="variable", C_kind="grouped",
                              C_groups=3), seed=5)


@pytest.mark.parametrize("dtype", [torch.float32], ids=["fp32"])
def test_matches_cpu_kernel(dtype):
    """The same function as the CPU kernel, to float32 rounding, at a MambaVision shape."""
    case = Case(batch=4, dim=160, L=196, N=8, B_kind="variable", C_kind="variable", dtype=dtype)
    inputs = make_inputs(case)
    dout, dlast = cotangents(inputs)
    cpu = run_with_grads(mvscan.selective_scan, inputs, True, dout, dlast)
    gpu = run_cuda(inputs, True, dout, dlast)
    torch.testing.assert_close(gpu[0], cpu[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gpu[1], cpu[1], rtol=1e-4, atol=1e-5)
    for k in cpu[2]:
        torch.testing.assert_close(gpu[2][k], cpu[2][k], rtol=1e-3, atol=1e-4, msg=k)


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=["fp16", "bf16"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("L,N", [(1, 8), (49, 8), (196, 8), (49, 16), (2049, 16)])
def test_low_precision(L, N, kind, dtype):
    helpers.check_low_precision(Case(batch=2, dim=20, L=L, N=N, B_kind=kind, C_kind=kind,
                                     dtype=dtype), {"cuda": run_cuda})


def test_non_contiguous_equals_contiguous():
    """Channels-contiguous u/delta/z and strided B/C give bit-identical results."""
    case = Case(batch=3, dim=40, L=70, N=8, B_kind="grouped", C_kind="variable")
    base = to_cuda(make_inputs(case, seed=3))
    views = dict(base)
    for name in ("u", "delta", "z"):
        views[name] = base[name].transpose(1, 2).contiguous().transpose(1, 2)
    for name in ("B", "C"):
        views[name] = base[name].transpose(-1, -2).contiguous().transpose(-1, -2)
    dout, dlast = (t.cuda() for t in cotangents(base))
    got = run_with_grads(mvscan.selective_scan, views, True, dout, dlast)
    want = run_with_grads(mvscan.selective_scan, base, True, dout, dlast)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    for k in want[2]:
        assert torch.equal(got[2][k], want[2][k]), k


def test_backward_is_deterministic():
    case = Case(batch=8, dim=160, L=196, N=8, B_kind="grouped", C_kind="variable")
    inputs = to_cuda(make_inputs(case))
    dout, dlast = (t.cuda() for t in cotangents(inputs))
    first = run_with_grads(mvscan.selective_scan, inputs, True, dout, dlast)
    for _ in range(3):
        again = run_with_grads(mvscan.selective_scan, inputs, True, dout, dlast)
        for k in first[2]:
            assert torch.equal(again[2][k], first[2][k]), k


def test_runs_on_the_current_stream_and_in_a_cuda_graph():
    case = Case(batch=4, dim=64, L=100, N=8)
    inputs = to_cuda(make_inputs(case))
    expected = mvscan.selective_scan(**inputs, delta_softplus=True)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        on_side = mvscan.selective_scan(**inputs, delta_softplus=True)
    torch.cuda.current_stream().wait_stream(stream)
    torch.testing.assert_close(on_side, expected, rtol=0, atol=0)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = mvscan.selective_scan(**inputs, delta_softplus=True)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(captured, expected, rtol=0, atol=0)


def test_compile_reduce_overhead_fwd_bwd():
    """torch.compile(mode="reduce-overhead") captures forward and backward in CUDA graphs."""
    case = Case(batch=4, dim=32, L=80, N=8)
    inputs = to_cuda(make_inputs(case))
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items() if v is not None}

    def loss(**kw):
        return mvscan.selective_scan(**kw, delta_softplus=True).square().sum()

    eager_grads = torch.autograd.grad(loss(**leaves), list(leaves.values()))
    compiled = torch.compile(loss, mode="reduce-overhead", fullgraph=True)
    for _ in range(3):
        grads = torch.autograd.grad(compiled(**leaves), list(leaves.values()))
    for g, e in zip(grads, eager_grads):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_opcheck():
    case = Case(batch=2, dim=12, L=70, N=4, B_kind="grouped", C_kind="constant")
    inputs = to_cuda(make_inputs(case))
    args = [inputs[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
    for t in args:
        t.requires_grad_(True)
    torch.library.opcheck(torch.ops.mvscan.selective_scan_fwd.default, (*args, True))


def test_empty_batch():
    inputs = to_cuda(make_inputs(Case(batch=0, dim=8, L=10, N=4)))
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items() if v is not None}
    out = mvscan.selective_scan(**leaves, delta_softplus=True)
    assert out.shape == (0, 8, 10)
    out.sum().backward()
    assert torch.all(leaves["A"].grad == 0)


@pytest.mark.slow
def test_offsets_past_2_to_the_31():
    """u, delta, z and out hold more than 2^31 elements; the last rows, whose offsets overflow
    32 bits, must match the CPU kernel run on those rows alone (mamba_ssm issue #884)."""
    batch, dim, L, N = 2, 1024, (1 << 20) + 100, 8  # 2.15e9 elements per sequence tensor
    free, _ = torch.cuda.mem_get_info()
    if free < 50 * 2**30:
        pytest.skip(f"needs about 50 GiB of free GPU memory, {free / 2**30:.0f} GiB free")
    g = torch.Generator(device="cuda").manual_seed(0)
    dt = torch.bfloat16
    u = torch.randn(batch, dim, L, device="cuda", dtype=dt, generator=g)
    delta = (torch.rand(batch, dim, L, device="cuda", generator=g) * 0.1).to(dt)
    z = torch.randn(batch, dim, L, device="cuda", dtype=dt, generator=g)
    A = -torch.rand(dim, N, device="cuda", generator=g) - 0.1
    B = torch.randn(batch, N, L, device="cuda", dtype=dt, generator=g)
    C = torch.randn(batch, N, L, device="cuda", dtype=dt, generator=g)
    D = torch.randn(dim, device="cuda", generator=g)
    assert u.numel() > 2**31
    out, states = torch.ops.mvscan.selective_scan_fwd(u, delta, A, B, C, D, z, None, False)
    rows = slice(dim - 2, dim)
    cpu_out, cpu_states = torch.ops.mvscan.selective_scan_fwd(
        u[1:, rows].cpu(), delta[1:, rows].cpu(), A[rows].cpu(), B[1:].cpu(), C[1:].cpu(),
        D[rows].cpu(), z[1:, rows].cpu(), None, False)
    torch.testing.assert_close(out[1:, rows].cpu(), cpu_out, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(states[1:, rows].cpu(), cpu_states, rtol=1e-3, atol=1e-3)
    dout = torch.randn_like(out)
    grads = torch.ops.mvscan.selective_scan_bwd(dout, None, u, delta, A, B, C, D, z, None,
                                                states, False)
    cpu_grads = torch.ops.mvscan.selective_scan_bwd(
        dout[1:, rows].cpu(), None, u[1:, rows].cpu(), delta[1:, rows].cpu(), A[rows].cpu(),
        B[1:].cpu(), C[1:].cpu(), D[rows].cpu(), z[1:, rows].cpu(), None, cpu_states, False)
    for i, name in ((0, "du"), (1, "ddelta"), (6, "dz")):
        torch.testing.assert_close(grads[i][1:, rows].cpu(), cpu_grads[i], rtol=2e-2, atol=2e-2,
                                   msg=name)
