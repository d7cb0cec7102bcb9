"""``python -m mambavision benchmark``: images/sec of a MambaVision variant on random inputs,
through mvscan's kernels and through the comparison paths (the pure-PyTorch reference scan by
default), on the same weights, with an output-agreement check.

Timing: mvscan.timing (warm-up runs, then each timed run synchronised; the median is kept)."""

from __future__ import annotations

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

PATHS = {"mvscan": "mvscan", "reference": "reference"}  # path name -> scan_backend


@dataclass
class PathResult:
    path: str
    images_per_s: float
    median_ms: float
    times_ms: list[float] = field(default_factory=list)
    max_rel_diff_vs_mvscan: float | None = None


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


def build_models(cfg: BenchmarkConfig, device: torch.device) -> dict[str, torch.nn.Module]:
    """One model per path, all with the same weights."""
    torch.manual_seed(0)
    models = {}
    for path in cfg.paths:
        model = create_model(cfg.model, scan_backend=PATHS[path])
        if models:
            model.load_state_dict(next(iter(models.values())).state_dict())
        model = model.to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.train(cfg.train)
        models[path] = model
    return models


def make_step(model: torch.nn.Module, cfg: BenchmarkConfig, device: torch.device):
    """The timed unit: inference, or forward + backward + optimizer step with --train."""
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


def time_path(step: Callable[[torch.Tensor], object], x: torch.Tensor, cfg: BenchmarkConfig,
              device: torch.device, label: str) -> list[float]:
    """Milliseconds of each of cfg.repeats timed runs of step(x), after cfg.warmup runs."""
    def progress(runs):
        return tqdm(runs, desc=f"{label:10}", unit="run", leave=False)

    seconds = timed_runs(lambda: step(x), cfg.repeats, cfg.warmup, device, progress)
    return [t * 1e3 for t in seconds]


def run_benchmark(cfg: BenchmarkConfig, models: dict[str, torch.nn.Module] | None = None) -> dict:
    device = torch.device(cfg.device)
    models = models if models is not None else build_models(cfg, device)
    x = torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size, device=device)
    if cfg.channels_last:
        x = x.to(memory_format=torch.channels_last)
    # Outputs of every path on the same input, before any training step changes the weights.
    outputs = {}
    for path, model in models.items():
        was_training = model.training
        model.eval()
        with torch.inference_mode(), torch.autocast(device.type, dtype=DTYPES[cfg.dtype],
                                                    enabled=cfg.dtype != "fp32"):
            outputs[path] = model(x).float()
        model.train(was_training)
    results = []
    for path, model in models.items():
        times = time_path(make_step(model, cfg, device), x, cfg, device, path)
        median = statistics.median(times)
        diff = None
        if path != "mvscan" and "mvscan" in outputs:
            ref = outputs["mvscan"]
            diff = ((outputs[path] - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()
        results.append(PathResult(path, round(cfg.batch_size / (median / 1e3), 2),
                                  round(median, 3), [round(t, 3) for t in times], diff))
    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else platform.processor() or platform.machine())
    return {"config": asdict(cfg), "device_name": device_name, "torch": torch.__version__,
            "mvscan": mvscan.__version__, "threads": torch.get_num_threads(),
            "results": [asdict(r) for r in results]}


def format_table(report: dict) -> str:
    cfg = report["config"]
    rows = report["results"]
    base = next((r for r in rows if r["path"] == "reference"), rows[-1])
    mode = "train" if cfg["train"] else "inference"
    head = (f"{cfg['model']} {mode} on {cfg['device']} ({report['device_name']}, "
            f"{report['threads']} threads), {cfg['dtype']}, batch {cfg['batch_size']}, "
            f"{cfg['image_size']}x{cfg['image_size']}"
            + (", channels_last" if cfg["channels_last"] else "")
            + (", compiled" if cfg["compile"] else "")
            + f"; median of {cfg['repeats']} runs")
    lines = [head, f"{'path':12} {'img/s':>10} {'ms/batch':>10} {'speedup':>8}  max rel diff"]
    for r in rows:
        diff = "-" if r["max_rel_diff_vs_mvscan"] is None else f"{r['max_rel_diff_vs_mvscan']:.1e}"
        lines.append(f"{r['path']:12} {r['images_per_s']:10.1f} {r['median_ms']:10.2f} "
                     f"{r['images_per_s'] / base['images_per_s']:7.2f}x  {diff}")
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
    for name in cfg["paths"]:
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
