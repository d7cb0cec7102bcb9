"""create_model / list_models: the entry points for every released variant."""

from __future__ import annotations

import os
from typing import Sequence

from .checkpoint import load_checkpoint
from .configs import VARIANTS
from .model import MambaVision


def list_models() -> list[str]:
    """The names of every released variant."""
    return list(VARIANTS)


def create_model(name: str, pretrained: bool = False,
                 checkpoint_path: str | os.PathLike | None = None, num_classes: int = 1000,
                 drop_path_rate: float | None = None, features_only: bool = False,
                 out_indices: Sequence[int] = (0, 1, 2, 3), **kwargs) -> MambaVision:
    """Builds a MambaVision variant, optionally loading a released checkpoint file.

    Args:
        name: one of list_models().
        pretrained: load the released weights; they are never downloaded at run time, so this
            needs checkpoint_path.
        checkpoint_path: a released .pth.tar or .safetensors file (or a state_dict file).
        num_classes: classifier size; a checkpoint's 1000-class head is dropped if it differs.
        drop_path_rate: stochastic depth (default: the variant's training value).
        features_only: return the four stage outputs (strides 4-32) instead of logits.
        out_indices: which stages features_only returns.
        kwargs: passed to MambaVision (e.g. scan_backend="reference", in_chans).

    The variant's preprocessing is on the model as `pretrained_cfg`.
    """
    if name not in VARIANTS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(VARIANTS)}")
    variant = VARIANTS[name]
    if pretrained and checkpoint_path is None:
        raise ValueError(
            f"pretrained=True needs checkpoint_path: mambavision never downloads weights. Get "
            f"{variant.file} (or the model.safetensors of nvidia/MambaVision-* on the "
            f"Hugging Face Hub) from NVIDIA's MambaVision release, then call "
            f"create_model({name!r}, checkpoint_path='path/to/file').")
    model = MambaVision(**variant.arch(), num_classes=num_classes,
                        drop_path_rate=variant.drop_path_rate if drop_path_rate is None
                        else drop_path_rate,
                        features_only=features_only, out_indices=out_indices, **kwargs)
    model.pretrained_cfg = variant.pretrained_cfg()
    model.default_cfg = model.pretrained_cfg
    if checkpoint_path is not None:
        load_checkpoint(model, checkpoint_path)
    return model
