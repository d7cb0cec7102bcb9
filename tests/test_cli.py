"""python -m mambavision benchmark: arguments, a tiny real run on CPU, the JSON it writes, and
one-line errors (no traceback) for bad arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mambavision.cli import build_parser, resolve

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "mamba_vision_T", "--batch-size", "2", "--image-size", "64", "--warmup", "0",
        "--repeats", "2"]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MVSCAN_POISON_OUTPUTS"}
    return subprocess.run([sys.executable, "-m", "mambavision", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_defaults_on_cpu():
    cfg = resolve(build_parser().parse_args(["benchmark", "--device", "cpu"]))
    assert (cfg.model, cfg.batch_size, cfg.dtype, cfg.paths) == (
        "mamba_vision_T", 8, "fp32", ["mvscan", "reference"])
    assert cfg.image_size == 224 and cfg.repeats == 10
    cfg = resolve(build_parser().parse_args(
        ["benchmark", "--device", "cpu", "--model", "mamba_vision_L2_512_21k", "--compare", ""]))
    assert cfg.image_size == 512 and cfg.paths == ["mvscan"]


def test_tiny_run_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    res = cli("benchmark", *TINY, "--device", "cpu", "--json", str(out))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("mamba_vision_T inference on cpu")
    rows = {l.split()[0]: l.split() for l in lines[2:4]}
    assert set(rows) == {"mvscan", "reference"}
    assert float(rows["reference"][-1]) < 1e-4  # max relative difference to mvscan
    report = json.loads(out.read_text())
    assert report["config"]["batch_size"] == 2 and report["config"]["device"] == "cpu"
    for r in report["results"]:
        assert set(r) == {"path", "images_per_s", "median_ms", "times_ms",
                          "max_rel_diff_vs_mvscan"}
        assert r["images_per_s"] > 0 and len(r["times_ms"]) == 2


def test_train_mode_runs():
    res = cli("benchmark", *TINY, "--device", "cpu", "--train", "--compare", "")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("mamba_vision_T train on cpu")


@pytest.mark.parametrize("args,message", [
    (["--model", "mamba_vision_X"], "unknown model 'mamba_vision_X'"),
    (["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    (["--compare", "mamba_ssm"], "--compare: unknown path(s) ['mamba_ssm']"),
    (["--json", "/nonexistent-dir/out.json"], "--json: cannot write /nonexistent-dir/out.json"),
] + ([] if __import__("torch").cuda.is_available() else
     [(["--device", "cuda"], "--device cuda, but no CUDA GPU is visible")]))
def test_bad_arguments_give_one_line_errors(args, message):
    res = cli("benchmark", *args)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
