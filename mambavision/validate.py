"""``python -m mambavision validate --data DIR --model NAME --checkpoint FILE``: top-1, top-5,
loss and images/sec on a folder of class subfolders, with the variant's evaluation
preprocessing; under torchrun each rank takes every world-th image and the sums are reduced.
Training computes its per-epoch validation numbers with the same evaluate()."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mvscan.cli_args import DTYPES, UsageError

from .checkpoint import CheckpointError, load_into, read_state_dict
from .configs import VARIANTS
from .data import (ImageFolderDataset, ShardSampler, check_readable, list_classes,
                   variant_transform)
from .distributed import Context, all_sum
from .factory import create_model
from .inference import optimize_for_inference


def autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    """torch.autocast for --amp bf16|fp16 on device; a no-op context without amp."""
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[amp])


@dataclass
class Metrics:
    """Classification metrics over a whole folder (all ranks): top1 and top5 as fractions,
    loss the mean cross-entropy, img_per_s the images of all ranks over the loop's seconds."""
    top1: float
    top5: float
    loss: float
    img_per_s: float
    images: int
    seconds: float


@torch.no_grad()
def evaluate(model: nn.Module, loader, ctx: Context, amp: str | None = None,
             pad_to: int | None = None) -> Metrics:
    """Runs model (eval mode) over loader's (images (B, 3, H, W) float32, targets (B,) int64)
    and reduces the sums over ranks. pad_to: zero-pad a smaller (last) batch to this size and
    drop the extra rows, so a model compiled for static shapes never compiles again."""
    model.eval()
    loss_sum = correct1 = correct5 = count = 0.0
    start = time.perf_counter()
    for images, targets in loader:
        images, targets = images.to(ctx.device), targets.to(ctx.device)
        n = images.shape[0]
        if pad_to is not None and n < pad_to:
            images = torch.cat([images, images.new_zeros((pad_to - n, *images.shape[1:]))])
        with autocast(ctx.device, amp):
            logits = model(images)
        logits = logits[:n].float()
        loss_sum += F.cross_entropy(logits, targets, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == targets[:, None]
        correct1 += hits[:, 0].sum().item()
        correct5 += hits.any(dim=1).sum().item()
        count += targets.numel()
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    seconds = time.perf_counter() - start
    loss_sum, correct1, correct5, count = all_sum(ctx, [loss_sum, correct1, correct5, count])
    n = max(count, 1.0)
    return Metrics(top1=correct1 / n, top5=correct5 / n, loss=loss_sum / n,
                   img_per_s=count / seconds if seconds > 0 else 0.0, images=int(count),
                   seconds=seconds)


def eval_loader(folder: str, classes: list[str], pretrained_cfg: dict, image_size: int | None,
                batch_size: int, workers: int, ctx: Context) -> torch.utils.data.DataLoader:
    """This rank's share of folder, with the variant's evaluation preprocessing."""
    dataset = ImageFolderDataset(folder, classes, variant_transform(pretrained_cfg, image_size,
                                                                    training=False))
    check_readable(dataset, ctx)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), ctx.rank, ctx.world),
        num_workers=workers, pin_memory=ctx.device.type == "cuda")


def load_for_eval(name: str, checkpoint: str, num_classes: int) -> nn.Module:
    """The variant with checkpoint's weights, which must hold a num_classes-way head."""
    try:
        state = read_state_dict(checkpoint)
    except (FileNotFoundError, CheckpointError) as exc:
        raise UsageError(f"--checkpoint: {exc}") from None
    head = state.get("head.weight")
    if head is not None and head.shape[0] != num_classes:
        raise UsageError(f"--checkpoint: {checkpoint} has a {head.shape[0]}-class head, the "
                         f"folder {num_classes} classes")
    model = create_model(name, num_classes=num_classes)
    try:
        load_into(model, state, source=checkpoint)
    except CheckpointError as exc:
        raise UsageError(f"--checkpoint: {exc}") from None
    return model


def run_validate(args, ctx: Context) -> Metrics:
    """The validate command after argument parsing: prints the metrics on rank 0 and writes
    --json there."""
    if args.model not in VARIANTS:
        raise UsageError(f"unknown model {args.model!r}; choose from {', '.join(VARIANTS)}")
    amp = args.amp
    if args.optimize and amp == "fp16" and ctx.device.type == "cpu":
        raise UsageError("--optimize with --amp fp16 needs a CUDA device (no fast fp16 on "
                         "CPU); use --amp bf16")
    classes = list_classes(args.data, "--data")
    model = load_for_eval(args.model, args.checkpoint, len(classes)).to(ctx.device)
    loader = eval_loader(args.data, classes, model.pretrained_cfg, args.image_size,
                         args.batch_size, args.workers, ctx)
    if args.optimize:  # the optimized model runs its own autocast
        model = optimize_for_inference(model, dtype=DTYPES[amp] if amp else None)
        amp = None
    metrics = evaluate(model, loader, ctx, amp, pad_to=args.batch_size if args.optimize else None)
    if ctx.main:
        print(f"{args.model} on {metrics.images} images: top-1 {metrics.top1 * 100:.2f}%  "
              f"top-5 {metrics.top5 * 100:.2f}%  loss {metrics.loss:.4f}  "
              f"{metrics.img_per_s:.1f} img/s")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dict(top1=metrics.top1, top5=metrics.top5, loss=metrics.loss,
                               img_per_s=metrics.img_per_s, images=metrics.images), f, indent=2)
    return metrics
