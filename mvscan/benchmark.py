"""``python -m mvscan.benchmark``: selective-scan times of mvscan next to the pure-PyTorch
reference at MambaVision's shapes, on random inputs, with a correctness check; with
``--model mamba``, prefill and decode tokens/s of transformers' MambaForCausalLM through its own
paths and through mvscan (mvscan.lm_benchmark).

Timing: mvscan.timing (warm-up runs, then the median of repeated runs, CUDA synchronised)."""

from __future__ import annotations

import sys
from typing import Callable

import torch

from .cli_args import (DEVICE_CHOICES, DTYPES, OneLineErrorParser, UsageError, positive_int,
                       resolve_device)
from .backend import active_backend
from .ops import selective_scan
from .reference import selective_scan_ref
from .timing import median_seconds

# (name, batch, dim, L, N): the scans of MambaVision-T at 224x224 (stage 3 and stage 4).
MAMBAVISION_T_SHAPES = [("mambavision-T stage 3", 8, 160, 196, 8),
                        ("mambavision-T stage 4", 8, 320, 49, 8)]


def make_scan_inputs(batch: int, dim: int, L: int, N: int, dtype: torch.dtype = torch.float32,
                     device: str | torch.device = "cpu", seed: int = 0) -> dict[str, torch.Tensor]:
    """Inputs shaped as MambaVision's mixer passes them: variable B and C (batch, N, L), A from
    A_log = log(1..N), D, delta_bias, softplus on; u, delta, B, C in dtype, the rest float32."""
    g = torch.Generator().manual_seed(seed)
    wt = torch.float64 if dtype == torch.float64 else torch.float32

    def randn(*shape, dt=dtype, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dtype=dt, device=device)

    A = -torch.arange(1, N + 1, dtype=wt).repeat(dim, 1).to(device)
    return dict(u=randn(batch, dim, L), delta=randn(batch, dim, L, scale=0.5), A=A,
                B=randn(batch, N, L), C=randn(batch, N, L), D=randn(dim, dt=wt),
                delta_bias=randn(dim, dt=wt, scale=0.5))


def forward_fn(scan: Callable, inputs: dict[str, torch.Tensor]) -> Callable[[], object]:
    """The scan's forward on inputs (from make_scan_inputs), without autograd, as a no-argument
    callable for the timers."""
    def run():
        with torch.no_grad():
            return scan(**inputs, delta_softplus=True)
    return run


def forward_backward_fn(scan: Callable, inputs: dict[str, torch.Tensor]) -> Callable[[], object]:
    """The scan's forward and the gradients of every input (for a fixed random dout of u's shape
    and dtype), as a no-argument callable for the timers."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
    dout = torch.randn_like(leaves["u"])

    def run():
        out = scan(**leaves, delta_softplus=True)
        return torch.autograd.grad(out, list(leaves.values()), dout)
    return run


def build_parser() -> OneLineErrorParser:
    """The command's arguments; --batch-size, --device and --dtype as in `python -m mambavision
    benchmark`."""
    parser = OneLineErrorParser(prog="python -m mvscan.benchmark", description=__doc__)
    parser.add_argument("--model", choices=("scan", "mamba"), default="scan",
                        help="scan: the selective scan at MambaVision's shapes (default); mamba: "
                             "MambaForCausalLM prefill and decode (needs transformers)")
    parser.add_argument("--layers", type=positive_int, default=4,
                        help="--model mamba: layers of the 130m shape (default 4)")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="timed runs per row (median; default 20, or 3 with --model mamba)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="cpu",
                        help="cpu (default), cuda, or auto (cuda when a GPU is visible)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32",
                        help="u, delta, B and C dtype (A, D, delta_bias stay float32)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="rows of images x windows (default 8; the GPU targets use 128)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except UsageError as exc:
        parser.error(str(exc))
    dtype = DTYPES[args.dtype]
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.model == "mamba":
        if args.batch_size is not None or args.dtype != "fp32":
            parser.error("--batch-size and --dtype apply to --model scan; --model mamba runs its "
                         "fixed rows in fp32")
        from .lm_benchmark import run_mamba_benchmark
        return run_mamba_benchmark(args.layers, args.repeats or 3, torch.device(device))
    args.repeats = args.repeats or 20

    where = (torch.cuda.get_device_name() if device == "cuda"
             else f"cpu, {torch.get_num_threads()} threads")
    print(f"mvscan selective scan ({active_backend(device)} kernels; MVSCAN_BACKEND chooses) vs "
          f"the pure-PyTorch reference: {where}, {args.dtype}, median of {args.repeats} runs")
    header = f"{'shape (batch x dim x L, N)':34} {'pass':8} {'mvscan ms':>10} {'ref ms':>9} " \
             f"{'speedup':>8} {'max rel diff':>13}"
    print(header)
    print("-" * len(header))
    for name, batch, dim, L, N in MAMBAVISION_T_SHAPES:
        batch = args.batch_size or batch
        inputs = make_scan_inputs(batch, dim, L, N, dtype=dtype, device=device)
        with torch.no_grad():
            ours = selective_scan(**inputs, delta_softplus=True)
            ref = selective_scan_ref(**inputs, delta_softplus=True)
        diff = ((ours.float() - ref.float()).abs().max() / ref.float().abs().max()).item()
        label = f"{name} ({batch}x{dim}x{L}, {N})"
        for pass_name, make in (("fwd", forward_fn), ("fwd+bwd", forward_backward_fn)):
            t_ours = median_seconds(make(selective_scan, inputs), args.repeats, device=device)
            t_ref = median_seconds(make(selective_scan_ref, inputs), max(3, args.repeats // 4),
                                   device=device)
            print(f"{label:34} {pass_name:8} {t_ours * 1e3:10.3f} {t_ref * 1e3:9.2f} "
                  f"{t_ref / t_ours:7.1f}x {diff:13.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
