"""Registers every variant with timm when timm is installed, so timm.create_model works:

    import mambavision, timm
    model = timm.create_model("mamba_vision_T", pretrained=True,
                              pretrained_cfg_overlay=dict(file="mambavision_tiny_1k.pth.tar"))

With pretrained=True the checkpoint is checkpoint_path, else timm's pretrained_cfg["file"]:
from pretrained_cfg_overlay, else from a pretrained_cfg passed in (a dict or a PretrainedCfg).

timm stays optional: without it (or if it fails to import) nothing is registered and
TIMM_ERROR says why.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping

from .configs import VARIANTS
from .factory import create_model

TIMM_ERROR: str | None = None
__all__: list[str] = []  # timm's register_model appends each entry point's name


def _cfg_file(cfg: object) -> str | None:
    """pretrained_cfg["file"] of a dict or of timm's PretrainedCfg; None for a tag or None."""
    if isinstance(cfg, Mapping):
        return cfg.get("file")
    return getattr(cfg, "file", None) if not isinstance(cfg, str) else None


def _entry_point(name: str):
    def entry(pretrained: bool = False, pretrained_cfg=None, pretrained_cfg_overlay=None,
              cache_dir=None, **kwargs):
        path = (kwargs.pop("checkpoint_path", None) or _cfg_file(pretrained_cfg_overlay)
                or _cfg_file(pretrained_cfg))
        return create_model(name, pretrained=pretrained,
                            checkpoint_path=path if pretrained else None, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = f"{name} for timm.create_model (see mambavision.create_model)."
    return entry


def register_with_timm() -> bool:
    """Registers the variants with timm; returns whether timm is available."""
    global TIMM_ERROR
    if importlib.util.find_spec("timm") is None:
        TIMM_ERROR = "timm is not installed"
        return False
    try:
        import timm
        from timm.models import register_model
    except Exception as exc:  # e.g. a torchvision that does not match this torch
        TIMM_ERROR = f"timm failed to import: {exc}"
        return False
    known = set(timm.list_models())
    for name in VARIANTS:
        if name not in known:
            fn = _entry_point(name)
            globals()[name] = fn
            register_model(fn)
    return True
