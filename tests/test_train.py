"""python -m mambavision train / validate on a generated, learnable image folder (3 classes told
apart by colour, 18 training and 9 validation images): two torchrun processes (gloo) train the
weights one process trains with the same global batch; a resumed run ends bit-identical to an
uninterrupted one; the loss falls and top-1 ends far above chance; validate's numbers equal a
direct computation and the ones training logged; bad input gives one line and exit code 2.

MambaVision-T at its native 224 px: smaller inputs pad stages 3-4 to their 14x14 and 7x7
windows with zero tokens, whose LayerNorm gradients (1/sqrt(eps)) blow plain SGD up."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mambavision.cli import main

ROOT = Path(__file__).resolve().parent.parent
COLOURS = {"blue": (30, 30, 200), "green": (30, 200, 30), "red": (200, 30, 30)}
BASE = ["--model", "mamba_vision_T", "--image-size", "224", "--workers", "0", "--device", "cpu",
        "--warmup-epochs", "0"]


def make_folder(root: Path, per_class: int, seed: int) -> None:
    """root/<colour>/<i>.png: 40x40 images of the colour plus noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 40, (40, 40, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_folder(root / "train", 6, seed=0)
    make_folder(root / "val", 3, seed=1)
    return root


def run(*args: str, nproc: int = 1) -> subprocess.CompletedProcess:
    """python -m mambavision ARGS, or under torchrun with nproc processes on a free port."""
    env = {k: v for k, v in os.environ.items() if k != "MVSCAN_POISON_OUTPUTS"}
    env["OMP_NUM_THREADS"] = "1"
    if nproc == 1:
        cmd = [sys.executable, "-m", "mambavision", *args]
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "mambavision",
               *args]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory) -> Path:
    """Two epochs with EMA, drop-path and label smoothing, a checkpoint kept after each epoch."""
    out = tmp_path_factory.mktemp("runs") / "full"
    run("train", "--data", str(data), "--output", str(out), *BASE, "--epochs", "2",
        "--batch-size", "6", "--opt", "sgd", "--lr", "0.01", "--ema", "--ema-decay", "0.9",
        "--smoothing", "0.1", "--save-every", "1", "--seed", "3")
    return out


def test_outputs_and_learning(uninterrupted):
    out = uninterrupted
    assert {p.name for p in out.iterdir()} == {"last.pth.tar", "best.pth.tar", "epoch1.pth.tar",
                                               "epoch2.pth.tar", "metrics.jsonl", "config.json"}
    rows = metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert {"epoch", "train_loss", "val_loss", "top1", "top5", "lr", "img_per_s", "seconds",
                "ema_top1"} <= set(r)
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert rows[1]["top1"] >= 0.9  # chance: 1/3
    config = json.loads((out / "config.json").read_text())
    assert config["command"].startswith("python -m mambavision train --data")
    assert config["config"]["classes"] == ["blue", "green", "red"]
    import mambavision

    model = mambavision.create_model("mamba_vision_T", num_classes=3,
                                     checkpoint_path=out / "best.pth.tar")
    assert model.head.out_features == 3


def test_resume_is_bit_identical(uninterrupted, data, tmp_path):
    out = tmp_path / "resumed"
    run("train", "--data", str(data), "--output", str(out), *BASE, "--epochs", "2",
        "--batch-size", "6", "--opt", "sgd", "--lr", "0.01", "--ema", "--ema-decay", "0.9",
        "--smoothing", "0.1", "--seed", "3", "--resume", str(uninterrupted / "epoch1.pth.tar"))
    full, resumed = load(uninterrupted / "last.pth.tar"), load(out / "last.pth.tar")
    for key in ("state_dict", "state_dict_ema"):
        assert full[key].keys() == resumed[key].keys()
        for name, value in full[key].items():
            assert torch.equal(value, resumed[key][name]), (key, name)
    for name, state in full["optimizer"]["state"].items():
        for k, v in state.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(
                resumed["optimizer"]["state"][name][k])), (name, k)
    drop_time = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "img_per_s")}
                              for r in rows]
    assert drop_time(metrics(out)) == drop_time(metrics(uninterrupted))


