"""With timm installed, every variant is available through timm.create_model."""

from __future__ import annotations

import argparse

import pytest
import torch

import mambavision

timm = pytest.importorskip("timm", reason="timm is an optional dependency")


def test_all_variants_registered():
    assert mambavision.TIMM_REGISTERED
    assert set(mambavision.list_models()) <= set(timm.list_models("mamba_vision_*"))


def test_timm_create_model_is_the_same_model(tmp_path):
    torch.manual_seed(0)
    ours = mambavision.create_model("mamba_vision_T").eval()
    path = tmp_path / "mambavision_tiny_1k.pth.tar"
    torch.save({"state_dict": ours.state_dict(), "args": argparse.Namespace()}, path)
    via_timm = timm.create_model("mamba_vision_T", pretrained=True,
                                 pretrained_cfg_overlay=dict(file=str(path))).eval()
    # timm's key for a checkpoint file is pretrained_cfg["file"], as in model.pretrained_cfg.
    via_cfg = timm.create_model("mamba_vision_T", pretrained=True,
                                pretrained_cfg=dict(ours.pretrained_cfg, file=str(path))).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(via_timm(x), ours(x))
        assert torch.equal(via_cfg(x), ours(x))
    feats = timm.create_model("mamba_vision_T", features_only=True, out_indices=(2, 3))
    assert [f.shape[1] for f in feats(x)] == [320, 640]
    assert timm.create_model("mamba_vision_S", num_classes=7)(x).shape == (1, 7)
