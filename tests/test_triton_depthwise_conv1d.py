"""The Triton kernels of the depthwise conv1d (mvscan/triton_backend/depthwise_conv1d.py) against
the operators' CPU kernels (torch.ops.mvscan.depthwise_conv1d_fwd / _bwd: values, dtypes, shapes
and output layouts) and the float64 references of mvscan.reference (gradients by autograd).

Without a GPU the kernels run in Triton's interpreter on CPU tensors (TRITON_INTERPRET=1, set
before the kernels are imported); the shapes are small and the grid focused, so that the file
stays fast there. With a GPU they run compiled, on CUDA tensors, against the same CPU results."""

from __future__ import annotations

import itertools
import os
import re

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

triton = pytest.importorskip("triton")

import mvscan  # noqa: E402  (loads torch.ops.mvscan)
import triton_resources  # noqa: E402
from helpers import rel_err  # noqa: E402
from mvscan.reference import causal_conv1d_ref, depthwise_conv1d_ref  # noqa: E402
from mvscan.triton_backend import depthwise_conv1d as tconv  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if DEVICE.type == "cpu" and not tconv.kernels_interpreted():
    pytest.skip("the Triton kernels were imported before TRITON_INTERPRET=1 was set, and there "
                "is no GPU to run them compiled", allow_module_level=True)

# Relative (norm) errors allowed, against the CPU kernel and against the float64 reference. The
# 16-bit types are rounded once at the output (and the CPU kernel's fp32 sums differ in order).
TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 1e-2}
LAYOUTS = ("contiguous", "channels_last", "slice")
OUT_NAMES = ("dx", "dweight", "dbias", "dinitial_states")


def make_x(batch, channels, L, dtype, layout, g, device):
    """x (batch, channels, L): contiguous; (batch, L, channels) storage transposed; or the second
    half of the channels of a (batch, L, 2 * channels) tensor, transposed (MambaVision's in_proj
    view: stride 1 along channels, not dense)."""
    if layout == "slice":
        base = torch.randn(batch, L, 2 * channels, generator=g, dtype=torch.float64)
        return base.to(dtype).to(device)[:, :, channels:].transpose(1, 2)
    base = torch.randn(batch, L, channels, generator=g, dtype=torch.float64).to(dtype).to(device)
    x = base.transpose(1, 2)
    return x if layout == "channels_last" else x.contiguous()