def test_validate_equals_a_direct_computation(uninterrupted, data, tmp_path):
    from PIL import Image

    import mambavision
    from mambavision.predict import preprocess

    report = tmp_path / "val.json"
    res = run("validate", "--data", str(data / "val"), "--checkpoint",
              str(uninterrupted / "best.pth.tar"), "--batch-size", "5", "--workers", "0",
              "--device", "cpu", "--json", str(report))
    got = json.loads(report.read_text())
    assert set(got) == {"top1", "top5", "loss", "img_per_s", "images"}
    assert res.stdout.startswith("mamba_vision_T on 9 images: top-1")

    model = mambavision.create_model("mamba_vision_T", num_classes=3,
                                     checkpoint_path=uninterrupted / "best.pth.tar").eval()
    images, targets = [], []
    for index, name in enumerate(sorted(COLOURS)):
        for path in sorted((data / "val" / name).iterdir()):
            with Image.open(path) as im:
                images.append(preprocess(im, model.pretrained_cfg))
            targets.append(index)
    targets = torch.tensor(targets)
    with torch.no_grad():
        logits = model(torch.cat(images))
    loss = torch.nn.functional.cross_entropy(logits, targets).item()
    top1 = (logits.argmax(1) == targets).float().mean().item()
    assert got["images"] == 9 and got["top5"] == 1.0
    assert got["top1"] == pytest.approx(top1) and got["loss"] == pytest.approx(loss, rel=1e-4)
    best = load(uninterrupted / "best.pth.tar")["metrics"]  # what training logged for it
    assert got["top1"] == pytest.approx(best["top1"])
    assert got["loss"] == pytest.approx(best["val_loss"], rel=1e-5)


def test_validate_optimize_gives_the_same_numbers(uninterrupted, data, tmp_path):
    """--optimize (folded, compiled with freezing): training's numbers for its best checkpoint;
    batches of 5 for 9 images, so the last one is padded and its extra rows dropped."""
    report = tmp_path / "val.json"
    run("validate", "--data", str(data / "val"), "--checkpoint", str(uninterrupted / "best.pth.tar"),
        "--batch-size", "5", "--workers", "0", "--device", "cpu", "--json", str(report),
        "--optimize")
    got = json.loads(report.read_text())
    best = load(uninterrupted / "best.pth.tar")["metrics"]
    assert got["images"] == 9 and got["top1"] == pytest.approx(best["top1"])
    assert got["loss"] == pytest.approx(best["val_loss"], rel=1e-5)


def test_two_processes_train_what_one_process_trains(data, tmp_path):
    """torchrun, 2 processes x batch 3 == 1 process x batch 6 (SGD, no drop-path or Mixup, whose
    random draws are per process); then validate under torchrun gives training's numbers."""
    common = ["train", "--data", str(data), *BASE, "--epochs", "1", "--opt", "sgd", "--lr",
              "0.01", "--drop-path", "0", "--smoothing", "0"]
    run(*common, "--output", str(tmp_path / "one"), "--batch-size", "6")
    run(*common, "--output", str(tmp_path / "two"), "--batch-size", "3", nproc=2)
    one, two = load(tmp_path / "one" / "last.pth.tar"), load(tmp_path / "two" / "last.pth.tar")
    assert two["config"]["world"] == 2
    start = __import__("mambavision").create_model("mamba_vision_T", num_classes=3,
                                                   drop_path_rate=0.0)  # not the trained weights
    moved = 0
    for name, value in one["state_dict"].items():
        if value.is_floating_point():
            torch.testing.assert_close(two["state_dict"][name], value, rtol=1e-4, atol=1e-5,
                                       msg=name)
            moved += not torch.equal(value, start.state_dict()[name])
    assert moved > 100  # training changed the weights it compares
    rows_one, rows_two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    for key in ("train_loss", "val_loss", "top1", "top5", "lr"):
        assert rows_two[0][key] == pytest.approx(rows_one[0][key], rel=1e-4, abs=1e-6), key

    report = tmp_path / "val.json"
    run("validate", "--data", str(data / "val"), "--checkpoint",
        str(tmp_path / "two" / "last.pth.tar"), "--batch-size", "4", "--workers", "0",
        "--device", "cpu", "--json", str(report), nproc=2)
    got = json.loads(report.read_text())
    assert got["images"] == 9
    assert got["top1"] == pytest.approx(rows_two[0]["top1"])
    assert got["loss"] == pytest.approx(rows_two[0]["val_loss"], rel=1e-5)


