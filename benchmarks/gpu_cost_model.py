"""Predicted GPU cost of the CUDA kernels, from counts taken without a GPU.

    python benchmarks/gpu_cost_model.py [--device h100|h200] [--json FILE] [--quick] [--measure]

For MambaVision-T stage 3 (128 x 160 x 196, N 8) and stage 4 (128 x 320 x 49), bf16, in
MambaVision's layout and the contiguous one, and a Mamba LM row (8 x 1536 x 2048, N 16, with z),
each kernel of the scan (forward, backward) and the depthwise conv + SiLU (forward; backward: dx
and dweight) runs through the CUDA emulation built with access counters
(tests/cuda_emulation/access_counter.h) on a sample of its blocks, and the counts are scaled to
the whole grid (every block of these kernels does the same work up to edge effects; blocks that
share data, e.g. B/C groups or conv halos, make the DRAM estimate an overestimate).

The model (simple, stated, and uncalibrated until a GPU run says otherwise):
  floor     = bytes the op must move (its inputs and outputs, each once) / HBM bandwidth
  dram      = distinct 32-byte sectors the kernel touches / (0.9 x HBM bandwidth)
  lsu       = (global sectors / 4 + shared wavefronts) / (SMs x clock): L1 moves 4 sectors or
              one shared wavefront per clock and SM
  issue     = warp instructions / (SMs x clock x 4 schedulers x 0.7): warp instructions are the
              counted memory, shuffle and barrier instructions times the ratio of all
              instructions to those in the kernel's SASS loops (benchmarks/sass_stats.py; left
              out where the extension was built without CUDA)
  latency   = waves x global-load phases per warp x 0.6 us: a phase is a barrier interval in
              which the warp loads from global memory and waits for it
  predicted = the largest of dram, lsu, issue, latency; the limiter is which one.
Efficiencies: global load/store = ideal sectors (distinct bytes / 32) / sectors touched, over
all requests; smem_conflict_ways = wavefronts / ideal wavefronts (1 = conflict-free).
These are predictions, not measurements: benchmarks/results/ holds what GPUs measured. On a
machine with a GPU, --measure also times each op (torch.ops.mvscan.*, the same inputs and layout,
20 calls back to back per timed run, median of 10) and prints it beside the sum of its kernels'
predictions: scripts/gpu_check.sh does, to calibrate the model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The checkout's package (an in-place build), tests/emulation.py and benchmarks/sass_stats.py.
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "benchmarks")]
from emulation import build_emulation  # noqa: E402
import sass_stats  # noqa: E402
import mvscan  # noqa: E402,F401  (registers torch.ops.mvscan for --measure)
from mvscan.timing import median_seconds  # noqa: E402


@dataclass(frozen=True)
class Device:
    name: str
    sms: int
    clock_ghz: float  # sustained under load
    hbm_gb_s: float
    smem_per_sm: int = 228 * 1024
    max_blocks_per_sm: int = 32
    max_warps_per_sm: int = 64


DEVICES = {
    "h100": Device("NVIDIA H100 SXM (132 SMs, 3.35 TB/s)", 132, 1.755, 3350.0),
    "h200": Device("NVIDIA H200 (132 SMs, 4.8 TB/s)", 132, 1.755, 4800.0),
}
DRAM_EFFICIENCY = 0.9
ISSUE_EFFICIENCY = 0.7
LOAD_LATENCY_US = 0.6


@dataclass
class KernelCost:
    op: str
    kernel: str
    shape: str
    layout: str
    bytes: int
    floor_us: float
    predicted_us: float
    limiter: str
    global_load_efficiency: float
    global_store_efficiency: float
    smem_conflict_ways: float
    components_us: dict[str, float] = field(default_factory=dict)
    blocks: int = 0
    blocks_sampled: int = 0
    warps_per_sm: int = 0
    shuffles_per_warp_step: float = 0.0
    barriers_per_block_step: float = 0.0
    unzipped_requests: int = 0
    measured_op_us: float | None = None  # --measure: the whole op (every kernel of it), on a GPU


def ratio(num: float, den: float) -> float:
    return num / den if den else 1.0


def alu_ratio(sass: dict[str, object] | None, kernel: str) -> float | None:
    """All instructions per memory/shuffle/barrier instruction over the kernel's innermost loops
    (None without SASS)."""
    stats = sass.get(kernel) if sass else None
    if stats is None:
        return None
    counted = ("global_load", "global_store", "shared_load", "shared_store", "shuffle", "barrier")
    total = sum(loop.instructions for loop in stats.innermost_loops)
    memory = sum(loop.by_class.get(k, 0) for loop in stats.innermost_loops for k in counted)
    return total / memory if memory else None


def load_sass() -> dict[str, object] | None:
    """Kernel name (as short_name gives it) -> KernelStats, or None if there is no CUDA build."""
    try:
        stats = sass_stats.kernel_stats(sass_stats.find_extension())
    except Exception:  # no cuobjdump, a CPU-only build, no sm_90 code: predict without SASS
        return None
    return {sass_stats.short_name(s.name): s for s in stats} or None


def warps_per_sm(dev: Device, threads: int, smem_bytes: int, sass: dict | None,
                 kernel: str) -> int:
    warps = threads // 32
    blocks = dev.max_blocks_per_sm
    blocks = min(blocks, dev.max_warps_per_sm // warps)
    if smem_bytes:
        blocks = min(blocks, dev.smem_per_sm // (smem_bytes + 1024))
    stats = sass.get(kernel) if sass else None
    if stats is not None:
        blocks = min(blocks, stats.max_warps_by_registers // warps)
    return max(blocks, 1) * warps


def cost(dev: Device, sass: dict | None, op: str, kernel: str, shape: str, layout: str,
         op_bytes: int, steps: int, counts: dict, smem_bytes: int) -> KernelCost:
    """The model of the module docstring, for one launch's counts."""
    c = counts
    scale = c["blocks_in_grid"] / c["blocks_run"]
    threads = c["threads_per_block"]
    warps_run = c["blocks_run"] * threads // 32
    sectors = c["global_load_sectors"] + c["global_store_sectors"]
    wavefronts = c["shared_load_wavefronts"] + c["shared_store_wavefronts"]
    cycles_per_us = dev.clock_ghz * 1e3
    dram = ((c["distinct_load_sectors"] + c["distinct_store_sectors"]) * 32 * scale
            / (DRAM_EFFICIENCY * dev.hbm_gb_s * 1e3))
    lsu = (sectors / 4 + wavefronts) * scale / (dev.sms * cycles_per_us)
    wps = warps_per_sm(dev, threads, smem_bytes, sass, kernel)
    waves = math.ceil(c["blocks_in_grid"] / (dev.sms * (wps // (threads // 32))))
    latency = waves * (c["global_load_phases"] / warps_run) * LOAD_LATENCY_US
    components = {"dram": dram, "lsu": lsu, "latency": latency}
    r = alu_ratio(sass, kernel)
    if r is not None:
        memory_instructions = (c["global_load_requests"] + c["global_store_requests"]
                               + c["shared_load_requests"] + c["shared_store_requests"]
                               + c["warp_shuffles"] + c["block_barriers"] * threads // 32)
        components["issue"] = (memory_instructions * r * scale
                               / (dev.sms * cycles_per_us * 4 * ISSUE_EFFICIENCY))
    limiter = max(components, key=components.get)
    return KernelCost(
        op=op, kernel=kernel, shape=shape, layout=layout, bytes=op_bytes,
        floor_us=op_bytes / (dev.hbm_gb_s * 1e3), predicted_us=components[limiter],
        limiter=limiter,
        global_load_efficiency=ratio(c["global_load_ideal"], c["global_load_sectors"]),
        global_store_efficiency=ratio(c["global_store_ideal"], c["global_store_sectors"]),
        smem_conflict_ways=ratio(wavefronts, c["shared_load_ideal"] + c["shared_store_ideal"]),
        components_us={k: round(v, 3) for k, v in components.items()},
        blocks=c["blocks_in_grid"], blocks_sampled=c["blocks_run"], warps_per_sm=wps,
        shuffles_per_warp_step=c["warp_shuffles"] / (warps_run * steps),
        barriers_per_block_step=c["block_barriers"] / (c["blocks_run"] * steps),
        unzipped_requests=c["unzipped_requests"])


def nbytes(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def scan_inputs(batch: int, dim: int, L: int, N: int, layout: str, with_z: bool,
                dtype: torch.dtype, device: str = "cpu") -> dict[str, torch.Tensor | None]:
    """u, delta, B, C (and z) as MambaVision's mixer passes them (channels-fast views; B/C
    transposed slices of x_proj's output, dt_rank = ceil(2 dim / 16)) or contiguous."""
    g = torch.Generator().manual_seed(0)

    def randn(*shape, dt=dtype, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dtype=dt, device=device)

    if layout == "mambavision":
        rank = math.ceil(2 * dim / 16)
        u = randn(batch, L, dim).transpose(1, 2)
        delta = randn(batch, L, dim, scale=0.5).transpose(1, 2)
        x_dbl = randn(batch, L, rank + 2 * N)
        B = x_dbl[..., rank:rank + N].transpose(1, 2)
        C = x_dbl[..., rank + N:].transpose(1, 2)
        z = randn(batch, L, dim).transpose(1, 2) if with_z else None
    else:
        u, delta = randn(batch, dim, L), randn(batch, dim, L, scale=0.5)
        B, C = randn(batch, N, L), randn(batch, N, L)
        z = randn(batch, dim, L) if with_z else None
    A = -torch.arange(1, N + 1, dtype=torch.float32).repeat(dim, 1).to(device)
    return dict(u=u, delta=delta, A=A, B=B, C=C, D=randn(dim, dt=torch.float32), z=z,
                delta_bias=randn(dim, dt=torch.float32, scale=0.5))


def measure_us(run: Callable[[], object], calls: int = 20) -> float:
    """Microseconds of one call of run on the GPU: `calls` calls back to back per timed run (so
    launch latency overlaps the kernels), median of 10 runs."""
    def burst():
        for _ in range(calls):
            run()
    return median_seconds(burst, repeats=10, warmup=2, device="cuda") / calls * 1e6


def counted(module, sample: int, run: Callable[[], object]) -> tuple[list[dict], object]:
    module.set_block_sample(sample)
    module.counters_reset()
    module.counters_enable(True)
    try:
        result = run()
    finally:
        module.counters_enable(False)
        module.set_block_sample(0)
    return module.counters_read(), result


def scan_costs(dev, sass, module, batch, dim, L, N, layout, with_z, sample,
               measure) -> list[KernelCost]:
    dt = torch.bfloat16
    x = scan_inputs(batch, dim, L, N, layout, with_z, dt)
    shape = f"{batch}x{dim}x{L} N{N} bf16"
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"])
    (fwd_counts,), (out, states) = counted(
        module, sample, lambda: module.selective_scan_fwd(*args, True, None))
    geo_f = module.geometry(x["u"], x["delta"], x["A"], x["B"], x["C"], False)
    geo_b = module.geometry(x["u"], x["delta"], x["A"], x["B"], x["C"], True)
    inputs = nbytes(*args)
    fwd = cost(dev, sass, "selective_scan_fwd", "selective_scan_fwd_kernel<BFloat16>", shape,
               layout, inputs + nbytes(out), L, fwd_counts, geo_f["smem_bytes"])
    dout = torch.randn_like(out)  # out's layout, as autograd hands it back in MambaVision
    (bwd_counts, *_), grads = counted(
        module, sample,
        lambda: module.selective_scan_bwd(dout, None, *args, states, True, None))
    bwd = cost(dev, sass, "selective_scan_bwd", "selective_scan_bwd_kernel<BFloat16>", shape,
               layout, inputs + nbytes(dout) + nbytes(*[g for g in grads if g is not None]), L,
               bwd_counts, geo_b["smem_bytes"])
    if measure:
        xc = scan_inputs(batch, dim, L, N, layout, with_z, dt, "cuda")
        a = (xc["u"], xc["delta"], xc["A"], xc["B"], xc["C"], xc["D"], xc["z"], xc["delta_bias"])
        ops = torch.ops.mvscan
        fwd.measured_op_us = measure_us(lambda: ops.selective_scan_fwd(*a, True, None))
        out_c, states_c = ops.selective_scan_fwd(*a, True, None)
        dout_c = torch.randn_like(out_c)
        bwd.measured_op_us = measure_us(
            lambda: ops.selective_scan_bwd(dout_c, None, *a, states_c, True, None))
    return [fwd, bwd]


def conv_inputs(batch: int, channels: int, L: int, K: int, layout: str,
                device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """x (bf16, MambaVision's layout: one half of in_proj's output, transposed; or contiguous)
    and the (channels, K) weight."""
    dt = torch.bfloat16
    g = torch.Generator().manual_seed(0)
    # The view is taken on the device: .to() of a non-dense view would copy it contiguous.
    if layout == "mambavision":
        base = torch.randn(batch, L, 2 * channels, generator=g).to(dtype=dt, device=device)
        x = base.transpose(1, 2)[:, :channels]
    else:
        x = torch.randn(batch, channels, L, generator=g).to(dtype=dt, device=device)
    w = torch.randn(channels, K, generator=g).to(dtype=dt, device=device)
    return x, w


def conv_costs(dev, sass, module, batch, channels, L, K, layout, sample,
               measure) -> list[KernelCost]:
    """Depthwise conv + SiLU, 'same' padding, no bias (MambaVision's conv1d_x / conv1d_z)."""
    x, w = conv_inputs(batch, channels, L, K, layout)
    pad = (K - 1) // 2
    shape = f"{batch}x{channels}x{L} K{K} bf16"
    (fwd_counts,), out = counted(
        module, sample, lambda: module.depthwise_conv1d_fwd(x, w, None, pad, True))
    fwd = cost(dev, sass, "depthwise_conv1d_fwd", "conv_fwd_kernel<BFloat16>", shape, layout,
               nbytes(x, w, out), L, fwd_counts, 0)
    dout = torch.randn_like(out)  # out's layout (channels-contiguous for a channels-fast x)
    launches, (dx, dw, _, _) = counted(
        module, sample, lambda: module.depthwise_conv1d_bwd(dout, x, w, None, pad, True))
    dx_counts, dw_counts = launches[0], launches[1]
    cap = 4 if K <= 4 else 32
    dx_cost = cost(dev, sass, "depthwise_conv1d_bwd", "conv_bwd_dx_kernel<BFloat16>", shape,
                   layout, nbytes(dout, x, w, dx), L, dx_counts, 0)
    dw_cost = cost(dev, sass, "depthwise_conv1d_bwd", f"conv_bwd_dweight_kernel<BFloat16, {cap}>",
                   shape, layout, nbytes(dout, x, dw), L, dw_counts, 256 * 4)
    if measure:
        xc, wc = conv_inputs(batch, channels, L, K, layout, "cuda")
        ops = torch.ops.mvscan
        fwd.measured_op_us = measure_us(
            lambda: ops.depthwise_conv1d_fwd(xc, wc, None, pad, True, None, None))
        dout_c = torch.randn_like(ops.depthwise_conv1d_fwd(xc, wc, None, pad, True, None, None))
        dx_cost.measured_op_us = dw_cost.measured_op_us = measure_us(
            lambda: ops.depthwise_conv1d_bwd(dout_c, xc, wc, None, pad, True, None, None))
    return [fwd, dx_cost, dw_cost]


# (batch, dim, L, N) of the scan; the conv runs on the same (batch, dim, L) with K = 3.
MAMBAVISION_SHAPES = [(128, 160, 196, 8), (128, 320, 49, 8)]
LM_ROW = (8, 1536, 2048, 16)


def predict(device: str = "h100", quick: bool = False, measure: bool = False
            ) -> list[KernelCost]:
    """Every kernel of the cases in the module docstring (quick: stage 4 alone, fewer sampled
    blocks; measure: time each op on the GPU too)."""
    dev = DEVICES[device]
    sass = load_sass()
    scan = build_emulation("mvscan_scan_emulation", "selective_scan_emulated.cpp", counted=True)
    conv = build_emulation("mvscan_conv_emulation", "depthwise_conv1d_emulated.cpp",
                           counted=True)
    sample = 2 if quick else 4
    costs: list[KernelCost] = []
    for batch, dim, L, N in MAMBAVISION_SHAPES[1:] if quick else MAMBAVISION_SHAPES:
        for layout in ("mambavision", "contiguous"):
            costs += scan_costs(dev, sass, scan, batch, dim, L, N, layout, False, sample, measure)
            costs += conv_costs(dev, sass, conv, batch, dim, L, 3, layout, 4 * sample, measure)
    if not quick:
        batch, dim, L, N = LM_ROW
        costs += scan_costs(dev, sass, scan, batch, dim, L, N, "contiguous", True, 2, measure)
        costs += conv_costs(dev, sass, conv, batch, dim, L, 4, "contiguous", 8, measure)
    return costs


def print_table(costs: list[KernelCost], device: str) -> None:
    print(f"PREDICTED (not measured) for {DEVICES[device].name}; model in "
          "benchmarks/gpu_cost_model.py's docstring")
    head = (f"{'kernel':40s} {'shape':22s} {'layout':11s} {'floor us':>9s} {'pred us':>8s} "
            f"{'x floor':>7s} {'limiter':>8s} {'ld eff':>6s} {'st eff':>6s} {'smem ways':>9s}")
    print(head)
    print("-" * len(head))
    for c in costs:
        print(f"{c.kernel:40s} {c.shape:22s} {c.layout:11s} {c.floor_us:9.1f} "
              f"{c.predicted_us:8.1f} {c.predicted_us / c.floor_us:7.1f} {c.limiter:>8s} "
              f"{c.global_load_efficiency:6.2f} {c.global_store_efficiency:6.2f} "
              f"{c.smem_conflict_ways:9.2f}")
    measured = [c for c in costs if c.measured_op_us is not None]
    if measured:
        print(f"\nMEASURED on {torch.cuda.get_device_name()} (whole ops) beside the predictions:")
        print(f"{'op':22s} {'shape':22s} {'layout':11s} {'pred us':>8s} {'meas us':>8s} "
              f"{'meas/pred':>9s}")
        ops: dict[tuple[str, str, str], list[KernelCost]] = {}
        for c in measured:
            ops.setdefault((c.op, c.shape, c.layout), []).append(c)
        for (op, shape, layout), kernels in ops.items():
            pred = sum(k.predicted_us for k in kernels)
            meas = kernels[0].measured_op_us
            print(f"{op:22s} {shape:22s} {layout:11s} {pred:8.1f} {meas:8.1f} "
                  f"{meas / pred:9.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/gpu_cost_model.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=sorted(DEVICES), default="h100")
    parser.add_argument("--json", metavar="FILE", help="write the predictions as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="stage 4 alone, fewer sampled blocks (for tests)")
    parser.add_argument("--measure", action="store_true",
                        help="also time each op on the GPU (needs CUDA)")
    args = parser.parse_args(argv)
    if args.measure and not torch.cuda.is_available():
        parser.error("--measure needs a CUDA GPU")
    start = time.perf_counter()
    costs = predict(args.device, args.quick, args.measure)
    print_table(costs, args.device)
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": DEVICES[args.device].name, "predicted": True,
                       "kernels": [asdict(c) for c in costs]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
