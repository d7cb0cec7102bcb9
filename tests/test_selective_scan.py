"""mvscan.selective_scan on every backend (tests/backends.py: "cpu", "cuda", "emulated-cuda"):
against the float64 oracle (outputs, the last state and every gradient), and, for the CUDA
kernels, against the CPU kernel with a cotangent on every saved state (the slow emulation:
against the CPU kernel only, see check_backend); layouts, determinism,
empty batches and 64-bit offsets. The CPU runs the whole grid under every
instruction-set build this CPU can run; the emulated CUDA kernels run shapes chosen to reach
each of their code paths. Tests that only make sense on one backend (instruction sets, streams
and CUDA graphs, the emulator's geometry and thread schedules) come last."""

from __future__ import annotations

import itertools

import pytest
import torch

import backends
import helpers
import mvscan
from backends import DEVICE_BACKENDS, run_scan_ops, scan_runs, to_backend, to_cpu
from helpers import (ARGS, FULL_PRECISION, GRAD_NAMES, GRID_L, GRID_N, KINDS, LOW_PRECISION,
                     Case, compare_ops, cotangents, cpu_isa, dtype_id, grid_case, make_inputs,
                     run_with_grads)

# Relative error allowed between a CUDA backend and the CPU kernel on the same inputs (out, every
# saved state, every gradient); pairs left out are compared with the oracle only.
CPU_KERNEL_TOL = {
    ("cuda", torch.float64): 1e-10, ("cuda", torch.float32): 1e-4,
    # The emulation runs the device code on this CPU: float32 accumulation like the CPU kernel,
    # so low precision differs by output rounding only.
    ("emulated-cuda", torch.float64): 1e-12, ("emulated-cuda", torch.float32): 1e-5,
    ("emulated-cuda", torch.float16): 2e-3, ("emulated-cuda", torch.bfloat16): 1e-2,
    # Triton: in its interpreter (numpy) as exact as the emulation; on a GPU its exp and log are
    # the fast approximate ones.
    ("triton", torch.float64): 1e-10, ("triton", torch.float32): 1e-4,
    ("triton", torch.float16): 2e-3, ("triton", torch.bfloat16): 1e-2,
}


def case_id(c: Case) -> str:
    kinds = c.B_kind if c.B_kind == c.C_kind else f"{c.B_kind}-{c.C_kind}"
    return f"{c.batch}x{c.dim}x{c.L}-N{c.N}-{kinds}-{dtype_id(c.dtype)}"


def options_id(c: Case) -> str:
    on = [name for name, flag in (("D", c.D), ("z", c.z), ("bias", c.delta_bias),
                                  ("softplus", c.softplus)) if flag]
    return f"{c.B_kind}-{c.C_kind}-{'+'.join(on) or 'plain'}"


def op_args(case: Case, seed: int = 0) -> list:
    inputs = make_inputs(case, seed)
    return [inputs[k] for k in ARGS]


def check_matches_cpu_kernel(backend: str, case: Case, seed: int = 0):
    """A CUDA backend's fwd and bwd operators against the CPU kernel's on the same inputs, within
    CPU_KERNEL_TOL (nothing to do for a pair it leaves out)."""
    tol = CPU_KERNEL_TOL.get((backend, case.dtype))
    if tol is None:
        return
    args = op_args(case, seed)
    got = run_scan_ops(backend, args, case.softplus)
    ref = run_scan_ops("cpu", args, case.softplus)
    compare_ops(got, ref, tol, f"{backend} {case}")


def check_backend(backend: str, case: Case, seed: int = 0):
    """The CPU (under every instruction-set build) and a GPU against the oracle; the CUDA kernels
    (real or emulated) against the CPU kernel, with a cotangent on every saved state. The
    emulation, slow, is compared with the CPU kernel only (to 1e-12 in float64): the oracle
    check of the same device code is the "cuda" case's."""
    if backend != "emulated-cuda":
        helpers.check_against_oracle(case, scan_runs(backend), seed)
    if backend in DEVICE_BACKENDS or backend == "triton":
        check_matches_cpu_kernel(backend, case, seed)