def cli_error(capsys, *args: str) -> str:
    """The one stderr line of python -m mambavision ARGS, which must fail with exit code 2
    (after a progress bar, if any, that a terminal shows erased: the text after its last \\r)."""
    assert main(list(args)) == 2
    err = capsys.readouterr().err.strip().rsplit("\r", 1)[-1]
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def broken(data, tmp_path) -> Path:
    """A copy of data to break."""
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    return copy


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--output", str(out), *BASE, "--epochs", "1",
            "--batch-size", "6", *extra]


def test_bad_folders(capsys, broken, tmp_path):
    out = tmp_path / "out"
    assert "--data: no such folder: " in cli_error(capsys, *train_args(tmp_path / "nope", out))
    (broken / "train" / "yellow").mkdir()
    assert "class 'yellow' has no images" in cli_error(capsys, *train_args(broken, out))
    (broken / "train" / "yellow" / "0.png").write_bytes((broken / "train/red/0.png").read_bytes())
    err = cli_error(capsys, *train_args(broken, out))
    assert "val and train must have the same classes; missing from val: ['yellow']" in err
    assert "--data: no such folder" in cli_error(
        capsys, "validate", "--data", str(tmp_path / "nope"), "--checkpoint", "x.pth")
    assert "--optimize with --amp fp16 needs a CUDA device" in cli_error(
        capsys, "validate", "--data", str(broken / "val"), "--checkpoint", "x.pth",
        "--optimize", "--amp", "fp16", "--device", "cpu")
    assert not out.exists()


def test_unreadable_image(capsys, broken, tmp_path):
    bad = broken / "train" / "green" / "3.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "out"
    err = cli_error(capsys, *train_args(broken, out))
    assert f"error: unreadable image {bad}: cannot identify image file" in err
    import mambavision

    ckpt = tmp_path / "three.pth.tar"
    torch.save({"state_dict": mambavision.create_model("mamba_vision_T", num_classes=3)
                .state_dict()}, ckpt)
    err = cli_error(capsys, "validate", "--data", str(broken / "train"), "--checkpoint", str(ckpt))
    assert f"error: unreadable image {bad}" in err
    assert not out.exists()


def test_image_cut_short_found_while_loading(capsys, broken, tmp_path):
    """A PNG whose header reads but whose pixels are cut off fails when a DataLoader worker
    loads it: still one line naming the file."""
    bad = broken / "train" / "green" / "3.png"
    bad.write_bytes(bad.read_bytes()[:60])
    out = tmp_path / "out"
    args = train_args(broken, out, "--smoothing", "0")
    args[args.index("--workers") + 1] = "1"
    assert f"error: unreadable image {bad}: " in cli_error(capsys, *args)
    assert not out.exists()


def test_checkpoint_of_another_variant(capsys, data, tmp_path):
    import mambavision

    other = tmp_path / "t2.pth.tar"
    torch.save({"state_dict": mambavision.create_model("mamba_vision_T2").state_dict()}, other)
    err = cli_error(capsys, *train_args(data, tmp_path / "out", "--checkpoint", str(other)))
    assert "--checkpoint: " in err and "(Is this the right variant?)" in err
    err = cli_error(capsys, "validate", "--data", str(data / "val"), "--checkpoint", str(other))
    assert "--checkpoint: " in err and "has a 1000-class head, the folder 3 classes" in err
    assert not (tmp_path / "out").exists()


def test_resume_from_another_configuration(capsys, uninterrupted, data, tmp_path):
    err = cli_error(capsys, *train_args(data, tmp_path / "out", "--epochs", "2", "--resume",
                                        str(uninterrupted / "epoch1.pth.tar")))
    assert "comes from a different run configuration: " in err
    assert "model" not in err and "classes" not in err  # the same
    assert "lr 0.01 in the file, 0.0005 now" in err and "opt 'sgd' in the file" in err and "ema True in the file, False now" in err
    err = cli_error(capsys, *train_args(data, uninterrupted))
    assert "already holds a run" in err
    assert not (tmp_path / "out").exists()
