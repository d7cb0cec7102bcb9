"""``python -m mambavision benchmark``: images/sec of a MambaVision variant on random inputs,
through mvscan's kernels and through the comparison paths (the pure-PyTorch reference scan by
default, timm peers as ``timm:NAME``), on the same weights, with an output-agreement check;
``--optimize`` adds each eager path's optimize_for_inference twin (mvscan's and the peers').

Timing: mvscan.timing (warm-up runs, then each timed run synchronised; the median is kept). The
paths are interleaved: each round times every path once, so a slow spell of a shared host hits
them all alike. A compiled path's first call (which compiles) is timed apart, as compile_s."""

from __future__ import annotations

import dataclasses
import json
import platform
import statistics
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

import mvscan
from mvscan.cli_args import DTYPES
from mvscan.timing import timed_runs

from .factory import create_model
from .inference import InferenceModel, optimize_for_inference

PATHS = {"mvscan": "mvscan", "reference": "reference"}  # path name -> scan_backend
TIMM_PREFIX = "timm:"  # --compare timm:convnext_tiny: a timm model with random weights


def optimized_name(path: str, dtype: str) -> str:
    """The row of path's optimize_for_inference twin in dtype: opt-fp32 for mvscan's,
    convnext_tiny-opt-fp32 for timm:convnext_tiny's."""
    return f"opt-{dtype}" if path == "mvscan" else f"{path[len(TIMM_PREFIX):]}-opt-{dtype}"


@dataclass
class PathResult:
    """One row. max_rel_diff and top1_agree compare the path's outputs with those of diff_vs
    (mvscan's for the reference and mvscan's optimized twins, the eager peer's for a peer's
    twin; None for the baselines); compile_s is the first call's seconds for a compiled path."""
    path: str
    images_per_s: float
    median_ms: float
    times_ms: list[float] = field(default_factory=list)
    diff_vs: str | None = None
    max_rel_diff: float | None = None
    top1_agree: float | None = None
    compile_s: float | None = None


@dataclass
class BenchmarkConfig:
    model: str
    batch_size: int
    device: str
    dtype: str
    channels_last: bool
    compile: bool
    train: bool
    paths: list[str]
    image_size: int
    warmup: int
    repeats: int
    optimize: list[str] = field(default_factory=list)  # dtypes of the optimized twins


def build_models(cfg: BenchmarkConfig, device: torch.device) -> dict[str, torch.nn.Module]:
    """One model per path, the MambaVision ones with the same weights; then, per dtype of
    cfg.optimize, the optimize_for_inference twin of mvscan's model and of each timm peer."""
    torch.manual_seed(0)
    models = {}
    for path in cfg.paths:
        if path.startswith(TIMM_PREFIX):
            import timm

            model = timm.create_model(path[len(TIMM_PREFIX):], pretrained=False)
        else:
            model = create_model(cfg.model, scan_backend=PATHS[path])
            if "mvscan" in models:
                model.load_state_dict(models["mvscan"].state_dict())
        model = model.to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.train(cfg.train)
        models[path] = model
    for path in [p for p in cfg.paths if p == "mvscan" or p.startswith(TIMM_PREFIX)]:
        for dtype in cfg.optimize:
            models[optimized_name(path, dtype)] = optimize_for_inference(
                models[path], dtype=DTYPES[dtype])
    return models


def diff_base(path: str, paths: list[str]) -> str | None:
    """The path whose outputs path's are compared with (see PathResult)."""
    if path == "reference" or path.startswith("opt-"):
        return "mvscan"
    for peer in paths:
        if peer.startswith(TIMM_PREFIX) and path.startswith(peer[len(TIMM_PREFIX):] + "-opt-"):
            return peer
    return None


