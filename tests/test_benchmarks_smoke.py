"""The benchmark suite and the benchmark command run end to end (timing disabled, one repeat),
so they cannot rot between the times someone measures with them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MVSCAN_POISON_OUTPUTS"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_benchmark_suite_smoke():
    res = run("-m", "pytest", "benchmarks", "--benchmark-disable", "-q", "-p", "no:cacheprovider")
    assert res.returncode == 0, res.stdout + res.stderr


def test_benchmark_command_smoke():
    res = run("-m", "mvscan.benchmark", "--repeats", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [l for l in res.stdout.splitlines() if l.startswith("mambavision-T")]
    assert len(lines) == 4
    for line in lines:  # the max relative difference between mvscan and the reference
        assert float(line.split()[-1]) < 1e-5, line


BAD_BENCHMARK_ARGS = [(["--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
                      (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
                      (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
                      (["--dtype", "float32"], "argument --dtype: invalid choice: 'float32'"),
                      (["--model", "mamba", "--batch-size", "2"],
                       "--batch-size and --dtype apply to --model scan"),
                      (["--model", "rwkv"], "argument --model: invalid choice: 'rwkv'")]
if not __import__("torch").cuda.is_available():
    BAD_BENCHMARK_ARGS.append((["--device", "cuda"], "--device cuda, but no CUDA GPU is visible"))


@pytest.mark.parametrize("args,message", BAD_BENCHMARK_ARGS)
def test_benchmark_command_rejects_bad_arguments(args, message):
    """One line on stderr, exit code 2, no traceback: the mambavision command's style."""
    res = run("-m", "mvscan.benchmark", *args)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_benchmark_command_takes_the_shared_flags():
    res = run("-m", "mvscan.benchmark", "--repeats", "1", "--batch-size", "2", "--dtype", "bf16",
              "--device", "auto")
    assert res.returncode == 0, res.stdout + res.stderr
    assert ", bf16, median of 1 runs" in res.stdout.splitlines()[0]
    rows = [l for l in res.stdout.splitlines() if l.startswith("mambavision-T")]
    assert len(rows) == 4 and all("(2x" in row for row in rows)
