"""Loading the released checkpoint files as published: .pth.tar (weights under 'state_dict' or
'model', or the raw state_dict), 'module.' / 'model.' key prefixes, or .safetensors. Files are
read with torch.load(weights_only=True): nothing in them is executed."""

from __future__ import annotations

import argparse
import os
import pickle
from collections.abc import Mapping

import torch
from torch import Tensor, nn

# Besides tensors and containers, the only object the released .pth.tar files hold: the
# training script's arguments.
SAFE_GLOBALS = [argparse.Namespace]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded into the model, with the reason."""


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The weights in a checkpoint file, keys without 'module.'/'model.' prefixes."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError(f"{path} is a safetensors file: pip install safetensors "
                              "(or the mvscan[hf] extra) to read it") from None
        try:
            obj = load_file(path)
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    else:
        try:
            with torch.serialization.safe_globals(SAFE_GLOBALS):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            lines = str(exc).splitlines()
            culprit = next((l.strip() for l in lines if "GLOBAL" in l or "global" in l), None)
            if culprit is None:  # not a pickle at all: garbage, or a truncated legacy file
                raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or "
                                      f"corrupt?): {lines[-1].strip() if lines else exc}") from None
            raise CheckpointError(
                f"{path}: refusing to load a file that needs arbitrary unpickling ({culprit}). "
                "Only tensors, containers and argparse.Namespace are accepted. If you trust the "
                "file, load it with torch.load(..., weights_only=False) yourself and pass its "
                "state_dict to model.load_state_dict.") from None
        except Exception as exc:  # torch.load fails on arbitrary bytes in many ways
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or "
                                  f"corrupt?): {type(exc).__name__}: {exc}") from None
    return extract_state_dict(obj, path)


def extract_state_dict(obj: object, source: str = "checkpoint") -> dict[str, Tensor]:
    """The state_dict inside a loaded checkpoint object, prefixes stripped."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source}: no state_dict found (expected a dict of tensors, or "
                              "one under 'state_dict' or 'model')")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{source}: not a state_dict: entries {bad[:5]} are not tensors")
    state = dict(obj)
    for prefix in ("module.", "model."):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_into(model: nn.Module, state: dict[str, Tensor], strict: bool = True,
              source: str = "checkpoint") -> None:
    """Loads state into model. A features_only model ignores the classifier's norm and head and
    keeps its own output norms when the file has none; a model whose head has another size
    than the file's keeps its fresh head. Otherwise, with strict, every key must match."""
    state = dict(state)
    own = model.state_dict()
    allowed_missing: set[str] = set()
    if getattr(model, "features_only", False):
        state = {k: v for k, v in state.items() if not k.startswith(("norm.", "head."))}
        allowed_missing = {k for k in own if k.startswith("out_norms.")}
    elif "head.weight" in state and "head.weight" in own and \
            state["head.weight"].shape != own["head.weight"].shape:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        allowed_missing = {k for k in own if k.startswith("head.")}
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and v.shape != own[k].shape]
    if mismatched:
        raise CheckpointError(f"{source}: shape mismatch for {len(mismatched)} weights, e.g. "
                              + "; ".join(mismatched[:5]) + " (is this the right variant?)")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in allowed_missing]
    if strict and (missing or result.unexpected_keys):
        raise CheckpointError(
            f"{source}: keys do not match the model ({len(missing)} missing, "
            f"{len(result.unexpected_keys)} unexpected). Missing: {missing[:10]}. "
            f"Unexpected: {result.unexpected_keys[:10]}. (Is this the right variant?)")


def load_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> None:
    """Loads a released checkpoint file (any of the published formats) into model."""
    load_into(model, read_state_dict(path), strict=strict, source=os.fspath(path))