def make_step(model: torch.nn.Module, cfg: BenchmarkConfig, device: torch.device):
    """The timed unit: inference, or forward + backward + optimizer step with --train."""
    if isinstance(model, InferenceModel):  # compiled, autocast and no_grad already
        return model
    dtype = DTYPES[cfg.dtype]
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    run = torch.compile(model) if cfg.compile else model
    if cfg.train:
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        target = torch.arange(cfg.batch_size, device=device) % 1000

        def train_step(x):
            with autocast:
                loss = F.cross_entropy(run(x), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        return train_step

    def infer(x):
        with torch.inference_mode(), autocast:
            return run(x)

    return infer


def time_paths(steps: dict[str, Callable[[torch.Tensor], object]], x: torch.Tensor,
               cfg: BenchmarkConfig, device: torch.device) -> dict[str, list[float]]:
    """Milliseconds of cfg.repeats timed runs of each step(x), interleaved (round r times every
    path once), after cfg.warmup runs of each."""
    for step in steps.values():  # cfg.warmup calls each (the last one's time is dropped)
        if cfg.warmup:
            timed_runs(lambda: step(x), 1, cfg.warmup - 1, device)
    times: dict[str, list[float]] = {path: [] for path in steps}
    for _ in tqdm(range(cfg.repeats), desc="rounds", unit="round", leave=False):
        for path, step in steps.items():
            times[path] += [t * 1e3 for t in timed_runs(lambda: step(x), 1, 0, device)]
    return times


def rel_diff(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max |out - ref| / max |ref|."""
    return ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def run_benchmark(cfg: BenchmarkConfig, models: dict[str, torch.nn.Module] | None = None) -> dict:
    device = torch.device(cfg.device)
    models = models if models is not None else build_models(cfg, device)
    x = torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size, device=device)
    if cfg.channels_last:
        x = x.to(memory_format=torch.channels_last)
    # Outputs of every path on the same input, before any training step changes the weights;
    # a compiled path's first call, which compiles, is timed here.
    outputs, first_call_s = {}, {}
    for path, model in models.items():
        was_training = model.training
        model.eval()
        step = make_step(model, dataclasses.replace(cfg, train=False), device)
        out = []
        first_call_s[path] = timed_runs(lambda: out.append(step(x)), 1, 0, device)[0]
        outputs[path] = out[0].float()
        model.train(was_training)
    steps = {path: make_step(model, cfg, device) for path, model in models.items()}
    times = time_paths(steps, x, cfg, device)
    results = []
    for path, model in models.items():
        median = statistics.median(times[path])
        base = diff_base(path, list(models))
        diff = agree = None
        if base is not None:
            diff = rel_diff(outputs[path], outputs[base])
            agree = (outputs[path].argmax(-1) == outputs[base].argmax(-1)).float().mean().item()
        compiled = cfg.compile or isinstance(model, InferenceModel) and model.compiled
        results.append(PathResult(path, round(cfg.batch_size / (median / 1e3), 2),
                                  round(median, 3), [round(t, 3) for t in times[path]], base,
                                  diff, agree,
                                  round(first_call_s[path], 2) if compiled else None))
    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else platform.processor() or platform.machine())
    return {"config": asdict(cfg), "device_name": device_name, "torch": torch.__version__,
            "mvscan": mvscan.__version__, "threads": torch.get_num_threads(),
            "results": [asdict(r) for r in results]}


def format_table(report: dict) -> str:
    cfg = report["config"]
    rows = report["results"]
    base = next((r for r in rows if r["path"] == "reference"), rows[0])
    mode = "train" if cfg["train"] else "inference"
    head = (f"{cfg['model']} {mode} on {cfg['device']} ({report['device_name']}, "
            f"{report['threads']} threads), {cfg['dtype']}, batch {cfg['batch_size']}, "
            f"{cfg['image_size']}x{cfg['image_size']}"
            + (", channels_last" if cfg["channels_last"] else "")
            + (", compiled" if cfg["compile"] else "")
            + f"; median of {cfg['repeats']} interleaved runs")
    lines = [head, f"{'path':24} {'img/s':>10} {'ms/batch':>10} {'speedup':>8} {'compile s':>10}"
                   f"  max rel diff (top-1 agree) vs"]
    for r in rows:
        diff = ("-" if r["max_rel_diff"] is None else
                f"{r['max_rel_diff']:.1e} ({r['top1_agree'] * 100:.0f}%) {r['diff_vs']}")
        compile_s = "-" if r["compile_s"] is None else f"{r['compile_s']:.1f}"
        lines.append(f"{r['path']:24} {r['images_per_s']:10.1f} {r['median_ms']:10.2f} "
                     f"{r['images_per_s'] / base['images_per_s']:7.2f}x {compile_s:>10}  {diff}")
    lines.append(f"speedup: vs {base['path']}; compile s: a compiled path's first call, "
                 f"compiling included, kept out of img/s")
    return "\n".join(lines)


def write_json(report: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=2)


def sweep_batch_sizes(cfg: BenchmarkConfig) -> list[int]:
    """The batch sizes a --plot measures: a quarter, half and all of --batch-size."""
    return sorted({max(1, cfg.batch_size // 4), max(1, cfg.batch_size // 2), cfg.batch_size})


def run_sweep(cfg: BenchmarkConfig) -> list[dict]:
    """One report per batch size of sweep_batch_sizes, the models built once."""
    models = build_models(cfg, torch.device(cfg.device))
    reports = []
    for batch in sweep_batch_sizes(cfg):
        reports.append(run_benchmark(BenchmarkConfig(**{**asdict(cfg), "batch_size": batch}),
                                     models))
    return reports


def write_plot(reports: list[dict], path: str) -> None:
    """images/sec vs batch size, one line per path, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = reports[-1]["config"]
    fig, ax = plt.subplots(figsize=(6, 4))
    batches = [r["config"]["batch_size"] for r in reports]
    for name in [r["path"] for r in reports[-1]["results"]]:
        ips = [next(x for x in r["results"] if x["path"] == name)["images_per_s"] for r in reports]
        ax.plot(batches, ips, marker="o", label=name)
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s")
    ax.set_xscale("log", base=2)
    ax.set_title(f"{cfg['model']} on {cfg['device']} ({reports[-1]['device_name']}), {cfg['dtype']}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)