def make_seq_idx(batch, L, device):
    """Packed sequences with changes of id and negative (padding) ids, as (batch, L) int32."""
    rows = []
    for b in range(batch):
        ids = torch.arange(L) * 3 // max(L, 1) + b  # three sequences a row
        if b % 2 == 1:
            ids[L // 2: L // 2 + 2] = -1  # padding inside the row
            ids[L - 1:] = -1  # and at its end
        else:
            ids[:1] = -1  # a row starting in padding
        rows.append(ids)
    return torch.stack(rows).to(torch.int32).to(device)


def make_case(batch, channels, L, K, dtype, layout, bias=True, param_dtype=None, seq=False,
              init=False, strided_params=False, seed=0):
    """The op's tensors on DEVICE and the same values, same layout, on the CPU: dict(x, weight,
    bias, seq_idx, initial_states, dout) each. strided_params: weight a (K, channels) tensor
    transposed, bias every other element of a longer one."""
    cases = []
    for device in (DEVICE, torch.device("cpu")):
        g = torch.Generator().manual_seed(seed)
        pdt = param_dtype or dtype

        def rand(*shape, scale=1.0):
            return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(pdt)

        x = make_x(batch, channels, L, dtype, layout, g, device)
        if strided_params:
            weight = rand(K, channels, scale=0.5).to(device).t()
            b = rand(2 * channels).to(device)[::2] if bias else None
        else:
            weight = rand(channels, K, scale=0.5).to(device)
            b = rand(channels).to(device) if bias else None
        h = (torch.randn(batch, channels, K - 1, generator=g, dtype=torch.float64)
             .to(dtype).to(device) if init else None)
        dout = torch.randn(batch, channels, L, generator=g, dtype=torch.float64).to(dtype)
        cases.append(dict(x=x, weight=weight, bias=b,
                          seq_idx=make_seq_idx(batch, L, device) if seq else None,
                          initial_states=h, dout=dout.to(device)))
    return cases


def fwd_args(t, pad_left, silu):
    return (t["x"], t["weight"], t["bias"], pad_left, silu, t["seq_idx"], t["initial_states"])


def run_both(case, pad_left, silu):
    """(out, grads) of the Triton launchers (moved to the CPU) and of the CPU kernel."""
    dev, cpu = case
    out = tconv.depthwise_conv1d_fwd(*fwd_args(dev, pad_left, silu))
    grads = tconv.depthwise_conv1d_bwd(dev["dout"], *fwd_args(dev, pad_left, silu))
    want = torch.ops.mvscan.depthwise_conv1d_fwd(*fwd_args(cpu, pad_left, silu))
    want_grads = torch.ops.mvscan.depthwise_conv1d_bwd(cpu["dout"], *fwd_args(cpu, pad_left, silu))
    assert out.device == DEVICE and all(gr.device == DEVICE for gr in grads)
    return (out.cpu(), [gr.cpu() for gr in grads]), (want, list(want_grads))


def check_against_cpu_kernel(got, want, tol, what=""):
    """Every output: shape, dtype, strides (the output layout rule) and values within tol."""
    (out, grads), (want_out, want_grads) = got, want
    for name, a, b in zip(("out",) + OUT_NAMES, [out] + grads, [want_out] + want_grads):
        assert a.shape == b.shape and a.dtype == b.dtype, f"{what}: {name}"
        assert a.stride() == b.stride(), f"{what}: {name} strides {a.stride()} != {b.stride()}"
        if b.numel():
            err = rel_err(a, b)
            assert err <= tol, f"{what}: {name} {err:.2e}"


def reference_results(cpu, pad_left, silu, causal_ref):
    """The float64 reference's out and gradients (x, weight, bias, initial_states) on the CPU
    inputs: causal_conv1d_ref (pad_left = K - 1, sequence ids, states) or depthwise_conv1d_ref."""
    K = cpu["weight"].shape[1]
    leaves = {n: cpu[n].double().requires_grad_(True)
              for n in ("x", "weight", "bias", "initial_states") if cpu[n] is not None}
    activation = "silu" if silu else None
    if causal_ref:
        assert pad_left == K - 1
        y = causal_conv1d_ref(leaves["x"], leaves["weight"], leaves.get("bias"),
                              seq_idx=cpu["seq_idx"], initial_states=leaves.get("initial_states"),
                              activation=activation)
    else:
        padding = "causal" if pad_left == K - 1 and K > 1 else "same"
        assert pad_left == (K - 1 if padding == "causal" else (K - 1) // 2)
        y = depthwise_conv1d_ref(leaves["x"], leaves["weight"], leaves.get("bias"), padding,
                                 activation)
    grads = torch.autograd.grad(y, list(leaves.values()), cpu["dout"].double())
    return y.detach(), dict(zip(leaves, grads))


def check_against_reference(got, ref, tol, what=""):
    (out, grads), (ref_out, ref_grads) = got, ref
    assert rel_err(out, ref_out) <= tol, f"{what}: out"
    by_name = dict(zip(("x", "weight", "bias", "initial_states"), grads))
    for name, r in ref_grads.items():
        err = rel_err(by_name[name], r)
        assert err <= tol, f"{what}: d{name} {err:.2e}"


# Every dtype and width, both paddings; in each, the three layouts, with silu and bias cycling
# through their four combinations (offset by the width, so that each dtype sees every combination
# in every layout), odd channel counts and lengths, float32 parameters with 16-bit x, and strided
# weight and bias with the sliced x.
GRID = ([(torch.float64, K, p) for K in (1, 2, 3, 4, 7) for p in ("same", "causal")]
        + [(torch.float32, K, p) for K in (1, 3, 4, 7) for p in ("same", "causal")]
        + [(torch.bfloat16, K, p) for K in (2, 3, 4) for p in ("same", "causal")]
        + [(torch.float16, 4, "causal")])
SIZES = [(5, 70), (37, 3), (37, 70), (5, 1)]


@pytest.mark.parametrize("dtype,K,padding", GRID,
                         ids=[f"{str(d)[6:]}-K{K}-{p}" for d, K, p in GRID])
def test_matches_cpu_kernel_and_reference(dtype, K, padding):
    pad_left = K - 1 if padding == "causal" else (K - 1) // 2
    combos = list(itertools.product((False, True), (False, True)))
    for i, layout in enumerate(LAYOUTS):
        silu, bias = combos[(i + K) % 4]
        channels, L = SIZES[(i + K) % len(SIZES)]
        param_dtype = torch.float32 if dtype.itemsize == 2 and i % 2 == 0 else None
        case = make_case(2, channels, L, K, dtype, layout, bias=bias, param_dtype=param_dtype,
                         strided_params=layout == "slice", seed=K * 10 + i)
        got, want = run_both(case, pad_left, silu)
        what = f"{layout} silu={silu} bias={bias} C={channels} L={L} params={param_dtype}"
        check_against_cpu_kernel(got, want, TOL[dtype], what)
        ref = reference_results(case[1], pad_left, silu, causal_ref=False)
        check_against_reference(got, ref, TOL[dtype], what)


SEQ_GRID = [(dt, K, seq, init) for dt in (torch.float64, torch.float32) for K in (2, 4)
            for seq, init in ((True, False), (False, True), (True, True))]


@pytest.mark.parametrize("dtype,K,seq,init", SEQ_GRID,
                         ids=[f"{str(d)[6:]}-K{K}-seq{int(s)}-init{int(i)}"
                              for d, K, s, i in SEQ_GRID])
def test_seq_idx_and_initial_states_causal(dtype, K, seq, init):
    """causal_conv1d_fn's options (causal padding): sequence ids with changes and negative ids,
    initial states, both; against the CPU kernel and causal_conv1d_ref (dinitial_states too)."""
    for i, layout in enumerate(LAYOUTS):
        silu = (i + K) % 2 == 0
        channels, L = ((37, 70), (5, 3), (5, 70))[i]
        case = make_case(2, channels, L, K, dtype, layout, bias=i != 1, seq=seq, init=init,
                         seed=K * 7 + i)
        got, want = run_both(case, K - 1, silu)
        what = f"{layout} silu={silu} C={channels} L={L}"
        check_against_cpu_kernel(got, want, TOL[dtype], what)
        check_against_reference(got, reference_results(case[1], K - 1, silu, causal_ref=True),
                                TOL[dtype], what)
        if init:
            assert got[1][3].abs().sum() > 0, "the states' gradient is all zero"


@pytest.mark.parametrize("K,pad_left", [(3, 1), (5, 2), (5, 0)])
def test_seq_idx_and_initial_states_other_paddings(K, pad_left):
    """The operators define sequence ids and states for any pad_left (taps after the output, and
    states read only by the first pad_left steps): the CPU kernel is the reference there."""
    for i, (layout, seq, init) in enumerate([("contiguous", True, True),
                                            ("channels_last", True, False),
                                            ("slice", False, True)]):
        case = make_case(2, 5, 23, K, torch.float64, layout, seq=seq, init=init, seed=i)
        got, want = run_both(case, pad_left, silu=i != 1)
        check_against_cpu_kernel(got, want, TOL[torch.float64], f"{layout} seq={seq} init={init}")


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_several_tiles_per_program(monkeypatch, layout):
    """Small tiles and few programs: the kernels walk several channel blocks and step tiles, the
    backward's programs several tiles each (the last chunk some past the end), with the states'
    steps in the first tile; the partial sums must still add up to the CPU kernel's gradients."""
    monkeypatch.setattr(tconv, "_TILE_ELEMS", 1024)
    monkeypatch.setattr(tconv, "_TARGET_PROGRAMS", 5)
    for seq, init in ((False, False), (True, True)):
        case = make_case(2, 5, 150, 5, torch.float64, layout, seq=seq, init=init, seed=3)
        got, want = run_both(case, 4, silu=True)
        check_against_cpu_kernel(got, want, TOL[torch.float64], f"seq={seq} init={init}")
        geo = tconv._bwd_geometry(case[0]["x"], 5, seq, init)
        assert geo.tiles_per_prog > 1 and geo.n_t > 1, geo
        if layout == "channels_last" and init:
            assert geo.n_chunks > 1 and geo.n_chunks * geo.tiles_per_prog > geo.n_t, geo


@pytest.mark.parametrize("bias,seq,init", [(False, False, False), (True, True, True)])
def test_empty_length(bias, seq, init):
    """L = 0: empty outputs with the CPU kernel's layouts; weight, bias and state gradients 0."""
    for layout in ("contiguous", "channels_last"):
        case = make_case(2, 5, 0, 4, torch.float32, layout, bias=bias, seq=seq, init=init)
        got, want = run_both(case, 3, silu=True)
        check_against_cpu_kernel(got, want, 0.0, layout)
        out, (dx, dweight, dbias, dinit) = got
        assert out.shape == (2, 5, 0) and dx.shape == (2, 5, 0)
        assert dweight.shape == (5, 4) and not dweight.any()
        assert dbias.shape == ((5,) if bias else (0,)) and not dbias.any()
        assert dinit.shape == ((2, 5, 3) if init else (0,)) and not dinit.any()


@pytest.mark.parametrize("batch,channels,L", [(0, 5, 7), (2, 0, 7), (2, 1, 7)])
def test_degenerate_sizes(batch, channels, L):
    """No batch, no channels, and one channel (stride 1 along channels, yet contiguous outputs:
    the layout rule wants channels > 1), with states: the CPU kernel's outputs and layouts."""
    case = make_case(batch, channels, L, 3, torch.float64, "channels_last", init=True)
    got, want = run_both(case, 2, silu=True)
    check_against_cpu_kernel(got, want, TOL[torch.float64], f"{batch}x{channels}x{L}")
    if channels == 1:
        assert got[0].is_contiguous() and case[0]["x"].stride(1) == 1


def test_gradient_dtypes_of_parameters():
    """dweight and dbias take their parameters' dtypes (float32 beside bfloat16 x); an absent
    bias's gradient is an empty tensor in the accumulation dtype, absent states' one in x's."""
    case = make_case(2, 5, 9, 3, torch.bfloat16, "contiguous", param_dtype=torch.float32)
    dx, dweight, dbias, dinit = tconv.depthwise_conv1d_bwd(case[0]["dout"],
                                                           *fwd_args(case[0], 1, True))
    assert (dx.dtype, dweight.dtype, dbias.dtype) == (torch.bfloat16, torch.float32, torch.float32)
    assert dinit.dtype == torch.bfloat16 and dinit.shape == (0,)
    case = make_case(2, 5, 9, 3, torch.bfloat16, "contiguous", bias=False)
    _, dweight, dbias, _ = tconv.depthwise_conv1d_bwd(case[0]["dout"], *fwd_args(case[0], 1, False))
    assert dweight.dtype == torch.bfloat16
    assert dbias.dtype == torch.float32 and dbias.shape == (0,)


def test_input_dtypes_match_the_extension():
    assert tconv.INPUT_DTYPES == mvscan.INPUT_DTYPES
    assert tconv.MAX_CONV_WIDTH == 32


def _x():
    return torch.randn(2, 4, 10, device=DEVICE)


def _w(K=3, dtype=torch.float32):
    return torch.randn(4, K, device=DEVICE, dtype=dtype)


# (name, forward arguments, exception, message pattern): each also given to the CPU kernel, which
# must raise the same exception type (its messages spell dtypes the C++ way).
BAD = [
    ("x 2-d", lambda: (torch.randn(4, 10, device=DEVICE), _w(), None, 1, False),
     ValueError, r"x must be a 3-d tensor \(batch, channels, L\), got shape \[4, 10\]"),
    ("int x", lambda: (_x().int(), _w(), None, 1, False), TypeError,
     r"x must be torch.float32, torch.float16, torch.bfloat16 or torch.float64, got torch.int32"),
    ("weight shape", lambda: (_x(), torch.randn(5, 3, device=DEVICE), None, 1, False),
     ValueError, r"weight must have shape \(channels, K\) with channels = x.shape\[1\] = 4, got "
     r"\[5, 3\]"),
    ("weight 3-d", lambda: (_x(), torch.randn(4, 1, 3, device=DEVICE), None, 1, False),
     ValueError, r"weight must have shape \(channels, K\)"),
    ("K = 33", lambda: (_x(), _w(33), None, 1, False), ValueError,
     r"kernel width K = 33 \(weight.shape\[-1\]\) is not supported; supported: 1 to 32"),
    ("pad_left = K", lambda: (_x(), _w(3), None, 3, False), ValueError,
     r"pad_left = 3 must be in \[0, K - 1\] = \[0, 2\]"),
    ("pad_left < 0", lambda: (_x(), _w(3), None, -1, False), ValueError,
     r"pad_left = -1 must be in \[0, K - 1\]"),
    ("weight dtype", lambda: (_x(), _w(dtype=torch.float64), None, 1, False), TypeError,
     r"weight must have x's dtype \(torch.float32\) or torch.float32, got torch.float64"),
    ("bias shape", lambda: (_x(), _w(), torch.randn(3, device=DEVICE), 1, False), ValueError,
     r"bias must have shape \(channels,\) = \(4,\), got \[3\]"),
    ("bias dtype", lambda: (_x().half(), _w(dtype=torch.half), torch.randn(4, device=DEVICE)
                            .double(), 1, False), TypeError,
     r"bias must have x's dtype \(torch.float16\) or torch.float32, got torch.float64"),
    ("seq_idx dtype", lambda: (_x(), _w(), None, 2, False,
                               torch.zeros(2, 10, dtype=torch.int64, device=DEVICE)),
     TypeError, r"seq_idx must be int32 \(torch.int32\), got torch.int64"),
    ("seq_idx shape", lambda: (_x(), _w(), None, 2, False,
                               torch.zeros(2, 9, dtype=torch.int32, device=DEVICE)),
     ValueError, r"seq_idx must have shape \(batch, L\) = \(2, 10\), got \[2, 9\]"),
    ("states dtype", lambda: (_x(), _w(), None, 2, False, None,
                              torch.zeros(2, 4, 2, dtype=torch.float64, device=DEVICE)),
     TypeError, r"initial_states must have x's dtype \(torch.float32\), got torch.float64"),
    ("states shape", lambda: (_x(), _w(), None, 2, False, None,
                              torch.zeros(2, 4, 3, device=DEVICE)),
     ValueError, r"initial_states must have shape \(batch, channels, K - 1\) = \(2, 4, 2\), got "
     r"\[2, 4, 3\]"),
]


def _cpu(args):
    return tuple(a.cpu() if isinstance(a, torch.Tensor) else a for a in args)


@pytest.mark.parametrize("make_args,exc,pattern", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_arguments(make_args, exc, pattern):
    """The forward and the backward check like the C++ operators: same exception types, messages
    naming the argument, what was expected and what came."""
    args = make_args()
    dout = torch.zeros(args[0].shape, dtype=args[0].dtype, device=DEVICE)
    pattern = "^mvscan.depthwise_conv1d: " + pattern
    with pytest.raises(exc, match=pattern):
        tconv.depthwise_conv1d_fwd(*args)
    with pytest.raises(exc, match=pattern):
        tconv.depthwise_conv1d_bwd(dout, *args)
    with pytest.raises(exc, match="^mvscan.depthwise_conv1d: "):
        torch.ops.mvscan.depthwise_conv1d_fwd(*_cpu(args))


def test_bad_dout():
    x, w = _x(), _w()
    with pytest.raises(ValueError, match=r"^mvscan.depthwise_conv1d: dout must have x's shape "
                       r"\[2, 4, 10\] and device .*, got \[2, 4, 9\]"):
        tconv.depthwise_conv1d_bwd(torch.randn(2, 4, 9, device=DEVICE), x, w, None, 1, False)
    with pytest.raises(TypeError, match=r"^mvscan.depthwise_conv1d: dout must have x's dtype "
                       r"torch.float32, got torch.float64"):
        tconv.depthwise_conv1d_bwd(x.double(), x, w, None, 1, False)


def test_mismatched_devices():
    """A tensor on another device is refused before any launch ('meta' stands in for a second
    device, which a CPU-only machine lacks)."""
    x = _x()
    with pytest.raises(ValueError, match=r"^mvscan.depthwise_conv1d: weight is on meta but x is "
                       r"on .*; all tensors must be on one device"):
        tconv.depthwise_conv1d_fwd(x, torch.randn(4, 3, device="meta"), None, 1, False)
    with pytest.raises(ValueError, match=r"seq_idx is on meta"):
        tconv.depthwise_conv1d_fwd(x, _w(), None, 2, False,
                                   torch.zeros(2, 10, dtype=torch.int32, device="meta"))
    with pytest.raises(ValueError, match=r"dout must have x's shape \[2, 4, 10\] and device"):
        tconv.depthwise_conv1d_bwd(torch.zeros(2, 4, 10, device="meta"), x, _w(), None, 1, False)


# --------------------------------------------------------------------------------------------
# The GPU path without a GPU: the interpreter runs the kernels as Python, so code that only the
# compiler rejects (or a launch whose arguments do not fit the signature) would pass above. The
# launches the launchers really make are recorded here and compiled for an H100 (sm_90) with
# Triton's bundled ptxas, in a subprocess: a process that imported triton for its interpreter
# cannot compile (triton.language's own jit functions are interpreted there too).

def _recorded_launches(monkeypatch, case, pad_left, silu):
    """Every launch the forward and the backward make on `case` (recorded, not run)."""
    def run():
        tconv.depthwise_conv1d_fwd(*fwd_args(case, pad_left, silu))
        tconv.depthwise_conv1d_bwd(case["dout"], *fwd_args(case, pad_left, silu))
    return triton_resources.record_launches(
        monkeypatch, tconv, ("_conv_pointwise_kernel", "_conv_bwd_kernel"), run)


def _tile_load_orders(ttgir, block_c, block_t, elem):
    """The `order` of the layouts of a kernel's (block_c, block_t) loads of x: its first axis is
    the one a thread's consecutive elements, then a warp's threads, walk."""
    layouts = dict(re.findall(r"^(#blocked\d*) = #ttg.blocked<\{.*order = \[(\d, \d)\]\}>",
                              ttgir, re.M))
    loads = re.findall(rf"tt.load .*tensor<{block_c}x{block_t}x!tt.ptr<{elem}>, (#blocked\d*)>",
                       ttgir)
    assert loads, "no tile load found"
    return {layouts[name] for name in loads}


@pytest.mark.parametrize("layout", ["contiguous", "slice"])
def test_kernels_compile_for_sm90(monkeypatch, layout):
    """Every kernel variant the launchers make here (bfloat16 x with float32 parameters; plain,
    and with SiLU, sequence ids and states) compiles to an sm_90 cubin, and the forward's tile
    loads are laid out along x's unit-stride axis: channels for the channels-fast view
    (MambaVision's in_proj slice), steps for contiguous x."""
    pytest.importorskip("triton.backends.nvidia")
    plain = make_case(2, 48, 64, 4, torch.bfloat16, layout, param_dtype=torch.float32)[0]
    full = make_case(2, 48, 64, 4, torch.bfloat16, layout, param_dtype=torch.float32, seq=True,
                     init=True)[0]
    launches = (_recorded_launches(monkeypatch, plain, 1, False)
                + _recorded_launches(monkeypatch, full, 3, True))
    assert [name for name, _, _ in launches] == [
        "_conv_pointwise_kernel", "_conv_bwd_kernel",  # plain: forward; backward without SiLU
        "_conv_pointwise_kernel", "_conv_pointwise_kernel", "_conv_bwd_kernel"]  # fwd, dpre, bwd
    results = triton_resources.compile_launches("mvscan.triton_backend.depthwise_conv1d", launches)
    assert len(results) == len(launches)
    for (_, _, kwargs), result in zip(launches, results):
        assert result["stack"] == 0, (kwargs, result["regs"], result["stack"])
    for (name, _, kwargs), result in zip(launches, results):
        # (With states the forward also loads them, in their own, step-fast, layout.)
        if name == "_conv_pointwise_kernel" and not kwargs["GRAD"] and not kwargs["HAS_INIT"]:
            orders = _tile_load_orders(result["ttgir"], kwargs["BLOCK_C"], kwargs["BLOCK_T"],
                                       "bf16")
            assert orders == ({"0, 1"} if layout == "slice" else {"1, 0"}), orders