# Shapes that reach every code path of the CUDA kernels: the emulated kernels' grid. `expect`
# pins the geometry that makes each one worth having (test_emulated_geometry).
CODE_PATH_CASES = [
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
CODE_PATHS = [Case(**{**c.__dict__, "dtype": torch.float64}) for c, _ in CODE_PATH_CASES]
GRID = [grid_case(L, N, kind, dtype) for L in GRID_L for N in GRID_N for kind in KINDS
        for dtype in FULL_PRECISION]


@backends.parametrize("case", {"cpu": GRID, "cuda": GRID + [c for c in CODE_PATHS
                                                             if c not in GRID],
                               "emulated-cuda": CODE_PATHS,
                               "triton": CODE_PATHS}, id=case_id)
def test_grid(backend, case):
    check_backend(backend, case)


OPTIONS = list(itertools.product([False, True], repeat=4))  # D, z, delta_bias, softplus
OPTION_CASES = [Case(batch=3, dim=36, L=130, N=5, B_kind=B_kind, C_kind=C_kind, D=D, z=z,
                     delta_bias=delta_bias, softplus=softplus)
                for B_kind, C_kind in [("constant", "variable"), ("variable", "grouped"),
                                       ("grouped", "constant")]
                for D, z, delta_bias, softplus in OPTIONS]
EMULATED_OPTION_CASES = [Case(batch=2, dim=20, L=100, N=8, D=D, z=z, delta_bias=delta_bias,
                              softplus=softplus)
                         for D, z, delta_bias, softplus in [(False, False, False, False),
                                                            (True, False, True, False),
                                                            (False, True, False, True)]]


# Each pair of B/C kinds with every option on, then off, and the emulated cases' mixes, smaller
# (the interpreter runs one program at a time).
TRITON_OPTION_CASES = [Case(**{**c.__dict__, "batch": 2, "dim": 16, "L": 100})
                       for c in OPTION_CASES if c.D == c.z == c.delta_bias == c.softplus]
TRITON_OPTION_CASES += [Case(**{**c.__dict__, "B_kind": "grouped", "B_groups": 4})
                        for c in EMULATED_OPTION_CASES]


@backends.parametrize("case", {"cpu": OPTION_CASES, "cuda": OPTION_CASES,
                               "emulated-cuda": EMULATED_OPTION_CASES,
                               "triton": TRITON_OPTION_CASES}, id=options_id)
def test_options(backend, case):
    check_backend(backend, case)


LARGE_N = [Case(batch=1, dim=9, L=70, N=N, B_kind="variable", C_kind="grouped", C_groups=3)
           for N in (32, 40, 64, 100, 256)]


# The emulated kernels' N > 32 paths: test_grid's CODE_PATHS and the property test.
@backends.parametrize("case", {"cpu": [Case(batch=1, dim=9, L=70, N=256)] + LARGE_N,
                               "cuda": LARGE_N, "triton": LARGE_N}, id=case_id)
def test_large_dstate(backend, case):
    check_backend(backend, case, seed=5)


def low_precision_cases(shapes, kinds=KINDS):
    return [Case(batch=2, dim=20, L=L, N=N, B_kind=kind, C_kind=kind, dtype=dtype)
            for L, N in shapes for kind in kinds for dtype in LOW_PRECISION]


@backends.parametrize("case", {
    "cpu": low_precision_cases([(1, 8), (7, 8), (49, 8), (196, 8), (49, 1), (49, 16),
                                (2049, 8)]),
    "cuda": low_precision_cases([(1, 8), (49, 8), (196, 8), (49, 16), (2049, 16)]),
    "emulated-cuda": low_precision_cases([(70, 16)], kinds=["variable"]),
    "triton": low_precision_cases([(70, 16)], kinds=["variable", "constant"])
    + low_precision_cases([(196, 8)], kinds=["variable"])}, id=case_id)
def test_low_precision(backend, case):
    """fp16/bf16: within twice the error of the pure-PyTorch reference computed in the same
    dtype, both against the oracle; the emulated kernels also match the CPU kernel (same
    float32 accumulation, one rounding)."""
    helpers.check_low_precision(case, scan_runs(backend))
    check_matches_cpu_kernel(backend, case)


@backends.over("cuda")
def test_matches_cpu_kernel_at_mambavision_shape(backend):
    """The same function as the CPU kernel, to float32 rounding, at a MambaVision shape."""
    case = Case(batch=4, dim=160, L=196, N=8, B_kind="variable", C_kind="variable")
    inputs = make_inputs(case)
    dout, dlast = cotangents(inputs)
    cpu = run_with_grads(mvscan.selective_scan, inputs, True, dout, dlast)
    gpu = backends.scan_with_grads(backend)(inputs, True, dout, dlast)
    torch.testing.assert_close(gpu[0], cpu[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gpu[1], cpu[1], rtol=1e-4, atol=1e-5)
    for k in cpu[2]:
        torch.testing.assert_close(gpu[2][k], cpu[2][k], rtol=1e-3, atol=1e-4, msg=k)


def relayout(name: str, t: torch.Tensor | None, layout: str) -> torch.Tensor | None:
    """The same values in another memory layout. "strided": u/delta/z channels-contiguous (a
    (batch, L, dim) storage seen as (batch, dim, L), as in_proj produces it), every other
    argument every other element of a twice-as-long last dimension. "transposed": u/delta/z
    channels-contiguous, B and C with their last two dimensions' storage transposed."""
    if t is None:
        return None
    if name in ("u", "delta", "z"):
        return t.transpose(1, 2).contiguous().transpose(1, 2)
    if layout == "strided":
        wide = torch.stack([t, torch.full_like(t, float("nan"))], dim=-1).flatten(-2)
        return wide[..., ::2]
    if name in ("B", "C"):
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    return t


STRIDED = [(Case(batch=3, dim=20, L=70, N=8, B_kind=k, C_kind=k), "strided") for k in KINDS]
TRANSPOSED = [(Case(batch=3, dim=40, L=70, N=8, B_kind="grouped", C_kind="variable"),
               "transposed")]


@backends.parametrize("case,layout", {
    "cpu": STRIDED + TRANSPOSED, "cuda": STRIDED + TRANSPOSED,
    "emulated-cuda": [(Case(batch=2, dim=20, L=70, N=8, B_kind="grouped", B_groups=2,
                            C_kind="variable"), "transposed"),
                      # both staged from state-stride-1 tiles, N odd (tile stride N)
                      (Case(batch=2, dim=20, L=70, N=5, B_kind="variable", C_kind="variable"),
                       "transposed")]},
    id=lambda c, layout: f"{case_id(c)}-{layout}")
def test_non_contiguous_equals_contiguous(backend, case, layout):
    """Views read through their strides give bit-identical results to contiguous copies."""
    args = op_args(case, seed=3)
    views = [relayout(name, t, layout) for name, t in zip(ARGS, args)]
    for v, t in zip(views, args):
        assert v is None or torch.equal(v, t)
    assert not views[0].is_contiguous() and not views[3].is_contiguous()
    got = run_scan_ops(backend, views, True)
    want = run_scan_ops(backend, args, True)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    for name in GRAD_NAMES:
        assert torch.equal(got[2][name], want[2][name]), name


@backends.parametrize("case", {
    "cpu": [Case(batch=3, dim=40, L=200, N=8, B_kind="grouped", C_kind="variable")],
    "cuda": [Case(batch=8, dim=160, L=196, N=8, B_kind="grouped", C_kind="variable")]},
    id=case_id)
def test_backward_is_deterministic(backend, case):
    inputs = to_backend(backend, make_inputs(case))
    dout, dlast = to_backend(backend, cotangents(inputs))
    scan = backends.selective_scan(backend)
    first = run_with_grads(scan, inputs, True, dout, dlast)
    for _ in range(3):
        again = run_with_grads(scan, inputs, True, dout, dlast)
        for k in first[2]:
            assert torch.equal(again[2][k], first[2][k]), k


@backends.over(*backends.WITH_TRITON)
def test_empty_batch(backend):
    inputs = to_backend(backend, make_inputs(Case(batch=0, dim=8, L=10, N=4)))
    leaves = {k: v.requires_grad_(True) for k, v in inputs.items() if v is not None}
    out, last = backends.selective_scan(backend)(**inputs, delta_softplus=True,
                                                 return_last_state=True)
    assert out.shape == (0, 8, 10) and last.shape == (0, 8, 4)
    (out.sum() + last.sum()).backward()
    for name, t in leaves.items():
        assert t.grad is not None and t.grad.shape == t.shape, name
        assert torch.all(t.grad == 0), name


@backends.over(*backends.WITH_TRITON)
def test_return_last_state_matches_output_and_reference(backend):
    case = Case(batch=2, dim=24, L=100, N=16)
    inputs = make_inputs(case)
    scan = backends.selective_scan(backend)
    on_backend = to_backend(backend, inputs)
    out, last = to_cpu(scan(**on_backend, delta_softplus=True, return_last_state=True))
    out_only = scan(**on_backend, delta_softplus=True).cpu()
    torch.testing.assert_close(out, out_only, rtol=0, atol=0)
    assert last.shape == (2, 24, 16) and last.dtype == torch.float32
    ref_out, ref_last = mvscan.selective_scan_ref(**inputs, delta_softplus=True,
                                                  return_last_state=True)
    torch.testing.assert_close(last, ref_last, rtol=1e-5, atol=1e-5)


# Triton on a GPU only: its interpreter copies a CPU tensor's whole storage back after a launch.
@backends.over(*backends.DEFAULT_BACKENDS, *(["triton"] if backends.HAS_CUDA else []))
def test_batch_stride_past_2_to_the_31(backend):
    """u and z read through a batch stride of 2^31 + 64 elements (a view into a 4.3 GB float16
    buffer of which only the viewed pages are touched): the kernels' index arithmetic must be
    64-bit. Same results as on contiguous copies."""
    case = Case(batch=2, dim=4, L=40, N=8, dtype=torch.float16)
    args = op_args(case)
    stride = 2**31 + 64
    try:
        buf = torch.empty(stride + 2 * 4 * 40, dtype=torch.float16,
                          device=backends.device(backend))
    except RuntimeError as exc:  # no room for the address space: nothing to test here
        pytest.skip(f"cannot reserve a 4.3 GB buffer: {exc}")
    far = to_backend(backend, list(args))
    for i, offset in ((0, 0), (6, 4 * 40)):  # u at the buffer's start, z after it
        view = buf.as_strided((2, 4, 40), (stride, 40, 1), offset)
        view.copy_(args[i])
        far[i] = view
    got = run_scan_ops(backend, far, case.softplus)
    ref = run_scan_ops(backend, args, case.softplus)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    for name in GRAD_NAMES:
        assert torch.equal(got[2][name], ref[2][name]), name


def test_selective_scan_fn_is_the_same_function():
    assert mvscan.selective_scan_fn is mvscan.selective_scan


def test_run_with_grads_helper_uses_kernel():
    """Guards the helpers: the op path, not the reference fallback, is what the tests exercise."""
    assert "cpu" in mvscan.KERNEL_DEVICES
    case = Case(batch=1, dim=8, L=10, N=4)
    inputs = make_inputs(case)
    dout, dlast = cotangents(inputs)
    out, _, _ = run_with_grads(mvscan.selective_scan, inputs, True, dout, dlast)
    assert out.shape == (1, 8, 10)


# --- CPU only ----------------------------------------------------------------------------------

def test_cpu_isas_agree_closely():
    """Every instruction-set build computes the same function (to float32 rounding)."""
    inputs = make_inputs(Case(batch=2, dim=40, L=150, N=16, B_kind="grouped"))
    dout, dlast = cotangents(inputs)
    results = {}
    for isa in backends.ISAS:
        with cpu_isa(isa):
            results[isa] = run_with_grads(mvscan.selective_scan, inputs, True, dout, dlast)
    first = results[backends.ISAS[0]]
    for isa in backends.ISAS[1:]:
        torch.testing.assert_close(results[isa][0], first[0], rtol=1e-5, atol=1e-5)
        for k in first[2]:
            torch.testing.assert_close(results[isa][2][k], first[2][k], rtol=1e-4, atol=1e-4)


def test_cpu_thread_count_changes_only_rounding():
    """The backward's work split follows the thread count; results agree to float rounding."""
    inputs = make_inputs(Case(batch=2, dim=64, L=150, N=8, B_kind="variable", C_kind="grouped"))
    dout, dlast = cotangents(inputs)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 3):
            torch.set_num_threads(n)
            results.append(run_with_grads(mvscan.selective_scan, inputs, True, dout, dlast))
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    for k in results[0][2]:
        torch.testing.assert_close(results[0][2][k], results[1][2][k], rtol=1e-5, atol=1e-6)


# --- CUDA only ---------------------------------------------------------------------------------

@backends.needs_gpu
def test_cuda_runs_on_the_current_stream_and_in_a_cuda_graph():
    case = Case(batch=4, dim=64, L=100, N=8)
    inputs = to_backend("cuda", make_inputs(case))
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


@backends.needs_gpu
def test_cuda_compile_reduce_overhead_fwd_bwd():
    """torch.compile(mode="reduce-overhead") captures forward and backward in CUDA graphs."""
    case = Case(batch=4, dim=32, L=80, N=8)
    inputs = to_backend("cuda", make_inputs(case))
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items() if v is not None}

    def loss(**kw):
        return mvscan.selective_scan(**kw, delta_softplus=True).square().sum()

    eager_grads = torch.autograd.grad(loss(**leaves), list(leaves.values()))
    compiled = torch.compile(loss, mode="reduce-overhead", fullgraph=True)
    for _ in range(3):
        grads = torch.autograd.grad(compiled(**leaves), list(leaves.values()))
    for g, e in zip(grads, eager_grads):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


