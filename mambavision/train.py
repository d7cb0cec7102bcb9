"""``python -m mambavision train --data DIR --model NAME --output OUT``: trains or fine-tunes a
variant on an image folder (DIR/train/<class>/*, DIR/val/<class>/*), as one process or one per
device under ``torchrun --nproc_per_node K -m mambavision train ...``.

The training parts are timm's: create_transform with the variant's pretrained_cfg, Mixup/CutMix,
the (soft-target / label-smoothing) losses, AdamW (or SGD) through create_optimizer_v2 (no weight decay
on the model's no_weight_decay() set), the per-step cosine schedule with warm-up, ModelEmaV3.
torch.distributed does the rest: DDP (gloo on CPU, NCCL on CUDA) or FSDP2's fully_shard with
--fsdp, BatchNorm synchronised over ranks (see distributed.py).

K processes with batch b train exactly what one process with batch K*b trains, up to float
rounding: DistributedSampler gives rank r items r, r+K, ... of the same shuffled order, so each
step's K local batches together are the single process's batch; augmentation is seeded per
image (data.py); DDP averages the gradients of the local mean losses; BatchNorm statistics span
all ranks. What stays per rank: drop-path masks and Mixup's pairing (random per process)."""

from __future__ import annotations

import json
import os
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mvscan.cli_args import UsageError

from .checkpoint import CheckpointError, load_into, read_state_dict
from .configs import VARIANTS
from .data import ImageFolderDataset, check_readable, check_train_tree, variant_transform
from .distributed import Context, all_sum, wrap
from .factory import create_model
from .train_state import gather_rng, read_resume, save, set_rng_state
from .validate import Metrics, autocast, eval_loader, evaluate


@dataclass
class TrainConfig:
    """The train command's arguments, as saved in config.json and every checkpoint."""
    data: str
    model: str
    output: str
    epochs: int
    batch_size: int  # per process
    opt: str
    lr: float
    weight_decay: float
    warmup_epochs: int
    image_size: int | None
    workers: int
    seed: int
    checkpoint: str | None
    resume: str | None
    amp: str | None
    grad_checkpointing: bool
    compile: bool
    mixup: float
    cutmix: float
    smoothing: float
    ema: bool
    ema_decay: float
    drop_path: float | None
    device: str
    fsdp: bool
    save_every: int
    classes: list[str] | None = None  # filled from the data folder
    world: int = 1  # processes


def check(cfg: TrainConfig, ctx: Context) -> None:
    """Every argument check that needs no model: UsageError on the first problem."""
    if cfg.model not in VARIANTS:
        raise UsageError(f"unknown model {cfg.model!r}; choose from {', '.join(VARIANTS)}")
    cfg.classes = check_train_tree(cfg.data)
    cfg.world = ctx.world
    if cfg.fsdp and not ctx.distributed:
        raise UsageError("--fsdp shards over processes: launch with torchrun --nproc_per_node K")
    if cfg.fsdp and cfg.ema:
        raise UsageError("--ema with --fsdp is not supported (the EMA copy would be sharded)")
    if (cfg.mixup or cfg.cutmix) and cfg.batch_size % 2:
        raise UsageError(f"--mixup/--cutmix pair images within a batch: --batch-size must be "
                         f"even, got {cfg.batch_size}")
    if cfg.checkpoint and cfg.resume:
        raise UsageError("--checkpoint and --resume: give one (a resumed run keeps the weights "
                         "it was started from in its file)")
    if cfg.checkpoint and not os.path.isfile(cfg.checkpoint):
        raise UsageError(f"--checkpoint: no such file: {cfg.checkpoint}")
    last = os.path.join(cfg.output, "last.pth.tar")
    if not cfg.resume and os.path.exists(last):
        raise UsageError(f"--output: {cfg.output} already holds a run ({last}); continue it "
                         f"with --resume {last} or choose another folder")
    existing = os.path.abspath(cfg.output)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK):
        raise UsageError(f"--output: cannot write {cfg.output} ({existing} is not a writable "
                         "folder)")


