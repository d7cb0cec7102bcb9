"""The CUDA selective-scan kernels' own device code, run on CPU through a fiber emulation of CUDA
threads (tests/cuda_emulation/), against the CPU kernel.

This runs everywhere, GPU or not: it checks the kernels' indexing, chunking, shared-memory
layout, shuffle reductions, barrier placement (a divergent __syncthreads or shuffle raises) and
math, including the host driver's allocation and final reductions. It cannot see memory races
or anything about real hardware: tests/test_selective_scan_cuda.py does that on a GPU.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulation import build_emulation
from helpers import Case, cotangents, make_inputs, rel_err
from test_properties import cases, relayout

ARG_ORDER = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
GRAD_NAMES = ("du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias")


@pytest.fixture(scope="module")
def emulated():
    """The emulated kernels as an extension, built once per session."""
    return build_emulation("mvscan_scan_emulation", "selective_scan_emulated.cpp")


def op_args(case: Case, seed: int = 0):
    inputs = make_inputs(case, seed)
    return [inputs[k] for k in ARG_ORDER]


def run_ops(fwd, bwd, args, softplus: bool, seed: int = 1):
    """out, states and every gradient of one op implementation, with a cotangent for every
    saved state (so each chunk boundary's gradient path is exercised)."""
    out, states = fwd(*args, softplus)
    dout, _ = cotangents(dict(zip(ARG_ORDER, args)), seed)
    g = torch.Generator().manual_seed(seed + 1)
    dstates = torch.randn(states.shape, generator=g, dtype=torch.float64).to(states.dtype)
    grads = bwd(dout, dstates, *args, states, softplus)
    return out, states, dict(zip(GRAD_NAMES, grads))


def compare(got, ref, tol: float, what: str):
    out, states, grads = got
    r_out, r_states, r_grads = ref
    assert rel_err(out, r_out) <= tol, f"{what}: out"
    assert rel_err(states, r_states) <= tol, f"{what}: states"
    for name, r in r_grads.items():
        assert grads[name].shape == r.shape and grads[name].dtype == r.dtype, f"{what}: {name}"
        if r.numel():
            assert rel_err(grads[name], r) <= tol, f"{what}: {name}"


# Shapes chosen to reach every code path of the kernels; `expect` pins the geometry that makes
# each one worth having.
CASES = [
    (Case(batch=2, dim=20, L=49, N=8), dict(rows_per_block=16, stage_B=1, stage_C=1)),
    (Case(batch=2, dim=20, L=130, N=8, B_kind="grouped", C_kind="grouped", B_groups=2,
          C_groups=4), dict(cell=5, n_blocks=8, B_parts=2, C_parts=1)),
    (Case(batch=1, dim=6, L=200, N=16, B_kind="constant"), dict(rows_per_block=8, stage_B=0)),
    (Case(batch=2, dim=5, L=70, N=1, C_kind="constant"), dict(lanes_per_row=8)),
    (Case(batch=2, dim=33, L=64, N=32, B_kind="constant", C_kind="constant"),
     dict(lanes_per_row=32, rows_per_block=4)),
    (Case(batch=1, dim=3, L=65, N=40, C_kind="grouped", C_groups=3),
     dict(lanes_per_row=64, rows_per_block=2, stage_B=0, direct_bc_grads=0)),
    (Case(batch=1, dim=2, L=66, N=100, B_kind="grouped", B_groups=2),
     dict(lanes_per_row=128, direct_bc_grads=1)),
    (Case(batch=1, dim=2, L=20, N=256), dict(threads=256, rows_per_block=1)),
    (Case(batch=3, dim=4, L=1, N=8), dict(n_blocks=3)),
]


def check_geometry(emulated, case: Case, expect: dict):
    u, delta, A, B, C = op_args(case)[:5]
    geo = emulated.geometry(u, delta, A, B, C, True)
    for key, value in expect.items():
        assert geo[key] == value, f"{key}: {geo[key]} != {value}"


@pytest.mark.parametrize("case,expect", CASES, ids=[f"N{c.N}-L{c.L}-{c.B_kind}-{c.C_kind}"
                                                   for c, _ in CASES])
def test_emulated_matches_cpu_kernel_fp64(emulated, case, expect):
    check_geometry(emulated, case, expect)
    case = Case(**{**case.__dict__, "dtype": torch.float64})
    args = op_args(case)
    got = run_ops(emulated.selective_scan_fwd, emulated.selective_scan_bwd, args, case.softplus)
    ref = run_ops(torch.ops.mvscan.selective_scan_fwd, torch.ops.mvscan.selective_scan_bwd, args,
                  case.softplus)
    compare(got, ref, 1e-12, str(case))


@pytest.mark.parametrize("options", [(False, False, False, False), (True, False, True, False),
                                     (False, True, False, True)])
def test_emulated_options_fp32(emulated, options):
    D, z, delta_bias, softplus = options
    case = Case(batch=2, dim=20, L=100, N=8, D=D, z=z, delta_bias=delta_bias, softplus=softplus)
    args = op_args(case)
    got = run_ops(emulated.selective_scan_fwd, emulated.selective_scan_bwd, args, softplus)
    ref = run_ops(torch.ops.mvscan.selective_scan_fwd, torch.ops.mvscan.selective_scan_bwd, args,
                  softplus)
    compare(got, ref, 1e-5, str(case))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_emulated_low_precision(emulated, dtype):
    """Same inputs in the same dtype as the CPU kernel: both accumulate in float32 and round
    once, so they differ by output rounding only."""
    case = Case(batch=2, dim=20, L=70, N=16, dtype=dtype)
    args = op_args(case)
    got = run_ops(emulated.selective_scan_fwd, emulated.selective_scan_bwd, args, True)
    ref = run_ops(torch.ops.mvscan.selective_scan_fwd, torch.ops.mvscan.selective_scan_bwd, args,
                  True)
    compare(got, ref, 1e-2 if dtype == torch.bfloat16 else 2e-3, str(case))


def test_emulated_non_contiguous_equals_contiguous(emulated):
    """Channels-contiguous u/delta/z (as MambaVision's mixer produces them) and a transposed B
    read through their strides give bit-identical results."""
    case = Case(batch=2, dim=20, L=70, N=8, B_kind="grouped", B_groups=2)
    args = op_args(case)
    strided = list(args)
    for i in (0, 1, 6):  # u, delta, z
        strided[i] = args[i].transpose(1, 2).contiguous().transpose(1, 2)
    strided[3] = args[3].transpose(2, 3).contiguous().transpose(2, 3)
    assert not strided[0].is_contiguous() and not strided[3].is_contiguous()
    got = run_ops(emulated.selective_scan_fwd, emulated.selective_scan_bwd, strided, True)
    ref = run_ops(emulated.selective_scan_fwd, emulated.selective_scan_bwd, args, True)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    for name in GRAD_NAMES:
        assert torch.equal(got[2][name], ref[2][name]), name


def test_emulated_checks_arguments(emulated):
    """The CUDA driver runs the same argument checks as the CPU op."""
    args = op_args(Case())
    with pytest.raises(ValueError, match="delta must have shape"):
        emulated.selective_scan_fwd(args[0], args[1][:, :, :-1], *args[2:], True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("dim,L,N", [(160, 196, 8), (320, 49, 8), (1536, 2048, 16)])
def test_shared_memory_stays_small(emulated, dim, L, N, dtype):
    """At MambaVision's and Mamba-LM's shapes a block needs at most 48 KiB of shared memory
    (no opt-in; four backward blocks fit on an SM): occupancy hinges on it."""
    inputs = make_inputs(Case(batch=1, dim=dim, L=L, N=N, dtype=dtype))
    for backward in (False, True):
        geo = emulated.geometry(inputs["u"], inputs["delta"], inputs["A"], inputs["B"],
                                inputs["C"], backward)
        assert geo["smem_bytes"] <= 48 * 1024, (backward, geo["smem_bytes"])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=cases(), big_N=st.sampled_from([None, 33, 64, 100]),
       layouts=st.lists(st.integers(0, 3), min_size=8, max_size=8), seed=st.integers(0, 2**16))
def test_emulated_random_shapes_and_layouts(emulated, case, big_N, layouts, seed):
    """Random shapes, group counts, options and memory layouts (float64), now and then with
    N > 32 (unstaged B/C, several warps per row, one row per block): the emulated CUDA kernels
    against the CPU kernel, with a cotangent on every saved state."""
    case = Case(**{**case.__dict__, "dtype": torch.float64,
                   "N": big_N if big_N is not None else case.N,
                   "L": min(case.L, 70) if big_N is not None else case.L})
    args = op_args(case, seed)
    views = [relayout(a, how) for a, how in zip(args, layouts)]
    got = run_ops(emulated.selective_scan_fwd, emulated.selective_scan_bwd, views, case.softplus,
                  seed + 1)
    ref = run_ops(torch.ops.mvscan.selective_scan_fwd, torch.ops.mvscan.selective_scan_bwd, args,
                  case.softplus, seed + 1)
    compare(got, ref, 1e-11, str(case))


@pytest.mark.parametrize("case", [Case(batch=2, dim=20, L=100, N=8, B_kind="grouped"),
                                  Case(batch=1, dim=3, L=70, N=40),
                                  Case(batch=1, dim=2, L=40, N=100, z=False)],
                         ids=["N8", "N40", "N100"])
def test_emulated_results_do_not_depend_on_thread_order(emulated, case):
    """Threads run between barriers in index order, reversed, or odd-first: a thread reading
    shared memory another thread writes before the next barrier would change the results."""
    args = op_args(Case(**{**case.__dict__, "dtype": torch.float64}))
    results = []
    try:
        for mode in (0, 1, 2):
            emulated.set_schedule(mode)
            results.append(run_ops(emulated.selective_scan_fwd, emulated.selective_scan_bwd,
                                   args, case.softplus))
    finally:
        emulated.set_schedule(0)
    for other in results[1:]:
        assert torch.equal(other[0], results[0][0]) and torch.equal(other[1], results[0][1])
        for name in GRAD_NAMES:
            assert torch.equal(other[2][name], results[0][2][name]), name


def test_emulated_input_offsets_past_2_to_the_31(emulated):
    """u and z read through a batch stride of 2^31 + 64 elements (a view into a 4.3 GB float16
    buffer of which only the viewed pages are touched): the kernels' index arithmetic must be
    64-bit. Same results as on contiguous copies."""
    case = Case(batch=2, dim=4, L=40, N=8, dtype=torch.float16)
    args = op_args(case)
    stride = 2**31 + 64
    try:
        buf = torch.empty(stride + 2 * 4 * 40, dtype=torch.float16)
    except RuntimeError as exc:  # no room for the address space: nothing to test here
        pytest.skip(f"cannot reserve a 4.3 GB buffer: {exc}")
    far = list(args)
    for i, offset in ((0, 0), (6, 4 * 40)):  # u at the buffer's start, z after it
        view = buf.as_strided((2, 4, 40), (stride, 40, 1), offset)
        view.copy_(args[i])
        far[i] = view
    got = run_ops(emulated.selective_scan_fwd, emulated.selective_scan_bwd, far, case.softplus)
    ref = run_ops(emulated.selective_scan_fwd, emulated.selective_scan_bwd, args, case.softplus)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    for name in GRAD_NAMES:
        assert torch.equal(got[2][name], ref[2][name]), name
