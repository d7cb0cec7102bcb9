"""Image folders for `python -m mambavision train` and `validate`: checking the tree, timm's
transforms for a variant, and the samplers that split the data over torch.distributed ranks.

Augmentation is seeded per image from (seed, epoch, index), not drawn from the process's random
state: an image gets the same crop and flip whichever rank or worker loads it, so K processes
with batch b see exactly the batches one process with batch K*b sees, and a resumed run sees what
an uninterrupted one saw."""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mvscan.cli_args import UsageError

from .distributed import Context, first_problem

# torchvision's ImageFolder extensions.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class UnreadableImageError(UsageError):
    """An image file Pillow cannot decode, found while loading (on one rank); the message
    names the file."""


def list_classes(folder: str, flag: str) -> list[str]:
    """The class subfolders of folder, sorted; UsageError (naming flag) if there are none or one
    holds no image."""
    if not os.path.isdir(folder):
        raise UsageError(f"{flag}: no such folder: {folder}")
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if not classes:
        raise UsageError(f"{flag}: {folder} has no class subfolders (expected {folder}/<class>/*)")
    for name in classes:
        if not any(f.lower().endswith(IMAGE_EXTENSIONS) for f in os.listdir(os.path.join(folder, name))):
            raise UsageError(f"{flag}: class {name!r} has no images in {os.path.join(folder, name)}")
    return classes


def check_train_tree(data: str) -> list[str]:
    """The classes of DATA/train, after checking DATA/val has exactly the same ones."""
    classes = list_classes(os.path.join(data, "train"), "--data")
    val = list_classes(os.path.join(data, "val"), "--data")
    missing = [c for c in classes if c not in val]
    extra = [c for c in val if c not in classes]
    if missing or extra:
        raise UsageError(f"--data: val and train must have the same classes; missing from val: "
                         f"{missing}, not in train: {extra}")
    return classes


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Runs the block with torch's, Python's and numpy's global generators seeded with seed,
    and puts back the states they had before."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class ImageFolderDataset(Dataset):
    """(image, class index) pairs of a folder of class subfolders, through transform; with
    seed set, each item's transform runs seeded from (seed, epoch, index).

    Items: a (3, H, W) float32 tensor (whatever transform makes) and an int class index."""

    def __init__(self, folder: str, classes: list[str], transform, seed: int | None = None):
        from torchvision.datasets.folder import make_dataset

        self.samples = make_dataset(folder, {c: i for i, c in enumerate(classes)},
                                    extensions=IMAGE_EXTENSIONS)
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int):
        from PIL import Image

        path, _ = self.samples[index]
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
            raise UnreadableImageError(f"unreadable image {path}: {exc}") from None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, target = self.load(index), self.samples[index][1]
        if self.seed is None:
            return self.transform(image), target
        with seeded((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index):
            return self.transform(image), target


def check_readable(dataset: "ImageFolderDataset", ctx: Context) -> None:
    """UsageError naming the first file of dataset whose header Pillow cannot read; each rank
    opens every world-th file. Only headers are read: a file cut short after its header fails
    when it is loaded, with UnreadableImageError and the same message."""
    from PIL import Image

    problem = None
    for path, _ in dataset.samples[ctx.rank::ctx.world]:
        try:
            with Image.open(path):
                pass
        except (OSError, ValueError) as exc:
            problem = f"unreadable image {path}: {exc}"
            break
    problem = first_problem(ctx, problem)
    if problem is not None:
        raise UsageError(problem)


def variant_transform(pretrained_cfg: dict, image_size: int | None, training: bool):
    """timm's create_transform with the variant's preprocessing (mean, std, interpolation,
    crop_pct, crop_mode): evaluation resizes and crops, training adds timm's default
    augmentation (random resized crop, flip, colour jitter)."""
    from timm.data import create_transform

    size = image_size or pretrained_cfg["input_size"][1]
    return create_transform(input_size=size, is_training=training,
                            interpolation=pretrained_cfg["interpolation"],
                            mean=pretrained_cfg["mean"], std=pretrained_cfg["std"],
                            crop_pct=pretrained_cfg["crop_pct"],
                            crop_mode=pretrained_cfg["crop_mode"])


class ShardSampler(Sampler[int]):
    """Indices rank, rank + world, rank + 2 world, ... of range(n): every item on exactly one
    rank, without the padding DistributedSampler adds, so metrics summed over ranks are exact."""

    def __init__(self, n: int, rank: int, world: int):
        self.indices = range(rank, n, world)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