@backends.needs_gpu
@pytest.mark.slow
def test_cuda_offsets_past_2_to_the_31():
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


# --- emulated CUDA only: the kernels' launch geometry and thread schedules ----------------------

def emulated():
    return backends.emulation("selective_scan")


@pytest.mark.parametrize("case,expect", CODE_PATH_CASES,
                         ids=[case_id(c) for c, _ in CODE_PATH_CASES])
def test_emulated_geometry(case, expect):
    """Each of the emulated grid's shapes reaches the code path it is there for."""
    u, delta, A, B, C = op_args(case)[:5]
    geo = emulated().geometry(u, delta, A, B, C, True)
    for key, value in expect.items():
        assert geo[key] == value, f"{key}: {geo[key]} != {value}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("dim,L,N", [(160, 196, 8), (320, 49, 8), (1536, 2048, 16)])
def test_emulated_shared_memory_stays_small(dim, L, N, dtype):
    """At MambaVision's and Mamba-LM's shapes a block needs at most 48 KiB of shared memory
    (no opt-in; four backward blocks fit on an SM): occupancy hinges on it."""
    inputs = make_inputs(Case(batch=1, dim=dim, L=L, N=N, dtype=dtype))
    for backward in (False, True):
        geo = emulated().geometry(inputs["u"], inputs["delta"], inputs["A"], inputs["B"],
                                  inputs["C"], backward)
        assert geo["smem_bytes"] <= 48 * 1024, (backward, geo["smem_bytes"])


@pytest.mark.parametrize("case", [Case(batch=2, dim=20, L=100, N=8, B_kind="grouped"),
                                  Case(batch=1, dim=3, L=70, N=40),
                                  Case(batch=1, dim=2, L=40, N=100, z=False)],
                         ids=["N8", "N40", "N100"])
def test_emulated_results_do_not_depend_on_thread_order(case):
    """Threads run between barriers in index order, reversed, or odd-first: a thread reading
    shared memory another thread writes before the next barrier would change the results."""
    args = op_args(Case(**{**case.__dict__, "dtype": torch.float64}))
    results = []
    try:
        for mode in (0, 1, 2):
            emulated().set_schedule(mode)
            results.append(run_scan_ops("emulated-cuda", args, case.softplus))
    finally:
        emulated().set_schedule(0)
    for other in results[1:]:
        assert torch.equal(other[0], results[0][0]) and torch.equal(other[1], results[0][1])
        for name in GRAD_NAMES:
            assert torch.equal(other[2][name], results[0][2][name]), name
