"""python -m mambavision benchmark: arguments, a tiny real run on CPU, the JSON it writes, and
one-line errors (no traceback) for bad arguments."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mambavision.cli import build_parser, resolve
from mvscan import benchmark as mvscan_benchmark
from mvscan.cli_args import DEVICE_CHOICES, DTYPES, UsageError, resolve_device

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "mamba_vision_T", "--batch-size", "2", "--image-size", "64", "--warmup", "0",
        "--repeats", "2"]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MVSCAN_POISON_OUTPUTS"}
    return subprocess.run([sys.executable, "-m", "mambavision", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_defaults_on_cpu():
    cfg = resolve(build_parser().parse_args(["benchmark"]), "cpu")
    assert (cfg.model, cfg.batch_size, cfg.dtype, cfg.paths, cfg.device) == (
        "mamba_vision_T", 8, "fp32", ["mvscan", "reference"], "cpu")
    assert cfg.image_size == 224 and cfg.repeats == 10
    cfg = resolve(build_parser().parse_args(
        ["benchmark", "--model", "mamba_vision_L2_512_21k", "--compare", ""]), "cpu")
    assert cfg.image_size == 512 and cfg.paths == ["mvscan"]


def test_defaults_on_cuda():
    """The GPU defaults are chosen from the resolved device (no GPU needed to check them)."""
    cfg = resolve(build_parser().parse_args(["benchmark"]), "cuda")
    assert (cfg.batch_size, cfg.dtype, cfg.repeats, cfg.device) == (128, "fp16", 50, "cuda")


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="--device must be one of auto, cpu, cuda, got 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="--device cuda, but no CUDA GPU is visible"):
            resolve_device("cuda")


def test_both_commands_share_the_flags():
    """python -m mvscan.benchmark and python -m mambavision benchmark: the same names and
    choices for --batch-size, --device and --dtype."""
    bench = build_parser()._subparsers._group_actions[0].choices["benchmark"]
    for parser in (bench, mvscan_benchmark.build_parser()):
        actions = {a.dest: a for a in parser._actions}
        assert tuple(actions["dtype"].choices) == ("fp32", "fp16", "bf16") == tuple(DTYPES)
        assert tuple(actions["device"].choices) == DEVICE_CHOICES == ("auto", "cpu", "cuda")
        assert parser.parse_args(["--batch-size", "3", "--dtype", "bf16"]).batch_size == 3


def test_tiny_run_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    res = cli("benchmark", *TINY, "--device", "cpu", "--json", str(out))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("mamba_vision_T inference on cpu")
    rows = {l.split()[0]: l.split() for l in lines[2:4]}
    assert set(rows) == {"mvscan", "reference"}
    assert float(rows["reference"][5]) < 1e-4  # max relative difference to mvscan
    assert rows["reference"][-1] == "mvscan" and rows["mvscan"][5] == "-"
    report = json.loads(out.read_text())
    assert report["config"]["batch_size"] == 2 and report["config"]["device"] == "cpu"
    for r in report["results"]:
        assert set(r) == {"path", "images_per_s", "median_ms", "times_ms", "diff_vs",
                          "max_rel_diff", "top1_agree", "compile_s"}
        assert r["compile_s"] is None  # nothing compiled
        assert r["images_per_s"] > 0 and len(r["times_ms"]) == 2


def test_train_mode_runs():
    res = cli("benchmark", *TINY, "--device", "cpu", "--train", "--compare", "")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("mamba_vision_T train on cpu")


def test_optimize_rows():
    """--optimize: the optimized model's row, its compile seconds apart, the same logits."""
    res = cli("benchmark", "--batch-size", "1", "--warmup", "0", "--repeats", "1", "--device",
              "cpu", "--compare", "", "--optimize")
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line.split() for line in res.stdout.splitlines()[2:4]}
    assert set(rows) == {"mvscan", "opt-fp32"}
    assert rows["mvscan"][4] == "-" and float(rows["opt-fp32"][4]) > 0  # compile seconds
    assert float(rows["opt-fp32"][5]) < 1e-4 and rows["opt-fp32"][6] == "(100%)"


