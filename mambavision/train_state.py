"""What a training checkpoint holds and how a run goes on from one: the files `train` writes
(last.pth.tar, best.pth.tar, epoch<N>.pth.tar) and `--resume` reads.

A file is a dict that create_model(checkpoint_path=), predict and validate read as released
weights (the model under 'state_dict'), plus what an exact resume needs: 'state_dict_ema',
'optimizer' (torch.distributed.checkpoint's full, name-keyed form, so it loads into a
DDP, FSDP2 or plain model alike), 'scheduler', 'scaler', 'epoch' (epochs done), 'num_updates',
'best_top1', 'history' (every epoch's metrics so far), 'config' (the run configuration) and
'rng' (each rank's torch, CUDA, Python and numpy generator states). Only tensors, containers and
plain values: it loads with torch.load(weights_only=True)."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from mvscan.cli_args import UsageError

from .checkpoint import SAFE_GLOBALS
from .distributed import Context

# The configuration entries a resumed run must share with the file: everything that changes
# what is computed. Not here: --checkpoint (a resumed run starts from its file), --workers, --device, --compile, --grad-checkpointing, --output.
RUN_KEYS = ("model", "classes", "epochs", "batch_size", "world", "opt", "lr", "weight_decay",
            "warmup_epochs", "image_size", "seed", "amp", "mixup", "cutmix", "smoothing", "ema",
            "ema_decay", "drop_path", "fsdp")


def rng_state() -> dict[str, Any]:
    """This process's generator states (torch CPU and CUDA, Python, numpy)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return dict(torch=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                python=random.getstate(),
                numpy=[kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss])


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))


def gather_rng(ctx: Context) -> list[dict[str, Any]]:
    """Every rank's generator states, in rank order (a collective: all ranks call it)."""
    if not ctx.distributed:
        return [rng_state()]
    states: list[Any] = [None] * ctx.world
    dist.all_gather_object(states, rng_state())
    return states


def read_resume(path: str, config: dict[str, Any]) -> dict[str, Any]:
    """The training checkpoint at path, after checking it comes from a run with the same
    configuration (RUN_KEYS); UsageError naming what differs otherwise."""
    if not os.path.isfile(path):
        raise UsageError(f"--resume: no such file: {path}")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails on arbitrary bytes in many ways
        raise UsageError(f"--resume: {path} is not a readable checkpoint: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) or \
            "optimizer" not in state:
        raise UsageError(f"--resume: {path} is not a training checkpoint of `python -m "
                         "mambavision train` (no config or optimizer state)")
    saved = state["config"]
    differ = [f"{k} {saved.get(k)!r} in the file, {config.get(k)!r} now" for k in RUN_KEYS
              if saved.get(k) != config.get(k)]
    if differ:
        raise UsageError(f"--resume: {path} comes from a different run configuration: "
                         + "; ".join(differ))
    return state


def save(state: dict[str, Any], path: str) -> None:
    """torch.save to a temporary file, then renamed over path: never a half-written file."""
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)