def build_model(cfg: TrainConfig) -> nn.Module:
    """The variant with len(cfg.classes) outputs, from --checkpoint's weights when given (the
    head re-initialised when the file's class count differs)."""
    model = create_model(cfg.model, num_classes=len(cfg.classes),
                         drop_path_rate=cfg.drop_path)
    if cfg.checkpoint:
        try:
            load_into(model, read_state_dict(cfg.checkpoint), source=cfg.checkpoint)
        except CheckpointError as exc:
            raise UsageError(f"--checkpoint: {exc}") from None
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


def make_loss(cfg: TrainConfig, num_classes: int):
    """(mixup or None, training loss): timm's Mixup with a soft-target loss, else label
    smoothing, else plain cross-entropy."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if cfg.mixup or cfg.cutmix:
        mixup = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix,
                      label_smoothing=cfg.smoothing, num_classes=num_classes)
        return mixup, SoftTargetCrossEntropy()
    if cfg.smoothing:
        return None, LabelSmoothingCrossEntropy(cfg.smoothing)
    return None, nn.CrossEntropyLoss()


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def full_state(model: nn.Module, optimizer=None) -> tuple[dict, dict | None]:
    """The model's (and optimizer's) complete state dicts on CPU, names without DDP/compile
    prefixes, gathered from the shards under FSDP (a collective: all ranks call it)."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                         get_model_state_dict,
                                                         get_optimizer_state_dict)

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    return weights, (get_optimizer_state_dict(model, optimizer, options=options)
                     if optimizer is not None else None)


def load_optimizer(model: nn.Module, optimizer, state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                         set_optimizer_state_dict)

    set_optimizer_state_dict(model, optimizer, state,
                             options=StateDictOptions(full_state_dict=True))


def write_config(cfg: TrainConfig) -> None:
    """OUT/config.json: the command line and the resolved configuration."""
    command = "python -m mambavision " + shlex.join(sys.argv[1:])
    if cfg.world > 1:
        command = f"torchrun --nproc_per_node {cfg.world} -m mambavision " + shlex.join(sys.argv[1:])
    with open(os.path.join(cfg.output, "config.json"), "w") as f:
        json.dump(dict(command=command, config=asdict(cfg)), f, indent=2)


def write_history(path: str, history: list[dict]) -> None:
    """metrics.jsonl: one JSON object per epoch (rewritten whole on resume)."""
    with open(f"{path}.tmp", "w") as f:
        f.writelines(json.dumps(m) + "\n" for m in history)
    os.replace(f"{path}.tmp", path)


