"""Checkpoint files in every published format load unchanged; bad files fail clearly."""

from __future__ import annotations

import argparse
import os

import pytest
import torch
from safetensors.torch import save_file

import mambavision
from mambavision import CheckpointError


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    model = mambavision.create_model("mamba_vision_T").eval()
    with torch.no_grad():  # make the BN statistics non-trivial, so they are checked too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return model


def write(path, obj):
    torch.save(obj, path)
    return path


FORMATS = {
    # what the official training script writes: weights under 'state_dict', beside its args
    "pth.tar state_dict + args": lambda sd, d: write(
        os.path.join(d, "mambavision_tiny_1k.pth.tar"),
        {"epoch": 300, "arch": "mamba_vision_T", "state_dict": sd,
         "args": argparse.Namespace(lr=1e-3, model="mamba_vision_T"), "metric": 82.3}),
    "under 'model'": lambda sd, d: write(os.path.join(d, "ckpt.pth"), {"model": sd}),
    "raw state_dict": lambda sd, d: write(os.path.join(d, "raw.pth"), sd),
    "module. prefix (DDP)": lambda sd, d: write(
        os.path.join(d, "ddp.pth.tar"), {"state_dict": {"module." + k: v for k, v in sd.items()}}),
    "model.safetensors (Hugging Face)": lambda sd, d: _safetensors(
        {"model." + k: v.contiguous() for k, v in sd.items()}, os.path.join(d, "model.safetensors")),
}


def _safetensors(sd, path):
    save_file(sd, path)
    return path


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_round_trip(source, tmp_path, fmt):
    path = FORMATS[fmt](source.state_dict(), str(tmp_path))
    model = mambavision.create_model("mamba_vision_T", checkpoint_path=path).eval()
    for (k, v), (k2, v2) in zip(source.state_dict().items(), model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))


def test_features_only_and_other_head_sizes_load_the_backbone(source, tmp_path):
    path = FORMATS["raw state_dict"](source.state_dict(), str(tmp_path))
    feats = mambavision.create_model("mamba_vision_T", features_only=True, checkpoint_path=path)
    assert torch.equal(feats.patch_embed.conv_down[0].weight, source.patch_embed.conv_down[0].weight)
    model10 = mambavision.create_model("mamba_vision_T", num_classes=10, checkpoint_path=path)
    assert model10.head.weight.shape == (10, 640)
    assert torch.equal(model10.levels[3].blocks[0].mixer.A_log, source.levels[3].blocks[0].mixer.A_log)


def test_missing_and_unexpected_keys_are_listed(source, tmp_path):
    sd = dict(source.state_dict())
    del sd["levels.2.blocks.0.mixer.A_log"]
    sd["levels.9.surprise"] = torch.zeros(1)
    path = write(str(tmp_path / "bad_keys.pth"), sd)
    with pytest.raises(CheckpointError, match=r"1 missing, 1 unexpected.*levels\.2\.blocks\.0"
                                              r"\.mixer\.A_log.*levels\.9\.surprise"):
        mambavision.create_model("mamba_vision_T", checkpoint_path=path)


def test_wrong_variant_gives_shape_mismatch(source, tmp_path):
    path = write(str(tmp_path / "tiny.pth"), source.state_dict())
    with pytest.raises(CheckpointError, match=r"shape mismatch.*right variant"):
        mambavision.create_model("mamba_vision_S", checkpoint_path=path)


def test_truncated_file(source, tmp_path):
    path = write(str(tmp_path / "full.pth"), source.state_dict())
    data = open(path, "rb").read()
    cut = str(tmp_path / "truncated.pth")
    with open(cut, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        mambavision.create_model("mamba_vision_T", checkpoint_path=cut)


class Foreign:
    """An object torch.load(weights_only=True) must refuse to build."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_pickle_with_a_foreign_object_is_refused(source, tmp_path):
    path = str(tmp_path / "evil.pth.tar")
    torch.save({"state_dict": source.state_dict(), "payload": Foreign()}, path)
    with pytest.raises(CheckpointError, match=r"refusing to load a file that needs arbitrary "
                                              r"unpickling \(.*getcwd"):
        mambavision.create_model("mamba_vision_T", checkpoint_path=path)


def test_not_a_state_dict(tmp_path):
    path = write(str(tmp_path / "list.pth"), {"state_dict": {"a": 1}})
    with pytest.raises(CheckpointError, match="not a state_dict"):
        mambavision.read_state_dict(path)
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        mambavision.read_state_dict(str(tmp_path / "nope.pth"))
    text = tmp_path / "notes.pth"
    text.write_text("this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        mambavision.read_state_dict(str(text))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        mambavision.read_state_dict(str(bad))
