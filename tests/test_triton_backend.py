"""The Triton backend's wiring: which backend a call runs (mvscan.active_backend,
MVSCAN_BACKEND, use_backend), the operators' schemas, opcheck and torch.compile, the scan's
multi-tile chunks, and its argument errors. The kernels' numbers are checked against the oracle
in test_selective_scan.py and test_depthwise_conv1d.py ("triton" backend)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import backends
import mvscan
import triton_resources
from backends import needs_triton
from helpers import ARGS, Case, make_inputs
from mvscan import backend as backend_module
from mvscan.backend import active_backend, use_backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = ("selective_scan_fwd", "selective_scan_bwd", "depthwise_conv1d_fwd",
       "depthwise_conv1d_bwd")
DEVICE = backends.device("triton")


@needs_triton
@pytest.mark.parametrize("name", OPS)
def test_schemas_equal_the_compiled_operators(name):
    backend_module.kernel_ops("triton", "selective_scan")  # registers torch.ops.mvscan_triton
    ours = getattr(torch.ops.mvscan_triton, name).default._schema
    compiled = getattr(torch.ops.mvscan, name).default._schema
    assert str(ours).replace("mvscan_triton::", "mvscan::") == str(compiled)
    assert set(getattr(torch.ops.mvscan_triton, name).default.tags) == set(
        getattr(torch.ops.mvscan, name).default.tags)


def test_default_choice_per_device(monkeypatch):
    assert active_backend("cpu") == "cpu"
    assert active_backend("cpu", "depthwise_conv1d") == "cpu"
    # CUDA without compiled CUDA kernels: Triton when it imports, else the reference.
    monkeypatch.setitem(backend_module.COMPILED_DEVICES, "selective_scan",
                        frozenset({"cpu", "meta"}))
    monkeypatch.setattr(backend_module, "triton_importable", lambda: True)
    assert active_backend("cuda") == "triton"
    monkeypatch.setattr(backend_module, "triton_importable", lambda: False)
    assert active_backend("cuda") == "reference"
    assert active_backend("mps") == "reference"


def test_compiled_cuda_kernels_come_first(monkeypatch):
    monkeypatch.setitem(backend_module.COMPILED_DEVICES, "selective_scan",
                        frozenset({"cpu", "meta", "cuda"}))
    assert active_backend(torch.device("cuda", 0)) == "cuda"


def test_forced_backends_and_their_errors(monkeypatch):
    with use_backend("reference"):
        assert active_backend("cpu") == "reference"
    assert active_backend("cpu") == "cpu"  # restored
    with use_backend("cuda"), pytest.raises(ValueError, match="cuda kernels cannot run"):
        active_backend("cpu")
    with use_backend("cpu"), pytest.raises(ValueError, match="cpu kernels cannot run"):
        active_backend("cuda")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(backend_module, "triton_importable", lambda: True)
    with use_backend("triton"), pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        active_backend("cpu")
    monkeypatch.setattr(backend_module, "triton_importable", lambda: False)
    with use_backend("triton"), pytest.raises(ValueError, match="not installed"):
        active_backend("cuda")
    with pytest.raises(ValueError, match="must be one of"):
        with use_backend("tpu"):
            pass
    with pytest.raises(ValueError, match="op must be one of"):
        active_backend("cpu", "selective_state_update")


def test_environment_variable_is_checked(monkeypatch):
    monkeypatch.setenv("MVSCAN_BACKEND", "Triton ")
    assert backend_module._backend_from_env() == "triton"
    monkeypatch.setenv("MVSCAN_BACKEND", "auto")
    assert backend_module._backend_from_env() is None
    monkeypatch.setenv("MVSCAN_BACKEND", "gpu")
    with pytest.raises(ValueError, match="MVSCAN_BACKEND='gpu': expected one of cuda, triton"):
        backend_module._backend_from_env()


def test_forced_reference_runs_the_reference_without_warning(recwarn):
    inputs = make_inputs(Case(batch=1, dim=4, L=9, N=2))
    with use_backend("reference"):
        out = mvscan.selective_scan(**inputs)
    torch.testing.assert_close(out, mvscan.selective_scan_ref(**inputs), rtol=0, atol=0)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


@needs_triton
@pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter runs on a GPU-less machine")
def test_environment_variable_selects_triton_in_a_new_process():
    """The documented way: MVSCAN_BACKEND=triton TRITON_INTERPRET=1 runs the Triton kernels on
    CPU tensors, with the same numbers as the CPU kernels."""
    code = (
        "import torch, mvscan\n"
        "print(mvscan.active_backend('cpu'), mvscan.active_backend('cpu', 'depthwise_conv1d'))\n"
        "g = torch.Generator().manual_seed(0)\n"
        "u, dt = torch.randn(2, 6, 40, generator=g), torch.rand(2, 6, 40, generator=g)\n"
        "A, B, C = -torch.rand(6, 3, generator=g), torch.randn(2, 3, 40, generator=g), "
        "torch.randn(2, 3, 40, generator=g)\n"
        "out = mvscan.selective_scan(u, dt, A, B, C, delta_softplus=True)\n"
        "ref = torch.ops.mvscan.selective_scan_fwd(u, dt, A, B, C, None, None, None, True)[0]\n"
        "print(float((out - ref).abs().max()))\n")
    env = {**os.environ, "MVSCAN_BACKEND": "triton", "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    names, err = result.stdout.split("\n")[:2]
    assert names == "triton triton"
    assert float(err) < 1e-5


def _scan_args(case: Case, seed: int = 0) -> list:
    inputs = make_inputs(case, seed)
    return [inputs[k].to(DEVICE) if inputs[k] is not None else None for k in ARGS]


@needs_triton
def test_scan_opcheck():
    fwd, bwd = backend_module.kernel_ops("triton", "selective_scan")
    case = Case(batch=2, dim=4, L=20, N=3, B_kind="variable", C_kind="constant", z=True,
                delta_bias=True)
    args = _scan_args(case)
    torch.library.opcheck(fwd.default, args + [True, None])
    out, states = fwd(*args, True)
    torch.library.opcheck(bwd.default, [torch.randn_like(out), torch.randn_like(states), *args,
                                        states, True, None])


@needs_triton
@pytest.mark.parametrize("L", [16, 150])
def test_scan_several_tiles_per_chunk(L):
    """BLOCK_T = 16: four tiles in each 64-step state chunk (what N > 128 runs), the backward
    recomputing each tile's start state from the chunk's; L = 150 also ends in a partial tile."""
    from mvscan.triton_backend.selective_scan import selective_scan_bwd, selective_scan_fwd

    case = Case(batch=2, dim=6, L=L, N=4, B_kind="grouped", C_kind="variable", B_groups=2,
                dtype=torch.float64, D=True, z=True, delta_bias=True, softplus=True)
    args = _scan_args(case, seed=2)
    h0 = torch.randn(2, 6, 4, dtype=torch.float64, device=DEVICE)
    out, states = selective_scan_fwd(*args, True, h0, block_t=16)
    ref_out, ref_states = torch.ops.mvscan.selective_scan_fwd(*[a.cpu() if a is not None else None
                                                               for a in args], True, h0.cpu())
    torch.testing.assert_close(out.cpu(), ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(states.cpu(), ref_states, rtol=1e-12, atol=1e-12)
    dout = torch.randn_like(out)
    dstates = torch.randn_like(states)
    grads = selective_scan_bwd(dout, dstates, *args, states, True, h0, block_t=16)
    ref = torch.ops.mvscan.selective_scan_bwd(
        dout.cpu(), dstates.cpu(), *[a.cpu() if a is not None else None for a in args],
        ref_states, True, h0.cpu())
    for name, got, want in zip(("du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias",
                                "dh0"), grads, ref):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-11, atol=1e-11, msg=name)


BAD_SCAN_ARGS = {
    "delta shape": lambda a: {**a, "delta": a["delta"][:, :, :-1]},
    "A dtype": lambda a: {**a, "A": a["A"].double()},
    "N too large": lambda a: {**a, "A": torch.zeros(a["A"].shape[0], 257),
                              "B": torch.zeros(a["A"].shape[0], 257),
                              "C": torch.zeros(a["A"].shape[0], 257)},
    "groups": lambda a: {**a, "B": torch.zeros(2, 3, 4, 20)},
    "B dims": lambda a: {**a, "B": torch.zeros(2, 4)},
    "complex u": lambda a: {**a, "u": a["u"].to(torch.complex64)},
    "int u": lambda a: {**a, "u": a["u"].int()},
    "empty L": lambda a: {**a, "u": a["u"][..., :0], "delta": a["delta"][..., :0],
                          "B": a["B"][..., :0], "C": a["C"][..., :0]},
    "D shape": lambda a: {**a, "D": torch.zeros(3)},
    "z dtype": lambda a: {**a, "z": a["u"].double()},
    "initial_state shape": lambda a: {**a, "initial_state": torch.zeros(2, 8, 5)},
}


@needs_triton
@pytest.mark.parametrize("what", list(BAD_SCAN_ARGS))
def test_scan_argument_errors_match_the_compiled_operator(what):
    """Bad input raises the same exception type, naming the same argument, on both backends."""
    fwd, _ = backend_module.kernel_ops("triton", "selective_scan")
    args = make_inputs(Case(batch=2, dim=8, L=20, N=4, D=True, z=True))
    args["initial_state"] = None
    bad = BAD_SCAN_ARGS[what](args)
    values = [bad[k] for k in ARGS] + [False, bad["initial_state"]]
    with pytest.raises(Exception) as compiled:
        torch.ops.mvscan.selective_scan_fwd(*values)
    with pytest.raises(Exception) as ours:
        fwd(*[v.to(DEVICE) if isinstance(v, torch.Tensor) else v for v in values])
    assert type(ours.value) is type(compiled.value)
    assert str(ours.value).split(" ")[:2] == str(compiled.value).split(" ")[:2], (
        str(ours.value), str(compiled.value))


@needs_triton
def test_scan_backward_argument_errors():
    fwd, bwd = backend_module.kernel_ops("triton", "selective_scan")
    args = _scan_args(Case(batch=2, dim=8, L=70, N=4))
    out, states = fwd(*args, True)
    with pytest.raises(ValueError, match="states must have shape"):
        bwd(out, None, *args, states[:, :, :1], True)
    with pytest.raises(ValueError, match="states must be contiguous"):
        bwd(out, None, *args, states.transpose(0, 1).contiguous().transpose(0, 1), True)
    with pytest.raises(TypeError, match="dout must be"):
        bwd(out.double(), None, *args, states, True)
    with pytest.raises(ValueError, match="dstates must have shape"):
        bwd(out, states[:1], *args, states, True)


@needs_triton
def test_scan_under_torch_compile():
    """torch.compile(fullgraph=True) traces the Triton operators through their fake kernels and
    runs them as they run eagerly, gradients included."""
    case = Case(batch=2, dim=4, L=20, N=3, z=True, delta_bias=True)
    inputs = {k: (v.to(DEVICE).requires_grad_(True) if v is not None else None)
              for k, v in make_inputs(case).items()}

    def loss(u, delta, A, B, C, D, z, delta_bias):
        out, last = mvscan.selective_scan(u, delta, A, B, C, D, z, delta_bias, True, True)
        return out.square().sum() + last.sum()

    with use_backend("triton"):
        eager = loss(**inputs)
        eager_grads = torch.autograd.grad(eager, [inputs["u"], inputs["A"], inputs["B"]])
        torch._dynamo.reset()
        compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")(**inputs)
        compiled_grads = torch.autograd.grad(compiled, [inputs["u"], inputs["A"], inputs["B"]])
    torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=1e-6)
    for g, e in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6)


# (N, dtype, B kind, C kind, layout): the LM row's and MambaVision's shapes of the state, every B/C
# kind, every dtype, and the channels-fast layout mamba_inner_fn hands the scan.
COMPILE_CASES = [
    (16, torch.bfloat16, "variable", "variable", "contiguous"),
    (8, torch.bfloat16, "variable", "variable", "channels_fast"),
    (16, torch.float32, "constant", "grouped", "contiguous"),
    (1, torch.float16, "grouped", "constant", "channels_fast"),
    (256, torch.bfloat16, "variable", "variable", "contiguous"),
    (256, torch.float64, "constant", "variable", "contiguous"),
]


def _channels_fast(t):
    return t.transpose(-1, -2).contiguous().transpose(-1, -2)


@needs_triton
@pytest.mark.skipif(triton_resources.cuobjdump_path() is None, reason="Triton ships no cuobjdump")
@pytest.mark.parametrize("case", COMPILE_CASES, ids=lambda c: f"N{c[0]}-{str(c[1])[6:]}-{c[2]}-"
                         f"{c[3]}-{c[4]}")
def test_scan_kernels_compile_for_sm90_without_spilling(monkeypatch, case):
    """The launches the launchers make (every option on: D, z, delta_bias, softplus, h0,
    dstates), compiled for an H100 here without a GPU: they compile (code the interpreter runs
    may still be rejected by the compiler) and keep every value in registers (no stack)."""
    from mvscan.triton_backend import selective_scan as launchers

    N, dtype, B_kind, C_kind, layout = case
    inputs = make_inputs(Case(batch=2, dim=64, L=130, N=N, B_kind=B_kind, C_kind=C_kind,
                              dtype=dtype, initial_state=True))
    if layout == "channels_fast":
        inputs = {k: (_channels_fast(v) if v is not None and v.dim() >= 3 else v)
                  for k, v in inputs.items()}
    args = [inputs[k] for k in ARGS]

    def run():
        out, states = launchers.selective_scan_fwd(*args, True, inputs["initial_state"])
        launchers.selective_scan_bwd(torch.zeros_like(out), torch.zeros_like(states), *args,
                                     states, True, inputs["initial_state"])

    launches = triton_resources.record_launches(
        monkeypatch, launchers, ("selective_scan_fwd_kernel", "selective_scan_bwd_kernel"), run)
    assert [name for name, _, _ in launches] == ["selective_scan_fwd_kernel",
                                                 "selective_scan_bwd_kernel"]
    results = triton_resources.compile_launches("mvscan.triton_backend.selective_scan_kernels",
                                                launches)
    for (name, _, kwargs), result in zip(launches, results):
        assert result["stack"] == 0, (name, kwargs, result["regs"], result["stack"])


@pytest.mark.parametrize("shape", [(2, 16, 64), (1, 256, 8), (16, 1, 64)])
@needs_triton
def test_reverse_associative_scan(shape):
    """tl.associative_scan(reverse=True) with the kernels' combine, at their tile shapes and
    warps: the backward's reverse scan relies on it calling combine(later, earlier) (a Triton
    issue reports wrong reverse scans on some GPU layouts). On the GPU this checks the compiled
    scan; in the interpreter, the test itself."""
    from mvscan.triton_backend.selective_scan import NUM_WARPS
    from mvscan.triton_backend.selective_scan_kernels import reverse_scan_probe_kernel

    g = torch.Generator().manual_seed(0)
    m = torch.rand(shape, generator=g).to(DEVICE)
    v = torch.randn(shape, generator=g).to(DEVICE)
    out = torch.empty_like(v)
    reverse_scan_probe_kernel[(1,)](m, v, out, *shape, num_warps=NUM_WARPS)
    want = torch.empty_like(v)
    acc = torch.zeros(shape[:2], device=DEVICE)
    for t in reversed(range(shape[2])):
        acc = m[..., t] * acc + v[..., t]
        want[..., t] = acc
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)


def test_deterministic_algorithms_alert():
    """The Triton scan's atomic dB / dC on a GPU: an error under
    torch.use_deterministic_algorithms(True), a warning with warn_only."""
    from mvscan.triton_backend.outputs import alert_not_deterministic

    alert_not_deterministic("x")  # not enabled: nothing
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        torch.use_deterministic_algorithms(True)
        with pytest.raises(RuntimeError, match="x is not deterministic"):
            alert_not_deterministic("x")
        torch.use_deterministic_algorithms(True, warn_only=True)
        with pytest.warns(UserWarning, match="x is not deterministic"):
            alert_not_deterministic("x")
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