def run_train(cfg: TrainConfig, ctx: Context) -> list[dict]:
    """Trains as cfg says; returns the per-epoch metrics (every rank). Rank 0 writes OUT."""
    from timm.optim import create_optimizer_v2, param_groups_weight_decay
    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3

    check(cfg, ctx)
    run_config = asdict(cfg)
    resume = read_resume(cfg.resume, run_config) if cfg.resume else None
    seed_everything(cfg.seed)  # the same initial weights on every rank (FSDP does not broadcast)
    net = build_model(cfg)
    if resume is not None:
        net.load_state_dict(resume["state_dict"])
    net.to(ctx.device)
    # Taken before wrapping: fully_shard's DTensor parameters lose the attribute that marks
    # A_log and D as exempt from weight decay.
    no_decay = net.no_weight_decay()
    model = wrap(net, ctx, cfg.fsdp)
    net = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    run = torch.compile(model) if cfg.compile else model

    train_set = ImageFolderDataset(
        os.path.join(cfg.data, "train"), cfg.classes,
        variant_transform(net.pretrained_cfg, cfg.image_size, training=True), seed=cfg.seed)
    check_readable(train_set, ctx)
    sampler = torch.utils.data.DistributedSampler(train_set, num_replicas=ctx.world,
                                                  rank=ctx.rank, shuffle=True, seed=cfg.seed,
                                                  drop_last=True)
    loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler,
                                         num_workers=cfg.workers, drop_last=True,
                                         pin_memory=ctx.device.type == "cuda")
    if len(loader) == 0:
        raise UsageError(f"--batch-size: {cfg.batch_size} per process x {ctx.world} processes is "
                         f"more than the {len(train_set)} training images")
    val_loader = eval_loader(os.path.join(cfg.data, "val"), cfg.classes, net.pretrained_cfg,
                             cfg.image_size, cfg.batch_size, cfg.workers, ctx)

    optimizer = create_optimizer_v2(
        param_groups_weight_decay(net, cfg.weight_decay, no_weight_decay_list=no_decay),
        opt=cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=cfg.epochs,
                                       warmup_epochs=cfg.warmup_epochs, warmup_lr=1e-6,
                                       min_lr=1e-6, step_on_epochs=False,
                                       updates_per_epoch=len(loader))
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=cfg.amp == "fp16")
    ema = ModelEmaV3(net, decay=cfg.ema_decay) if cfg.ema else None
    mixup, loss_fn = make_loss(cfg, len(cfg.classes))

    start_epoch, num_updates, best_top1, history = 0, 0, -1.0, []
    if resume is not None:
        load_optimizer(model, optimizer, resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        if ema is not None:
            ema.module.load_state_dict(resume["state_dict_ema"])
        start_epoch, num_updates = resume["epoch"], resume["num_updates"]
        best_top1, history = resume["best_top1"], list(resume["history"])
        set_rng_state(resume["rng"][ctx.rank])
    else:
        seed_everything(cfg.seed + ctx.rank)  # drop-path masks and Mixup differ per rank

    metrics_path = os.path.join(cfg.output, "metrics.jsonl")
    for epoch in range(start_epoch, cfg.epochs):
        start = time.perf_counter()
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        run.train()
        loss_sum = seen = 0.0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not ctx.main,
                   leave=False)
        for images, targets in bar:
            images = images.to(ctx.device, non_blocking=True)
            targets = targets.to(ctx.device, non_blocking=True)
            if mixup is not None:
                images, targets = mixup(images, targets)
            with autocast(ctx.device, cfg.amp):
                loss = loss_fn(run(images), targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            num_updates += 1
            scheduler.step_update(num_updates=num_updates)
            if ema is not None:
                ema.update(net, step=num_updates)
            loss_sum += loss.item() * images.shape[0]
            seen += images.shape[0]
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        train_seconds = time.perf_counter() - start
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step(epoch + 1)
        loss_sum, seen = all_sum(ctx, [loss_sum, seen])
        val = evaluate(run, val_loader, ctx, cfg.amp)
        record = dict(epoch=epoch + 1, train_loss=loss_sum / seen, val_loss=val.loss,
                      top1=val.top1, top5=val.top5, lr=lr, img_per_s=seen / train_seconds)
        if ema is not None:
            ema_val: Metrics = evaluate(ema.module, val_loader, ctx, cfg.amp)
            record.update(ema_val_loss=ema_val.loss, ema_top1=ema_val.top1, ema_top5=ema_val.top5)
        record["seconds"] = time.perf_counter() - start
        history.append(record)
        is_best = record["top1"] > best_top1
        best_top1 = max(best_top1, record["top1"])

        weights, opt_state = full_state(model, optimizer)
        rng = gather_rng(ctx)
        if ctx.main:
            state = dict(state_dict=weights, optimizer=opt_state,
                         scheduler=scheduler.state_dict(), scaler=scaler.state_dict(),
                         epoch=epoch + 1, num_updates=num_updates, best_top1=best_top1,
                         history=history, config=run_config, rng=rng, arch=cfg.model,
                         metrics=record)
            if ema is not None:
                state["state_dict_ema"] = ema.module.state_dict()
            if epoch == start_epoch:  # OUT is written once an epoch is done, never before
                os.makedirs(cfg.output, exist_ok=True)
                write_config(cfg)
            write_history(metrics_path, history)
            save(state, os.path.join(cfg.output, "last.pth.tar"))
            if is_best:
                save(state, os.path.join(cfg.output, "best.pth.tar"))
            if cfg.save_every and (epoch + 1) % cfg.save_every == 0:
                save(state, os.path.join(cfg.output, f"epoch{epoch + 1}.pth.tar"))
            print(f"epoch {epoch + 1}/{cfg.epochs}: train_loss {record['train_loss']:.4f}  "
                  f"val_loss {val.loss:.4f}  top-1 {val.top1 * 100:.2f}%  "
                  f"top-5 {val.top5 * 100:.2f}%  lr {lr:.3g}  "
                  f"{record['img_per_s']:.1f} img/s  {record['seconds']:.1f} s", flush=True)
    return history