def test_optimize_arguments():
    def cfg(*args):
        return resolve(build_parser().parse_args(["benchmark", *args]), "cpu")

    assert cfg().optimize == [] and cfg("--optimize").optimize == ["fp32"]
    assert cfg("--optimize", "bf16,fp32,bf16").optimize == ["bf16", "fp32"]
    assert cfg("--compare", "reference,timm:convnext_tiny").paths == [
        "mvscan", "reference", "timm:convnext_tiny"]
    for args, message in [
            (["--optimize", "fp16"], "--optimize fp16 needs --device cuda"),
            (["--optimize", "fp8"], "--optimize: unknown dtype(s) ['fp8']"),
            (["--optimize", "--train"], "--optimize times inference; it cannot be combined "
                                        "with --train"),
            (["--compare", "timm:no_such_net"], "--compare: unknown path(s) "
                                                "['timm:no_such_net']")]:
        with pytest.raises(UsageError, match=re.escape(message)):
            cfg(*args)


@pytest.mark.parametrize("args,message", [
    (["--optimize", "fp16", "--device", "cpu"], "--optimize fp16 needs --device cuda"),
    (["--model", "mamba_vision_X"], "unknown model 'mamba_vision_X'"),
    (["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    (["--compare", "mamba_ssm"], "--compare: unknown path(s) ['mamba_ssm']"),
    (["--json", "/nonexistent-dir/out.json"], "--json: cannot write /nonexistent-dir/out.json"),
    (["--dtype", "float32"], "argument --dtype: invalid choice: 'float32'"),
] + ([] if torch.cuda.is_available() else
     [(["--device", "cuda"], "--device cuda, but no CUDA GPU is visible")]))
def test_bad_arguments_give_one_line_errors(args, message):
    res = cli("benchmark", *args)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def checkpoint_and_image(tmp_path_factory):
    import argparse

    import torch
    from PIL import Image

    import mambavision

    d = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    model = mambavision.create_model("mamba_vision_T")
    ckpt = d / "mambavision_tiny_1k.pth.tar"
    torch.save({"state_dict": model.state_dict(), "args": argparse.Namespace()}, ckpt)
    image = d / "cat.png"
    gen = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (300, 400, 3), generator=gen, dtype=torch.uint8).numpy()
    Image.fromarray(pixels).save(image)
    return str(ckpt), str(image), model


def test_predict_prints_topk(checkpoint_and_image):
    ckpt, image, model = checkpoint_and_image
    res = cli("predict", image, "--model", "mamba_vision_T", "--checkpoint", ckpt, "--topk", "3",
              "--device", "cpu")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 3
    probs = [float(l.split("%")[0]) for l in lines]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 100.0 + 1e-6
    # the same preprocessing and model in-process give the same top class
    from PIL import Image

    from mambavision.predict import imagenet_classes, preprocess

    import torch

    with Image.open(image) as im, torch.inference_mode():
        top = model.eval()(preprocess(im, model.pretrained_cfg)).softmax(-1)[0].argmax().item()
    assert lines[0].split("%", 1)[1].strip() == imagenet_classes()[top]
    assert len(imagenet_classes()) == 1000 and imagenet_classes()[281] == "tabby, tabby cat"


def test_predict_optimize_gives_the_same_classes(checkpoint_and_image):
    ckpt, image, _ = checkpoint_and_image
    common = [image, "--checkpoint", ckpt, "--topk", "3", "--device", "cpu"]
    plain, optimized = cli("predict", *common), cli("predict", *common, "--optimize")
    assert plain.returncode == 0 and optimized.returncode == 0, optimized.stderr
    names = [[line.split("%", 1)[1] for line in r.stdout.splitlines()]
             for r in (plain, optimized)]
    assert len(names[0]) == 3 and names[0] == names[1]


@pytest.mark.parametrize("args,message", [
    (["nope.png", "--checkpoint", "x.pth"], "image: no such file: nope.png"),
    (["README.md", "--checkpoint", "README.md"], "image: not an image Pillow can read"),
])
def test_predict_errors(args, message):
    res = cli("predict", *args)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_predict_bad_checkpoint(checkpoint_and_image, tmp_path):
    _, image, _ = checkpoint_and_image
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    res = cli("predict", image, "--checkpoint", str(bad))
    assert res.returncode == 2 and "--checkpoint:" in res.stderr and "Traceback" not in res.stderr


def test_plot_writes_a_png(tmp_path):
    plot, out = tmp_path / "ips.png", tmp_path / "sweep.json"
    res = cli("benchmark", *TINY[:2], "--batch-size", "4", *TINY[4:], "--device", "cpu",
              "--plot", str(plot), "--json", str(out))
    assert res.returncode == 0, res.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(out.read_text())
    assert [r["config"]["batch_size"] for r in report["sweep"]] == [1, 2, 4]


def test_plot_needs_png_name(tmp_path):
    res = cli("benchmark", "--plot", str(tmp_path / "ips.jpg"))
    assert res.returncode == 2 and "--plot: the file must end in .png" in res.stderr
