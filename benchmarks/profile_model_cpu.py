"""Where MambaVision's CPU inference time goes, by kind of op, for the mvscan and the
reference-scan paths of the same weights (torch.profiler, self CPU time).

    python benchmarks/profile_model_cpu.py [--model mamba_vision_T] [--batch-size 8] [--iters 3]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

import mambavision

CATEGORIES = [  # (category, substrings of op names), first match wins
    ("selective scan (mvscan)", ["mvscan::selective_scan"]),
    ("depthwise conv1d (mvscan)", ["mvscan::depthwise_conv1d"]),
    ("linear (addmm, mm)", ["addmm", "aten::mm", "aten::linear"]),
    ("conv2d", ["convolution", "conv2d"]),
    ("attention (sdpa)", ["scaled_dot_product", "flash_attention"]),
    ("norms (batch, layer)", ["batch_norm", "layer_norm"]),
    ("layout copies (copy_, cat, clone)", ["copy_", "aten::cat", "clone", "contiguous"]),
    ("elementwise (gelu, add, mul, exp, sum, silu, ...)",
     ["gelu", "aten::add", "aten::mul", "aten::exp", "aten::sum", "silu", "sigmoid", "softplus",
      "clamp", "aten::div", "aten::sub", "relu", "aten::mean", "aten::neg", "aten::pad"]),
]


def shares(model, x, iters):
    with torch.inference_mode():
        for _ in range(2):
            model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(iters):
                model(x)
    totals = defaultdict(float)
    for evt in prof.key_averages():
        name = evt.key
        cat = next((c for c, keys in CATEGORIES if any(k in name for k in keys)), "other")
        totals[cat] += evt.self_cpu_time_total
    whole = sum(totals.values())
    return {k: v / whole for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}, whole / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="mamba_vision_T")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, 224, 224)
    ours = mambavision.create_model(args.model).eval()
    ref = mambavision.create_model(args.model, scan_backend="reference").eval()
    ref.load_state_dict(ours.state_dict())
    for name, model in (("mvscan", ours), ("reference", ref)):
        split, per_iter = shares(model, x, args.iters)
        print(f"== {args.model} {name} path, batch {args.batch_size}, "
              f"{torch.get_num_threads()} threads: "
              f"{per_iter / 1e3:.0f} ms of profiled op time per forward")
        for cat, frac in split.items():
            print(f"  {frac * 100:5.1f}%  {cat}")


if __name__ == "__main__":
    main()
